//! Loading the SDK configuration: the standard environment (`AWS_REGION`, `AWS_PROFILE`,
//! `AWS_ENDPOINT_URL`, credentials chain) with adaptive retry, once, then cheap per-region copies.

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};

/// Attempts per call, including the first; throttling and transient errors are retried with
/// adaptive rate limiting.
pub const MAX_ATTEMPTS: u32 = 5;

/// The loaded SDK configuration, from which region-specific configurations are derived.
#[derive(Clone, Debug)]
pub struct Aws {
    base: SdkConfig,
}

impl Aws {
    /// Loads the standard AWS environment. `region` overrides `AWS_REGION` when given.
    pub async fn load(region: Option<&str>) -> Aws {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::adaptive().with_max_attempts(MAX_ATTEMPTS));
        if let Some(r) = region {
            loader = loader.region(Region::new(r.to_string()));
        }
        Aws { base: loader.load().await }
    }

    /// From an SDK configuration built elsewhere (tests, embedding).
    pub fn from_config(config: SdkConfig) -> Aws {
        Aws { base: config }
    }

    /// The configuration as loaded.
    pub fn config(&self) -> &SdkConfig {
        &self.base
    }

    /// The region of the loaded configuration, if any.
    pub fn region(&self) -> Option<&str> {
        self.base.region().map(|r| r.as_ref())
    }

    /// The same configuration pointed at another region.
    pub fn in_region(&self, region: &str) -> SdkConfig {
        self.base.to_builder().region(Region::new(region.to_string())).build()
    }
}

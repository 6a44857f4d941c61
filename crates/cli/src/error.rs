//! The CLI's one error boundary: every failure becomes one line on stderr and an exit status
//! (2 usage or validation, 1 runtime).

use std::process::ExitCode;

use ebs_snapper_aws::regions::RegionsError;
use ebs_snapper_aws::{is_account_id, AwsError};
use ebs_snapper_core::{is_region_name, ConfigError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CliError {
    /// The command line itself is wrong.
    #[error("{0} (see 'ebs-snapper --help')")]
    Usage(String),
    /// A configuration given on the command line is invalid; nothing was stored.
    #[error("invalid configuration, nothing stored: {0}")]
    InvalidConfiguration(#[from] ConfigError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Deploy(#[from] crate::deploy::DeployError),
    #[error("could not read {what}: {source}")]
    Read { what: &'static str, source: std::io::Error },
    #[error("build failed: {0}")]
    Build(String),
    #[error("could not write output: {0}")]
    Write(std::io::Error),
    /// What the command names is not there (exit 1).
    #[error("{0}")]
    NotFound(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) | CliError::InvalidConfiguration(_) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }
}

impl From<RegionsError> for CliError {
    fn from(e: RegionsError) -> Self {
        match e {
            RegionsError::NotEnabled(r) => {
                CliError::Usage(format!("--region {r} is not an enabled region of this account"))
            }
            RegionsError::Aws(e) => e.into(),
        }
    }
}

/// Refuses an account id that is not 12 digits, naming the flag it came with (`-a`,
/// `--account`, `--member`), before any AWS call.
pub fn check_account(flag: &str, account: &str) -> Result<(), CliError> {
    if is_account_id(account) {
        Ok(())
    } else {
        Err(CliError::Usage(format!("{flag} {account:?} is not an AWS account id (12 digits)")))
    }
}

/// Refuses a `--region` that is not a region name, before any AWS call.
pub fn check_regions(regions: &[String]) -> Result<(), CliError> {
    match regions.iter().find(|r| !is_region_name(r)) {
        Some(r) => Err(CliError::Usage(format!("--region {r:?} is not an AWS region name"))),
        None => Ok(()),
    }
}

//! The replication schedule rule: enabled when any valid configuration asks for replication,
//! disabled otherwise. Only the rule named by `REPLICATION_RULE_NAME` is ever touched.

use aws_sdk_eventbridge::types::RuleState;
use tracing::info;

use crate::error::AwsError;
use crate::sdk::Aws;

pub const RULE_ENV: &str = "REPLICATION_RULE_NAME";

/// What the switch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleChange {
    Enabled,
    Disabled,
    Unchanged,
}

impl RuleChange {
    /// The word the fanout reports (`replication_rule` in its result).
    pub fn as_str(self) -> &'static str {
        match self {
            RuleChange::Enabled => "enabled",
            RuleChange::Disabled => "disabled",
            RuleChange::Unchanged => "unchanged",
        }
    }
}

/// Sets the rule's state to `enabled`; changes nothing when it already is.
pub async fn set_replication_rule(aws: &Aws, region: &str, rule: &str, enabled: bool) -> Result<RuleChange, AwsError> {
    let client = aws_sdk_eventbridge::Client::new(&aws.in_region(region));
    let current =
        client.describe_rule().name(rule).send().await.map_err(|e| AwsError::call("DescribeRule", region, e))?;
    let is_enabled = matches!(current.state(), Some(RuleState::Enabled));
    if is_enabled == enabled {
        return Ok(RuleChange::Unchanged);
    }
    if enabled {
        client.enable_rule().name(rule).send().await.map_err(|e| AwsError::call("EnableRule", region, e))?;
        info!(region, rule, "enabled the replication schedule");
        Ok(RuleChange::Enabled)
    } else {
        client.disable_rule().name(rule).send().await.map_err(|e| AwsError::call("DisableRule", region, e))?;
        info!(region, rule, "disabled the replication schedule");
        Ok(RuleChange::Disabled)
    }
}

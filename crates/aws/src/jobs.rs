//! The jobs, one region at a time: load configurations -> gather inventory -> plan (core) ->
//! execute -> report. A dry run is the same path without the execute step. Used by the CLI and
//! by the Lambda workers alike.

use chrono::{DateTime, Utc};
use ebs_snapper_core::{
    plan_retention, plan_snapshots, ActionReport, ConfigurationSet, RegionReport, VolumeAction, VERSION,
};
use tracing::warn;

use crate::budget::TimeBudget;
use crate::config_store::{table_name, ConfigStore};
use crate::error::AwsError;
use crate::executor::{create_snapshots, delete_snapshots, Outcome};
use crate::inventory::{gather, gather_for_clean};
use crate::sdk::Aws;

#[derive(Debug, Clone, Copy)]
pub struct JobOptions {
    pub dry_run: bool,
    pub budget: TimeBudget,
}

/// The account's configurations from the tool region, with every invalid one and every warning
/// logged by configuration id.
pub async fn load_configurations(aws: &Aws, tool_region: &str, account: &str) -> Result<ConfigurationSet, AwsError> {
    let store = ConfigStore::new(aws, tool_region, table_name());
    let set = ConfigurationSet::from_stored(&store.list(account).await?);
    for invalid in &set.invalid {
        warn!(config = %invalid.id, error = %invalid.error, "skipping invalid configuration {}: {}", invalid.id, invalid.error);
    }
    for (id, warning) in &set.warnings {
        warn!(config = %id, "configuration {id}: {warning}");
    }
    Ok(set)
}

fn action(action: &str, resource: &str, reason: String, outcome: &str) -> ActionReport {
    ActionReport {
        action: action.to_string(),
        resource: resource.to_string(),
        instance_id: None,
        device: None,
        config_id: None,
        reason,
        outcome: outcome.to_string(),
        result_id: None,
        error: None,
    }
}

/// Runs the snapshot job in one region.
pub async fn snapshot_region(
    aws: &Aws,
    configs: &ConfigurationSet,
    region: &str,
    now: DateTime<Utc>,
    opts: JobOptions,
) -> RegionReport {
    let client = aws_sdk_ec2::Client::new(&aws.in_region(region));
    let inventory = match gather(&client, region, configs).await {
        Ok(inventory) => inventory,
        Err(e) => {
            warn!(region, error = %e, "could not gather the inventory");
            return RegionReport::failed("snapshot", region, opts.dry_run, e.to_string());
        }
    };
    let plan = plan_snapshots(configs, &inventory, now, VERSION);
    let mut report = RegionReport::new("snapshot", region, opts.dry_run);
    for w in &plan.warnings {
        warn!(region, "{w}");
    }
    report.warnings.extend(plan.warnings.iter().cloned());

    let mut to_create = Vec::new();
    for decision in &plan.decisions {
        let (kind, outcome) = match &decision.action {
            VolumeAction::Create { request, .. } => {
                to_create.push((report.actions.len(), request));
                ("create", "planned")
            }
            VolumeAction::NotDue { .. } | VolumeAction::NeverDue { .. } => {
                report.not_due += 1;
                ("not_due", "none")
            }
            VolumeAction::IgnoredVolume | VolumeAction::IgnoredInstance => {
                report.ignored += 1;
                ("ignored", "none")
            }
            VolumeAction::VolumeNotFound => {
                report.skipped += 1;
                ("skipped", "none")
            }
        };
        let mut a = action(kind, &decision.volume_id, decision.reason(), outcome);
        a.instance_id = Some(decision.instance_id.clone());
        a.device = Some(decision.device.clone());
        a.config_id = Some(decision.config_id.clone());
        report.actions.push(a);
    }
    if opts.dry_run || to_create.is_empty() {
        return report;
    }

    let requests: Vec<_> = to_create.iter().map(|(_, r)| *r).collect();
    let outcomes = create_snapshots(&client, region, &requests, &opts.budget).await;
    for ((index, _), outcome) in to_create.iter().zip(outcomes) {
        if record_outcome(&mut report, *index, outcome) {
            report.created += 1;
        }
    }
    report
}

/// Records a mutation's outcome on its action and in the counts; true when it was done.
fn record_outcome(report: &mut RegionReport, index: usize, outcome: Outcome) -> bool {
    let a = &mut report.actions[index];
    match outcome {
        Outcome::Done(id) => {
            a.outcome = "done".into();
            a.result_id = id;
            return true;
        }
        Outcome::Skipped(why) => {
            report.skipped += 1;
            a.outcome = "skipped".into();
            a.error = Some(why);
        }
        Outcome::Failed(e) => {
            report.failed += 1;
            a.outcome = "failed".into();
            report.errors.push(format!("{}: {e}", a.resource));
            a.error = Some(e.to_string());
        }
        Outcome::Deferred => {
            report.deferred += 1;
            a.outcome = "deferred".into();
        }
    }
    false
}

/// Runs the clean job in one region.
pub async fn clean_region(
    aws: &Aws,
    configs: &ConfigurationSet,
    region: &str,
    now: DateTime<Utc>,
    opts: JobOptions,
) -> RegionReport {
    let client = aws_sdk_ec2::Client::new(&aws.in_region(region));
    let (inventory, ignored_volumes) = match gather_for_clean(&client, region, configs).await {
        Ok(found) => found,
        Err(e) => {
            warn!(region, error = %e, "could not gather the inventory");
            return RegionReport::failed("clean", region, opts.dry_run, e.to_string());
        }
    };
    let plan = plan_retention(configs, &inventory, &ignored_volumes, now.date_naive());
    let mut report = RegionReport::new("clean", region, opts.dry_run);
    for w in &plan.warnings {
        warn!(region, "{w}");
    }
    report.warnings.extend(plan.warnings.iter().cloned());

    let mut to_delete = Vec::new();
    for decision in &plan.decisions {
        let kind = if decision.is_delete() {
            to_delete.push((report.actions.len(), decision.snapshot_id.as_str()));
            "delete"
        } else {
            if matches!(decision.action, ebs_snapper_core::RetentionAction::Keep(ebs_snapper_core::Keep::Ignored(_))) {
                report.ignored += 1;
            }
            "keep"
        };
        let mut a =
            action(kind, &decision.snapshot_id, decision.reason(), if kind == "delete" { "planned" } else { "none" });
        a.config_id = decision.config_id.clone();
        if let Some(v) = &decision.volume_id {
            a.reason = format!("{} (volume {v})", a.reason);
        }
        report.actions.push(a);
    }
    if opts.dry_run || to_delete.is_empty() {
        return report;
    }
    let ids: Vec<&str> = to_delete.iter().map(|(_, id)| *id).collect();
    let outcomes = delete_snapshots(&client, region, &ids, &opts.budget).await;
    for ((index, _), outcome) in to_delete.iter().zip(outcomes) {
        if record_outcome(&mut report, *index, outcome) {
            report.deleted += 1;
        }
    }
    report
}

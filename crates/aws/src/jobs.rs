//! The jobs, one region at a time: load configurations -> gather inventory -> plan (core) ->
//! execute -> report. A dry run is the same path without the execute step. Used by the CLI and
//! by the Lambda workers alike.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ebs_snapper_core::{
    copy_request, peer_regions, plan_replication, plan_retention, plan_snapshots, ActionReport, ConfigurationSet,
    Inventory, PeerListing, RegionReport, ReplicationAction, VolumeAction, VERSION,
};
use tracing::warn;

use crate::budget::TimeBudget;
use crate::config_store::{table_name, ConfigStore};
use crate::error::AwsError;
use crate::executor::{copy_snapshots, create_snapshots, delete_snapshots, Outcome};
use crate::inventory::{
    describe_own_snapshots, describe_own_snapshots_by_id, ec2_filter, gather, gather_for_clean, listing_lag,
    until_listed, SnapshotDetail,
};
use crate::lease::{Lease, LeaseScope, Taken};
use crate::sdk::Aws;

#[derive(Debug, Clone)]
pub struct JobOptions<'a> {
    pub dry_run: bool,
    pub budget: TimeBudget,
    /// Where the region leases are kept; `None` runs without them (tests of one process only).
    pub lease: Option<&'a LeaseScope>,
    /// Record every decision in the report (the CLI prints them), or only the mutations and
    /// count the rest (a Lambda worker returns counts; 100,000 kept snapshots would cost tens of
    /// megabytes of report).
    pub every_action: bool,
}

impl JobOptions<'_> {
    /// Whether an action with this outcome goes into the report's list.
    fn records(&self, outcome: &str) -> bool {
        self.every_action || outcome != "none"
    }
}

/// Runs `work` holding the lease of `job` in `region` (dry runs change nothing and take none).
/// The work gets a budget bounded by the lease, so it starts no mutation once the lease may have
/// passed to another run. When another run holds the lease for the whole wait, nothing is done
/// here and the report says so; when the lease cannot be written at all, the work runs without
/// it (a warning).
async fn holding_lease<'a, F, Fut>(aws: &Aws, job: &str, region: &str, opts: JobOptions<'a>, work: F) -> RegionReport
where
    F: FnOnce(JobOptions<'a>) -> Fut,
    Fut: std::future::Future<Output = RegionReport>,
{
    let Some(scope) = opts.lease.filter(|_| !opts.dry_run) else { return work(opts).await };
    let wait = opts.budget.remaining().unwrap_or(MAX_LEASE_WAIT).min(MAX_LEASE_WAIT);
    match Lease::take(aws, scope, job, region, wait).await {
        Taken::Held(lease) => {
            let bounded = JobOptions { budget: lease.bound(&opts.budget), ..opts };
            let report = work(bounded).await;
            if settled(aws, region, &report).await {
                lease.release().await;
            } else {
                lease.release_after(listing_lag()).await;
            }
            report
        }
        Taken::Failed(e) => {
            let msg = format!(
                "could not take the {job} lease of region {region} ({e}); the region was not worked, the next run takes it"
            );
            warn!(region, "{msg}");
            RegionReport::failed(job, region, opts.dry_run, msg)
        }
        Taken::Busy { holder } => {
            let msg = format!(
                "another {job} run ({holder}) held region {region} for the whole wait of {} s; nothing was done here, \
                 that run does the work",
                wait.as_secs()
            );
            warn!(region, "{msg}");
            let mut report = RegionReport::new(job, region, opts.dry_run);
            report.warnings.push(msg);
            report
        }
        Taken::Unavailable(e) => {
            let msg = format!("running without the region lease: {e}");
            warn!(region, "{msg}");
            let mut report = work(opts).await;
            report.warnings.insert(0, msg);
            report
        }
    }
}

/// Whether every snapshot the run made shows in EC2's listings, so that the next run, planning
/// from those listings, sees them (EC2 is eventually consistent). Waits up to the listing lag for
/// the snapshots created here; copies (made in other regions) and anything that could not be
/// looked up count as not settled, and the lease is then handed over with a hold.
async fn settled(aws: &Aws, region: &str, report: &RegionReport) -> bool {
    if report.copied > 0 {
        return false;
    }
    let created: Vec<String> = report
        .actions
        .iter()
        .filter(|a| a.action == "create" && a.outcome == "done")
        .filter_map(|a| a.result_id.clone())
        .collect();
    if created.is_empty() {
        return report.failed == 0 || report.job != "snapshot";
    }
    let client = aws_sdk_ec2::Client::new(&aws.in_region(region));
    let all_listed = || async {
        let found = describe_own_snapshots_by_id(&client, region, &created, SnapshotDetail::Bare).await?;
        Ok((found.len() >= created.len()).then_some(()))
    };
    matches!(until_listed(all_listed).await, Ok(Some(())))
}

/// The longest a run waits for another run's lease on a region.
pub const MAX_LEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

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

/// A job's report for a region, with the plan's warnings logged and kept, and each
/// configuration that could not be evaluated reported as a failed action of its own.
fn new_report(job: &str, inventory: &Inventory, opts: &JobOptions<'_>, warnings: &[String]) -> RegionReport {
    let region = inventory.region.as_str();
    let mut report = RegionReport::new(job, region, opts.dry_run);
    for w in warnings {
        warn!(region, "{w}");
    }
    report.warnings.extend(warnings.iter().cloned());
    for (id, error) in &inventory.failed_configs {
        report.failed += 1;
        report.errors.push(format!("configuration {id}: {error}"));
        let mut a =
            action("match", &format!("configuration {id}"), "its instances could not be listed".into(), "failed");
        a.config_id = Some(id.clone());
        a.error = Some(error.clone());
        report.actions.push(a);
    }
    report
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

/// Runs the snapshot job in one region, holding its lease.
pub async fn snapshot_region(
    aws: &Aws,
    configs: &ConfigurationSet,
    region: &str,
    now: DateTime<Utc>,
    opts: JobOptions<'_>,
) -> RegionReport {
    holding_lease(aws, "snapshot", region, opts, |opts| snapshot_unleased(aws, configs, region, now, opts)).await
}

async fn snapshot_unleased(
    aws: &Aws,
    configs: &ConfigurationSet,
    region: &str,
    now: DateTime<Utc>,
    opts: JobOptions<'_>,
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
    let mut report = new_report("snapshot", &inventory, &opts, &plan.warnings);

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
        if !opts.records(outcome) {
            continue;
        }
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
    opts: JobOptions<'_>,
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
    let mut report = new_report("clean", &inventory, &opts, &plan.warnings);

    let mut to_delete = Vec::new();
    for decision in &plan.decisions {
        let kind = if decision.is_delete() {
            to_delete.push((report.actions.len(), decision.snapshot_id));
            "delete"
        } else {
            if matches!(decision.action, ebs_snapper_core::RetentionAction::Keep(ebs_snapper_core::Keep::Ignored(_))) {
                report.ignored += 1;
            }
            report.kept += 1;
            if !opts.records("none") {
                continue;
            }
            "keep"
        };
        let mut a =
            action(kind, decision.snapshot_id, decision.reason(), if kind == "delete" { "planned" } else { "none" });
        a.config_id = decision.config_id.map(str::to_string);
        if let Some(v) = decision.volume_id {
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

/// What the replication planner reads of a region's snapshots: only the replication tags (the
/// sources to copy are read again in full; see [`with_full_sources`]).
const PEER_DETAIL: SnapshotDetail = SnapshotDetail::Tags(&[
    ebs_snapper_core::tags::DELETE_ON,
    ebs_snapper_core::tags::REPLICATION_DST,
    ebs_snapper_core::tags::REPLICATION_SRC,
    ebs_snapper_core::tags::REPLICATION_SNAPSHOT_ID,
]);

/// The listings carry only the replication tags (a region may hold 100,000 tagged snapshots);
/// a copy takes its source's tags and description, so the few sources to copy are read again in
/// full (one `DescribeSnapshots` per 200) and their copy requests made from that. A source gone
/// since the listing is skipped.
async fn with_full_sources(
    client: &aws_sdk_ec2::Client,
    region: &str,
    mut plan: ebs_snapper_core::ReplicationPlan,
) -> Result<ebs_snapper_core::ReplicationPlan, AwsError> {
    let ids: Vec<String> = plan
        .decisions
        .iter()
        .filter(|d| matches!(d.action, ReplicationAction::Copy(_)))
        .map(|d| d.snapshot_id.clone())
        .collect();
    let full: BTreeMap<String, _> = describe_own_snapshots_by_id(client, region, &ids, SnapshotDetail::Full)
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    for d in &mut plan.decisions {
        if let ReplicationAction::Copy(request) = &d.action {
            d.action = match full.get(&d.snapshot_id) {
                Some(source) => ReplicationAction::Copy(copy_request(region, &request.destination_region, source)),
                None => ReplicationAction::Skip("the source is gone since it was listed".to_string()),
            };
        }
    }
    Ok(plan)
}

/// One filter value that matches every replication tag key (`replication_dst_region`,
/// `replication_src_region`, `replication_snapshot_id`), so each listing is one paginated call.
/// (A multi-valued `tag-key` filter would do too on EC2, but the emulator mishandles it; the
/// planner checks the exact tags either way.)
pub(crate) fn replication_filter() -> aws_sdk_ec2::types::Filter {
    ec2_filter("tag-key", ["replication_*".to_string()])
}

/// Runs the replication job in one region: replicas whose source is gone are deleted first,
/// then missing copies are made.
///
/// Only peers in `enabled` (the account's enabled regions) are listed: a replica whose source
/// region is not enabled is kept, since it may be the only copy left.
pub async fn replication_region(
    aws: &Aws,
    configs: &ConfigurationSet,
    region: &str,
    enabled: &[String],
    opts: JobOptions<'_>,
) -> RegionReport {
    holding_lease(aws, "replication", region, opts, |opts| replication_unleased(aws, configs, region, enabled, opts))
        .await
}

async fn replication_unleased(
    aws: &Aws,
    configs: &ConfigurationSet,
    region: &str,
    enabled: &[String],
    opts: JobOptions<'_>,
) -> RegionReport {
    let client = aws_sdk_ec2::Client::new(&aws.in_region(region));
    let local = match describe_own_snapshots(&client, region, vec![replication_filter()], PEER_DETAIL).await {
        Ok(local) => local,
        Err(e) => {
            warn!(region, error = %e, "could not list snapshots tagged for replication");
            return RegionReport::failed("replication", region, opts.dry_run, e.to_string());
        }
    };
    // Exactly the peer regions the tags name, each listed once, concurrently.
    let peers: BTreeMap<String, PeerListing> =
        futures::future::join_all(peer_regions(region, &local).into_iter().map(|peer| async move {
            if !enabled.contains(&peer) {
                return (peer, Err("not an enabled region of this account".to_string()));
            }
            let peer_client = aws_sdk_ec2::Client::new(&aws.in_region(&peer));
            let listing = describe_own_snapshots(&peer_client, &peer, vec![replication_filter()], PEER_DETAIL).await.map_err(|e| {
                warn!(region = %peer, error = %e, "could not list the peer region; nothing is deleted on its account");
                e.to_string()
            });
            (peer, listing)
        }))
        .await
        .into_iter()
        .collect();
    // A peer that could not be listed stalls replication to and from it: a failure to report
    // (and to alarm on), not a skip. A peer that is not enabled is only a skip.
    let listing_failures: Vec<String> = peers
        .iter()
        .filter(|(peer, listing)| listing.is_err() && enabled.contains(peer))
        .map(|(peer, listing)| {
            format!(
                "could not list {peer}; nothing to or from it was done: {}",
                listing.as_ref().err().map(String::as_str).unwrap_or("")
            )
        })
        .collect();
    let plan = plan_replication(region, &local, &peers, &configs.ignored_ids());
    drop((local, peers));
    let plan = match with_full_sources(&client, region, plan).await {
        Ok(plan) => plan,
        Err(e) => {
            warn!(region, error = %e, "could not read the snapshots to copy");
            return RegionReport::failed("replication", region, opts.dry_run, e.to_string());
        }
    };
    let mut report = RegionReport::new("replication", region, opts.dry_run);
    report.failed += listing_failures.len();
    report.errors.extend(listing_failures);

    let mut deletes = Vec::new();
    let mut copies = Vec::new();
    for decision in &plan.decisions {
        let (kind, outcome) = match &decision.action {
            ReplicationAction::DeleteReplica { .. } => {
                deletes.push((report.actions.len(), decision.snapshot_id.as_str()));
                ("delete", "planned")
            }
            ReplicationAction::Copy(request) => {
                copies.push((report.actions.len(), request));
                ("copy", "planned")
            }
            ReplicationAction::InSync(_) => {
                report.in_sync += 1;
                ("in_sync", "none")
            }
            ReplicationAction::Skip(why) => {
                if why == "ignored" {
                    report.ignored += 1;
                } else {
                    report.skipped += 1;
                }
                ("skip", "none")
            }
        };
        if opts.records(outcome) {
            report.actions.push(action(kind, &decision.snapshot_id, decision.reason(), outcome));
        }
    }
    if opts.dry_run {
        return report;
    }
    // Clean-up before copy.
    let ids: Vec<&str> = deletes.iter().map(|(_, id)| *id).collect();
    for ((index, _), outcome) in deletes.iter().zip(delete_snapshots(&client, region, &ids, &opts.budget).await) {
        if record_outcome(&mut report, *index, outcome) {
            report.deleted += 1;
        }
    }
    let requests: Vec<_> = copies.iter().map(|(_, r)| *r).collect();
    for ((index, _), outcome) in copies.iter().zip(copy_snapshots(aws, &requests, &opts.budget).await) {
        if record_outcome(&mut report, *index, outcome) {
            report.copied += 1;
        }
    }
    report
}

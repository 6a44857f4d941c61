//! The jobs, one region at a time: load configurations -> gather inventory -> plan (core) ->
//! execute -> report. A dry run is the same path without the execute step. Used by the CLI and
//! by the Lambda workers alike.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ebs_snapper_core::drill_plan::plan_drills;
use ebs_snapper_core::lock_plan::{
    any_lock, copy_lock_of, decide, plan_locks, report_locks, requests as lock_requests, source_lock_of,
    wanted_source_lock, LockDecision,
};
use ebs_snapper_core::tags::{
    DELETE_ON, REPLICATION_DST, REPLICATION_SNAPSHOT_ID, REPLICATION_SRC, TAG_CONFIG, TAG_COPY_TO,
};
use ebs_snapper_core::{
    peer_regions, plan_replication, plan_retention, plan_snapshots, ConfigurationSet, Executed, Job, Lock, PeerIndex,
    PeerListing, RegionReport, ReportOptions, SnapshotState, Tags, VERSION,
};
use tracing::warn;

use crate::budget::TimeBudget;
use crate::config_store::{table_name, ConfigStore};
use crate::error::AwsError;
use crate::executor::{
    archive_snapshots, copy_snapshots, create_snapshot_sets, create_snapshots, delete_snapshot, delete_snapshots,
    lock_snapshots,
};
use crate::inventory::{
    describe_locks, describe_own_snapshots, describe_own_snapshots_by_id, each_own_snapshot, gather, gather_for_clean,
    listing_lag, replication_filter, until_listed, SnapshotDetail, RETENTION_TAGS,
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
    /// How a vault is reached (SPEC §16); `None`: no vault work (the run cannot say whose
    /// account it works in).
    pub vault: Option<crate::vault::VaultAccess<'a>>,
}

impl JobOptions<'_> {
    fn report(&self) -> ReportOptions {
        ReportOptions { dry_run: self.dry_run, every_action: self.every_action }
    }
}

/// Runs `work` holding the lease of `job` in `region` (dry runs change nothing and take none).
/// The work gets a budget bounded by the lease, so it starts no mutation once the lease may have
/// passed to another run. When another run holds the lease for the whole wait, nothing is done
/// here and the report says so; when the lease cannot be written at all, the work runs without
/// it (a warning).
async fn holding_lease<'a, F, Fut>(aws: &Aws, job: Job, region: &str, opts: JobOptions<'a>, work: F) -> RegionReport
where
    F: FnOnce(JobOptions<'a>) -> Fut,
    Fut: std::future::Future<Output = RegionReport>,
{
    let Some(scope) = opts.lease.filter(|_| !opts.dry_run) else { return work(opts).await };
    let wait = opts.budget.remaining().unwrap_or(MAX_LEASE_WAIT).min(MAX_LEASE_WAIT);
    match Lease::take(scope, job, region, wait).await {
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
    let created: Vec<String> = report.created_ids().map(str::to_string).collect();
    if created.is_empty() {
        return report.failed == 0 || report.job != Job::Snapshot;
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

/// Logs a plan's warnings (the report keeps them too).
fn log_warnings(region: &str, warnings: &[String]) {
    for w in warnings {
        warn!(region, "{w}");
    }
}

/// Runs `job` in one region: the snapshot and replication jobs hold the region's lease, the
/// clean job takes none (two runs plan the same deletions from the same listing, and the second
/// one's are skipped as not found). `enabled`: the account's enabled regions, the peers
/// replication may list.
pub async fn run_region(
    aws: &Aws,
    job: Job,
    configs: &ConfigurationSet,
    region: &str,
    enabled: &[String],
    now: DateTime<Utc>,
    opts: JobOptions<'_>,
) -> RegionReport {
    // Boxed: each job's future is large, and one state machine holding all three is too deep.
    match job {
        Job::Snapshot => Box::pin(snapshot_region(aws, configs, region, now, opts)).await,
        Job::Clean => Box::pin(clean_region(aws, configs, region, now, opts)).await,
        Job::Replication => Box::pin(replication_region(aws, configs, region, enabled, opts)).await,
    }
}

/// One job's region run as a type, for the Lambda workers: a worker generic over it links only
/// its own job's code (the clean worker alone links the restore drills and the EBS client).
pub trait RegionJob {
    const JOB: Job;
    fn run<'a>(
        aws: &'a Aws,
        configs: &'a ConfigurationSet,
        region: &'a str,
        enabled: &'a [String],
        now: DateTime<Utc>,
        opts: JobOptions<'a>,
    ) -> impl std::future::Future<Output = RegionReport> + 'a;
}

/// [`snapshot_region`] as a [`RegionJob`].
pub struct SnapshotJob;
/// [`clean_region`] as a [`RegionJob`].
pub struct CleanJob;
/// [`replication_region`] as a [`RegionJob`].
pub struct ReplicationJob;

impl RegionJob for SnapshotJob {
    const JOB: Job = Job::Snapshot;
    fn run<'a>(
        aws: &'a Aws,
        configs: &'a ConfigurationSet,
        region: &'a str,
        _enabled: &'a [String],
        now: DateTime<Utc>,
        opts: JobOptions<'a>,
    ) -> impl std::future::Future<Output = RegionReport> + 'a {
        Box::pin(snapshot_region(aws, configs, region, now, opts))
    }
}

impl RegionJob for CleanJob {
    const JOB: Job = Job::Clean;
    fn run<'a>(
        aws: &'a Aws,
        configs: &'a ConfigurationSet,
        region: &'a str,
        _enabled: &'a [String],
        now: DateTime<Utc>,
        opts: JobOptions<'a>,
    ) -> impl std::future::Future<Output = RegionReport> + 'a {
        Box::pin(clean_region(aws, configs, region, now, opts))
    }
}

impl RegionJob for ReplicationJob {
    const JOB: Job = Job::Replication;
    fn run<'a>(
        aws: &'a Aws,
        configs: &'a ConfigurationSet,
        region: &'a str,
        enabled: &'a [String],
        _now: DateTime<Utc>,
        opts: JobOptions<'a>,
    ) -> impl std::future::Future<Output = RegionReport> + 'a {
        Box::pin(replication_region(aws, configs, region, enabled, opts))
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
    holding_lease(aws, Job::Snapshot, region, opts, |opts| snapshot_unleased(aws, configs, region, now, opts)).await
}

/// gather -> plan -> execute -> report.
async fn snapshot_unleased(
    aws: &Aws,
    configs: &ConfigurationSet,
    region: &str,
    now: DateTime<Utc>,
    opts: JobOptions<'_>,
) -> RegionReport {
    let client = aws_sdk_ec2::Client::new(&aws.in_region(region));
    let mut inventory = match gather(&client, region, configs).await {
        Ok(inventory) => inventory,
        Err(e) => {
            warn!(region, error = %e, "could not gather the inventory");
            return RegionReport::failed(Job::Snapshot, region, opts.dry_run, e.to_string());
        }
    };
    // Under a lock, the region's locks are read (one listing) so that a snapshot whose lock is
    // missing or short is locked now (SPEC §16, "locks only grow").
    let mut lock_listing_failed = None;
    if any_lock(configs, true) {
        match describe_locks(&client, region).await {
            Ok(locks) => inventory.locks = locks,
            Err(e) => {
                warn!(region, error = %e, "could not list the region's snapshot locks");
                lock_listing_failed = Some(e);
            }
        }
    }
    let plan = plan_snapshots(configs, &inventory, now, VERSION);
    log_warnings(region, &plan.warnings);
    let mut locks = match lock_listing_failed {
        None => plan_locks(&inventory.snapshots, |s| wanted_source_lock(configs, s), &inventory.locks, Utc::now()),
        Some(_) => Vec::new(),
    };
    let (created, sets, locked) = if opts.dry_run {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        let requests_made: Vec<_> = plan.requests().map(|(_, request)| request).collect();
        let sets: Vec<_> = plan.sets.iter().collect();
        // One after the other, so that no more than the executor's bound is in flight.
        let created = create_snapshots(&client, region, &requests_made, &opts.budget).await;
        let sets_made = create_snapshot_sets(&client, region, &sets, &opts.budget).await;
        // Each new snapshot under a lock is locked right after it is made, pending or not (a
        // set's snapshots one by one).
        let new = requests_made
            .iter()
            .zip(&created)
            .filter_map(|(request, executed)| match executed {
                Executed::Done(Some(id)) => Some((id.as_str(), &request.tags)),
                _ => None,
            })
            .chain(
                sets.iter()
                    .zip(&sets_made)
                    .flat_map(|(set, made)| made.snapshots.iter().map(|(_, id)| (id.as_str(), &set.tags))),
            );
        for (id, tags) in new {
            let tags: Tags = tags.iter().cloned().collect();
            if let Some((lock, date)) = source_lock_of(configs, &tags) {
                locks.extend(decide(id, lock, date, None, Utc::now()));
            }
        }
        let locked = lock_snapshots(&client, region, &lock_requests(&locks), &opts.budget).await;
        (created, sets_made, locked)
    };
    let mut report = plan.report(&inventory.failed_configs, created, sets, opts.report());
    report_locks(&mut report, opts.report(), &locks, locked, None);
    if let Some(e) = lock_listing_failed {
        report.failed += 1;
        report.errors.push(format!(
            "could not list the region's snapshot locks, so no missing lock was sent again (new snapshots were locked): {e}"
        ));
    }
    report
}

/// Runs the clean job in one region: gather -> plan -> execute -> report.
pub async fn clean_region(
    aws: &Aws,
    configs: &ConfigurationSet,
    region: &str,
    now: DateTime<Utc>,
    opts: JobOptions<'_>,
) -> RegionReport {
    let client = aws_sdk_ec2::Client::new(&aws.in_region(region));
    let (mut inventory, ignored_volumes) = match gather_for_clean(&client, region, configs).await {
        Ok(found) => found,
        Err(e) => {
            warn!(region, error = %e, "could not gather the inventory");
            return RegionReport::failed(Job::Clean, region, opts.dry_run, e.to_string());
        }
    };
    // The region's locks, read once: no locked snapshot is ever sent to DeleteSnapshot (SPEC
    // §16), so without them nothing is deleted.
    inventory.locks = match describe_locks(&client, region).await {
        Ok(locks) => locks,
        Err(e) => {
            warn!(region, error = %e, "could not list the region's snapshot locks");
            let error = format!("could not list the region's snapshot locks, so nothing was deleted: {e}");
            return RegionReport::failed(Job::Clean, region, opts.dry_run, error);
        }
    };
    let plan = plan_retention(configs, &inventory, &ignored_volumes, now.date_naive());
    log_warnings(region, &plan.warnings);
    // The drills are picked now, from the same listing, among the snapshots the plan keeps.
    let drills = {
        let deleting: std::collections::BTreeSet<&str> = plan.delete_ids().into_iter().collect();
        plan_drills(configs, &inventory, |s| !deleting.contains(s.id.as_str()), now)
    };
    let (deleted, archived, locked) = if opts.dry_run {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        let deleted = delete_snapshots(&client, region, &plan.delete_ids(), &opts.budget).await;
        let archived = archive_snapshots(&client, region, &plan.archive_ids(), &opts.budget).await;
        (deleted, archived, lock_snapshots(&client, region, &plan.lock_requests(), &opts.budget).await)
    };
    let mut report = plan.report(&inventory.failed_configs, deleted, archived, locked, opts.report());
    drop(plan);
    drop(inventory);
    if let Some(access) = opts.vault {
        crate::vault::vault_clean_region(access, configs, region, &opts.budget, opts.report(), &mut report).await;
    }
    // Restore drills (SPEC §17), after the retention work: first the volumes killed runs left.
    if any_drill(configs) {
        crate::drill::sweep(&client, region, &opts.budget, opts.report(), &mut report).await;
    }
    let site = crate::drill::DrillSite { aws, region, source_aws: Some(aws), label: None };
    crate::drill::run_drills(&site, &drills, &opts.budget, opts.report(), &mut report).await;
    report
}

/// `ebs-snapper drill` in one region (SPEC §17): the drills the clean job would run now (its
/// own, the vaults'), without its retention work; or only the snapshot `only` names, due or not
/// (nothing when it is not in this region).
pub async fn drill_region(
    aws: &Aws,
    configs: &ConfigurationSet,
    region: &str,
    now: DateTime<Utc>,
    opts: JobOptions<'_>,
    only: Option<&str>,
) -> RegionReport {
    let client = aws_sdk_ec2::Client::new(&aws.in_region(region));
    let mut report = RegionReport::new(Job::Clean, region, opts.dry_run);
    let picks = match only {
        Some(id) => {
            let ids = [id.to_string()];
            let found = match describe_own_snapshots_by_id(&client, region, &ids, SnapshotDetail::Tags(&RETENTION_TAGS))
                .await
            {
                Ok(found) => found,
                Err(e) => return RegionReport::failed(Job::Clean, region, opts.dry_run, e.to_string()),
            };
            let Some(snapshot) = found.first() else { return report };
            match ebs_snapper_core::drill_plan::pick_one(configs, region, snapshot) {
                Ok(pick) => vec![pick],
                Err(why) => {
                    report.failed += 1;
                    report.errors.push(format!("{id} cannot be drilled: {why}"));
                    return report;
                }
            }
        }
        None => match gather_for_clean(&client, region, configs).await {
            Ok((inventory, _)) => plan_drills(configs, &inventory, |_| true, now),
            Err(e) => return RegionReport::failed(Job::Clean, region, opts.dry_run, e.to_string()),
        },
    };
    if only.is_none() && any_drill(configs) {
        crate::drill::sweep(&client, region, &opts.budget, opts.report(), &mut report).await;
    }
    let site = crate::drill::DrillSite { aws, region, source_aws: Some(aws), label: None };
    crate::drill::run_drills(&site, &picks, &opts.budget, opts.report(), &mut report).await;
    if let (None, Some(access)) = (only, opts.vault) {
        crate::vault::vault_drill_region(access, configs, region, &opts.budget, opts.report(), &mut report).await;
    }
    report
}

/// Whether any configuration drills anything (its sources, a destination's copies, its vault's).
pub fn any_drill(configs: &ConfigurationSet) -> bool {
    configs.valid.iter().any(|n| {
        let c = &n.configuration;
        c.drill.is_some()
            || c.copies.iter().any(|d| d.drill.is_some())
            || c.vault.as_ref().is_some_and(|v| v.drill.is_some())
    })
}

/// A copy in a destination that should carry a lock: its id, the lock, and its `DeleteOn`.
type CopyToLock = (String, Lock, chrono::NaiveDate);

/// What the replication planner reads of a region's snapshots: only the replication tags, the
/// disaster-recovery destinations and the configuration that asks for them (the sources to copy
/// are read again in full; see [`ebs_snapper_core::ReplicationPlan::copy_requests`]).
const PEER_DETAIL: SnapshotDetail = SnapshotDetail::Tags(&[
    DELETE_ON,
    REPLICATION_DST,
    REPLICATION_SRC,
    REPLICATION_SNAPSHOT_ID,
    TAG_COPY_TO,
    TAG_CONFIG,
]);

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
    holding_lease(aws, Job::Replication, region, opts, |opts| replication_unleased(aws, configs, region, enabled, opts))
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
            return RegionReport::failed(Job::Replication, region, opts.dry_run, e.to_string());
        }
    };
    // Exactly the peer regions the tags name, each listed once, concurrently. Of a peer's
    // snapshots, the copies this region made there under a lock are also noted, so that a copy
    // whose lock is missing or short is locked now (SPEC §16).
    let lock_copies = any_lock(configs, false);
    let listed: Vec<(String, PeerListing, Vec<CopyToLock>)> =
        futures::future::join_all(peer_regions(region, &local).into_iter().map(|peer| async move {
            if !enabled.contains(&peer) {
                return (peer, Err("not an enabled region of this account".to_string()), Vec::new());
            }
            let peer_client = aws_sdk_ec2::Client::new(&aws.in_region(&peer));
            // Indexed page by page: of a peer's snapshots only what the planner asks is kept.
            let mut index = PeerIndex::new(region);
            let mut to_lock = Vec::new();
            let listing = each_own_snapshot(&peer_client, &peer, vec![replication_filter()], PEER_DETAIL, |s| {
                if lock_copies
                    && s.tags.get(REPLICATION_SRC) == Some(region)
                    && matches!(s.state, SnapshotState::Pending | SnapshotState::Completed)
                {
                    if let Some((lock, date)) = copy_lock_of(configs, &peer, &s.tags) {
                        to_lock.push((s.id.clone(), lock, date));
                    }
                }
                index.add(&s)
            })
            .await
            .map(|()| {
                index.shrink_to_fit();
                index
            })
            .map_err(|e| {
                warn!(region = %peer, error = %e, "could not list the peer region; nothing is deleted on its account");
                e.to_string()
            });
            (peer, listing, to_lock)
        }))
        .await;
    let mut copies_to_lock: BTreeMap<String, Vec<CopyToLock>> = BTreeMap::new();
    let peers: BTreeMap<String, PeerListing> = listed
        .into_iter()
        .map(|(peer, listing, to_lock)| {
            if !to_lock.is_empty() {
                copies_to_lock.insert(peer.clone(), to_lock);
            }
            (peer, listing)
        })
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
    let today = chrono::Utc::now().date_naive();
    let mut plan = plan_replication(region, &local, &peers, configs, &configs.ignored_ids(), today);
    // The listings carry only the replication tags (a region may hold 100,000 tagged
    // snapshots); a copy takes its source's tags and description, so the few sources to copy
    // are read again in full (one `DescribeSnapshots` per 200) and their requests made from that.
    let sources = match describe_own_snapshots_by_id(&client, region, &plan.copy_sources(), SnapshotDetail::Full).await
    {
        Ok(sources) => sources,
        Err(e) => {
            warn!(region, error = %e, "could not read the snapshots to copy");
            return RegionReport::failed(Job::Replication, region, opts.dry_run, e.to_string());
        }
    };
    let requests = plan.copy_requests(&sources);
    drop(sources);
    let mut failures = listing_failures;
    // The copies' locks, per destination: those found missing or short (one lock listing per
    // destination that has any), then those of the copies made now.
    let lock_now = Utc::now();
    let mut lock_decisions: BTreeMap<String, Vec<LockDecision>> = BTreeMap::new();
    for (peer, to_lock) in copies_to_lock {
        let peer_client = aws_sdk_ec2::Client::new(&aws.in_region(&peer));
        match describe_locks(&peer_client, &peer).await {
            Ok(locks) => {
                let decisions = to_lock
                    .iter()
                    .filter_map(|(id, lock, date)| decide(id, *lock, *date, locks.get(id), lock_now))
                    .collect();
                lock_decisions.insert(peer, decisions);
            }
            Err(e) => {
                warn!(region = %peer, error = %e, "could not list the snapshot locks of the destination");
                failures.push(format!(
                    "could not list the snapshot locks of {peer}, so no missing lock of a copy there was sent again: {e}"
                ));
            }
        }
    }
    let mut lock_outcomes: BTreeMap<String, Vec<Executed>> = BTreeMap::new();
    let (deleted, copied) = if opts.dry_run {
        (Vec::new(), Vec::new())
    } else {
        // Clean-up before copy: replicas whose source is gone, and copies that ended in error
        // (each in its destination; the plan reports them failed).
        let deleted = delete_snapshots(&client, region, &plan.delete_ids(), &opts.budget).await;
        for (dst, copy) in plan.errored_copies() {
            let dst_client = aws_sdk_ec2::Client::new(&aws.in_region(dst));
            match delete_snapshot(&dst_client, dst, copy, &opts.budget).await {
                Executed::Done(_) | Executed::Skipped(_) => {}
                Executed::Deferred => {
                    failures.push(format!("{copy} in {dst}: not deleted, time ran out; a later run does it"))
                }
                Executed::Failed(e) => {
                    failures.push(format!("{copy} in {dst}: could not delete the copy in error: {e}"))
                }
            }
        }
        let requests: Vec<_> = requests.iter().collect();
        let copied = copy_snapshots(aws, &requests, &opts.budget).await;
        // Each copy under a lock is locked in its destination right after it is made.
        for (request, executed) in requests.iter().zip(&copied) {
            let Executed::Done(Some(id)) = executed else { continue };
            let tags: Tags = request.tags.iter().cloned().collect();
            if let Some((lock, date)) = copy_lock_of(configs, &request.destination_region, &tags) {
                lock_decisions.entry(request.destination_region.clone()).or_default().extend(decide(
                    id,
                    lock,
                    date,
                    None,
                    Utc::now(),
                ));
            }
        }
        for (dst, decisions) in &lock_decisions {
            let dst_client = aws_sdk_ec2::Client::new(&aws.in_region(dst));
            lock_outcomes
                .insert(dst.clone(), lock_snapshots(&dst_client, dst, &lock_requests(decisions), &opts.budget).await);
        }
        (deleted, copied)
    };
    let mut report = plan.report(failures, deleted, copied, opts.report());
    for (dst, decisions) in &lock_decisions {
        let outcomes = lock_outcomes.remove(dst).unwrap_or_default();
        report_locks(&mut report, opts.report(), decisions, outcomes, Some(dst));
    }
    if let Some(access) = opts.vault {
        crate::vault::vault_region(aws, access, configs, region, &opts.budget, opts.report(), &mut report).await;
    }
    report
}

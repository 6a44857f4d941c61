//! The Lambda handlers, independent of the Lambda runtime so they can be tested directly: the
//! binaries in `crates/<function>` only adapt the runtime's event and context to these.

use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;
use ebs_snapper_core::{is_scheduled_event, Job, RegionReport, WorkerEvent, MAX_CONTINUATIONS};
use serde_json::{json, Value};
use thiserror::Error;
use tracing::{error, info, warn};

use ebs_snapper_aws::account::{account_from_arn, member_role_name, reach, Reached, DEFAULT_MEMBER_ROLE};
use ebs_snapper_aws::budget::TimeBudget;
use ebs_snapper_aws::config_store::{table_name, ConfigStore};
use ebs_snapper_aws::dispatcher::Dispatcher;
use ebs_snapper_aws::error::AwsError;
use ebs_snapper_aws::jobs::{load_configurations, CleanJob, JobOptions, RegionJob, ReplicationJob, SnapshotJob};
use ebs_snapper_aws::lease::LeaseScope;
use ebs_snapper_aws::regions::{regions_to_work, RegionsError};
use ebs_snapper_aws::replication_rule::{set_replication_rule, RULE_ENV};
use ebs_snapper_aws::sdk::Aws;
use ebs_snapper_core::ConfigurationSet;
use futures::stream::{self, StreamExt};

/// One invocation: the event and what the runtime's context tells.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub payload: Value,
    /// `arn:aws:lambda:REGION:ACCOUNT:function:NAME`.
    pub function_arn: String,
    /// When the runtime will stop the invocation.
    pub deadline: Option<SystemTime>,
}

/// The function's settings, read once from its environment when the process starts.
#[derive(Debug, Clone)]
pub struct Environment {
    /// `CREATE_SNAPSHOT_FUNCTION`: the worker the snapshot fanout invokes.
    pub create_snapshot_function: Option<String>,
    /// `CLEAN_SNAPSHOT_FUNCTION`: the worker the clean fanout invokes.
    pub clean_snapshot_function: Option<String>,
    /// `REPLICATION_RULE_NAME`: the schedule rule the snapshot fanout switches.
    pub replication_rule: Option<String>,
    /// `AWS_LAMBDA_FUNCTION_NAME`: this function, invoked again for continuations.
    pub own_function: Option<String>,
    /// `MEMBER_ROLE_NAME`: the role assumed in member accounts (SPEC §13).
    pub member_role: String,
}

impl Default for Environment {
    /// No functions or rule named, the default member role.
    fn default() -> Environment {
        Environment {
            create_snapshot_function: None,
            clean_snapshot_function: None,
            replication_rule: None,
            own_function: None,
            member_role: DEFAULT_MEMBER_ROLE.to_string(),
        }
    }
}

impl Environment {
    pub fn from_process() -> Environment {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Environment {
            create_snapshot_function: var("CREATE_SNAPSHOT_FUNCTION"),
            clean_snapshot_function: var("CLEAN_SNAPSHOT_FUNCTION"),
            replication_rule: var(RULE_ENV),
            own_function: var("AWS_LAMBDA_FUNCTION_NAME"),
            member_role: member_role_name(),
        }
    }
}

/// The function error: one clear message, returned to Lambda as the invocation's error.
#[derive(Debug, Error)]
pub enum FunctionError {
    #[error(transparent)]
    Event(#[from] ebs_snapper_core::EventError),
    #[error("invalid event: \"region\": {} is not an enabled region of this account", ebs_snapper_core::error::Shown(.0))]
    UnknownRegion(String),
    #[error("the invoked function ARN {0:?} carries no account id")]
    Arn(String),
    #[error("environment variable {0} is not set")]
    Env(&'static str),
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The run finished but some actions failed; the summary says which.
    #[error("{failed} action(s) failed: {summary}")]
    Failed { failed: usize, summary: Value },
}

impl From<RegionsError> for FunctionError {
    fn from(e: RegionsError) -> FunctionError {
        match e {
            RegionsError::NotEnabled(region) => FunctionError::UnknownRegion(region),
            RegionsError::Aws(e) => FunctionError::Aws(e),
        }
    }
}

impl FunctionError {
    /// The error type Lambda reports for this error.
    pub fn kind(&self) -> &'static str {
        match self {
            FunctionError::Event(_) | FunctionError::UnknownRegion(_) => "EbsSnapper.InvalidEvent",
            FunctionError::Arn(_) | FunctionError::Env(_) => "EbsSnapper.Misconfigured",
            FunctionError::Aws(_) => "EbsSnapper.AwsError",
            FunctionError::Failed { .. } => "EbsSnapper.ActionsFailed",
        }
    }
}

fn account(inv: &Invocation) -> Result<String, FunctionError> {
    account_from_arn(&inv.function_arn).map(str::to_string).ok_or_else(|| FunctionError::Arn(inv.function_arn.clone()))
}

/// The install region: where the function runs, its table and its rules live.
fn install_region(aws: &Aws) -> String {
    aws.region().unwrap_or("us-east-1").to_string()
}

/// The budget of an invocation: stop mutating max(60 s, 10%) before the deadline. The
/// function's timeout is taken as the time left when the invocation starts.
pub fn budget_for(deadline: Option<SystemTime>) -> TimeBudget {
    match deadline.and_then(|d| d.duration_since(SystemTime::now()).ok()) {
        Some(left) => TimeBudget::until(Instant::now() + left, left),
        None if deadline.is_some() => TimeBudget::until(Instant::now(), Duration::ZERO),
        None => TimeBudget::unlimited(),
    }
}

/// Accounts whose configurations are loaded, or whose regions are probed, at once.
pub const ACCOUNT_CONCURRENCY: usize = 8;

/// The deployment the functions belong to: its account (from the invoked function's ARN), its
/// SDK configuration, and its install region (where the table, the rules and the functions are).
struct Home<'a> {
    aws: &'a Aws,
    account: String,
    region: String,
    /// The role assumed in member accounts (`MEMBER_ROLE_NAME`).
    member_role: String,
}

impl<'a> Home<'a> {
    fn of(aws: &'a Aws, env: &Environment, inv: &Invocation) -> Result<Home<'a>, FunctionError> {
        Ok(Home { aws, account: account(inv)?, region: install_region(aws), member_role: env.member_role.clone() })
    }

    /// The accounts with configurations in the table (SPEC §13), the deployment's own always
    /// among them. A table that refuses the listing (a role from before member accounts, without
    /// `Scan`) leaves the deployment's own account, with a warning: its snapshots are not missed.
    async fn accounts(&self, failures: &mut Vec<String>) -> Vec<String> {
        let store = ConfigStore::new(self.aws, &self.region, table_name());
        match store.accounts(&self.account).await {
            Ok(accounts) => accounts,
            Err(e) => {
                let msg =
                    format!("could not list the accounts in the table ({e}); only account {} is worked", self.account);
                error!("{msg}");
                failures.push(msg);
                vec![self.account.clone()]
            }
        }
    }

    /// The account as a worker event names it: `None` for the deployment's own.
    fn member<'b>(&self, account: &'b str) -> Option<&'b str> {
        (account != self.account).then_some(account)
    }

    /// The way into `account`: the deployment itself, or the member role.
    async fn reach(&self, account: &str, session: &str) -> Result<Reached, AwsError> {
        reach(self.aws, &self.account, account, &self.member_role, session).await
    }
}

/// Fanout of the snapshot job: switch the replication rule (on when any account's
/// configurations replicate), then, per account with valid configurations, find the regions with
/// instances and invoke `CREATE_SNAPSHOT_FUNCTION` once per (account, region).
pub async fn fanout_snapshot(aws: &Aws, env: &Environment, inv: Invocation) -> Result<Value, FunctionError> {
    let home = Home::of(aws, env, &inv)?;
    let worker = env.create_snapshot_function.clone().ok_or(FunctionError::Env("CREATE_SNAPSHOT_FUNCTION"))?;
    let mut failures = Vec::new();
    let accounts = home.accounts(&mut failures).await;
    let configured = configured_accounts(&home, &accounts, &mut failures).await?;
    let replicates = configured.iter().any(|(_, set)| set.replication_enabled());
    let rule = match &env.replication_rule {
        Some(rule) => match set_replication_rule(aws, &home.region, rule, replicates).await {
            Ok(change) => change.as_str().to_string(),
            Err(e) => {
                error!(error = %e, "could not switch the replication rule");
                failures.push(e.to_string());
                "failed".to_string()
            }
        },
        None => "not configured".to_string(),
    };
    let to_work: Vec<String> = configured.into_iter().map(|(a, _)| a).collect();
    let summary = json!({ "job": Job::Snapshot, "replication_rule": rule });
    fan_out(&home, env, &worker, Job::Snapshot, &to_work, summary, failures).await
}

/// The accounts with at least one valid configuration, with their configurations. The
/// deployment's own table is read for every account; one whose configurations cannot be read is
/// a failure (the others go on), except the deployment's own: without its table nothing can run.
async fn configured_accounts(
    home: &Home<'_>,
    accounts: &[String],
    failures: &mut Vec<String>,
) -> Result<Vec<(String, ConfigurationSet)>, FunctionError> {
    let loaded: Vec<(String, Result<ConfigurationSet, AwsError>)> = stream::iter(accounts)
        .map(|a| async move { (a.clone(), load_configurations(home.aws, &home.region, a).await) })
        .buffered(ACCOUNT_CONCURRENCY)
        .collect()
        .await;
    let mut out = Vec::new();
    for (account, set) in loaded {
        match set {
            Ok(set) if set.valid.is_empty() => warn!(account = %account, "no valid configurations: nothing to do"),
            Ok(set) => out.push((account, set)),
            Err(e) if account == home.account => return Err(e.into()),
            Err(e) => {
                error!(account = %account, error = %e, "could not load the account's configurations");
                failures.push(format!("account {account}: {e}"));
            }
        }
    }
    Ok(out)
}

/// A snapshot worker's heartbeat (an Embedded Metric Format line), printed only when its run
/// succeeded: the template alarms when none came for 24 hours.
fn emit_heartbeat(env: &Environment) {
    let function = metric_function(env);
    println!("{}", ebs_snapper_core::metrics::heartbeat(function, Utc::now().timestamp_millis()));
}

/// What the fanout did in one account.
struct AccountFanout {
    account: String,
    invoked: Vec<String>,
    refused: Vec<String>,
    errors: Vec<String>,
}

/// Per account (at most [`ACCOUNT_CONCURRENCY`] at once): reach it, probe its regions for the
/// job's work, and invoke `worker` once per region with work. An account that cannot be reached,
/// or a region that cannot be probed or invoked, is a failure of its own; the others go on.
async fn fan_out(
    home: &Home<'_>,
    env: &Environment,
    worker: &str,
    job: Job,
    accounts: &[String],
    mut summary: Value,
    mut failures: Vec<String>,
) -> Result<Value, FunctionError> {
    let dispatcher = Dispatcher::new(home.aws, &home.region);
    let dispatcher = &dispatcher;
    let session = format!("ebs-snapper-fanout-{job}");
    let session = &session;
    let mut done: Vec<AccountFanout> = stream::iter(accounts)
        .map(|account| async move {
            let mut out = AccountFanout {
                account: account.clone(),
                invoked: Vec::new(),
                refused: Vec::new(),
                errors: Vec::new(),
            };
            let reached = match home.reach(account, session).await {
                Ok(reached) => reached,
                Err(e) => {
                    error!(account = %account, error = %e, "account not reached");
                    out.errors.push(e.to_string());
                    return out;
                }
            };
            let found = match regions_to_work(&reached.aws, job, &[]).await {
                Ok(found) => found,
                Err(e) => {
                    error!(account = %account, error = %e, "could not list the account's regions");
                    out.errors.push(format!("account {account}: {e}"));
                    return out;
                }
            };
            for (r, e) in &found.failed {
                error!(account = %account, region = %r, error = %e, "region probe failed");
                out.errors.push(format!("account {account}: {e}"));
            }
            out.refused = found.refused.into_iter().map(|(r, _)| r).collect();
            for r in &found.with_work {
                let event = WorkerEvent::new(home.member(account), r);
                match dispatcher.invoke(worker, &event.to_json()).await {
                    Ok(()) => out.invoked.push(r.clone()),
                    Err(e) => {
                        error!(account = %account, region = %r, error = %e, "could not invoke the worker");
                        out.errors.push(format!("account {account}: {e}"));
                    }
                }
            }
            out
        })
        .buffer_unordered(ACCOUNT_CONCURRENCY)
        .collect()
        .await;
    let mut per_account: Vec<Value> = Vec::new();
    let (mut regions, mut skipped) = (Vec::new(), Vec::new());
    let invoked = done.iter().map(|a| a.invoked.len()).sum();
    done.sort_by(|a, b| a.account.cmp(&b.account));
    for a in done {
        if a.account == home.account {
            regions = a.invoked.clone();
            skipped = a.refused.clone();
        }
        failures.extend(a.errors.iter().cloned());
        per_account.push(json!({
            "account": a.account,
            "regions": a.invoked,
            "skipped_regions": a.refused,
            "errors": a.errors,
        }));
    }
    // `regions` and `skipped_regions` stay the deployment's own account's, as before accounts.
    summary["regions"] = json!(regions);
    summary["skipped_regions"] = json!(skipped);
    summary["accounts"] = json!(per_account);
    finish_fanout(env, summary, failures, invoked)
}

/// The fanout's answer (SPEC §10.13). One that invoked a worker for everything it could reach
/// succeeds, naming the rest in its summary and counting them in its `Failures` metric (which
/// the template alarms on): an error would make Lambda run it again twice, and with it every
/// worker it had invoked, for one bad account. Only a fanout that invoked nothing fails, and is
/// retried.
fn finish_fanout(
    env: &Environment,
    mut summary: Value,
    failures: Vec<String>,
    invoked: usize,
) -> Result<Value, FunctionError> {
    summary["failed"] = json!(failures.len());
    summary["errors"] = json!(capped(&failures));
    summary["invoked"] = json!(invoked);
    info!(summary = %summary, "fanout finished");
    let function = metric_function(env);
    println!("{}", ebs_snapper_core::metrics::fanout(function, failures.len(), Utc::now().timestamp_millis()));
    if failures.is_empty() || invoked > 0 {
        Ok(summary)
    } else {
        Err(FunctionError::Failed { failed: failures.len(), summary })
    }
}

/// Fanout of the clean job: per account with valid configurations, find regions with instances
/// or own `DeleteOn` snapshots, and invoke `CLEAN_SNAPSHOT_FUNCTION` once per (account, region).
pub async fn fanout_clean(aws: &Aws, env: &Environment, inv: Invocation) -> Result<Value, FunctionError> {
    let home = Home::of(aws, env, &inv)?;
    let worker = env.clean_snapshot_function.clone().ok_or(FunctionError::Env("CLEAN_SNAPSHOT_FUNCTION"))?;
    let mut failures = Vec::new();
    let accounts = home.accounts(&mut failures).await;
    let to_work: Vec<String> =
        configured_accounts(&home, &accounts, &mut failures).await?.into_iter().map(|(a, _)| a).collect();
    fan_out(&home, env, &worker, Job::Clean, &to_work, json!({ "job": Job::Clean }), failures).await
}

/// The snapshot worker for one region.
pub async fn create_snapshot(aws: &Aws, env: &Environment, inv: Invocation) -> Result<Value, FunctionError> {
    run_worker::<SnapshotJob>(aws, env, inv).await
}

/// The clean worker for one region.
pub async fn clean_snapshot(aws: &Aws, env: &Environment, inv: Invocation) -> Result<Value, FunctionError> {
    run_worker::<CleanJob>(aws, env, inv).await
}

/// The replication function: an event without a region (the schedule's) fans out to the regions
/// with snapshots tagged for replication, invoking this same function; an event with a region
/// (or an SNS envelope) is the worker for that region.
///
/// A real schedule's event carries `region` too (where the rule lives): an EventBridge event
/// (`source` = `aws.events`) always fans out.
pub async fn replication(aws: &Aws, env: &Environment, inv: Invocation) -> Result<Value, FunctionError> {
    let is_worker_event = inv.payload.get("region").is_some() || inv.payload.get("Records").is_some();
    if is_worker_event && !is_scheduled_event(&inv.payload) {
        return run_worker::<ReplicationJob>(aws, env, inv).await;
    }
    fan_out_to_self(aws, env, inv, Job::Replication).await
}

/// A worker given a schedule's event (a rule pointed at the worker itself) does what its fanout
/// would: it invokes itself once per (account, region) with work. A scheduled run is never
/// dropped, and the event's `region` (where the rule lives) is never taken for a work order.
async fn fan_out_to_self(aws: &Aws, env: &Environment, inv: Invocation, job: Job) -> Result<Value, FunctionError> {
    let home = Home::of(aws, env, &inv)?;
    let own = env.own_function.clone().ok_or(FunctionError::Env("AWS_LAMBDA_FUNCTION_NAME"))?;
    let mut failures = Vec::new();
    let accounts = home.accounts(&mut failures).await;
    let to_work: Vec<String> = if job.needs_configurations() {
        configured_accounts(&home, &accounts, &mut failures).await?.into_iter().map(|(a, _)| a).collect()
    } else {
        accounts
    };
    fan_out(&home, env, &own, job, &to_work, json!({ "job": job }), failures).await
}

/// The worker of job `J` for the region its event names (generic, so that each function links
/// only its own job).
async fn run_worker<J: RegionJob>(aws: &Aws, env: &Environment, inv: Invocation) -> Result<Value, FunctionError> {
    let job = J::JOB;
    if is_scheduled_event(&inv.payload) {
        return fan_out_to_self(aws, env, inv, job).await;
    }
    let event = WorkerEvent::parse(&inv.payload)?;
    let home = Home::of(aws, env, &inv)?;
    let holder = format!("function {}", env.own_function.as_deref().unwrap_or("worker"));
    let target = event.account.clone().unwrap_or_else(|| home.account.clone());
    let reached = home.reach(&target, &format!("ebs-snapper-{job}-{}", event.region)).await?;
    // Independent: the region check (in the account worked) and the configurations (in the
    // deployment's table) go together, which shortens a cold function's first answer.
    let (regions, configs) = futures::join!(
        regions_to_work(&reached.aws, job, std::slice::from_ref(&event.region)),
        load_configurations(aws, &home.region, &target)
    );
    let (regions, configs) = (regions?, configs?);
    let lease = LeaseScope { table: aws.clone(), table_region: home.region.clone(), account: target.clone(), holder };
    let access = ebs_snapper_aws::vault::VaultAccess { home: aws, home_account: &home.account, account: &target };
    let opts = JobOptions {
        dry_run: false,
        budget: budget_for(inv.deadline),
        lease: Some(&lease),
        every_action: false,
        vault: Some(access),
    };
    let mut report = J::run(&reached.aws, &configs, &event.region, &regions.enabled, Utc::now(), opts).await;
    continue_if_needed(aws, env, &home.region, &event, &mut report).await;
    emit_metrics(env, &target, &report);
    if job == Job::Snapshot && report.failed == 0 {
        emit_heartbeat(env);
    }
    finish_worker(event.account.as_deref(), report)
}

/// When time ran out with work left, invoke this function again for the rest (at most
/// [`MAX_CONTINUATIONS`] hops). Work that cannot be handed on (the last hop, or the invoke
/// failed) is not done by this run: it counts as failed, so the invocation fails and the
/// `Errors` alarm fires, and the next scheduled run finds it still to do.
async fn continue_if_needed(
    aws: &Aws,
    env: &Environment,
    install_region: &str,
    event: &WorkerEvent,
    report: &mut RegionReport,
) {
    if report.deferred == 0 {
        return;
    }
    let why = if event.continuation >= MAX_CONTINUATIONS {
        format!("time ran out in the last of {MAX_CONTINUATIONS} continuations")
    } else if let Some(own) = &env.own_function {
        let next = WorkerEvent { continuation: event.continuation + 1, ..event.clone() };
        match Dispatcher::new(aws, install_region).invoke(own, &next.to_json()).await {
            Ok(()) => {
                report.continued = true;
                return;
            }
            Err(e) => format!("time ran out and the continuation could not be invoked ({e})"),
        }
    } else {
        "time ran out and there is no continuation (AWS_LAMBDA_FUNCTION_NAME is not set)".to_string()
    };
    error!(region = %event.region, deferred = report.deferred, "{why}");
    report.fail_deferred(&why);
}

/// The `function` dimension of the metric lines: the function's own name.
fn metric_function(env: &Environment) -> &str {
    env.own_function.as_deref().unwrap_or("ebs-snapper")
}

/// Prints the run's metrics as a CloudWatch Embedded Metric Format line on stdout (the function's
/// log), where CloudWatch picks them up.
fn emit_metrics(env: &Environment, account: &str, report: &RegionReport) {
    let function = metric_function(env);
    let doc = ebs_snapper_core::metrics::emf(function, account, report, Utc::now().timestamp_millis());
    println!("{doc}");
}

/// Messages listed in a worker's summary at most; each is also in the log. (A response is at
/// most 6 MB, and a region can have tens of thousands of failures or odd tags.)
const MAX_LISTED: usize = 100;

fn capped(messages: &[String]) -> Vec<String> {
    let mut out: Vec<String> = messages.iter().take(MAX_LISTED).cloned().collect();
    if messages.len() > MAX_LISTED {
        out.push(format!("... and {} more (each is in the log)", messages.len() - MAX_LISTED));
    }
    out
}

/// The worker's summary: `account` is there for a member account only.
fn finish_worker(member: Option<&str>, report: RegionReport) -> Result<Value, FunctionError> {
    let mut summary = json!({
        "region": report.region,
        "created": report.created,
        "deleted": report.deleted,
        "copied": report.copied,
        "archived": report.archived,
        "locked": report.locked,
        "drilled": report.drilled,
        "drills_failed": report.drills_failed,
        "not_due": report.not_due,
        "kept": report.kept,
        "in_sync": report.in_sync,
        "ignored": report.ignored,
        "skipped": report.skipped,
        "failed": report.failed,
        "deferred": report.deferred,
        "continued": report.continued,
        "volumes": report.volumes,
        "warnings": capped(&report.warnings),
        "errors": capped(&report.errors),
    });
    if let Some(account) = member {
        summary["account"] = json!(account);
    }
    info!(summary = %summary, "{}", report.summary_line());
    if report.failed > 0 {
        Err(FunctionError::Failed { failed: report.failed, summary })
    } else {
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_list_at_most_a_hundred_messages() {
        let few: Vec<String> = (0..3).map(|i| format!("e{i}")).collect();
        assert_eq!(capped(&few), few);
        let many: Vec<String> = (0..30_000).map(|i| format!("e{i}")).collect();
        let listed = capped(&many);
        assert_eq!(listed.len(), MAX_LISTED + 1);
        assert_eq!(listed[99], "e99");
        assert_eq!(listed[100], "... and 29900 more (each is in the log)");
    }
}

//! The Lambda handlers, independent of the Lambda runtime so they can be tested directly: the
//! binaries in `crates/<function>` only adapt the runtime's event and context to these.

use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;
use ebs_snapper_core::{is_scheduled_event, Job, RegionReport, WorkerEvent, MAX_CONTINUATIONS};
use serde_json::{json, Value};
use thiserror::Error;
use tracing::{error, info, warn};

use ebs_snapper_aws::account::account_from_arn;
use ebs_snapper_aws::budget::TimeBudget;
use ebs_snapper_aws::dispatcher::Dispatcher;
use ebs_snapper_aws::error::AwsError;
use ebs_snapper_aws::jobs::{load_configurations, run_region, JobOptions};
use ebs_snapper_aws::lease::LeaseScope;
use ebs_snapper_aws::regions::{regions_to_work, RegionsError};
use ebs_snapper_aws::replication_rule::{set_replication_rule, RULE_ENV};
use ebs_snapper_aws::sdk::Aws;

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
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `CREATE_SNAPSHOT_FUNCTION`: the worker the snapshot fanout invokes.
    pub create_snapshot_function: Option<String>,
    /// `CLEAN_SNAPSHOT_FUNCTION`: the worker the clean fanout invokes.
    pub clean_snapshot_function: Option<String>,
    /// `REPLICATION_RULE_NAME`: the schedule rule the snapshot fanout switches.
    pub replication_rule: Option<String>,
    /// `AWS_LAMBDA_FUNCTION_NAME`: this function, invoked again for continuations.
    pub own_function: Option<String>,
}

impl Environment {
    pub fn from_process() -> Environment {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Environment {
            create_snapshot_function: var("CREATE_SNAPSHOT_FUNCTION"),
            clean_snapshot_function: var("CLEAN_SNAPSHOT_FUNCTION"),
            replication_rule: var(RULE_ENV),
            own_function: var("AWS_LAMBDA_FUNCTION_NAME"),
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

/// Fanout of the snapshot job: switch the replication rule, find regions with instances, and
/// invoke `CREATE_SNAPSHOT_FUNCTION` once per region with `{"region": R}`.
pub async fn fanout_snapshot(aws: &Aws, env: &Environment, inv: Invocation) -> Result<Value, FunctionError> {
    let account = account(&inv)?;
    let worker = env.create_snapshot_function.clone().ok_or(FunctionError::Env("CREATE_SNAPSHOT_FUNCTION"))?;
    let region = install_region(aws);
    let configs = load_configurations(aws, &region, &account).await?;
    let mut failures = Vec::new();
    let rule = match &env.replication_rule {
        Some(rule) => match set_replication_rule(aws, &region, rule, configs.replication_enabled()).await {
            Ok(change) => change.as_str().to_string(),
            Err(e) => {
                error!(error = %e, "could not switch the replication rule");
                failures.push(e.to_string());
                "failed".to_string()
            }
        },
        None => "not configured".to_string(),
    };
    if configs.valid.is_empty() {
        warn!(account = %account, "no valid configurations: nothing to snapshot");
        return finish_fanout(json!({ "job": Job::Snapshot, "regions": [], "replication_rule": rule }), failures);
    }
    let summary = fan_out(
        aws,
        &region,
        &worker,
        Job::Snapshot,
        json!({ "job": Job::Snapshot, "replication_rule": rule }),
        failures,
    )
    .await?;
    emit_heartbeat(env);
    Ok(summary)
}

/// The snapshot fanout's heartbeat (an Embedded Metric Format line), printed only when the run
/// succeeded: the template alarms when none came for 24 hours.
fn emit_heartbeat(env: &Environment) {
    let function = env.own_function.as_deref().unwrap_or("ebs-snapper");
    println!("{}", ebs_snapper_core::metrics::heartbeat(function, Utc::now().timestamp_millis()));
}

async fn fan_out(
    aws: &Aws,
    region: &str,
    worker: &str,
    job: Job,
    mut summary: Value,
    mut failures: Vec<String>,
) -> Result<Value, FunctionError> {
    let found = regions_to_work(aws, job, &[]).await?;
    for (r, e) in &found.failed {
        error!(region = %r, error = %e, "region probe failed");
        failures.push(e.to_string());
    }
    let dispatcher = Dispatcher::new(aws, region);
    let mut invoked = Vec::new();
    for r in &found.with_work {
        let event = WorkerEvent { region: r.clone(), continuation: 0 };
        match dispatcher.invoke(worker, &event.to_json()).await {
            Ok(()) => invoked.push(r.clone()),
            Err(e) => {
                error!(region = %r, error = %e, "could not invoke the worker");
                failures.push(e.to_string());
            }
        }
    }
    summary["regions"] = json!(invoked);
    summary["skipped_regions"] = json!(found.refused.iter().map(|(r, _)| r).collect::<Vec<_>>());
    finish_fanout(summary, failures)
}

fn finish_fanout(mut summary: Value, failures: Vec<String>) -> Result<Value, FunctionError> {
    summary["failed"] = json!(failures.len());
    summary["errors"] = json!(failures);
    info!(summary = %summary, "fanout finished");
    if failures.is_empty() {
        Ok(summary)
    } else {
        Err(FunctionError::Failed { failed: failures.len(), summary })
    }
}

/// Fanout of the clean job: find regions with instances or own `DeleteOn` snapshots, and invoke
/// `CLEAN_SNAPSHOT_FUNCTION` once per region with `{"region": R}`.
pub async fn fanout_clean(aws: &Aws, env: &Environment, inv: Invocation) -> Result<Value, FunctionError> {
    let account = account(&inv)?;
    let worker = env.clean_snapshot_function.clone().ok_or(FunctionError::Env("CLEAN_SNAPSHOT_FUNCTION"))?;
    let region = install_region(aws);
    let configs = load_configurations(aws, &region, &account).await?;
    if configs.valid.is_empty() {
        warn!(account = %account, "no valid configurations: nothing to clean");
        return finish_fanout(json!({ "job": Job::Clean, "regions": [] }), Vec::new());
    }
    fan_out(aws, &region, &worker, Job::Clean, json!({ "job": Job::Clean }), Vec::new()).await
}

/// The snapshot worker for one region.
pub async fn create_snapshot(aws: &Aws, env: &Environment, inv: Invocation) -> Result<Value, FunctionError> {
    run_worker(aws, env, inv, Job::Snapshot).await
}

/// The clean worker for one region.
pub async fn clean_snapshot(aws: &Aws, env: &Environment, inv: Invocation) -> Result<Value, FunctionError> {
    run_worker(aws, env, inv, Job::Clean).await
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
        return run_worker(aws, env, inv, Job::Replication).await;
    }
    fan_out_to_self(aws, env, inv, Job::Replication).await
}

/// A worker given a schedule's event (a rule pointed at the worker itself) does what its fanout
/// would: it invokes itself once per region with work. A scheduled run is never dropped, and the
/// event's `region` (where the rule lives) is never taken for a work order.
async fn fan_out_to_self(aws: &Aws, env: &Environment, inv: Invocation, job: Job) -> Result<Value, FunctionError> {
    let account = account(&inv)?;
    let own = env.own_function.clone().ok_or(FunctionError::Env("AWS_LAMBDA_FUNCTION_NAME"))?;
    let region = install_region(aws);
    if job.needs_configurations() {
        let configs = load_configurations(aws, &region, &account).await?;
        if configs.valid.is_empty() {
            warn!(account = %account, "no valid configurations: nothing to do");
            return finish_fanout(json!({ "job": job, "regions": [] }), Vec::new());
        }
    }
    fan_out(aws, &region, &own, job, json!({ "job": job }), Vec::new()).await
}

async fn run_worker(aws: &Aws, env: &Environment, inv: Invocation, job: Job) -> Result<Value, FunctionError> {
    if is_scheduled_event(&inv.payload) {
        return fan_out_to_self(aws, env, inv, job).await;
    }
    let event = WorkerEvent::parse(&inv.payload)?;
    let account = account(&inv)?;
    let region = install_region(aws);
    let regions = regions_to_work(aws, job, std::slice::from_ref(&event.region)).await?;
    let configs = load_configurations(aws, &region, &account).await?;
    let lease = LeaseScope {
        table_region: region.clone(),
        account: account.clone(),
        holder: format!("function {}", env.own_function.as_deref().unwrap_or("worker")),
    };
    let opts =
        JobOptions { dry_run: false, budget: budget_for(inv.deadline), lease: Some(&lease), every_action: false };
    let mut report = run_region(aws, job, &configs, &event.region, &regions.enabled, Utc::now(), opts).await;
    continue_if_needed(aws, env, &region, &event, &mut report).await;
    emit_metrics(env, &report);
    finish_worker(report)
}

/// When time ran out with work left, invoke this function again for the rest (at most
/// [`MAX_CONTINUATIONS`] hops).
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
    if event.continuation >= MAX_CONTINUATIONS {
        let msg = format!(
            "{} action(s) left after {MAX_CONTINUATIONS} continuations; the next scheduled run takes them",
            report.deferred
        );
        error!(region = %event.region, "{msg}");
        report.errors.push(msg);
        return;
    }
    let next = WorkerEvent { region: event.region.clone(), continuation: event.continuation + 1 };
    let own = match &env.own_function {
        Some(name) => name,
        None => {
            report.errors.push("AWS_LAMBDA_FUNCTION_NAME is not set: cannot continue".to_string());
            report.failed += 1;
            return;
        }
    };
    match Dispatcher::new(aws, install_region).invoke(own, &next.to_json()).await {
        Ok(()) => report.continued = true,
        Err(e) => {
            report.failed += 1;
            report.errors.push(e.to_string());
        }
    }
}

/// Prints the run's metrics as a CloudWatch Embedded Metric Format line on stdout (the function's
/// log), where CloudWatch picks them up.
fn emit_metrics(env: &Environment, report: &RegionReport) {
    let function = env.own_function.as_deref().unwrap_or("ebs-snapper");
    let doc = ebs_snapper_core::metrics::emf(function, report, Utc::now().timestamp_millis());
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

fn finish_worker(report: RegionReport) -> Result<Value, FunctionError> {
    let summary = json!({
        "region": report.region,
        "created": report.created,
        "deleted": report.deleted,
        "copied": report.copied,
        "archived": report.archived,
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

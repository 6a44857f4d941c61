//! `ebs-snapper snapshot` (and the other jobs, and `drill`): run in-process for each region,
//! print one summary line per region, or the plan with `--dry-run`, or one JSON document with
//! `--json`.

use std::process::ExitCode;

use chrono::Utc;
use ebs_snapper_aws::regions::regions_to_work;
use ebs_snapper_aws::{drill_region, load_configurations, run_region, Aws, JobOptions, LeaseScope, TimeBudget};
use ebs_snapper_core::{Job, RegionReport};
use futures::stream::{self, StreamExt};
use serde_json::json;
use tracing::warn;

use crate::accounts::{covered, Covered};
use crate::args::JobArgs;
use crate::error::{check_regions, CliError};
use crate::output::line;

/// Regions worked on (or, by `status`, read) at once.
pub const REGION_CONCURRENCY: usize = 4;

/// What a command runs in each region.
#[derive(Debug, Clone, Copy)]
pub enum Work<'a> {
    Job(Job),
    /// Restore drills (SPEC §17): those due, or the one snapshot named.
    Drill {
        only: Option<&'a str>,
    },
}

impl Work<'_> {
    /// The job whose regions, leases and configurations the work goes by.
    fn job(self) -> Job {
        match self {
            Work::Job(job) => job,
            Work::Drill { .. } => Job::Clean,
        }
    }
}

pub async fn run(aws: &Aws, tool_region: &str, job: Job, args: &JobArgs) -> Result<ExitCode, CliError> {
    run_work(aws, tool_region, Work::Job(job), args).await
}

/// `ebs-snapper drill`: the drills due in each region, or with `--snapshot` that one.
pub async fn drill(aws: &Aws, tool_region: &str, args: &crate::args::DrillArgs) -> Result<ExitCode, CliError> {
    if let Some(id) = &args.snapshot {
        if !ebs_snapper_core::ids::is_snapshot_id(id) {
            return Err(CliError::Usage(format!("--snapshot {id:?} is not a snapshot id (snap- and hex digits)")));
        }
    }
    let only = args.snapshot.as_deref();
    let code = run_work(aws, tool_region, Work::Drill { only }, &args.job).await?;
    Ok(code)
}

async fn run_work(aws: &Aws, tool_region: &str, work: Work<'_>, args: &JobArgs) -> Result<ExitCode, CliError> {
    let job = work.job();
    check_regions(&args.regions)?;
    let covered = covered(aws, tool_region, &args.accounts).await?;
    let mut done: Vec<(String, Result<Vec<RegionReport>, CliError>)> = Vec::new();
    for account in &covered.accounts {
        let result = run_account(aws, tool_region, work, args, &covered, account).await;
        // The caller's own account failing outright (no table, no region listing) fails the
        // command as before; a member's failure is reported and the others still run.
        match result {
            Err(e) if !args.accounts.named() => return Err(e),
            result => done.push((account.clone(), result)),
        }
    }

    let failed = done.iter().any(|(_, r)| r.as_ref().map_or(true, |reports| reports.iter().any(|r| r.failed > 0)));
    if let Work::Drill { only: Some(id) } = work {
        let found = done
            .iter()
            .flat_map(|(_, r)| r.iter().flatten())
            .any(|r| r.actions.iter().any(|a| a.resource == id) || r.errors.iter().any(|e| e.starts_with(id)));
        if !found {
            return Err(CliError::NotFound(format!(
                "snapshot {id} is not one of the account's own in the regions worked (give its region with --region)"
            )));
        }
    }
    if args.json {
        line(&serde_json::to_string_pretty(&json_document(job, args, &covered, &done)).expect("reports serialise"))?;
    } else {
        for (account, result) in &done {
            let prefix = if args.accounts.named() { format!("{account} ") } else { String::new() };
            let reports = match result {
                Ok(reports) => reports,
                Err(e) => {
                    eprintln!("error: account {account}: {e}");
                    continue;
                }
            };
            for report in reports {
                if args.dry_run {
                    for a in &report.actions {
                        let context = match (&a.instance_id, &a.device, &a.config_id) {
                            (Some(i), Some(d), Some(c)) => format!(" ({i} {d}, configuration {c})"),
                            (None, None, Some(c)) => format!(" (configuration {c})"),
                            _ => String::new(),
                        };
                        line(&format!(
                            "{prefix}{}: {} {}{context}: {}",
                            report.region, a.action, a.resource, a.reason
                        ))?;
                    }
                }
                let summary = match work {
                    Work::Job(_) => report.summary_line(),
                    Work::Drill { .. } => report.drill_summary_line(),
                };
                line(&format!("{prefix}{summary}"))?;
                for e in &report.errors {
                    eprintln!("error: {prefix}{}: {e}", report.region);
                }
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The `--json` document: as before accounts for the caller's own account, and with
/// `--account`/`--all-accounts` one entry per account (an unreachable one with its error).
fn json_document(
    job: Job,
    args: &JobArgs,
    covered: &Covered,
    done: &[(String, Result<Vec<RegionReport>, CliError>)],
) -> serde_json::Value {
    if !args.accounts.named() {
        let regions = done.first().and_then(|(_, r)| r.as_ref().ok()).cloned().unwrap_or_default();
        return json!({ "job": job, "account": covered.home, "dry_run": args.dry_run, "regions": regions });
    }
    let accounts: Vec<serde_json::Value> = done
        .iter()
        .map(|(account, result)| match result {
            Ok(regions) => json!({ "account": account, "regions": regions }),
            Err(e) => json!({ "account": account, "regions": [], "error": e.to_string() }),
        })
        .collect();
    json!({ "job": job, "dry_run": args.dry_run, "accounts": accounts })
}

/// The job in one account: its configurations (from the caller's table), its regions with work,
/// each region under its lease (per account, job and region), at most
/// [`REGION_CONCURRENCY`] at once.
async fn run_account(
    aws: &Aws,
    tool_region: &str,
    work: Work<'_>,
    args: &JobArgs,
    covered: &Covered,
    account: &str,
) -> Result<Vec<RegionReport>, CliError> {
    let job = work.job();
    let reached = covered.reach(aws, account, &args.accounts.member_role, &format!("ebs-snapper-cli-{job}")).await?;
    let configs = load_configurations(aws, tool_region, account).await?;
    let lease = LeaseScope {
        table: aws.clone(),
        table_region: tool_region.to_string(),
        account: account.to_string(),
        holder: format!("ebs-snapper {} (pid {})", job, std::process::id()),
    };
    let access = ebs_snapper_aws::vault::VaultAccess { home: aws, home_account: &covered.home, account };
    let opts = JobOptions {
        dry_run: args.dry_run,
        budget: TimeBudget::unlimited(),
        lease: Some(&lease),
        every_action: true,
        vault: Some(access),
    };

    let mut reports: Vec<RegionReport> = Vec::new();
    if configs.valid.is_empty() && job.needs_configurations() {
        warn!("no valid configurations for account {account}: nothing to do");
        return Ok(reports);
    }
    let target = &reached.aws;
    let regions = regions_to_work(target, job, &args.regions).await?;
    for (region, e) in &regions.failed {
        reports.push(RegionReport::failed(job, region, args.dry_run, e.to_string()));
    }
    let now = Utc::now();
    let enabled = &regions.enabled;
    let progress = Progress::new(job.as_str(), regions.with_work.len());
    let progress = &progress;
    let done: Vec<RegionReport> = stream::iter(regions.with_work.iter())
        .map(|region| {
            let (configs, opts) = (&configs, opts.clone());
            async move {
                match work {
                    Work::Job(job) => run_region(target, job, configs, region, enabled, now, opts).await,
                    Work::Drill { only } => drill_region(target, configs, region, now, opts, only).await,
                }
            }
        })
        .buffered(REGION_CONCURRENCY)
        .inspect(|report| progress.region_done(&report.region))
        .collect()
        .await;
    progress.finish();
    // The CLI has no time limit, so a run defers only when it could no longer be sure it held the
    // region's lease; nothing takes over what it did not start.
    reports.extend(done.into_iter().map(|mut report| {
        report.fail_deferred("the region's lease could not be renewed in time, so no mutation could safely start");
        report
    }));
    reports.sort_by(|a, b| a.region.cmp(&b.region));
    Ok(reports)
}

/// Per-region progress on stderr, only when stderr is a terminal (nothing otherwise, so scripts
/// and logs see only the results).
struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    fn new(job: &str, regions: usize) -> Progress {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() || regions == 0 {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new(regions as u64);
        let style = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} regions  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(job.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Progress(Some(bar))
    }

    fn region_done(&self, region: &str) {
        if let Some(bar) = &self.0 {
            bar.set_message(format!("{region} done"));
            bar.inc(1);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

//! `ebs-snapper snapshot` (and the other jobs): run in-process for each region, print one
//! summary line per region, or the plan with `--dry-run`, or one JSON document with `--json`.

use std::process::ExitCode;

use chrono::Utc;
use ebs_snapper_aws::regions::regions_to_work;
use ebs_snapper_aws::{caller_account_id, load_configurations, run_region, Aws, JobOptions, LeaseScope, TimeBudget};
use ebs_snapper_core::{Job, RegionReport};
use futures::stream::{self, StreamExt};
use serde_json::json;
use tracing::warn;

use crate::args::JobArgs;
use crate::error::{check_regions, CliError};
use crate::output::line;

/// Regions worked on (or, by `status`, read) at once.
pub const REGION_CONCURRENCY: usize = 4;

pub async fn run(aws: &Aws, tool_region: &str, job: Job, args: &JobArgs) -> Result<ExitCode, CliError> {
    check_regions(&args.regions)?;
    let account = caller_account_id(aws).await?;
    let configs = load_configurations(aws, tool_region, &account).await?;
    let lease = LeaseScope {
        table_region: tool_region.to_string(),
        account: account.clone(),
        holder: format!("ebs-snapper {} (pid {})", job, std::process::id()),
    };
    let opts =
        JobOptions { dry_run: args.dry_run, budget: TimeBudget::unlimited(), lease: Some(&lease), every_action: true };

    let mut reports: Vec<RegionReport> = Vec::new();
    if configs.valid.is_empty() && job.needs_configurations() {
        warn!("no valid configurations for account {account}: nothing to do");
    } else {
        let regions = regions_to_work(aws, job, &args.regions).await?;
        for (region, e) in &regions.failed {
            reports.push(RegionReport::failed(job, region, args.dry_run, e.to_string()));
        }
        let now = Utc::now();
        let enabled = &regions.enabled;
        let progress = Progress::new(job.as_str(), regions.with_work.len());
        let progress = &progress;
        let done: Vec<RegionReport> = stream::iter(regions.with_work.iter())
            .map(|region| run_region(aws, job, &configs, region, enabled, now, opts.clone()))
            .buffered(REGION_CONCURRENCY)
            .inspect(|report| progress.region_done(&report.region))
            .collect()
            .await;
        progress.finish();
        reports.extend(done);
        reports.sort_by(|a, b| a.region.cmp(&b.region));
    }

    let failed = reports.iter().any(|r| r.failed > 0);
    if args.json {
        let doc = json!({ "job": job, "account": account, "dry_run": args.dry_run, "regions": reports });
        line(&serde_json::to_string_pretty(&doc).expect("reports serialise"))?;
    } else {
        for report in &reports {
            if args.dry_run {
                for a in &report.actions {
                    let context = match (&a.instance_id, &a.device, &a.config_id) {
                        (Some(i), Some(d), Some(c)) => format!(" ({i} {d}, configuration {c})"),
                        (None, None, Some(c)) => format!(" (configuration {c})"),
                        _ => String::new(),
                    };
                    line(&format!("{}: {} {}{context}: {}", report.region, a.action, a.resource, a.reason))?;
                }
            }
            line(&report.summary_line())?;
            for e in &report.errors {
                eprintln!("error: {}: {e}", report.region);
            }
        }
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
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

//! `ebs-snapper status`: one row per selected volume with its newest completed snapshot, its count
//! against the minimum, when it is next due, its copies and a verdict, worst first; then the
//! summary line. `--json`: one document. Reads only.

use std::process::ExitCode;

use chrono::{DateTime, SecondsFormat, Utc};
use ebs_snapper_aws::regions::regions_to_work;
use ebs_snapper_aws::status::region_status;
use ebs_snapper_aws::{load_configurations, Aws};
use ebs_snapper_core::status::{worst_first, Summary, VolumeStatus};
use ebs_snapper_core::Job;
use futures::stream::{self, StreamExt};
use serde_json::json;

use crate::accounts::{covered, Covered};
use crate::args::StatusArgs;
use crate::error::{check_regions, CliError};
use crate::jobs::REGION_CONCURRENCY;
use crate::output::line;

pub async fn run(aws: &Aws, tool_region: &str, args: &StatusArgs) -> Result<ExitCode, CliError> {
    check_regions(&args.regions)?;
    let covered = covered(aws, tool_region, &args.accounts).await?;
    let now = Utc::now();
    let mut rows: Vec<VolumeStatus> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for account in &covered.accounts {
        match account_rows(aws, tool_region, args, &covered, account, now).await {
            Ok((found, failed)) => {
                rows.extend(found);
                failures.extend(failed);
            }
            // The caller's own account alone: its failure is the command's, as before accounts.
            Err(e) if !args.accounts.named() => return Err(e),
            Err(e) => failures.push(format!("account {account}: {e}")),
        }
    }
    worst_first(&mut rows);
    let summary = Summary::of(rows.iter().map(|r| &r.verdict));
    if args.json {
        let doc = json!({ "volumes": rows, "summary": summary });
        line(&serde_json::to_string_pretty(&doc).expect("the status serialises"))?;
    } else {
        for row in table(&rows, now) {
            line(&row)?;
        }
        line(&summary.line())?;
    }
    for f in &failures {
        eprintln!("error: {f}");
    }
    // The report was made only if every region could be read.
    Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// One account's rows, and the regions that could not be read.
async fn account_rows(
    aws: &Aws,
    tool_region: &str,
    args: &StatusArgs,
    covered: &Covered,
    account: &str,
    now: DateTime<Utc>,
) -> Result<(Vec<VolumeStatus>, Vec<String>), CliError> {
    let reached = covered.reach(aws, account, &args.accounts.member_role, "ebs-snapper-cli-status").await?;
    let configs = load_configurations(aws, tool_region, account).await?;
    let (mut rows, mut failures) = (Vec::new(), Vec::new());
    if configs.valid.is_empty() {
        return Ok((rows, failures));
    }
    let target = &reached.aws;
    let regions = regions_to_work(target, Job::Snapshot, &args.regions).await?;
    failures.extend(regions.failed.iter().map(|(r, e)| format!("{r}: {e}")));
    let found: Vec<_> = stream::iter(regions.with_work.iter())
        .map(|region| {
            let configs = &configs;
            let access = ebs_snapper_aws::vault::VaultAccess { home: aws, home_account: &covered.home, account };
            async move { (region, region_status(target, account, configs, region, now, Some(access)).await) }
        })
        .buffered(REGION_CONCURRENCY)
        .collect()
        .await;
    for (region, result) in found {
        match result {
            Ok(found) => rows.extend(found),
            Err(e) => failures.push(format!("{region}: {e}")),
        }
    }
    Ok((rows, failures))
}

/// The rows as an aligned table with a header (none when there are no rows).
fn table(rows: &[VolumeStatus], now: DateTime<Utc>) -> Vec<String> {
    if rows.is_empty() {
        return Vec::new();
    }
    let header = [
        "VERDICT",
        "ACCOUNT",
        "REGION",
        "INSTANCE",
        "VOLUME",
        "CONFIG",
        "TIER",
        "NEWEST",
        "AGE",
        "COMPLETED",
        "NEXT DUE",
        "COPIES",
        "LOCK",
        "VAULT",
        "DRILL",
    ]
    .map(String::from);
    let cells: Vec<[String; 15]> = rows
        .iter()
        .map(|r| {
            [
                r.verdict.as_str().to_string(),
                r.account.clone(),
                r.region.clone(),
                r.instance.clone(),
                r.volume.clone(),
                r.configuration.clone(),
                r.tier.clone(),
                r.newest.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)).unwrap_or_else(|| "-".into()),
                r.age_seconds.map(age).unwrap_or_else(|| "-".into()),
                format!("{}/{}", r.completed, r.minimum),
                match r.next_due {
                    Some(t) if t <= now => "now".to_string(),
                    Some(t) => t.to_rfc3339_opts(SecondsFormat::Secs, true),
                    None => "never".to_string(),
                },
                if r.copies.is_empty() {
                    "-".to_string()
                } else {
                    r.copies
                        .iter()
                        .map(|(d, ok)| format!("{d}:{}", if *ok { "in-sync" } else { "missing" }))
                        .collect::<Vec<_>>()
                        .join(",")
                },
                r.lock.as_ref().map(|l| l.cell()).unwrap_or_else(|| "-".into()),
                match r.vault {
                    Some(true) => "in-sync".to_string(),
                    Some(false) => "missing".to_string(),
                    None => "-".to_string(),
                },
                r.drill.as_ref().map(|d| d.cell()).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let widths: Vec<usize> =
        (0..15).map(|i| cells.iter().map(|c| c[i].len()).chain([header[i].len()]).max().unwrap_or(0)).collect();
    std::iter::once(&header)
        .chain(cells.iter())
        .map(|c| {
            c.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect::<Vec<_>>().join("  ").trim_end().to_string()
        })
        .collect()
}

/// An age for people: `45m`, `5h 3m`, `3d 4h`.
fn age(seconds: i64) -> String {
    let (d, h, m) = (seconds / 86_400, seconds % 86_400 / 3_600, seconds % 3_600 / 60);
    match (d, h) {
        (0, 0) => format!("{m}m"),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_for_people() {
        assert_eq!(age(59), "0m");
        assert_eq!(age(45 * 60), "45m");
        assert_eq!(age(5 * 3600 + 3 * 60), "5h 3m");
        assert_eq!(age(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
    }
}

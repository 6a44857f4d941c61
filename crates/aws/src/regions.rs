//! Region discovery (SPEC §3): enabled regions, each probed concurrently (bounded) for the work a
//! job needs. Regions that refuse us (not opted in, not authorised) are skipped with a warning.

use std::collections::BTreeSet;

use ebs_snapper_core::config::{SELECTED_STATES, STATE_FILTER};
use ebs_snapper_core::tags::DELETE_ON;
use ebs_snapper_core::Job;
use futures::stream::{self, StreamExt};
use tracing::{debug, warn};

use crate::error::AwsError;
use crate::inventory::ec2_filter;
use crate::sdk::Aws;

/// Items asked for per probe page (the smallest page both describes accept).
const PROBE_PAGE: i32 = 5;

/// At most this many regions are probed at once.
pub const PROBE_CONCURRENCY: usize = 8;

/// Error codes meaning "this region is not for us": skipped with a warning.
const REFUSED: [&str; 3] = ["AuthFailure", "OptInRequired", "UnauthorizedOperation"];

/// Outcome of region discovery.
#[derive(Debug, Default)]
pub struct Regions {
    /// The account's enabled regions, sorted.
    pub enabled: Vec<String>,
    /// Regions with work (or the regions asked for), sorted.
    pub with_work: Vec<String>,
    /// Regions skipped because AWS refused us there, with the reason.
    pub refused: Vec<(String, String)>,
    /// Regions whose probe failed otherwise; they are reported as failed.
    pub failed: Vec<(String, AwsError)>,
}

/// Why regions to work could not be chosen.
#[derive(Debug, thiserror::Error)]
pub enum RegionsError {
    /// A region asked for is not one of the account's enabled regions.
    #[error("{0} is not an enabled region of this account")]
    NotEnabled(String),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// The regions a run of `job` works in, the one path of the CLI, the fanouts and the workers:
/// the enabled regions are listed; the regions `asked` for are checked against them, or, when
/// none are asked for, every enabled region is probed for the job's work.
pub async fn regions_to_work(aws: &Aws, job: Job, asked: &[String]) -> Result<Regions, RegionsError> {
    let enabled = enabled_regions(aws).await?;
    if asked.is_empty() {
        let found = regions_with_work(aws, &enabled, job).await;
        return Ok(Regions { enabled, ..found });
    }
    if let Some(r) = asked.iter().find(|r| !enabled.contains(r)) {
        return Err(RegionsError::NotEnabled(r.clone()));
    }
    let asked: BTreeSet<String> = asked.iter().cloned().collect();
    Ok(Regions { enabled, with_work: asked.into_iter().collect(), ..Default::default() })
}

/// Enabled regions of the account (`DescribeRegions` without opt-in regions not opted in).
pub async fn enabled_regions(aws: &Aws) -> Result<Vec<String>, AwsError> {
    let region = aws.region().unwrap_or("us-east-1").to_string();
    let client = aws_sdk_ec2::Client::new(aws.config());
    let out = client
        .describe_regions()
        .all_regions(false)
        .send()
        .await
        .map_err(|e| AwsError::call("DescribeRegions", &region, e))?;
    let mut names: Vec<String> = out
        .regions()
        .iter()
        .filter(|r| matches!(r.opt_in_status(), None | Some("opt-in-not-required") | Some("opted-in")))
        .filter_map(|r| r.region_name().map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// Probes `candidates` concurrently and keeps those with work for the job.
async fn regions_with_work(aws: &Aws, candidates: &[String], job: Job) -> Regions {
    let results: Vec<(String, Result<bool, AwsError>)> = stream::iter(candidates.iter().cloned())
        .map(|region| async move {
            let client = aws_sdk_ec2::Client::new(&aws.in_region(&region));
            let r = has_work(&client, &region, job).await;
            (region, r)
        })
        .buffer_unordered(PROBE_CONCURRENCY)
        .collect()
        .await;
    let mut out = Regions::default();
    for (region, result) in results {
        match result {
            Ok(true) => out.with_work.push(region),
            Ok(false) => debug!(region = %region, "no work in region"),
            Err(e) if e.code().is_some_and(|c| REFUSED.contains(&c)) => {
                warn!(region = %region, error = %e, "skipping region");
                out.refused.push((region, e.to_string()));
            }
            Err(e) => out.failed.push((region, e)),
        }
    }
    out.with_work.sort();
    out.refused.sort_by(|a, b| a.0.cmp(&b.0));
    out.failed.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Whether `region` has work for `job`: a running or stopped instance (snapshot); that, or an
/// own snapshot tagged `DeleteOn` (clean); an own snapshot with a replication tag or
/// `ebs-snapper:copy-to` (replication).
async fn has_work(client: &aws_sdk_ec2::Client, region: &str, job: Job) -> Result<bool, AwsError> {
    match job {
        Job::Snapshot => has_instances(client, region).await,
        Job::Clean => {
            let dated = ec2_filter("tag-key", [DELETE_ON.to_string()]);
            Ok(has_instances(client, region).await? || has_snapshots(client, region, dated).await?)
        }
        // What the replication job lists: any replication tag key, or a disaster-recovery
        // destination.
        Job::Replication => has_snapshots(client, region, crate::inventory::replication_filter()).await,
    }
}

/// Whether any running or stopped instance exists. EC2 may answer a filtered describe with an
/// empty page and a `NextToken`, so pages are followed until one holds an instance or none is
/// left; the first instance found ends the probe.
async fn has_instances(client: &aws_sdk_ec2::Client, region: &str) -> Result<bool, AwsError> {
    let mut pages = client
        .describe_instances()
        .filters(ec2_filter(STATE_FILTER, SELECTED_STATES.map(String::from)))
        .max_results(PROBE_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::call("DescribeInstances", region, e))?;
        if page.reservations().iter().any(|r| !r.instances().is_empty()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether any own snapshot matches `filter` (pages followed as for instances).
async fn has_snapshots(
    client: &aws_sdk_ec2::Client,
    region: &str,
    filter: aws_sdk_ec2::types::Filter,
) -> Result<bool, AwsError> {
    let mut pages =
        client.describe_snapshots().owner_ids("self").filters(filter).max_results(PROBE_PAGE).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::call("DescribeSnapshots", region, e))?;
        if !page.snapshots().is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

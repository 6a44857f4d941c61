//! Region discovery (SPEC §3): enabled regions, each probed concurrently (bounded) for the work a
//! job needs. Regions that refuse us (not opted in, not authorised) are skipped with a warning.

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

/// What makes a region worth visiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// A running or stopped instance (snapshot job).
    Instances,
    /// A running or stopped instance, or an own snapshot tagged `DeleteOn` (clean job).
    InstancesOrDeleteOn,
    /// An own snapshot tagged `replication_dst_region` or `replication_src_region`.
    Replication,
}

/// Outcome of region discovery.
#[derive(Debug, Default)]
pub struct Regions {
    /// Regions with work, sorted.
    pub with_work: Vec<String>,
    /// Regions skipped because AWS refused us there, with the reason.
    pub refused: Vec<(String, String)>,
    /// Regions whose probe failed otherwise; they are reported as failed.
    pub failed: Vec<(String, AwsError)>,
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
pub async fn regions_with_work(aws: &Aws, candidates: &[String], probe: Probe) -> Regions {
    let results: Vec<(String, Result<bool, AwsError>)> = stream::iter(candidates.iter().cloned())
        .map(|region| async move {
            let client = aws_sdk_ec2::Client::new(&aws.in_region(&region));
            let r = has_work(&client, &region, probe).await;
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

async fn has_work(client: &aws_sdk_ec2::Client, region: &str, probe: Probe) -> Result<bool, AwsError> {
    match probe {
        Probe::Instances => has_instances(client, region).await,
        Probe::InstancesOrDeleteOn => {
            Ok(has_instances(client, region).await? || has_tagged_snapshots(client, region, &["DeleteOn"]).await?)
        }
        Probe::Replication => {
            // Any replication tag key; see jobs::replication_filter.
            has_tagged_snapshots(client, region, &["replication_*"]).await
        }
    }
}

/// Whether any running or stopped instance exists. EC2 may answer a filtered describe with an
/// empty page and a `NextToken`, so pages are followed until one holds an instance or none is
/// left; the first instance found ends the probe.
async fn has_instances(client: &aws_sdk_ec2::Client, region: &str) -> Result<bool, AwsError> {
    let mut pages = client
        .describe_instances()
        .filters(ec2_filter("instance-state-name", ["running".to_string(), "stopped".to_string()]))
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

/// Whether any own snapshot carries one of the tag `keys` (pages followed as for instances).
async fn has_tagged_snapshots(client: &aws_sdk_ec2::Client, region: &str, keys: &[&str]) -> Result<bool, AwsError> {
    let mut pages = client
        .describe_snapshots()
        .owner_ids("self")
        .filters(ec2_filter("tag-key", keys.iter().map(|k| k.to_string())))
        .max_results(PROBE_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::call("DescribeSnapshots", region, e))?;
        if !page.snapshots().is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

//! The instance-based findings of `configure -c`: configurations that match no instance in any
//! region, instances matched by several configurations, and instances tagged `backup` that no
//! configuration matches.

use std::collections::{BTreeMap, BTreeSet};

use ebs_snapper_core::ConfigurationSet;
use futures::stream::{self, StreamExt};

use crate::error::AwsError;
use crate::inventory::{instances_with_tag_key, match_instances};
use crate::regions::PROBE_CONCURRENCY;
use crate::sdk::Aws;

#[derive(Debug, Default)]
pub struct FleetCheck {
    /// Valid configurations that matched no instance in any region (only when every region answered).
    pub unmatched: Vec<String>,
    /// (region, instance, configuration ids in order; the first applies).
    pub overlaps: Vec<(String, String, Vec<String>)>,
    /// (region, instance) tagged `backup` without a matching configuration.
    pub unconfigured: Vec<(String, String)>,
    /// Regions that could not be checked.
    pub failed: Vec<(String, AwsError)>,
}

pub async fn check_fleet(aws: &Aws, configs: &ConfigurationSet, regions: &[String]) -> FleetCheck {
    let results: Vec<_> = stream::iter(regions.iter().cloned())
        .map(|region| async move {
            let client = aws_sdk_ec2::Client::new(&aws.in_region(&region));
            let r = async {
                let inv = match_instances(&client, &region, configs).await?;
                let tagged = instances_with_tag_key(&client, &region, "backup").await?;
                Ok::<_, AwsError>((inv, tagged))
            }
            .await;
            (region, r)
        })
        .buffer_unordered(PROBE_CONCURRENCY)
        .collect()
        .await;
    let mut check = FleetCheck::default();
    let mut matched_somewhere: BTreeSet<String> = BTreeSet::new();
    for (region, result) in results {
        let (inv, tagged) = match result {
            Ok(r) => r,
            Err(e) => {
                check.failed.push((region, e));
                continue;
            }
        };
        let mut by_instance: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for named in &configs.valid {
            for id in inv.matched.get(&named.id).into_iter().flatten() {
                matched_somewhere.insert(named.id.clone());
                by_instance.entry(id.as_str()).or_default().push(named.id.clone());
            }
        }
        for (instance, ids) in &by_instance {
            if ids.len() > 1 {
                check.overlaps.push((region.clone(), instance.to_string(), ids.clone()));
            }
        }
        for instance in tagged {
            if !by_instance.contains_key(instance.id.as_str()) {
                check.unconfigured.push((region.clone(), instance.id));
            }
        }
    }
    // With a region unchecked, "matched nothing" could be wrong: say nothing rather than guess.
    if check.failed.is_empty() {
        check.unmatched =
            configs.valid.iter().filter(|c| !matched_somewhere.contains(&c.id)).map(|c| c.id.clone()).collect();
    }
    check.overlaps.sort();
    check.unconfigured.sort();
    check.failed.sort_by(|a, b| a.0.cmp(&b.0));
    check
}

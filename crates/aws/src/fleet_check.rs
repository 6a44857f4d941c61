//! The instance-based findings of `configure -c`: configurations that match no instance in any
//! region, instances matched by several configurations, and instances tagged `backup` that no
//! configuration matches.

use std::collections::BTreeSet;

use ebs_snapper_core::ConfigurationSet;
use futures::stream::{self, StreamExt};

use crate::error::AwsError;
use crate::inventory::{live_instances, match_instances, Matching};
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
    /// (region, configuration, error): configurations whose instances EC2 would not list.
    pub failed_configs: Vec<(String, String, String)>,
}

pub async fn check_fleet(aws: &Aws, configs: &ConfigurationSet, regions: &[String]) -> FleetCheck {
    let results: Vec<_> = stream::iter(regions.iter().cloned())
        .map(|region| async move {
            let client = aws_sdk_ec2::Client::new(&aws.in_region(&region));
            let r = async {
                let inv = match_instances(&client, &region, configs, Matching::Snapshot).await?;
                // Tag keys are matched case-sensitively by EC2 filters, and `Backup` counts.
                let tagged: Vec<_> = live_instances(&client, &region)
                    .await?
                    .into_iter()
                    .filter(|i| ebs_snapper_core::tags::asks_for_backup(&i.tags))
                    .collect();
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
        for (id, e) in &inv.failed_configs {
            check.failed_configs.push((region.clone(), id.clone(), e.clone()));
        }
        // The same owner rule as the jobs (`Inventory::claims`).
        let claims = inv.claims(configs);
        let owned: BTreeSet<&str> = claims.owned.iter().map(|&(_, instance)| instance).collect();
        for &(named, _) in &claims.owned {
            matched_somewhere.insert(named.id.clone());
        }
        for (instance, ids) in &claims.overlaps {
            matched_somewhere.extend(ids.iter().map(|id| id.to_string()));
            check.overlaps.push((region.clone(), instance.to_string(), ids.iter().map(|id| id.to_string()).collect()));
        }
        for instance in tagged {
            if !owned.contains(instance.id.as_str()) {
                check.unconfigured.push((region.clone(), instance.id));
            }
        }
    }
    // With a region unchecked, "matched nothing" could be wrong: say nothing rather than guess.
    if check.failed.is_empty() && check.failed_configs.is_empty() {
        check.unmatched =
            configs.valid.iter().filter(|c| !matched_somewhere.contains(&c.id)).map(|c| c.id.clone()).collect();
    }
    check.overlaps.sort();
    check.unconfigured.sort();
    check.failed.sort_by(|a, b| a.0.cmp(&b.0));
    check.failed_configs.sort();
    check
}

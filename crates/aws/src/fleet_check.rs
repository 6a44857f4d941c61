//! The fetching half of `configure -c`'s instance findings: each enabled region's inventory (as
//! the snapshot job gathers it) and its live instances, concurrently. The analysis is
//! [`ebs_snapper_core::fleet::FleetFindings`].

use ebs_snapper_core::fleet::FleetFindings;
use ebs_snapper_core::ConfigurationSet;
use futures::stream::{self, StreamExt};

use crate::error::AwsError;
use crate::inventory::{live_instances, match_instances, with_volumes, Matching};
use crate::regions::PROBE_CONCURRENCY;
use crate::sdk::Aws;

pub async fn check_fleet(aws: &Aws, configs: &ConfigurationSet, regions: &[String]) -> FleetFindings {
    let results: Vec<_> = stream::iter(regions.iter().cloned())
        .map(|region| async move {
            let client = aws_sdk_ec2::Client::new(&aws.in_region(&region));
            let r = async {
                let mut inventory = match_instances(&client, &region, configs, Matching::Snapshot).await?;
                // Volume tags decide `exclude_tags`.
                with_volumes(&client, &region, &mut inventory).await?;
                let live = live_instances(&client, &region).await?;
                Ok::<_, AwsError>((inventory, live))
            }
            .await;
            (region, r)
        })
        .buffer_unordered(PROBE_CONCURRENCY)
        .collect()
        .await;
    let mut findings = FleetFindings::default();
    for (region, result) in results {
        match result {
            Ok((inventory, live)) => findings.add_region(configs, &inventory, &live),
            Err(e) => findings.region_failed(&region, e.to_string()),
        }
    }
    findings.finish(configs)
}

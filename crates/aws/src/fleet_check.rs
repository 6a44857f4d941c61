//! The fetching half of `configure -c`'s instance findings: each enabled region's inventory (as
//! the snapshot job gathers it) and its live instances, concurrently, and for the vault's check
//! (SPEC §16) which keys of the volumes it would receive are AWS managed (KMS `DescribeKey`,
//! once per key). The analysis is [`ebs_snapper_core::fleet::FleetFindings`].

use std::collections::BTreeSet;

use ebs_snapper_core::fleet::{vault_keys, FleetFindings};
use ebs_snapper_core::ConfigurationSet;
use futures::stream::{self, StreamExt};

use crate::error::AwsError;
use crate::inventory::{
    describe_own_snapshots, ec2_filter, live_instances, match_instances, with_volumes, Matching, SnapshotDetail,
    RETENTION_TAGS,
};
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
                // The drill findings read the region's own dated snapshots (SPEC §17).
                if crate::jobs::any_drill(configs) {
                    let dated = vec![ec2_filter("tag-key", [ebs_snapper_core::tags::DELETE_ON.to_string()])];
                    inventory.snapshots =
                        describe_own_snapshots(&client, &region, dated, SnapshotDetail::Tags(&RETENTION_TAGS)).await?;
                }
                let keys = aws_managed_keys(aws, &region, vault_keys(configs, &inventory)).await;
                Ok::<_, AwsError>((inventory, live, keys))
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
            Ok((inventory, live, (aws_managed, unchecked))) => {
                findings.add_region(configs, &inventory, &live);
                findings.add_vault_keys(configs, &inventory, &aws_managed, unchecked);
                findings.add_drills(configs, &inventory, chrono::Utc::now());
            }
            Err(e) => findings.region_failed(&region, e.to_string()),
        }
    }
    findings.finish(configs)
}

/// Which of `keys` (in `region`) KMS says are AWS managed (`KeyManager` = `AWS`: in EBS,
/// `aws/ebs`), and those it could not describe, with why.
async fn aws_managed_keys(aws: &Aws, region: &str, keys: BTreeSet<&str>) -> (BTreeSet<String>, Vec<(String, String)>) {
    let mut managed = BTreeSet::new();
    let mut unchecked = Vec::new();
    if keys.is_empty() {
        return (managed, unchecked);
    }
    let kms = aws_sdk_kms::Client::new(&aws.in_region(region));
    for key in keys {
        match kms.describe_key().key_id(key).send().await {
            Ok(out) => {
                let manager = out.key_metadata().and_then(|m| m.key_manager());
                if manager == Some(&aws_sdk_kms::types::KeyManagerType::Aws) {
                    managed.insert(key.to_string());
                }
            }
            Err(e) => unchecked.push((key.to_string(), AwsError::call("DescribeKey", region, e).to_string())),
        }
    }
    (managed, unchecked)
}

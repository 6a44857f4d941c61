//! The fetching half of `ebs-snapper status` (SPEC §14): each region's inventory as the snapshot
//! job gathers it (batched, no call per volume), and the copies of each volume's newest snapshot
//! in their destinations. Reads only. The verdicts are [`ebs_snapper_core::status`].

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use ebs_snapper_core::status::{volume_statuses, VolumeStatus};
use ebs_snapper_core::tags::REPLICATION_SNAPSHOT_ID;
use ebs_snapper_core::ConfigurationSet;

use crate::error::AwsError;
use crate::inventory::{describe_locks, describe_own_snapshots, ec2_filter, gather, in_batches, SnapshotDetail};
use crate::sdk::Aws;

/// The status of every selected volume in `region`.
pub async fn region_status(
    aws: &Aws,
    account: &str,
    configs: &ConfigurationSet,
    region: &str,
    now: DateTime<Utc>,
    vault: Option<crate::vault::VaultAccess<'_>>,
) -> Result<Vec<VolumeStatus>, AwsError> {
    let client = aws_sdk_ec2::Client::new(&aws.in_region(region));
    let mut inventory = gather(&client, region, configs).await?;
    // The locks only where a configuration locks (one listing), for the LOCK column.
    if ebs_snapper_core::lock_plan::any_lock(configs, true) {
        inventory.locks = describe_locks(&client, region).await?;
    }
    let mut rows = volume_statuses(account, configs, &inventory, &BTreeMap::new(), now);
    drop(inventory);
    // Each row's newest snapshot tagged for a copy, by destination: one listing per destination
    // and 200 sources finds which have their copy there.
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in &rows {
        if let Some(id) = &row.newest_id {
            for dst in row.copies.keys() {
                wanted.entry(dst.clone()).or_default().push(id.clone());
            }
        }
    }
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (dst, sources) in &wanted {
        let dst_client = aws_sdk_ec2::Client::new(&aws.in_region(dst));
        let copies = in_batches(sources, |batch| {
            let filters = vec![ec2_filter(&format!("tag:{REPLICATION_SNAPSHOT_ID}"), batch.iter().cloned())];
            describe_own_snapshots(&dst_client, dst, filters, SnapshotDetail::Tags(&[REPLICATION_SNAPSHOT_ID]))
        })
        .await?;
        // A copy in state `error` holds no data (SPEC §10.11): never in sync.
        for copy in copies.into_iter().filter(|c| c.state != ebs_snapper_core::SnapshotState::Error) {
            if let Some(source) = copy.tags.get(REPLICATION_SNAPSHOT_ID) {
                found.entry(source.to_string()).or_default().insert(dst.clone());
            }
        }
    }
    for row in &mut rows {
        let Some(id) = &row.newest_id else { continue };
        for (dst, in_sync) in row.copies.iter_mut() {
            *in_sync = found.get(id).is_some_and(|regions| regions.contains(dst));
        }
    }
    if let Some(access) = vault {
        // The vault role trusts the deployment's function roles only: an operator's status may
        // not reach it. Then the column says nothing (null), and the rest of the report stands.
        if let Err(e) = vault_status(access, configs, region, &mut rows).await {
            tracing::warn!(region, error = %e, "could not look in the vault; its column is left empty");
            rows.iter_mut().for_each(|r| r.vault = None);
        }
    }
    Ok(rows)
}

/// Fills each row's `vault`: whether its vault holds a copy (not in error) of the newest
/// snapshot, looked up in each vault through its role (one listing per 200 snapshots).
async fn vault_status(
    access: crate::vault::VaultAccess<'_>,
    configs: &ConfigurationSet,
    region: &str,
    rows: &mut [VolumeStatus],
) -> Result<(), AwsError> {
    use ebs_snapper_core::tags::TAG_VAULT_OF;
    let mut wanted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.vault.is_some()) {
        let (Some(id), Some(named)) = (&row.newest_id, configs.get(&row.configuration)) else { continue };
        if let Some(vault) = &named.configuration.vault {
            wanted.entry(vault.vault_to(region)).or_default().push(id.clone());
        }
    }
    let mut copied: BTreeSet<String> = BTreeSet::new();
    for (target, sources) in &wanted {
        let Some((vault, vault_region)) = ebs_snapper_core::vault_plan::vault_target(target) else { continue };
        let (_, client) = access.reach(vault, vault_region).await?;
        let copies = in_batches(sources, |batch| {
            let filters = vec![
                ec2_filter(&format!("tag:{TAG_VAULT_OF}"), [access.account.to_string()]),
                ec2_filter(&format!("tag:{REPLICATION_SNAPSHOT_ID}"), batch.iter().cloned()),
            ];
            describe_own_snapshots(&client, vault_region, filters, SnapshotDetail::Tags(&[REPLICATION_SNAPSHOT_ID]))
        })
        .await?;
        copied.extend(
            copies
                .into_iter()
                .filter(|c| c.state != ebs_snapper_core::SnapshotState::Error)
                .filter_map(|c| c.tags.get(REPLICATION_SNAPSHOT_ID).map(str::to_string)),
        );
    }
    for row in rows.iter_mut().filter(|r| r.vault.is_some()) {
        row.vault = Some(row.newest_id.as_ref().is_some_and(|id| copied.contains(id)));
    }
    Ok(())
}

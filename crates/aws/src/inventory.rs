//! Gathering a region's inventory with paginated bulk calls only: `DescribeInstances` once per
//! configuration (with its filters), then volumes and snapshots by batches of ids. Never one
//! call per volume or per snapshot.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::Filter;
use chrono::{DateTime, Utc};
use ebs_snapper_core::{
    Attachment, ConfigurationSet, Encryption, Instance, Inventory, LockState, Locks, Snapshot, SnapshotLock,
    SnapshotState, Tags, Volume,
};
use tracing::{debug, info, warn};

use crate::error::AwsError;

/// Filter values per request (the EC2 limit for one filter).
pub const IDS_PER_BATCH: usize = 200;
/// Largest page sizes the EC2 API allows.
pub const INSTANCE_PAGE: i32 = 1000;
pub const VOLUME_PAGE: i32 = 500;
pub const SNAPSHOT_PAGE: i32 = 1000;

pub(crate) fn ec2_filter(name: &str, values: impl IntoIterator<Item = String>) -> Filter {
    Filter::builder().name(name).set_values(Some(values.into_iter().collect())).build()
}

fn tags_of<'t>(tags: impl IntoIterator<Item = &'t aws_sdk_ec2::types::Tag>) -> Tags {
    tags.into_iter().filter_map(|t| Some((t.key()?, t.value().unwrap_or("")))).collect()
}

pub(crate) fn to_chrono(t: Option<&aws_smithy_types::DateTime>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos())).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// What a job keeps of each snapshot it lists. A region may hold 100,000 snapshots, each with a
/// dozen tags and a description, and most of that is of no use to the planner that reads them;
/// keeping all of it would not fit a 128 MB function.
#[derive(Debug, Clone, Copy)]
pub enum SnapshotDetail {
    /// Id, volume, start time and state: all the snapshot job's due rule reads.
    Bare,
    /// Also these tags (no description).
    Tags(&'static [&'static str]),
    /// Every tag and the description: replication copies them.
    Full,
}

/// The tags the retention planner reads.
pub const RETENTION_TAGS: [&str; 8] = [
    ebs_snapper_core::tags::DELETE_ON,
    ebs_snapper_core::tags::TAG_INSTANCE,
    ebs_snapper_core::tags::TAG_CONFIG,
    ebs_snapper_core::tags::TAG_TIER,
    // A disaster-recovery copy is kept with the copies of its source volume.
    ebs_snapper_core::tags::REPLICATION_SRC,
    ebs_snapper_core::tags::TAG_VOLUME,
    // The restore drills (SPEC §17): when each volume was last drilled, and a copy's source.
    ebs_snapper_core::drill_plan::TAG_DRILL,
    ebs_snapper_core::tags::REPLICATION_SNAPSHOT_ID,
];

/// The tags the snapshot planner reads: the tier a snapshot was taken for (each tier is due on
/// its own snapshots); and the destinations of its copies, which the status report checks.
pub const DUE_TAGS: [&str; 4] = [
    ebs_snapper_core::tags::TAG_TIER,
    ebs_snapper_core::tags::REPLICATION_DST,
    ebs_snapper_core::tags::TAG_COPY_TO,
    // The newest drill of each volume, for the status report (SPEC §17).
    ebs_snapper_core::drill_plan::TAG_DRILL,
];

/// [`DUE_TAGS`], and what the lock planner reads of a snapshot: its configuration, its date
/// and whether it is a copy.
pub const DUE_AND_LOCK_TAGS: [&str; 7] = [
    ebs_snapper_core::tags::TAG_TIER,
    ebs_snapper_core::tags::REPLICATION_DST,
    ebs_snapper_core::tags::TAG_COPY_TO,
    ebs_snapper_core::drill_plan::TAG_DRILL,
    ebs_snapper_core::tags::TAG_CONFIG,
    ebs_snapper_core::tags::DELETE_ON,
    ebs_snapper_core::tags::REPLICATION_SRC,
];

/// How long EC2's listings may lag a mutation (EC2's API is eventually consistent: a new
/// snapshot may be missing from `DescribeSnapshots` for a few seconds):
/// `EBS_SNAPPER_LISTING_LAG_SECONDS` (0 to 300), else 30 seconds.
pub fn listing_lag() -> std::time::Duration {
    std::env::var(LISTING_LAG_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s <= 300)
        .map(std::time::Duration::from_secs)
        .unwrap_or(std::time::Duration::from_secs(30))
}

pub const LISTING_LAG_ENV: &str = "EBS_SNAPPER_LISTING_LAG_SECONDS";

/// Waits until `find` (one listing) finds what it looks for, trying for up to the listing lag.
/// `Ok(None)` when it was still missing at the end.
pub async fn until_listed<T, F, Fut>(mut find: F) -> Result<Option<T>, AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, AwsError>>,
{
    let give_up = tokio::time::Instant::now() + listing_lag();
    loop {
        if let Some(found) = find().await? {
            return Ok(Some(found));
        }
        if tokio::time::Instant::now() >= give_up {
            return Ok(None);
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The volume EC2 reports for a snapshot made by `CopySnapshot`.
pub const COPY_VOLUME: &str = "vol-ffffffff";

pub(crate) fn to_snapshot(s: &aws_sdk_ec2::types::Snapshot, detail: SnapshotDetail) -> Option<Snapshot> {
    let (tags, description) = match detail {
        SnapshotDetail::Bare => (Tags::new(), String::new()),
        SnapshotDetail::Tags(keys) => {
            (tags_of(s.tags().iter().filter(|t| t.key().is_some_and(|k| keys.contains(&k)))), String::new())
        }
        SnapshotDetail::Full => (tags_of(s.tags()), s.description().unwrap_or("").to_string()),
    };
    Some(Snapshot {
        id: s.snapshot_id()?.to_string(),
        volume_id: s.volume_id().filter(|v| !v.is_empty() && *v != COPY_VOLUME).map(str::to_string),
        is_copy: s.volume_id() == Some(COPY_VOLUME),
        start_time: to_chrono(s.start_time()),
        state: SnapshotState::parse(s.state().map(|s| s.as_str()).unwrap_or("")),
        tags,
        description,
        archived: s.storage_tier() == Some(&aws_sdk_ec2::types::StorageTier::Archive),
        state_message: s
            .state_message()
            .filter(|m| !m.is_empty() && s.state() == Some(&aws_sdk_ec2::types::SnapshotState::Error))
            .map(Into::into),
    })
}

/// One `tag-key` filter whose values match every replication tag key (`replication_*`: the
/// destination, source region and source id) and `ebs-snapper:copy-to`; EC2 matches a snapshot
/// carrying any of them, so each listing is one paginated call. (The test bed's emulator is
/// made to do the same; moto alone compares several values as a set.)
pub(crate) fn replication_filter() -> aws_sdk_ec2::types::Filter {
    ec2_filter(
        "tag-key",
        [ebs_snapper_core::tags::REPLICATION_TAGS.to_string(), ebs_snapper_core::tags::TAG_COPY_TO.to_string()],
    )
}

/// The instances every valid configuration matches, their volumes, and the account's own
/// snapshots of those volumes.
pub async fn gather(
    client: &aws_sdk_ec2::Client,
    region: &str,
    configs: &ConfigurationSet,
) -> Result<Inventory, AwsError> {
    let mut inventory = match_instances(client, region, configs, Matching::Snapshot).await?;
    let volume_ids = with_volumes(client, region, &mut inventory).await?;
    // Under a lock, the tags that say which lock a snapshot wants, too (SPEC §16).
    let detail =
        if ebs_snapper_core::lock_plan::any_lock(configs, true) { &DUE_AND_LOCK_TAGS[..] } else { &DUE_TAGS[..] };
    inventory.snapshots = describe_snapshots_of_volumes(client, region, &volume_ids, detail).await?;
    info!(
        region,
        instances = inventory.instances.len(),
        volumes = inventory.volumes.len(),
        snapshots = inventory.snapshots.len(),
        "gathered inventory"
    );
    Ok(inventory)
}

/// Fills `inventory.volumes` with the volumes attached to its instances (one `DescribeVolumes`
/// per 200), and returns their ids.
pub async fn with_volumes(
    client: &aws_sdk_ec2::Client,
    region: &str,
    inventory: &mut Inventory,
) -> Result<Vec<String>, AwsError> {
    let volume_ids: BTreeSet<String> =
        inventory.instances.values().flat_map(|i| i.volumes.iter().map(|a| a.volume_id.clone())).collect();
    let volume_ids: Vec<String> = volume_ids.into_iter().collect();
    inventory.volumes = describe_volumes(client, region, &volume_ids).await?;
    Ok(volume_ids)
}

/// Which instances a configuration matches: running or stopped ones (to snapshot), or those in
/// any state but `terminated` (whose volumes keep their minimum in the clean job).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matching {
    Snapshot,
    Retention,
}

/// The instances each valid configuration matches (one paginated `DescribeInstances` per
/// configuration); volumes and snapshots are left empty.
///
/// A configuration whose listing fails (EC2 refuses a filter name it does not know, or more
/// than 200 values; or the call fails after its retries) fails alone: it is recorded in
/// `failed_configs` and the other configurations are still matched. Only when every
/// configuration failed does the region fail, with the first error.
pub async fn match_instances(
    client: &aws_sdk_ec2::Client,
    region: &str,
    configs: &ConfigurationSet,
    purpose: Matching,
) -> Result<Inventory, AwsError> {
    let mut inventory = Inventory { region: region.to_string(), ..Default::default() };
    let mut first_error = None;
    for named in &configs.valid {
        let filters = match purpose {
            Matching::Snapshot => named.configuration.instance_filters(),
            Matching::Retention => named.configuration.retention_filters(),
        };
        let instances = match describe_instances(client, region, &filters).await {
            Ok(instances) => instances,
            Err(e) => {
                warn!(region, config = %named.id, error = %e, "configuration {} could not be evaluated", named.id);
                inventory.failed_configs.insert(named.id.clone(), e.to_string());
                first_error.get_or_insert(e);
                continue;
            }
        };
        let mut matched = Vec::new();
        for instance in instances {
            matched.push(instance.id.clone());
            inventory.instances.entry(instance.id.clone()).or_insert(instance);
        }
        debug!(region, config = %named.id, instances = matched.len(), "matched instances");
        inventory.matched.insert(named.id.clone(), matched);
    }
    match first_error {
        Some(e) if inventory.failed_configs.len() == configs.valid.len() => Err(e),
        _ => Ok(inventory),
    }
}

/// Every running or stopped instance of the region (paginated).
pub async fn live_instances(client: &aws_sdk_ec2::Client, region: &str) -> Result<Vec<Instance>, AwsError> {
    use ebs_snapper_core::config::{SELECTED_STATES, STATE_FILTER};
    let filters = [ebs_snapper_core::Filter {
        name: STATE_FILTER.into(),
        values: SELECTED_STATES.iter().map(|s| s.to_string()).collect(),
    }];
    describe_instances(client, region, &filters).await
}

async fn describe_instances(
    client: &aws_sdk_ec2::Client,
    region: &str,
    filters: &[ebs_snapper_core::Filter],
) -> Result<Vec<Instance>, AwsError> {
    let filters: Vec<Filter> = filters.iter().map(|f| ec2_filter(&f.name, f.values.iter().cloned())).collect();
    // Each page is converted as it arrives and then dropped: SDK pages are several times the
    // size of what the planners keep, and a large region has a hundred of them.
    let mut pages =
        client.describe_instances().set_filters(Some(filters)).max_results(INSTANCE_PAGE).into_paginator().send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::call("DescribeInstances", region, e))?;
        for reservation in page.reservations() {
            for i in reservation.instances() {
                let Some(id) = i.instance_id() else { continue };
                out.push(Instance {
                    id: id.to_string(),
                    state: i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()).unwrap_or_default(),
                    image_id: i.image_id().map(str::to_string),
                    root_device: i.root_device_name().map(str::to_string),
                    tags: tags_of(i.tags()),
                    volumes: i
                        .block_device_mappings()
                        .iter()
                        .filter_map(|m| {
                            Some(Attachment {
                                device: m.device_name().unwrap_or("").to_string(),
                                volume_id: m.ebs()?.volume_id()?.to_string(),
                            })
                        })
                        .collect(),
                });
            }
        }
    }
    Ok(out)
}

/// Runs `describe` once per batch of at most [`IDS_PER_BATCH`] ids (EC2's limit on the values
/// of one filter) and joins the answers in order. The one place that batching is written.
pub(crate) async fn in_batches<'a, T, F, Fut>(ids: &'a [String], mut describe: F) -> Result<Vec<T>, AwsError>
where
    F: FnMut(&'a [String]) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, AwsError>>,
{
    let mut out = Vec::new();
    for batch in ids.chunks(IDS_PER_BATCH) {
        out.extend(describe(batch).await?);
    }
    Ok(out)
}

async fn describe_volumes(
    client: &aws_sdk_ec2::Client,
    region: &str,
    ids: &[String],
) -> Result<BTreeMap<String, Volume>, AwsError> {
    let volumes = in_batches(ids, |batch| async move {
        let mut pages = client
            .describe_volumes()
            .filters(ec2_filter("volume-id", batch.iter().cloned()))
            .max_results(VOLUME_PAGE)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::call("DescribeVolumes", region, e))?;
            out.extend(page.volumes().iter().filter_map(|v| {
                Some(Volume {
                    id: v.volume_id()?.to_string(),
                    tags: tags_of(v.tags()),
                    created: v.create_time().map(|t| to_chrono(Some(t))),
                    encryption: match v.encrypted() {
                        Some(true) => Encryption::Kms(v.kms_key_id().map(Into::into)),
                        _ => Encryption::None,
                    },
                })
            }));
        }
        Ok(out)
    })
    .await?;
    Ok(volumes.into_iter().map(|v| (v.id.clone(), v)).collect())
}

async fn describe_snapshots_of_volumes(
    client: &aws_sdk_ec2::Client,
    region: &str,
    volume_ids: &[String],
    tags: &'static [&'static str],
) -> Result<Vec<Snapshot>, AwsError> {
    in_batches(volume_ids, |batch| {
        let filters = vec![ec2_filter("volume-id", batch.iter().cloned())];
        describe_own_snapshots(client, region, filters, SnapshotDetail::Tags(tags))
    })
    .await
}

/// The account's own snapshots matching `filters` (paginated, largest pages).
pub async fn describe_own_snapshots(
    client: &aws_sdk_ec2::Client,
    region: &str,
    filters: Vec<Filter>,
    detail: SnapshotDetail,
) -> Result<Vec<Snapshot>, AwsError> {
    let mut out = Vec::new();
    each_own_snapshot(client, region, filters, detail, |s| out.push(s)).await?;
    out.shrink_to_fit();
    Ok(out)
}

/// The account's own snapshots matching `filters`, each handed to `take` as its page comes, so
/// that a caller keeping less than the snapshot never holds the listing (paginated).
pub async fn each_own_snapshot(
    client: &aws_sdk_ec2::Client,
    region: &str,
    filters: Vec<Filter>,
    detail: SnapshotDetail,
    mut take: impl FnMut(Snapshot),
) -> Result<(), AwsError> {
    let mut pages = client
        .describe_snapshots()
        .owner_ids("self")
        .set_filters(Some(filters))
        .max_results(SNAPSHOT_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::call("DescribeSnapshots", region, e))?;
        page.snapshots().iter().filter_map(|s| to_snapshot(s, detail)).for_each(&mut take);
    }
    Ok(())
}

/// The account's own snapshots with these ids (one paginated call per 200 ids); ids not found
/// (gone, or not listed yet) are simply missing from the answer.
pub async fn describe_own_snapshots_by_id(
    client: &aws_sdk_ec2::Client,
    region: &str,
    ids: &[String],
    detail: SnapshotDetail,
) -> Result<Vec<Snapshot>, AwsError> {
    in_batches(ids, |batch| {
        let filters = vec![ec2_filter("snapshot-id", batch.iter().cloned())];
        describe_own_snapshots(client, region, filters, detail)
    })
    .await
}

/// The clean job's inventory: the instances each configuration matches, and the account's own
/// snapshots tagged `DeleteOn` (paginated). Also the volumes of ignored instances (one call),
/// whose snapshots are never deleted.
pub async fn gather_for_clean(
    client: &aws_sdk_ec2::Client,
    region: &str,
    configs: &ConfigurationSet,
) -> Result<(Inventory, BTreeSet<String>), AwsError> {
    let mut inventory = match_instances(client, region, configs, Matching::Retention).await?;
    inventory.snapshots = describe_own_snapshots(
        client,
        region,
        vec![ec2_filter("tag-key", [ebs_snapper_core::tags::DELETE_ON.to_string()])],
        SnapshotDetail::Tags(&RETENTION_TAGS),
    )
    .await?;
    let ignored_instances: Vec<String> = configs.ignored_ids().into_iter().filter(|id| id.starts_with("i-")).collect();
    let ignored = in_batches(&ignored_instances, |batch| async move {
        let filters = [ebs_snapper_core::Filter { name: "instance-id".into(), values: batch.to_vec() }];
        describe_instances(client, region, &filters).await
    })
    .await?;
    let ignored_volumes: BTreeSet<String> =
        ignored.into_iter().flat_map(|i| i.volumes.into_iter().map(|a| a.volume_id)).collect();
    info!(
        region,
        instances = inventory.instances.len(),
        snapshots = inventory.snapshots.len(),
        "gathered clean-up inventory"
    );
    Ok((inventory, ignored_volumes))
}

/// The region's snapshot locks (`DescribeLockedSnapshots`, every page: EC2 pages by `NextToken`,
/// at most 1,000 a page, and lists expired locks too). One listing per run that needs it (SPEC
/// §16); a lock of a state this tool does not know is taken to hold.
pub async fn describe_locks(client: &aws_sdk_ec2::Client, region: &str) -> Result<Locks, AwsError> {
    let mut locks = Locks::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .describe_locked_snapshots()
            .max_results(LOCK_PAGE)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| AwsError::call("DescribeLockedSnapshots", region, e))?;
        for info in page.snapshots() {
            let Some(id) = info.snapshot_id() else { continue };
            let state = info.lock_state().and_then(|s| LockState::parse(s.as_str())).unwrap_or(LockState::Compliance);
            let expires = info.lock_expires_on().map(|t| to_chrono(Some(t)));
            locks.insert(id.to_string(), SnapshotLock { state, expires });
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => break,
        }
    }
    Ok(locks)
}

/// The largest page `DescribeLockedSnapshots` answers.
const LOCK_PAGE: i32 = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn batches_hold_at_most_two_hundred_ids_and_answers_keep_their_order() {
        let ids: Vec<String> = (0..401).map(|i| format!("vol-{i}")).collect();
        let mut sizes = Vec::new();
        let all = block_on(in_batches(&ids, |batch| {
            sizes.push(batch.len());
            let answer: Vec<String> = batch.to_vec();
            async move { Ok::<_, AwsError>(answer) }
        }))
        .unwrap();
        assert_eq!(sizes, [200, 200, 1]);
        assert_eq!(all, ids);
        let none = block_on(in_batches(&[], |_| async { Ok::<Vec<String>, AwsError>(vec![]) }));
        assert!(none.unwrap().is_empty());
    }

    #[test]
    fn a_failed_batch_fails_the_whole_answer() {
        let ids: Vec<String> = (0..300).map(|i| format!("i-{i}")).collect();
        let mut calls = 0;
        let out = block_on(in_batches(&ids, |batch| {
            calls += 1;
            let first = batch[0].clone();
            async move {
                if first == "i-200" {
                    Err(AwsError::Account { message: "denied".into() })
                } else {
                    Ok(vec![first])
                }
            }
        }));
        assert!(out.is_err());
        assert_eq!(calls, 2);
    }
}

//! Restore drills (SPEC §17), run by the clean job after its retention work and by `ebs-snapper
//! drill`: a volume made from the snapshot, waited for, a sample of the snapshot's blocks read
//! back through the EBS direct APIs and checked, the volume deleted, and the result tagged on
//! the snapshot. No instance is ever touched.
//!
//! A drill costs 3 EC2 calls (`CreateVolume`, `DeleteVolume`, `CreateTags`), plus the wait's
//! polls (`DescribeVolumes`: after 2, 4, 7 and 10 s, then every 5 s) and a run's one zone
//! lookup, and per sampled block one `ListSnapshotBlocks` chain and one `GetSnapshotBlock` (twice
//! that for a copy compared with its source).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification, VolumeState, VolumeType};
use base64::Engine;
use chrono::{DateTime, Utc};
use ebs_snapper_core::drill_plan::{
    report_drills, report_swept, volume_delete_on, volume_expired, DrillDone, DrillOutcome, DrillPick, DrillResult,
    TAG_DRILL,
};
use ebs_snapper_core::tags::{DELETE_ON, TAG_CONFIG};
use ebs_snapper_core::{Executed, RegionReport, ReportOptions};
use sha2::Digest;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::budget::TimeBudget;
use crate::error::AwsError;
use crate::inventory::ec2_filter;
use crate::sdk::Aws;

/// The environment variable that bounds a drill's wait for its volume, in seconds.
pub const DRILL_WAIT_ENV: &str = "EBS_SNAPPER_DRILL_WAIT";
/// How long a drill waits for its volume by default: EBS makes a volume from a snapshot in
/// seconds (the blocks load lazily afterwards); four minutes is far beyond that.
pub const DEFAULT_DRILL_WAIT: Duration = Duration::from_secs(240);
/// Beyond the wait, what a drill needs at most: the block sample, the delete and the tag.
const AFTER_WAIT: Duration = Duration::from_secs(30);
/// Drills in flight at once in a region.
pub const DRILLS_AT_ONCE: usize = 8;
/// EBS direct API calls per second at most (AWS allows `ListSnapshotBlocks` about 50 per second
/// per account; the SDK's retries absorb a throttle).
const EBS_CALLS_PER_SECOND: u32 = 40;
/// Block indices per `ListSnapshotBlocks` page (SPEC §17).
const LIST_PAGE: i32 = 100;
/// `ListSnapshotBlocks` calls a drill makes at most (empty pages included).
const MAX_LIST_CALLS: u32 = 2_000;
/// Empty pages followed at most to find a source's block.
const SOURCE_PAGES: usize = 20;
/// Blocks per GiB (512 KiB blocks).
const BLOCKS_PER_GIB: i64 = 2_048;

/// The bound on a drill's wait for its volume: [`DRILL_WAIT_ENV`], else [`DEFAULT_DRILL_WAIT`].
pub fn drill_wait() -> Duration {
    std::env::var(DRILL_WAIT_ENV)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_DRILL_WAIT)
}

/// The longest a drill's sample may take: two EBS calls per block (four for a copy compared
/// with its source), at the run's pace shared by the drills in flight.
fn sampling(p: &DrillPick) -> Duration {
    let calls = p.sample_blocks * if p.source.is_some() { 4 } else { 2 };
    Duration::from_secs_f64(calls as f64 * DRILLS_AT_ONCE as f64 / EBS_CALLS_PER_SECOND as f64)
}

/// Where the drills of one region (of one account) run.
pub struct DrillSite<'a> {
    /// Credentials of the account that owns the snapshots (the vault's for vault copies).
    pub aws: &'a Aws,
    pub region: &'a str,
    /// Credentials that may read a copy's source, in the source's region (the same account's).
    pub source_aws: Option<&'a Aws>,
    /// Added to each action's reason: `(the vault 4444:us-east-1)`.
    pub label: Option<String>,
}

/// Runs `picks` in `site`, at most [`DRILLS_AT_ONCE`] at a time, and adds what they found to
/// `report`. A drill is not started when the budget could not see it through; it is deferred.
pub async fn run_drills(
    site: &DrillSite<'_>,
    picks: &[DrillPick],
    budget: &TimeBudget,
    opts: ReportOptions,
    report: &mut RegionReport,
) {
    if picks.is_empty() {
        return;
    }
    if opts.dry_run {
        report_drills(report, opts, picks, None, site.label.as_deref());
        return;
    }
    let ec2 = aws_sdk_ec2::Client::new(&site.aws.in_region(site.region));
    let ebs = aws_sdk_ebs::Client::new(&site.aws.in_region(site.region));
    let zones = match zones_for(&ec2, site.region, picks).await {
        Ok(zones) => zones,
        Err(e) => {
            let why = format!("could not choose a zone for the drills: {e}");
            let done = picks.iter().map(|_| DrillDone::NotRun(Executed::Failed(why.clone()))).collect();
            report_drills(report, opts, picks, Some(done), site.label.as_deref());
            return;
        }
    };
    let pace = EbsPace::new();
    let wait = drill_wait();
    let drills = picks.iter().map(|p| {
        let (ec2, ebs, pace, zones) = (&ec2, &ebs, &pace, &zones);
        async move {
            if budget.remaining().is_some_and(|left| left < wait + AFTER_WAIT + sampling(p))
                || !budget.allows_mutation()
            {
                return DrillDone::NotRun(Executed::Deferred);
            }
            let zone = zones.get(&p.volume).or(zones.get("")).cloned().unwrap_or_default();
            let drill = Drill { ec2, ebs, pace, region: site.region, source_aws: site.source_aws, wait };
            match drill.run(p, &zone).await {
                Ok(Finished { result, problems }) => DrillDone::Ran { result, problems },
                Err(executed) => DrillDone::NotRun(executed),
            }
        }
    });
    use futures::StreamExt;
    let done: Vec<DrillDone> = futures::stream::iter(drills).buffered(DRILLS_AT_ONCE).collect().await;
    report_drills(report, opts, picks, Some(done), site.label.as_deref());
}

/// The zone of each source pick's volume (one `DescribeVolumes`), and under `""` the region's
/// first available zone for copies and for volumes gone since (one `DescribeAvailabilityZones`).
async fn zones_for(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    picks: &[DrillPick],
) -> Result<BTreeMap<String, String>, String> {
    let mut zones = BTreeMap::new();
    let sources: Vec<String> = picks
        .iter()
        .filter(|p| p.kind == ebs_snapper_core::drill_plan::DrillKind::Source)
        .map(|p| p.volume.clone())
        .collect();
    // EC2 takes at most 200 values in a filter.
    for batch in sources.chunks(200) {
        let found = ec2
            .describe_volumes()
            .filters(ec2_filter("volume-id", batch.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::call("DescribeVolumes", region, e).to_string())?;
        for v in found.volumes() {
            if let (Some(id), Some(zone)) = (v.volume_id(), v.availability_zone()) {
                zones.insert(id.to_string(), zone.to_string());
            }
        }
    }
    if picks.iter().any(|p| !zones.contains_key(&p.volume)) {
        let found = ec2
            .describe_availability_zones()
            .filters(ec2_filter("state", ["available".to_string()]))
            .filters(ec2_filter("zone-type", ["availability-zone".to_string()]))
            .send()
            .await
            .map_err(|e| AwsError::call("DescribeAvailabilityZones", region, e).to_string())?;
        let first = found.availability_zones().iter().filter_map(|z| z.zone_name()).min();
        match first {
            Some(zone) => {
                zones.insert(String::new(), zone.to_string());
            }
            None => return Err(format!("{region} has no available zone")),
        }
    }
    Ok(zones)
}

/// A drill that ran to its end: the result tagged on the snapshot, and what went wrong around it
/// (the volume not deleted, the tag not written), each a failure of the run.
struct Finished {
    result: DrillResult,
    problems: Vec<String>,
}

struct Drill<'a> {
    ec2: &'a aws_sdk_ec2::Client,
    ebs: &'a aws_sdk_ebs::Client,
    pace: &'a EbsPace,
    region: &'a str,
    source_aws: Option<&'a Aws>,
    wait: Duration,
}

impl Drill<'_> {
    async fn run(&self, p: &DrillPick, zone: &str) -> Result<Finished, Executed> {
        let started = Utc::now();
        let (volume, size) = match self.create_volume(p, zone, started).await {
            Ok(made) => made,
            // Refused (the key, a grant, a limit): a failed drill, tagged as one.
            Err(Executed::Failed(why)) => {
                let result = DrillResult { at: started, outcome: DrillOutcome::Failed(why) };
                let problems = self.tag_result(p, &result).await.into_iter().collect();
                return Ok(Finished { result, problems });
            }
            Err(other) => return Err(other),
        };
        info!(region = self.region, snapshot = %p.snapshot, volume = %volume, "drill volume created");
        let clock = Instant::now();
        let outcome = match self.until_available(&volume).await {
            Ok(()) => {
                let seconds = clock.elapsed().as_secs();
                match self.sample(p, size).await {
                    Ok(empty) => DrillOutcome::Ok { seconds, empty },
                    Err(why) => DrillOutcome::Failed(why),
                }
            }
            Err(why) => DrillOutcome::Failed(why),
        };
        let mut problems = Vec::new();
        if let Err(e) = self.ec2.delete_volume().volume_id(&volume).send().await {
            let e = AwsError::call("DeleteVolume", self.region, e);
            warn!(region = self.region, volume = %volume, error = %e, "could not delete the drill volume");
            problems.push(format!(
                "the drill volume {volume} could not be deleted ({e}); a later clean run deletes it after its DeleteOn"
            ));
        }
        if let DrillOutcome::Failed(why) = &outcome {
            warn!(region = self.region, snapshot = %p.snapshot, "drill failed: {why}");
        }
        let result = DrillResult { at: started, outcome };
        problems.extend(self.tag_result(p, &result).await);
        Ok(Finished { result, problems })
    }

    /// Tags the drill's result on its snapshot; what went wrong, if it could not.
    async fn tag_result(&self, p: &DrillPick, result: &DrillResult) -> Option<String> {
        let tag = Tag::builder().key(TAG_DRILL).value(result.to_tag()).build();
        let sent = self.ec2.create_tags().resources(&p.snapshot).tags(tag).send().await;
        sent.err().map(|e| {
            let e = AwsError::call("CreateTags", self.region, e);
            format!("the drill's result could not be tagged on the snapshot: {e}")
        })
    }

    /// `CreateVolume` (gp3, the snapshot's size and encryption), tagged at creation; the client
    /// token makes the SDK's retry of a lost answer return the same volume.
    async fn create_volume(&self, p: &DrillPick, zone: &str, now: DateTime<Utc>) -> Result<(String, i32), Executed> {
        let tags = TagSpecification::builder()
            .resource_type(ResourceType::Volume)
            .tags(Tag::builder().key(TAG_DRILL).value(&p.snapshot).build())
            .tags(Tag::builder().key(TAG_CONFIG).value(&p.config).build())
            .tags(Tag::builder().key(DELETE_ON).value(volume_delete_on(now).to_string()).build())
            .build();
        let token = format!("ebs-snapper-drill-{}-{}", p.snapshot, now.timestamp_millis());
        let sent = self
            .ec2
            .create_volume()
            .snapshot_id(&p.snapshot)
            .availability_zone(zone)
            .volume_type(VolumeType::Gp3)
            .tag_specifications(tags)
            .client_token(token)
            .send()
            .await;
        match sent {
            Ok(out) => match out.volume_id() {
                Some(id) => Ok((id.to_string(), out.size().unwrap_or(0))),
                None => Err(Executed::Failed("CreateVolume answered without a volume id".into())),
            },
            Err(e) => {
                let e = AwsError::call("CreateVolume", self.region, e);
                match e.code() {
                    // Deleted since it was listed: nothing to drill.
                    Some("InvalidSnapshot.NotFound") => Err(Executed::Skipped(format!("the snapshot is gone: {e}"))),
                    _ => Err(Executed::Failed(format!("could not make a volume from the snapshot: {e}"))),
                }
            }
        }
    }

    /// Polls the volume after 2, 4, 7 and 10 s, then every 5 s, until it is `available` (Ok) or
    /// `error`, or the wait is over.
    async fn until_available(&self, volume: &str) -> Result<(), String> {
        let started = Instant::now();
        let mut step = 0usize;
        loop {
            let pause = [2, 2, 3, 3].get(step).copied().unwrap_or(5);
            step += 1;
            let next = started.elapsed() + Duration::from_secs(pause);
            if next > self.wait {
                return Err(format!("the volume {volume} was not available after {} s", self.wait.as_secs()));
            }
            tokio::time::sleep(Duration::from_secs(pause)).await;
            let found = self.ec2.describe_volumes().volume_ids(volume).send().await;
            let state = match found {
                Ok(out) => out.volumes().first().and_then(|v| v.state().cloned()),
                // Not listed yet (EC2 is eventually consistent), or a passing error: poll again.
                Err(e) => {
                    let e = AwsError::call("DescribeVolumes", self.region, e);
                    warn!(region = self.region, volume, error = %e, "could not read the drill volume");
                    None
                }
            };
            match state {
                Some(VolumeState::Available) => return Ok(()),
                Some(VolumeState::Error) => {
                    return Err(format!(
                    "the volume {volume} ended in state error: the snapshot's key or its grants do not allow a restore"
                ))
                }
                _ => {}
            }
        }
    }

    /// Reads up to `sample_blocks` distinct written blocks from random starting points and
    /// checks each against its checksum (and, for a copy whose source still exists, against the
    /// source's block). `Ok(true)`: the snapshot has no written block.
    async fn sample(&self, p: &DrillPick, size_gib: i32) -> Result<bool, String> {
        if p.sample_blocks == 0 {
            return Ok(false);
        }
        let space = (size_gib.max(1) as i64 * BLOCKS_PER_GIB).min(i32::MAX as i64) as i32;
        let mut random = Random::seeded(&p.snapshot);
        let mut picked: BTreeMap<i32, String> = BTreeMap::new();
        let mut calls = 0u32;
        let mut exhausted = false;
        while picked.len() < p.sample_blocks as usize && !exhausted {
            let start = (random.next() % space as u64) as i32;
            match self.first_block_from(&p.snapshot, start, &picked, &mut calls).await {
                Ok(Some((index, token))) => {
                    picked.insert(index, token);
                }
                Ok(None) => exhausted = true,
                // Out of listings on a large sparse snapshot: the blocks found so far are the
                // sample (none found is a failure: nothing was read back).
                Err(why) if calls >= MAX_LIST_CALLS && !picked.is_empty() => {
                    warn!(region = self.region, snapshot = %p.snapshot, "{why}; sampling {} blocks", picked.len());
                    exhausted = true;
                }
                Err(why) => return Err(why),
            }
        }
        if picked.is_empty() {
            return Ok(true);
        }
        let source = match (&p.source, self.source_aws) {
            (Some((region, id)), Some(aws)) => Some((aws_sdk_ebs::Client::new(&aws.in_region(region)), id.as_str())),
            _ => None,
        };
        for (index, token) in &picked {
            let data = self.read_block(self.ebs, &p.snapshot, *index, token).await?;
            if let Some((client, source_id)) = &source {
                match self.source_block(client, source_id, *index).await? {
                    Some(source_data) if source_data != data => {
                        return Err(format!("block {index} differs from the source snapshot {source_id}'s"))
                    }
                    _ => {}
                }
            }
        }
        Ok(false)
    }

    /// The first written block at or after `start` that is not picked yet, wrapping once to 0
    /// (then up to `start`); `None` when there is none. `ListSnapshotBlocks` pages may be empty
    /// and still carry a `NextToken`: they are followed.
    async fn first_block_from(
        &self,
        snapshot: &str,
        start: i32,
        picked: &BTreeMap<i32, String>,
        calls: &mut u32,
    ) -> Result<Option<(i32, String)>, String> {
        let mut from = start;
        let mut wrapped = false;
        let mut token: Option<String> = None;
        loop {
            if *calls >= MAX_LIST_CALLS {
                return Err(format!("no new written block found in {MAX_LIST_CALLS} ListSnapshotBlocks pages"));
            }
            *calls += 1;
            self.pace.turn().await;
            let page = self
                .ebs
                .list_snapshot_blocks()
                .snapshot_id(snapshot)
                .max_results(LIST_PAGE)
                .set_starting_block_index(token.is_none().then_some(from))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    format!(
                        "could not list the snapshot's blocks: {}",
                        AwsError::call("ListSnapshotBlocks", self.region, e)
                    )
                })?;
            let blocks = || page.blocks().iter().filter_map(|b| Some((b.block_index()?, b.block_token()?)));
            if let Some((index, token)) = blocks().find(|(i, _)| !picked.contains_key(i) && (!wrapped || *i < start)) {
                return Ok(Some((index, token.to_string())));
            }
            if wrapped && blocks().any(|(i, _)| i >= start) {
                return Ok(None);
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ if !wrapped && start > 0 => {
                    wrapped = true;
                    from = 0;
                }
                _ => return Ok(None),
            }
        }
    }

    /// Reads one block and checks its data against the SHA-256 EBS gives with it.
    async fn read_block(
        &self,
        client: &aws_sdk_ebs::Client,
        snapshot: &str,
        index: i32,
        token: &str,
    ) -> Result<Vec<u8>, String> {
        self.pace.turn().await;
        let out = client
            .get_snapshot_block()
            .snapshot_id(snapshot)
            .block_index(index)
            .block_token(token)
            .send()
            .await
            .map_err(|e| {
                format!("could not read block {index}: {}", AwsError::call("GetSnapshotBlock", self.region, e))
            })?;
        let expected = out.checksum().map(str::to_string);
        let algorithm = out.checksum_algorithm().map(|a| a.as_str().to_string());
        let data = out
            .block_data
            .collect()
            .await
            .map_err(|e| format!("could not read block {index}'s data: {e}"))?
            .into_bytes()
            .to_vec();
        if algorithm.as_deref().is_some_and(|a| a != "SHA256") {
            return Err(format!(
                "block {index} came with a checksum algorithm this tool does not know ({algorithm:?})"
            ));
        }
        let actual = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&data));
        match expected {
            Some(expected) if expected == actual => Ok(data),
            Some(_) => Err(format!("block {index}'s data does not match its checksum")),
            None => Err(format!("block {index} came without a checksum")),
        }
    }

    /// The source snapshot's block `index` (checked against its checksum); `None` when the
    /// source is gone (nothing to compare with).
    async fn source_block(
        &self,
        client: &aws_sdk_ebs::Client,
        source: &str,
        index: i32,
    ) -> Result<Option<Vec<u8>>, String> {
        // The first page from `index` that lists a block (AWS may answer empty pages first).
        let mut next: Option<String> = None;
        for _ in 0..SOURCE_PAGES {
            self.pace.turn().await;
            let listed = client
                .list_snapshot_blocks()
                .snapshot_id(source)
                .max_results(LIST_PAGE)
                .set_starting_block_index(next.is_none().then_some(index))
                .set_next_token(next.take())
                .send()
                .await;
            let page = match listed {
                Ok(page) => page,
                Err(e) => {
                    let e = AwsError::call("ListSnapshotBlocks", self.region, e);
                    if e.code() == Some("ResourceNotFoundException") {
                        return Ok(None);
                    }
                    return Err(format!("could not list the source snapshot {source}'s blocks: {e}"));
                }
            };
            if let Some(b) = page.blocks().iter().find(|b| b.block_index().is_some_and(|i| i >= index)) {
                return match (b.block_index(), b.block_token()) {
                    (Some(i), Some(token)) if i == index => {
                        self.read_block(client, source, index, token).await.map(Some)
                    }
                    _ => Err(format!("block {index} is written in the copy but not in the source snapshot {source}")),
                };
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => break,
            }
        }
        Err(format!("block {index} is written in the copy but not in the source snapshot {source}"))
    }
}

/// Spaces EBS direct API calls to [`EBS_CALLS_PER_SECOND`].
struct EbsPace {
    next: Mutex<Instant>,
}

impl EbsPace {
    fn new() -> EbsPace {
        EbsPace { next: Mutex::new(Instant::now()) }
    }

    async fn turn(&self) {
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let at = (*next).max(Instant::now());
            *next = at + Duration::from_secs(1) / EBS_CALLS_PER_SECOND;
            at
        };
        tokio::time::sleep_until(at).await;
    }
}

/// splitmix64, seeded from the clock and the snapshot: where a drill starts reading need not be
/// secret, only different each time.
struct Random(u64);

impl Random {
    fn seeded(snapshot: &str) -> Random {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let mut seed = nanos as u64;
        for b in snapshot.bytes() {
            seed = seed.rotate_left(5) ^ b as u64;
        }
        Random(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Deletes the drill volumes killed runs left behind (tagged `ebs-snapper:drill`, their
/// `DeleteOn` passed, not attached); adds what it did to `report`.
pub async fn sweep(
    ec2: &aws_sdk_ec2::Client,
    region: &str,
    budget: &TimeBudget,
    opts: ReportOptions,
    report: &mut RegionReport,
) {
    let listed =
        ec2.describe_volumes().filters(ec2_filter("tag-key", [TAG_DRILL.to_string()])).into_paginator().items().send();
    let volumes: Result<Vec<_>, _> = listed.collect::<Vec<_>>().await.into_iter().collect();
    let volumes = match volumes {
        Ok(v) => v,
        Err(e) => {
            let e = AwsError::call("DescribeVolumes", region, e);
            report.failed += 1;
            report.errors.push(format!("{region}: could not list drill volumes left behind: {e}"));
            return;
        }
    };
    let today = Utc::now().date_naive();
    for v in volumes {
        let Some(id) = v.volume_id() else { continue };
        let tag = |key: &str| v.tags().iter().find(|t| t.key() == Some(key)).and_then(|t| t.value());
        let delete_on = tag(DELETE_ON);
        let idle = matches!(v.state(), Some(VolumeState::Available) | Some(VolumeState::Error));
        // A drill volume names the snapshot it was made from, and its configuration; a volume
        // someone restored with a drilled snapshot's tags carries its result instead, and is
        // never taken for one.
        let made_by_a_drill = tag(TAG_DRILL).is_some_and(|s| s.starts_with("snap-") && v.snapshot_id() == Some(s))
            && tag(TAG_CONFIG).is_some();
        if !made_by_a_drill || !idle || !volume_expired(delete_on, today) {
            continue;
        }
        let executed = if opts.dry_run {
            None
        } else if !budget.allows_mutation() {
            Some(Executed::Deferred)
        } else {
            Some(match ec2.delete_volume().volume_id(id).send().await {
                Ok(_) => Executed::Done(None),
                Err(e) => {
                    let e = AwsError::call("DeleteVolume", region, e);
                    match e.code() {
                        Some("InvalidVolume.NotFound") => Executed::Skipped(e.to_string()),
                        _ => Executed::Failed(format!("could not delete the drill volume: {e}")),
                    }
                }
            })
        };
        report_swept(report, opts, id, delete_on.unwrap_or(""), executed);
    }
}

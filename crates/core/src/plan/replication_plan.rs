//! The replication planner (SPEC §6, §12): a region's own snapshots tagged for replication
//! (`replication_dst_region`) or for disaster-recovery copies (`ebs-snapper:copy-to`), plus the
//! listings of the peer regions those tags name -> copies to make, replicas to delete, and every
//! skip with its reason.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::configuration_set::ConfigurationSet;
use crate::ids::is_region_name;
use crate::inventory::{Snapshot, SnapshotState};
use crate::job::Job;
use crate::report::{Action, ActionReport, Executed, RegionReport, ReportOptions};
pub use crate::tags::destinations;
use crate::tags::{delete_on, parse_delete_on};
use crate::tags::{
    delete_on_value, DELETE_ON, REPLICATION_DST, REPLICATION_SNAPSHOT_ID, REPLICATION_SRC, TAG_CONFIG, TAG_COPY_TO,
    TAG_VAULT_TO, TAG_VOLUME,
};

/// Copies in flight (pending replicas) allowed per destination region.
pub const MAX_IN_FLIGHT: usize = 20;

/// What the planner knows of a peer region's own snapshots tagged for replication (a
/// [`PeerIndex`]), or the reason the listing failed. Only a complete, successful listing lets a
/// replica be deleted.
pub type PeerListing = Result<PeerIndex, String>;

/// What the planner keeps of a peer region's listing, built one snapshot at a time as its pages
/// come (a peer may list 200,000 snapshots; of each only this is kept, never the snapshot).
#[derive(Debug, Clone, Default)]
pub struct PeerIndex {
    /// The region being planned.
    region: String,
    /// The peer's snapshots whose destinations still name `region`: a replica here of one of
    /// them is in sync.
    sources_here: FxHashSet<Box<str>>,
    /// Replica id by the `replication_snapshot_id` it carries (the first listed, if several),
    /// of copies not in state `error`.
    by_source: FxHashMap<Box<str>, Box<str>>,
    /// Copies that AWS accepted and then failed (state `error`), by the source they name: the
    /// copy's id and AWS's reason. They hold no data (SPEC §10.11).
    errored: FxHashMap<Box<str>, (Box<str>, Box<str>)>,
    /// Replicas still pending: copies in flight into the peer.
    pending_copies: usize,
}

impl PeerIndex {
    /// An empty index of a peer of `region` (the region being planned).
    pub fn new(region: &str) -> PeerIndex {
        PeerIndex { region: region.to_string(), ..PeerIndex::default() }
    }

    /// The index of a whole listing.
    pub fn of<'s>(region: &str, listing: impl IntoIterator<Item = &'s Snapshot>) -> PeerIndex {
        let mut index = PeerIndex::new(region);
        for s in listing {
            index.add(s);
        }
        index
    }

    /// Takes in one listed snapshot.
    pub fn add(&mut self, s: &Snapshot) {
        if copies_to(s, &self.region) {
            self.sources_here.insert(s.id.as_str().into());
        }
        if let Some(source) = s.tags.get(REPLICATION_SNAPSHOT_ID) {
            if s.state == SnapshotState::Error {
                let message = s.state_message.as_deref().unwrap_or("AWS gave no reason");
                self.errored.entry(source.into()).or_insert_with(|| (s.id.as_str().into(), message.into()));
                return;
            }
            self.by_source.entry(source.into()).or_insert_with(|| s.id.as_str().into());
            if s.state == SnapshotState::Pending {
                self.pending_copies += 1;
            }
        }
    }

    /// Done adding: spare capacity given back.
    pub fn shrink_to_fit(&mut self) {
        self.sources_here.shrink_to_fit();
        self.by_source.shrink_to_fit();
        self.errored.shrink_to_fit();
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRequest {
    pub source_id: String,
    pub source_region: String,
    pub destination_region: String,
    pub description: String,
    /// Tags of the copy, applied atomically.
    pub tags: Vec<(String, String)>,
    /// The KMS key the copy is encrypted with (a disaster-recovery copy's `kms_key`).
    pub kms_key: Option<String>,
}

impl CopyRequest {
    /// The tag that names what the copy is a copy of, and its value: how a copy whose answer was
    /// lost is found. A share copy is named by `ebs-snapper:vault-share-of`; any other copy by
    /// `replication_snapshot_id`, which a vault copy made from a share copy gives as the
    /// original source.
    pub fn identity(&self) -> (&'static str, &str) {
        let tag = |key: &str| self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        if let Some(of) = tag(crate::tags::TAG_VAULT_SHARE_OF) {
            return (crate::tags::TAG_VAULT_SHARE_OF, of);
        }
        (REPLICATION_SNAPSHOT_ID, tag(REPLICATION_SNAPSHOT_ID).unwrap_or(&self.source_id))
    }
}

/// What a disaster-recovery copy takes from the configuration that made its source (SPEC §12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrCopy {
    pub config_id: String,
    /// The copy's `DeleteOn`: the source's start + the destination's `retention`; without one,
    /// the source's `DeleteOn`; without a readable one, the start + the configuration's longest
    /// tier retention.
    pub delete_on: NaiveDate,
    pub kms_key: Option<String>,
}

/// Why nothing is to be done (borrowed: a region may hold 200,000 snapshots in sync).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InSync<'a> {
    /// The source is copied already, as `copy` in `destination`.
    Copied { destination: &'a str, copy: &'a str },
    /// The replica's source is still in its region.
    SourcePresent { source_id: &'a str, source_region: &'a str },
}

impl std::fmt::Display for InSync<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InSync::Copied { destination, copy } => write!(f, "already copied to {destination} as {copy}"),
            InSync::SourcePresent { source_id, source_region } => {
                write!(f, "source {source_id} still in {source_region}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationAction<'a> {
    /// Copy this source into `destination_region`. The request is made by
    /// [`ReplicationPlan::copy_requests`] from the source read in full (the planner sees only
    /// the replication tags of each snapshot).
    Copy {
        destination_region: &'a str,
        /// `Some` for a disaster-recovery copy (`ebs-snapper:copy-to`), `None` for a replica.
        dr: Option<Box<DrCopy>>,
    },
    /// Delete this replica: its source is gone.
    DeleteReplica {
        source_region: &'a str,
        source_id: &'a str,
    },
    /// Nothing to do: the copy exists, or the replica's source still does.
    InSync(InSync<'a>),
    /// The snapshot, its volume or (for a replica) its source is in an `ignore` list.
    Ignored,
    Skip(String),
    /// Nothing can be done until an operator acts (a failure in the report).
    Failed(String),
    /// The source's copy in `destination` ended in state `error` after `CopySnapshot` returned
    /// (SPEC §10.11): a failure naming it with AWS's reason; the copy is deleted, and the source
    /// is copied again (its own `Copy` decision).
    ErroredCopy {
        destination: &'a str,
        copy: &'a str,
        message: &'a str,
    },
}

/// One local snapshot's fate. Borrows from the listings it was planned from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationDecision<'a> {
    /// The local snapshot the decision is about (a source or a replica).
    pub snapshot_id: &'a str,
    pub action: ReplicationAction<'a>,
}

impl ReplicationDecision<'_> {
    pub fn reason(&self) -> String {
        match &self.action {
            ReplicationAction::Copy { destination_region, dr: None } => {
                format!("copy to {destination_region} (not there yet)")
            }
            ReplicationAction::Copy { destination_region, dr: Some(dr) } => {
                format!("disaster-recovery copy to {destination_region} (configuration {})", dr.config_id)
            }
            ReplicationAction::Ignored => "ignored".to_string(),
            ReplicationAction::DeleteReplica { source_region, source_id } => {
                format!("replica of {source_id}, which is gone from {source_region}")
            }
            ReplicationAction::InSync(why) => why.to_string(),
            ReplicationAction::Skip(why) | ReplicationAction::Failed(why) => why.clone(),
            ReplicationAction::ErroredCopy { destination, copy, message } => {
                format!("its copy {copy} in {destination} ended in error ({message}); deleted and copied again")
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReplicationPlan<'a> {
    pub region: String,
    /// Replica deletions first (clean-up before copy), then copies, then the rest.
    pub decisions: Vec<ReplicationDecision<'a>>,
}

impl<'a> ReplicationPlan<'a> {
    /// The sources to copy, each once, in the plan's order: to be read in full for their
    /// requests.
    pub fn copy_sources(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.decisions
            .iter()
            .filter(|d| matches!(d.action, ReplicationAction::Copy { .. }))
            .filter(|d| seen.insert(d.snapshot_id))
            .map(|d| d.snapshot_id.to_string())
            .collect()
    }

    /// The request of each copy, made once from its source read in full (`sources`: what
    /// [`Self::copy_sources`] named and EC2 still listed), in the order of the plan's copies. A
    /// source gone since the planner's listing turns its copy into a skip.
    pub fn copy_requests(&mut self, sources: &[Snapshot]) -> Vec<CopyRequest> {
        let by_id: FxHashMap<&str, &Snapshot> = sources.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut requests = Vec::new();
        for d in &mut self.decisions {
            let ReplicationAction::Copy { destination_region, dr } = &d.action else { continue };
            match (by_id.get(d.snapshot_id), dr) {
                (Some(source), None) => requests.push(copy_request(&self.region, destination_region, source)),
                (Some(source), Some(dr)) => {
                    requests.push(dr_copy_request(&self.region, destination_region, source, dr))
                }
                (None, _) => d.action = ReplicationAction::Skip("the source is gone since it was listed".to_string()),
            }
        }
        requests
    }

    /// The copies in another region that ended in error, to delete there: (destination, copy).
    pub fn errored_copies(&self) -> Vec<(&'a str, &'a str)> {
        self.decisions
            .iter()
            .filter_map(|d| match d.action {
                ReplicationAction::ErroredCopy { destination, copy, .. } => Some((destination, copy)),
                _ => None,
            })
            .collect()
    }

    /// The replica deletions, in the plan's order.
    pub fn delete_ids(&self) -> Vec<&'a str> {
        self.decisions
            .iter()
            .filter(|d| matches!(d.action, ReplicationAction::DeleteReplica { .. }))
            .map(|d| d.snapshot_id)
            .collect()
    }

    /// The report of this plan. `deleted` and `copied`: what became of each of
    /// [`Self::delete_ids`] and [`Self::copy_requests`], in their order (empty for a dry run);
    /// `listing_failures`: the peer regions that could not be listed (and errored copies that
    /// could not be deleted), each a failure.
    pub fn report(
        &self,
        listing_failures: Vec<String>,
        deleted: Vec<Executed>,
        copied: Vec<Executed>,
        opts: ReportOptions,
    ) -> RegionReport {
        let mut report = RegionReport::new(Job::Replication, &self.region, opts.dry_run);
        report.failed += listing_failures.len();
        report.errors.extend(listing_failures);
        let (mut deleted, mut copied) = (deleted.into_iter(), copied.into_iter());
        for decision in &self.decisions {
            let listed = |action: Action| ActionReport::new(action, decision.snapshot_id, decision.reason());
            match &decision.action {
                ReplicationAction::DeleteReplica { .. } => {
                    if report.mutation(opts, Action::Delete, deleted.next(), listed) {
                        report.deleted += 1;
                    }
                }
                ReplicationAction::Copy { .. } => {
                    if report.mutation(opts, Action::Copy, copied.next(), listed) {
                        report.copied += 1;
                    }
                }
                ReplicationAction::InSync(_) => {
                    report.in_sync += 1;
                    report.note(opts, || listed(Action::InSync));
                }
                ReplicationAction::Ignored => {
                    report.ignored += 1;
                    report.note(opts, || listed(Action::Skip));
                }
                ReplicationAction::Skip(_) => {
                    report.skipped += 1;
                    report.note(opts, || listed(Action::Skip));
                }
                ReplicationAction::Failed(_) | ReplicationAction::ErroredCopy { .. } => {
                    report.failed += 1;
                    report.errors.push(format!("{}: {}", decision.snapshot_id, decision.reason()));
                    report.note(opts, || listed(Action::Skip));
                }
            }
        }
        report
    }
}

/// The peer regions the local snapshots' tags name (valid region names other than `region`).
pub fn peer_regions(region: &str, local: &[Snapshot]) -> BTreeSet<String> {
    local
        .iter()
        .flat_map(|s| destinations(s).into_iter().map(|(r, _)| r).chain(s.tags.get(REPLICATION_SRC)))
        .filter(|r| *r != region && is_region_name(r))
        .map(str::to_string)
        .collect()
}

/// Whether `source` (a listed snapshot) is still meant to have its copy in `region`.
fn copies_to(source: &Snapshot, region: &str) -> bool {
    destinations(source).iter().any(|(d, _)| *d == region)
}

/// Plans replication for `region`. `local`: the region's own snapshots tagged
/// `replication_dst_region`, `replication_src_region` or `ebs-snapper:copy-to`; `peers`: the
/// listing of each region in [`peer_regions`]; `configs`: what a disaster-recovery copy's
/// retention and key are read from (the configuration its source names); `ignored`: ids never
/// touched; `today` (UTC): a disaster-recovery copy that would already be expired is not made.
pub fn plan_replication<'a>(
    region: &str,
    local: &'a [Snapshot],
    peers: &'a BTreeMap<String, PeerListing>,
    configs: &ConfigurationSet,
    ignored: &BTreeSet<String>,
    today: NaiveDate,
) -> ReplicationPlan<'a> {
    let mut deletes = Vec::new();
    let mut copies = Vec::new();
    let mut skips = Vec::new();
    let indexes: BTreeMap<&str, Result<&PeerIndex, &String>> =
        peers.iter().map(|(peer, listing)| (peer.as_str(), listing.as_ref())).collect();
    let mut in_flight: BTreeMap<&str, usize> =
        indexes.iter().filter_map(|(peer, index)| Some((*peer, index.as_ref().ok()?.pending_copies))).collect();
    let mut sorted: Vec<&Snapshot> = local.iter().collect();
    sorted.sort_by(|a, b| a.start_time.cmp(&b.start_time).then_with(|| a.id.cmp(&b.id)));

    for s in sorted {
        let skip = |why: String| ReplicationDecision { snapshot_id: &s.id, action: ReplicationAction::Skip(why) };
        let is_ignored = ignored.contains(&s.id) || s.volume_id.as_ref().is_some_and(|v| ignored.contains(v));

        // Incoming: a replica in this region.
        if let Some(src_region) = s.tags.get(REPLICATION_SRC) {
            let Some(src_id) = s.tags.get(REPLICATION_SNAPSHOT_ID) else {
                skips.push(skip(format!("tagged {REPLICATION_SRC} without {REPLICATION_SNAPSHOT_ID}; kept")));
                continue;
            };
            if is_ignored || ignored.contains(src_id) {
                skips.push(ReplicationDecision { snapshot_id: &s.id, action: ReplicationAction::Ignored });
            } else if s.state != SnapshotState::Completed {
                skips.push(skip(format!("replica is {}, not completed", state_name(s.state))));
            } else if src_region == region || !is_region_name(src_region) {
                skips.push(skip(format!("source region {src_region:?} is not a valid peer; kept")));
            } else {
                match indexes.get(src_region) {
                    Some(Ok(source)) => {
                        if source.sources_here.contains(src_id) {
                            skips.push(ReplicationDecision {
                                snapshot_id: &s.id,
                                action: ReplicationAction::InSync(InSync::SourcePresent {
                                    source_id: src_id,
                                    source_region: src_region,
                                }),
                            });
                        } else if !s.is_copy {
                            // A snapshot of a volume restored from a replica carries its tags too.
                            skips.push(skip(format!(
                                "source {src_id} is gone, but this is not a copy (its volume is {}); kept",
                                s.volume_id.as_deref().unwrap_or("unknown")
                            )));
                        } else if s.tags.contains_key(DELETE_ON) {
                            skips.push(skip(format!(
                                "source {src_id} is gone; the copy carries {DELETE_ON} and lives by its own date"
                            )));
                        } else {
                            deletes.push(ReplicationDecision {
                                snapshot_id: &s.id,
                                action: ReplicationAction::DeleteReplica {
                                    source_region: src_region,
                                    source_id: src_id,
                                },
                            });
                        }
                    }
                    Some(Err(e)) => {
                        skips.push(skip(format!("source region {src_region} could not be listed ({e}); kept")))
                    }
                    None => skips.push(skip(format!("source region {src_region} was not listed; kept"))),
                }
            }
            continue;
        }

        // Outgoing: a source to copy, into each of its destinations.
        let wanted = destinations(s);
        if wanted.is_empty() {
            continue;
        }
        if is_ignored {
            skips.push(ReplicationDecision { snapshot_id: &s.id, action: ReplicationAction::Ignored });
            continue;
        }
        if s.state != SnapshotState::Completed {
            skips.push(skip(format!("source is {}, not completed", state_name(s.state))));
            continue;
        }
        if s.archived {
            // EC2 refuses to copy an archived snapshot (SPEC §10.12): it must be restored first.
            skips.push(skip("source is in the archive tier: it cannot be copied until restored".to_string()));
            continue;
        }
        for (dst, dr) in wanted {
            let decide = |action| ReplicationDecision { snapshot_id: &s.id, action };
            let tag = if dr { TAG_COPY_TO } else { REPLICATION_DST };
            if dst == region || !is_region_name(dst) {
                skips.push(decide(ReplicationAction::Skip(format!("{tag} {dst:?} is not another region"))));
                continue;
            }
            let destination = match indexes.get(dst) {
                Some(Ok(destination)) => destination,
                Some(Err(e)) => {
                    skips.push(decide(ReplicationAction::Skip(format!("destination {dst} could not be listed ({e})"))));
                    continue;
                }
                None => {
                    skips.push(decide(ReplicationAction::Skip(format!("destination {dst} was not listed"))));
                    continue;
                }
            };
            if let Some(copy) = destination.by_source.get(s.id.as_str()) {
                skips.push(decide(ReplicationAction::InSync(InSync::Copied { destination: dst, copy })));
                continue;
            }
            if let Some((copy, message)) = destination.errored.get(s.id.as_str()) {
                skips.push(decide(ReplicationAction::ErroredCopy { destination: dst, copy, message }));
            }
            let dr = if dr {
                match dr_copy(s, dst, configs) {
                    Ok(dr) if dr.delete_on <= today => {
                        skips.push(decide(ReplicationAction::Skip(format!(
                            "its copy in {dst} would already be expired (DeleteOn {}); not copied",
                            delete_on_value(dr.delete_on)
                        ))));
                        continue;
                    }
                    Ok(dr) => Some(dr),
                    Err(action) => {
                        skips.push(decide(action));
                        continue;
                    }
                }
            } else {
                None
            };
            if in_flight.get(dst).copied().unwrap_or(0) >= MAX_IN_FLIGHT {
                skips.push(decide(ReplicationAction::Skip(format!(
                    "{dst} already has {MAX_IN_FLIGHT} copies in flight"
                ))));
            } else {
                *in_flight.entry(dst).or_default() += 1;
                copies.push(decide(ReplicationAction::Copy { destination_region: dst, dr: dr.map(Box::new) }));
            }
        }
    }
    let mut decisions = deletes;
    decisions.extend(copies);
    decisions.extend(skips);
    ReplicationPlan { region: region.to_string(), decisions }
}

/// What the disaster-recovery copy of `s` into `dst` takes from the configuration that made
/// `s`, or why it is not made: a configuration that is gone, or no longer copies to `dst`, is a
/// skip (the operator changed it); one that is stored but invalid is a failure (its key and
/// retention cannot be known, and a copy without its key must not be made).
fn dr_copy(s: &Snapshot, dst: &str, configs: &ConfigurationSet) -> Result<DrCopy, ReplicationAction<'static>> {
    let Some(config_id) = s.tags.get(TAG_CONFIG) else {
        return Err(ReplicationAction::Failed(format!(
            "tagged {TAG_COPY_TO} without {TAG_CONFIG}: the copy's key and retention are unknown; not copied"
        )));
    };
    if configs.invalid.iter().any(|c| c.id == config_id) {
        return Err(ReplicationAction::Failed(format!(
            "configuration {config_id} is invalid: the copy's key and retention are unknown; not copied to {dst}"
        )));
    }
    let Some(named) = configs.get(config_id) else {
        return Err(ReplicationAction::Skip(format!("configuration {config_id} is gone; not copied to {dst}")));
    };
    let Some(destination) = named.configuration.copy_destination(dst) else {
        return Err(ReplicationAction::Skip(format!("configuration {config_id} no longer copies to {dst}")));
    };
    let source_date = s.tags.get(DELETE_ON).and_then(parse_delete_on);
    let delete_on = match (destination.retention, source_date) {
        (Some(retention), _) => delete_on(s.start_time, retention),
        (None, Some(date)) => date,
        (None, None) => {
            delete_on(s.start_time, named.configuration.tiers.iter().map(|t| t.retention).max().unwrap_or_default())
        }
    };
    Ok(DrCopy { config_id: config_id.to_string(), delete_on, kms_key: destination.kms_key.clone() })
}

/// The copy of `s` (in `region`) into `dst`: its description, and its tags without `DeleteOn` and
/// the replication tags, after the two that mark it a replica of `s`.
pub fn copy_request(region: &str, dst: &str, s: &Snapshot) -> CopyRequest {
    let mut tags =
        vec![(REPLICATION_SRC.to_string(), region.to_string()), (REPLICATION_SNAPSHOT_ID.to_string(), s.id.clone())];
    tags.extend(carried_tags(s, &[DELETE_ON, TAG_VAULT_TO, REPLICATION_DST, REPLICATION_SRC, REPLICATION_SNAPSHOT_ID]));
    request(region, dst, s, tags, None)
}

/// The source's tags a copy carries after its own: all but `excluded`.
/// A drill's result is never carried: it proves its own snapshot, not a copy (SPEC §17).
fn carried_tags<'a>(s: &'a Snapshot, excluded: &'a [&str]) -> impl Iterator<Item = (String, String)> + 'a {
    s.tags
        .iter()
        .filter(|(k, _)| !excluded.contains(k) && *k != crate::drill_plan::TAG_DRILL)
        .map(|(k, v)| (k.to_string(), v.to_string()))
}

/// The request copying `s` from `region` into `dst` with `tags` (cut to what EC2 takes).
fn request(
    region: &str,
    dst: &str,
    s: &Snapshot,
    mut tags: Vec<(String, String)>,
    kms_key: Option<String>,
) -> CopyRequest {
    tags.truncate(crate::tags::MAX_TAGS);
    CopyRequest {
        source_id: s.id.clone(),
        source_region: region.to_string(),
        destination_region: dst.to_string(),
        description: s.description.clone(),
        tags,
        kms_key,
    }
}

/// The disaster-recovery copy of `s` (in `region`) into `dst` (SPEC §12): the two replica tags,
/// its own `DeleteOn` (planned: the source's start + the destination's retention, else the
/// source's `DeleteOn`) and the source volume, then the source's other tags but
/// `ebs-snapper:copy-to` and the replication tags; encrypted with the destination's key when it
/// has one.
pub fn dr_copy_request(region: &str, dst: &str, s: &Snapshot, dr: &DrCopy) -> CopyRequest {
    let mut tags = vec![
        (REPLICATION_SRC.to_string(), region.to_string()),
        (REPLICATION_SNAPSHOT_ID.to_string(), s.id.clone()),
        (DELETE_ON.to_string(), delete_on_value(dr.delete_on)),
    ];
    if let Some(volume) = s.volume_id.as_deref().or(s.tags.get(TAG_VOLUME)) {
        tags.push((TAG_VOLUME.to_string(), volume.to_string()));
    }
    tags.extend(carried_tags(
        s,
        &[DELETE_ON, TAG_COPY_TO, TAG_VAULT_TO, TAG_VOLUME, REPLICATION_DST, REPLICATION_SRC, REPLICATION_SNAPSHOT_ID],
    ));
    request(region, dst, s, tags, dr.kms_key.clone())
}

pub(crate) fn state_name(state: SnapshotState) -> &'static str {
    match state {
        SnapshotState::Pending => "pending",
        SnapshotState::Completed => "completed",
        SnapshotState::Error => "in error",
        SnapshotState::Other => "in another state",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    /// A snapshot; one tagged as a replica is a copy, as EC2 reports it (no volume).
    fn snap(id: &str, state: SnapshotState, tags: &[(&str, &str)]) -> Snapshot {
        let b = crate::testing::snapshot(id).state(state).tags(tags).description(&format!("desc of {id}"));
        if tags.iter().any(|(k, _)| *k == REPLICATION_SRC) { b.copy() } else { b.volume("vol-1") }.build()
    }

    /// Peer listings as EC2 answers them, before they are indexed.
    type Listings = BTreeMap<String, Result<Vec<Snapshot>, String>>;

    fn plan(
        region: &str,
        local: &[Snapshot],
        peers: &Listings,
        ignored: &BTreeSet<String>,
    ) -> ReplicationPlan<'static> {
        plan_with(region, local, peers, &ConfigurationSet::default(), ignored)
    }

    /// Plans from copies of the listings that live as long as the test (a plan borrows them).
    fn plan_with(
        region: &str,
        local: &[Snapshot],
        peers: &Listings,
        configs: &ConfigurationSet,
        ignored: &BTreeSet<String>,
    ) -> ReplicationPlan<'static> {
        let local: &'static [Snapshot] = Box::leak(local.to_vec().into_boxed_slice());
        let indexed: BTreeMap<String, PeerListing> = peers
            .iter()
            .map(|(peer, listing)| {
                (peer.clone(), listing.as_ref().map(|l| PeerIndex::of(region, l)).map_err(String::clone))
            })
            .collect();
        plan_replication(
            region,
            local,
            Box::leak(Box::new(indexed)),
            configs,
            ignored,
            NaiveDate::from_ymd_opt(2020, 1, 1).unwrap(),
        )
    }

    fn peers(entries: Vec<(&str, Result<Vec<Snapshot>, String>)>) -> Listings {
        entries.into_iter().map(|(r, l)| (r.to_string(), l)).collect()
    }

    fn actions<'p>(p: &'p ReplicationPlan) -> Vec<(&'p str, String)> {
        p.decisions
            .iter()
            .map(|d| {
                let kind = match &d.action {
                    ReplicationAction::Copy { .. } => "copy".to_string(),
                    ReplicationAction::Ignored => "skip: ignored".to_string(),
                    ReplicationAction::DeleteReplica { .. } => "delete".to_string(),
                    ReplicationAction::InSync(why) => format!("in sync: {why}"),
                    ReplicationAction::Skip(why) => format!("skip: {why}"),
                    ReplicationAction::Failed(why) => format!("failed: {why}"),
                    ReplicationAction::ErroredCopy { .. } => format!("failed: {}", d.reason()),
                };
                (d.snapshot_id, kind)
            })
            .collect()
    }

    #[test]
    fn only_a_copy_without_delete_on_is_deleted_when_its_source_is_gone() {
        let tags = [(REPLICATION_SRC, "us-east-1"), (REPLICATION_SNAPSHOT_ID, "snap-gone")];
        let copy = snap("snap-copy", SnapshotState::Completed, &tags);
        // A snapshot of a volume restored from a replica: same tags, a real volume.
        let mut restored = snap("snap-restored", SnapshotState::Completed, &tags);
        restored.is_copy = false;
        restored.volume_id = Some("vol-restored".into());
        let mut dated = snap("snap-dated", SnapshotState::Completed, &tags);
        dated.tags.insert(DELETE_ON.into(), "2030-01-01".into());
        let p = plan("us-west-2", &[copy, restored, dated], &peers(vec![("us-east-1", Ok(vec![]))]), &BTreeSet::new());
        let got = actions(&p);
        assert_eq!(got[0], ("snap-copy", "delete".to_string()));
        assert!(
            got.iter()
                .any(|(id, a)| *id == "snap-restored" && a.contains("not a copy (its volume is vol-restored); kept")),
            "{got:?}"
        );
        assert!(got.iter().any(|(id, a)| *id == "snap-dated" && a.contains("lives by its own date")), "{got:?}");
        assert_eq!(got.iter().filter(|(_, a)| a == "delete").count(), 1);
    }

    #[test]
    fn copies_with_the_complete_tag_set_and_description() {
        let local = vec![snap(
            "snap-1",
            SnapshotState::Completed,
            &[("replication_dst_region", "us-east-1"), ("Name", "Snapshot_Name"), ("DeleteOn", "2020-01-05")],
        )];
        assert_eq!(peer_regions("us-west-1", &local), ["us-east-1".to_string()].into());
        let p = plan("us-west-1", &local, &peers(vec![("us-east-1", Ok(vec![]))]), &BTreeSet::new());
        let mut p = p;
        let requests = p.copy_requests(&local);
        let [c] = &requests[..] else { panic!("{:?}", p.decisions) };
        assert_eq!(c.destination_region, "us-east-1");
        assert_eq!(c.source_region, "us-west-1");
        assert_eq!(c.description, "desc of snap-1");
        assert_eq!(
            c.tags,
            vec![
                ("replication_src_region".to_string(), "us-west-1".to_string()),
                ("replication_snapshot_id".to_string(), "snap-1".to_string()),
                ("Name".to_string(), "Snapshot_Name".to_string()),
            ]
        );
    }

    #[test]
    fn a_source_gone_before_its_full_read_is_skipped_and_reported_so() {
        let tagged = [("replication_dst_region", "us-east-1")];
        let local =
            vec![snap("snap-1", SnapshotState::Completed, &tagged), snap("snap-2", SnapshotState::Completed, &tagged)];
        let mut p = plan("us-west-1", &local, &peers(vec![("us-east-1", Ok(vec![]))]), &BTreeSet::new());
        assert_eq!(p.copy_sources(), ["snap-1", "snap-2"]);
        // Only snap-2 is still there when the sources are read in full.
        let requests = p.copy_requests(&local[1..]);
        assert_eq!(requests.iter().map(|r| r.source_id.as_str()).collect::<Vec<_>>(), ["snap-2"]);
        assert_eq!(actions(&p)[0], ("snap-1", "skip: the source is gone since it was listed".to_string()));
        let opts = ReportOptions { dry_run: false, every_action: true };
        let report = p.report(
            vec!["could not list eu-west-1".into()],
            vec![],
            vec![Executed::Done(Some("snap-c".into()))],
            opts,
        );
        assert_eq!((report.copied, report.skipped, report.failed), (1, 1, 1));
        let copy = report.actions.iter().find(|a| a.action == Action::Copy).unwrap();
        assert_eq!((copy.resource.as_str(), copy.result_id.as_deref()), ("snap-2", Some("snap-c")));
        assert_eq!(report.summary_line(), "us-west-1: copied 1, deleted 0, in sync 0, ignored 0, skipped 1, failed 1");
    }

    #[test]
    fn pending_and_error_sources_are_skipped() {
        let local = vec![
            snap("p", SnapshotState::Pending, &[("replication_dst_region", "us-east-1")]),
            snap("e", SnapshotState::Error, &[("replication_dst_region", "us-east-1")]),
        ];
        let p = plan("us-west-1", &local, &peers(vec![("us-east-1", Ok(vec![]))]), &BTreeSet::new());
        assert_eq!(
            actions(&p),
            vec![
                ("e", "skip: source is in error, not completed".into()),
                ("p", "skip: source is pending, not completed".into())
            ]
        );
    }

    #[test]
    fn in_flight_cap_per_destination() {
        let in_flight: Vec<Snapshot> = (0..19)
            .map(|n| {
                snap(
                    &format!("copy-{n}"),
                    SnapshotState::Pending,
                    &[("replication_snapshot_id", "other"), ("replication_src_region", "eu-west-1")],
                )
            })
            .collect();
        let local: Vec<Snapshot> = (0..3)
            .map(|n| snap(&format!("src-{n}"), SnapshotState::Completed, &[("replication_dst_region", "us-east-1")]))
            .collect();
        let p = plan("us-west-1", &local, &peers(vec![("us-east-1", Ok(in_flight))]), &BTreeSet::new());
        let a = actions(&p);
        assert_eq!(a[0], ("src-0", "copy".to_string()));
        assert_eq!(a[1], ("src-1", "skip: us-east-1 already has 20 copies in flight".to_string()));
        assert_eq!(a[2].1, "skip: us-east-1 already has 20 copies in flight");
    }

    #[test]
    fn already_copied_ignored_and_bad_destinations() {
        let local = vec![
            snap("done", SnapshotState::Completed, &[("replication_dst_region", "us-east-1")]),
            snap("ign", SnapshotState::Completed, &[("replication_dst_region", "us-east-1")]),
            snap("self", SnapshotState::Completed, &[("replication_dst_region", "us-west-1")]),
            snap("junk", SnapshotState::Completed, &[("replication_dst_region", "moon")]),
            snap("unlisted", SnapshotState::Completed, &[("replication_dst_region", "eu-west-1")]),
        ];
        let existing = snap(
            "snap-copy",
            SnapshotState::Completed,
            &[("replication_snapshot_id", "done"), ("replication_src_region", "us-west-1")],
        );
        let p = plan(
            "us-west-1",
            &local,
            &peers(vec![("us-east-1", Ok(vec![existing])), ("eu-west-1", Err("AuthFailure".into()))]),
            &["ign".to_string()].into(),
        );
        let a = actions(&p);
        assert!(a.contains(&("done", "in sync: already copied to us-east-1 as snap-copy".into())));
        assert!(a.contains(&("ign", "skip: ignored".into())));
        assert!(a.contains(&("self", "skip: replication_dst_region \"us-west-1\" is not another region".into())));
        assert!(a.contains(&("junk", "skip: replication_dst_region \"moon\" is not another region".into())));
        assert!(a.contains(&("unlisted", "skip: destination eu-west-1 could not be listed (AuthFailure)".into())));
        assert!(!a.iter().any(|(_, k)| k == "copy"));
    }

    #[test]
    fn replica_of_a_gone_source_is_deleted_only_after_a_good_listing() {
        let replica = |id: &str, src: &str| {
            snap(
                id,
                SnapshotState::Completed,
                &[("replication_src_region", "us-west-1"), ("replication_snapshot_id", src)],
            )
        };
        let local = vec![
            replica("r-gone", "snap-gone"),
            replica("r-alive", "snap-alive"),
            replica("r-untagged-src", "snap-moved"),
        ];
        let source_side = vec![
            snap("snap-alive", SnapshotState::Completed, &[("replication_dst_region", "us-east-1")]),
            // Still exists but now replicates elsewhere: its copy here is no longer wanted.
            snap("snap-moved", SnapshotState::Completed, &[("replication_dst_region", "eu-west-1")]),
        ];
        let p = plan("us-east-1", &local, &peers(vec![("us-west-1", Ok(source_side))]), &BTreeSet::new());
        let a = actions(&p);
        assert_eq!(a[0], ("r-gone", "delete".to_string()), "deletes come first");
        assert!(a.contains(&("r-untagged-src", "delete".into())));
        assert!(a.contains(&("r-alive", "in sync: source snap-alive still in us-west-1".into())));

        let p = plan("us-east-1", &local, &peers(vec![("us-west-1", Err("timeout".into()))]), &BTreeSet::new());
        assert!(
            p.decisions.iter().all(|d| matches!(d.action, ReplicationAction::Skip(_) | ReplicationAction::Ignored)),
            "a failed listing deletes nothing"
        );
        let p = plan("us-east-1", &local, &BTreeMap::new(), &BTreeSet::new());
        assert!(
            p.decisions.iter().all(|d| matches!(d.action, ReplicationAction::Skip(_) | ReplicationAction::Ignored)),
            "no listing deletes nothing"
        );
    }

    #[test]
    fn replicas_that_are_pending_or_ignored_are_kept() {
        let local = vec![
            snap(
                "r-pending",
                SnapshotState::Pending,
                &[("replication_src_region", "us-west-1"), ("replication_snapshot_id", "gone")],
            ),
            snap(
                "r-ign",
                SnapshotState::Completed,
                &[("replication_src_region", "us-west-1"), ("replication_snapshot_id", "gone2")],
            ),
            snap("r-noid", SnapshotState::Completed, &[("replication_src_region", "us-west-1")]),
        ];
        let p = plan("us-east-1", &local, &peers(vec![("us-west-1", Ok(vec![]))]), &["r-ign".to_string()].into());
        assert!(
            p.decisions.iter().all(|d| matches!(d.action, ReplicationAction::Skip(_) | ReplicationAction::Ignored)),
            "{:?}",
            p.decisions
        );
    }

    fn dr_configs() -> ConfigurationSet {
        use crate::configuration_set::StoredConfiguration;
        let text = r#"{"match": {"tag:backup": "yes"},
            "snapshot": {"retention": "7 days", "minimum": 2, "frequency": "1 day"},
            "copies": [{"region": "us-west-2", "retention": "90 days", "minimum": 3,
                        "kms_key": "arn:aws:kms:us-west-2:111122223333:key/k1"},
                       {"region": "eu-west-1"}]}"#;
        ConfigurationSet::from_stored(&[
            StoredConfiguration { id: "dr".into(), text: text.into() },
            StoredConfiguration { id: "broken".into(), text: "{".into() },
        ])
    }

    fn dr_source(id: &str, config: &str, copy_to: &str) -> Snapshot {
        let mut s = snap(
            id,
            SnapshotState::Completed,
            &[(DELETE_ON, "2020-01-08"), (TAG_CONFIG, config), (TAG_COPY_TO, copy_to), ("Name", "web")],
        );
        s.volume_id = Some("vol-src".into());
        s
    }

    #[test]
    fn a_dr_copy_goes_to_each_destination_with_its_own_date_key_and_volume() {
        let configs = dr_configs();
        let mut drilled = dr_source("snap-a", "dr", "us-west-2,eu-west-1");
        // A source's drill proves the source, not its copies (SPEC §17).
        drilled.tags.insert(crate::drill_plan::TAG_DRILL.into(), "2020-01-02T00:00:00Z ok 5s".into());
        let local = [drilled];
        let listings = peers(vec![("us-west-2", Ok(vec![])), ("eu-west-1", Ok(vec![]))]);
        assert_eq!(peer_regions("us-east-1", &local), ["eu-west-1".to_string(), "us-west-2".to_string()].into());
        let mut p = plan_with("us-east-1", &local, &listings, &configs, &BTreeSet::new());
        assert_eq!(p.copy_sources(), ["snap-a"], "a source is read once for all its destinations");
        let requests = p.copy_requests(&local);
        assert_eq!(requests.len(), 2);
        let tags = |r: &CopyRequest| r.tags.iter().cloned().collect::<BTreeMap<String, String>>();
        let west = requests.iter().find(|r| r.destination_region == "us-west-2").unwrap();
        assert_eq!(west.kms_key.as_deref(), Some("arn:aws:kms:us-west-2:111122223333:key/k1"));
        let w = tags(west);
        assert_eq!(w[DELETE_ON], "2020-03-31", "copy date + 90 days");
        assert_eq!(w[TAG_VOLUME], "vol-src");
        assert_eq!(w[TAG_CONFIG], "dr");
        assert_eq!(w[REPLICATION_SRC], "us-east-1");
        assert_eq!(w[REPLICATION_SNAPSHOT_ID], "snap-a");
        assert_eq!(w["Name"], "web");
        assert!(!w.contains_key(TAG_COPY_TO) && !w.contains_key(REPLICATION_DST), "{w:?}");
        assert!(!w.contains_key(crate::drill_plan::TAG_DRILL), "{w:?}");
        let eu = requests.iter().find(|r| r.destination_region == "eu-west-1").unwrap();
        assert_eq!(eu.kms_key, None);
        assert_eq!(tags(eu)[DELETE_ON], "2020-01-08", "no retention: the source's DeleteOn");
        assert_eq!(tags(eu)[TAG_VOLUME], "vol-src");
    }

    #[test]
    fn a_dr_copy_is_dated_from_its_source_and_not_made_once_it_would_be_expired() {
        // SPEC §12: DeleteOn = the source's StartTime + the destination's retention, and a
        // source whose copy would already be expired is not copied (so a copy the destination
        // deleted is never made again).
        let configs = dr_configs();
        let mut old = dr_source("snap-old", "dr", "us-west-2,eu-west-1");
        old.start_time = Utc.with_ymd_and_hms(2019, 10, 1, 6, 0, 0).unwrap(); // + 90 days = 2019-12-30
        let local = [old];
        let listings = peers(vec![("us-west-2", Ok(vec![])), ("eu-west-1", Ok(vec![]))]);
        let mut p = plan_with("us-east-1", &local, &listings, &configs, &BTreeSet::new());
        let a = actions(&p);
        assert!(
            a.contains(&(
                "snap-old",
                "skip: its copy in us-west-2 would already be expired (DeleteOn 2019-12-30); not copied".into()
            )),
            "{a:?}"
        );
        // eu-west-1 has no retention: the source's DeleteOn (2020-01-08) is still ahead.
        let requests = p.copy_requests(&local);
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].destination_region, "eu-west-1");

        let mut recent = dr_source("snap-new", "dr", "us-west-2");
        recent.start_time = Utc.with_ymd_and_hms(2019, 12, 20, 23, 0, 0).unwrap();
        let local = [recent];
        let mut p = plan_with("us-east-1", &local, &peers(vec![("us-west-2", Ok(vec![]))]), &configs, &BTreeSet::new());
        let requests = p.copy_requests(&local);
        let delete_on = requests[0].tags.iter().find(|(k, _)| k == DELETE_ON).map(|(_, v)| v.as_str());
        assert_eq!(delete_on, Some("2020-03-19"), "the source's start + 90 days, not the copy date's");
    }

    #[test]
    fn a_copy_that_ended_in_error_is_not_in_sync_it_is_reported_deleted_and_made_again() {
        // SPEC §10.11: a copy AWS accepted and then failed (a KMS grant missing) holds no data.
        let configs = dr_configs();
        let local = [dr_source("snap-a", "dr", "us-west-2")];
        let mut failed = snap(
            "snap-bad",
            SnapshotState::Error,
            &[(REPLICATION_SRC, "us-east-1"), (REPLICATION_SNAPSHOT_ID, "snap-a"), (DELETE_ON, "2020-03-31")],
        );
        failed.state_message = Some("Given key ID is not accessible".into());
        let p =
            plan_with("us-east-1", &local, &peers(vec![("us-west-2", Ok(vec![failed]))]), &configs, &BTreeSet::new());
        let a = actions(&p);
        assert!(a.contains(&("snap-a", "copy".into())), "copied again: {a:?}");
        assert!(
            a.contains(&(
                "snap-a",
                "failed: its copy snap-bad in us-west-2 ended in error (Given key ID is not accessible); deleted and \
                 copied again"
                    .into()
            )),
            "{a:?}"
        );
        assert_eq!(p.errored_copies(), [("us-west-2", "snap-bad")]);
        let report = p.report(Vec::new(), Vec::new(), Vec::new(), ReportOptions { dry_run: true, every_action: false });
        assert_eq!(report.failed, 1);
        assert_eq!(
            report.errors,
            ["snap-a: its copy snap-bad in us-west-2 ended in error (Given key ID is not accessible); deleted and copied \
              again"]
        );
    }

    #[test]
    fn a_dr_copy_whose_configuration_is_gone_is_skipped_and_an_invalid_one_fails() {
        let configs = dr_configs();
        let local = [
            dr_source("snap-gone", "deleted", "us-west-2"),
            dr_source("snap-broken", "broken", "us-west-2"),
            dr_source("snap-moved", "dr", "ap-south-1"),
        ];
        let listings = peers(vec![("us-west-2", Ok(vec![])), ("ap-south-1", Ok(vec![]))]);
        let p = plan_with("us-east-1", &local, &listings, &configs, &BTreeSet::new());
        let a = actions(&p);
        assert!(
            a.contains(&("snap-gone", "skip: configuration deleted is gone; not copied to us-west-2".into())),
            "{a:?}"
        );
        assert!(a
            .iter()
            .any(|(id, x)| *id == "snap-broken" && x.starts_with("failed: configuration broken is invalid")));
        assert!(a.contains(&("snap-moved", "skip: configuration dr no longer copies to ap-south-1".into())), "{a:?}");
        let report = p.report(Vec::new(), Vec::new(), Vec::new(), ReportOptions { dry_run: false, every_action: true });
        assert_eq!((report.failed, report.skipped, report.copied), (1, 2, 0));
        assert!(report.errors[0].starts_with("snap-broken: configuration broken is invalid"), "{:?}", report.errors);
    }

    #[test]
    fn one_copy_per_region_when_both_tags_name_it_and_a_present_source_keeps_its_copy_in_sync() {
        let configs = dr_configs();
        let mut both = dr_source("snap-b", "dr", "us-west-2");
        both.tags.insert(REPLICATION_DST.into(), "us-west-2".into());
        let p = plan_with(
            "us-east-1",
            std::slice::from_ref(&both),
            &peers(vec![("us-west-2", Ok(vec![]))]),
            &configs,
            &BTreeSet::new(),
        );
        assert_eq!(p.decisions.len(), 1);
        assert!(matches!(&p.decisions[0].action, ReplicationAction::Copy { dr: Some(_), .. }), "{:?}", p.decisions);

        // In the destination: the copy of a source still tagged for it is in sync; once the
        // source is gone the copy lives by its own DeleteOn.
        let mut copy = snap(
            "snap-copy",
            SnapshotState::Completed,
            &[(REPLICATION_SRC, "us-east-1"), (REPLICATION_SNAPSHOT_ID, "snap-b"), (DELETE_ON, "2020-03-31")],
        );
        copy.is_copy = true;
        let present = plan_with(
            "us-west-2",
            std::slice::from_ref(&copy),
            &peers(vec![("us-east-1", Ok(vec![dr_source("snap-b", "dr", "us-west-2")]))]),
            &configs,
            &BTreeSet::new(),
        );
        assert!(matches!(present.decisions[0].action, ReplicationAction::InSync(_)), "{:?}", present.decisions);
        let gone = plan_with("us-west-2", &[copy], &peers(vec![("us-east-1", Ok(vec![]))]), &configs, &BTreeSet::new());
        assert!(actions(&gone)[0].1.contains("lives by its own date"), "{:?}", gone.decisions);
    }
}

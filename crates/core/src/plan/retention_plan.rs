//! The retention planner: configurations + inventory + today -> one decision per snapshot tagged
//! `DeleteOn` (SPEC §5).
//!
//! The Python tool had two bugs this planner is built against: it compared every expired
//! snapshot with the count taken *before* deleting (ten expired snapshots with `minimum: 5` were
//! all deleted), and it only looked at `DeleteOn` dates of the last eight days. Here each
//! planned delete lowers the volume's count, and any date on or before today is expired.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use chrono::NaiveDate;

use crate::config::{largest_minimum, Tier, DEFAULT_TIER};
use crate::configuration_set::ConfigurationSet;
use crate::inventory::{Inventory, Snapshot, SnapshotState};
use crate::job::Job;
use crate::lock_plan::{decide, start_of, stronger, LockDecision, LockRequest};
use crate::report::{Action, ActionReport, Executed, RegionReport, ReportOptions};
pub use crate::tags::parse_delete_on;
use crate::tags::{DELETE_ON, REPLICATION_SRC, TAG_CONFIG, TAG_INSTANCE, TAG_VOLUME};
use crate::tiers::{carried_by, TierSet};

/// How far ahead the lock of a snapshot a tier's minimum holds must reach: 00:00 UTC of today +
/// the longer of 2 days and twice the tier's longest gap between snapshots, so that it outlasts
/// the next clean runs that would extend it again.
pub fn minimum_lock_horizon(tier: &Tier, today: NaiveDate) -> NaiveDate {
    let gap = tier.frequency.longest_gap(start_of(today)) * 2;
    let days = gap.num_days() + i64::from(gap.num_seconds() % 86_400 != 0);
    today.checked_add_signed(chrono::TimeDelta::days(days.max(2))).unwrap_or(NaiveDate::MAX)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    /// `DeleteOn` is after today.
    NotExpired(NaiveDate),
    /// `DeleteOn` is not a `YYYY-MM-DD` date.
    Unparseable(String),
    /// Not `completed` (pending, error...): never deleted, not counted.
    NotCompleted(SnapshotState),
    /// The snapshot, its volume or its instance is ignored.
    Ignored(String),
    /// Deleting it would leave fewer than the minimum.
    Minimum { minimum: u32, count: usize },
    /// Among the newest `minimum` completed snapshots of a tier it carries (`tier` is named for
    /// a configuration written with `schedules`).
    Newest { tier: Option<String>, minimum: u32 },
    /// Already in EC2's archive storage tier.
    Archived,
    /// An orphan whose minimum cannot be determined, and `ignore_retention` is off.
    Undetermined,
    /// Due for deletion, but locked (SPEC §16): never sent to `DeleteSnapshot` while its lock
    /// holds (`None`: EC2 gave no date).
    Locked(Option<chrono::DateTime<chrono::Utc>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delete {
    /// Expired and more than the minimum remain.
    Expired { delete_on: NaiveDate, count_before: usize, minimum: u32 },
    /// Expired orphan with undetermined minimum, deleted because `ignore_retention` is set.
    IgnoreRetention { delete_on: NaiveDate },
    /// Expired, and not among the newest `minimum` of any tier it carries (`schedules`).
    ExpiredTiers { delete_on: NaiveDate, tiers: String },
    /// In state `error` (it holds no data), and a newer snapshot of its volume completed (or one
    /// started in the same second, EC2's resolution): the
    /// snapshot job reported it when it was the newest (SPEC §10.11), and nothing is left to
    /// report or keep. Deleted whatever its `DeleteOn`.
    Errored,
}

/// Why a snapshot moves to the archive storage tier (SPEC §11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// The tier with `archive: true` it carries.
    pub tier: String,
    pub delete_on: NaiveDate,
}

/// A snapshot is archived only when it is kept at least this long still: EC2 charges an
/// archived snapshot for 90 days at least, and restoring one takes hours.
pub const ARCHIVE_MIN_DAYS: i64 = 90;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetentionAction {
    Delete(Delete),
    /// Kept, in the archive storage tier from now on (`ModifySnapshotTier`).
    Archive(Archive),
    Keep(Keep),
}

/// One snapshot's fate. Borrows from the inventory it was planned from: a region may hold
/// 100,000 snapshots, and a decision is planned for each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionDecision<'a> {
    pub snapshot_id: &'a str,
    pub volume_id: Option<&'a str>,
    /// The configuration whose minimum applied, when one did.
    pub config_id: Option<&'a str>,
    pub action: RetentionAction,
}

impl RetentionDecision<'_> {
    pub fn is_delete(&self) -> bool {
        matches!(self.action, RetentionAction::Delete(_))
    }

    /// The reason, for people.
    pub fn reason(&self) -> String {
        match &self.action {
            RetentionAction::Delete(Delete::Expired { delete_on, count_before, minimum }) => {
                format!("expired {delete_on}, {count_before} completed > minimum {minimum}")
            }
            RetentionAction::Delete(Delete::IgnoreRetention { delete_on }) => {
                format!("expired {delete_on}, minimum unknown, ignore_retention is set")
            }
            RetentionAction::Delete(Delete::ExpiredTiers { delete_on, tiers }) => {
                format!("expired {delete_on}, not among the newest minimum of tier {tiers}")
            }
            RetentionAction::Delete(Delete::Errored) => {
                "in state error, older than a completed snapshot of its volume".to_string()
            }
            RetentionAction::Archive(Archive { tier, delete_on }) => {
                format!("archive (tier {tier}): not the newest, kept until {delete_on}")
            }
            RetentionAction::Keep(Keep::Newest { tier: Some(tier), minimum }) => {
                format!("expired, but among the newest {minimum} of tier {tier}")
            }
            RetentionAction::Keep(Keep::Newest { tier: None, minimum }) => {
                format!("expired, but among the newest {minimum} completed")
            }
            RetentionAction::Keep(Keep::Archived) => "in the archive tier, not expired".to_string(),
            RetentionAction::Keep(Keep::NotExpired(d)) => format!("not expired until {d}"),
            RetentionAction::Keep(Keep::Unparseable(t)) => format!("DeleteOn {t:?} is not a date (YYYY-MM-DD); kept"),
            RetentionAction::Keep(Keep::NotCompleted(s)) => format!("state {s:?}, not completed"),
            RetentionAction::Keep(Keep::Ignored(what)) => format!("{what} is ignored"),
            RetentionAction::Keep(Keep::Minimum { minimum, count }) => {
                format!("expired, but {count} completed <= minimum {minimum}")
            }
            RetentionAction::Keep(Keep::Locked(Some(until))) => {
                format!("locked until {}", until.format("%Y-%m-%dT%H:%M:%SZ"))
            }
            RetentionAction::Keep(Keep::Locked(None)) => "locked (EC2 gives no end date)".to_string(),
            RetentionAction::Keep(Keep::Undetermined) => {
                "expired, but the volume's minimum is unknown (no configuration); set ignore_retention to delete"
                    .to_string()
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RetentionPlan<'a> {
    pub region: String,
    pub decisions: Vec<RetentionDecision<'a>>,
    /// Locks to extend (SPEC §16, "the minimum stays locked"): of the snapshots a tier's minimum
    /// holds, those whose lock ends within [`minimum_lock_horizon`].
    pub locks: Vec<LockDecision>,
    pub warnings: Vec<String>,
}

impl<'a> RetentionPlan<'a> {
    pub fn deletes(&self) -> impl Iterator<Item = &RetentionDecision<'a>> {
        self.decisions.iter().filter(|d| d.is_delete())
    }

    /// The ids to delete, in the plan's order.
    pub fn delete_ids(&self) -> Vec<&'a str> {
        self.deletes().map(|d| d.snapshot_id).collect()
    }

    /// The ids to move to the archive tier, in the plan's order.
    pub fn archive_ids(&self) -> Vec<&'a str> {
        self.decisions
            .iter()
            .filter(|d| matches!(d.action, RetentionAction::Archive(_)))
            .map(|d| d.snapshot_id)
            .collect()
    }

    /// The locks to send, in the plan's order.
    pub fn lock_requests(&self) -> Vec<&LockRequest> {
        crate::lock_plan::requests(&self.locks)
    }

    /// The report of this plan. `deleted`: what became of each of [`Self::delete_ids`], in that
    /// order (empty for a dry run); `archived` and `locked` likewise for [`Self::archive_ids`] and
    /// [`Self::lock_requests`]. `failed_configs`: as for the snapshot plan.
    pub fn report<'b>(
        &self,
        failed_configs: impl IntoIterator<Item = (&'b String, &'b String)>,
        deleted: Vec<Executed>,
        archived: Vec<Executed>,
        locked: Vec<Executed>,
        opts: ReportOptions,
    ) -> RegionReport {
        let mut report = RegionReport::for_plan(Job::Clean, &self.region, opts, &self.warnings, failed_configs);
        let mut deleted = deleted.into_iter();
        let mut archived = archived.into_iter();
        for decision in &self.decisions {
            let listed = |action: Action| {
                let reason = match decision.volume_id {
                    Some(v) => format!("{} (volume {v})", decision.reason()),
                    None => decision.reason(),
                };
                let mut a = ActionReport::new(action, decision.snapshot_id, reason);
                a.config_id = decision.config_id.map(str::to_string);
                a
            };
            match &decision.action {
                RetentionAction::Delete(_) => {
                    if report.mutation(opts, Action::Delete, deleted.next(), listed) {
                        report.deleted += 1;
                    }
                }
                RetentionAction::Archive(_) => {
                    if report.mutation(opts, Action::Archive, archived.next(), listed) {
                        report.archived += 1;
                    }
                }
                RetentionAction::Keep(keep) => {
                    if matches!(keep, Keep::Ignored(_)) {
                        report.ignored += 1;
                    }
                    report.kept += 1;
                    report.note(opts, || listed(Action::Keep));
                }
            }
        }
        crate::lock_plan::report_locks(&mut report, opts, &self.locks, locked, None);
        report
    }
}

/// The source volume of a disaster-recovery copy (a copy carrying `replication_src_region` and
/// `ebs-snapper:volume-id`), by which its copies are kept together.
fn copied_volume(s: &Snapshot) -> Option<&str> {
    s.tags.get(REPLICATION_SRC)?;
    s.tags.get(TAG_VOLUME)
}

/// Why a snapshot is ignored, if it is: its id, its volume or its instance is ignored.
fn ignored_reason(s: &Snapshot, ignored: &BTreeSet<String>, ignored_volumes: &BTreeSet<String>) -> Option<String> {
    if ignored.is_empty() && ignored_volumes.is_empty() {
        return None; // the usual case: no tag lookup per snapshot
    }
    if ignored.contains(&s.id) {
        return Some(format!("snapshot {}", s.id));
    }
    if let Some(v) = s.volume_id.as_ref().filter(|v| ignored.contains(*v) || ignored_volumes.contains(*v)) {
        return Some(format!("volume {v}"));
    }
    s.tags.get(TAG_INSTANCE).filter(|inst| ignored.contains(*inst)).map(|inst| format!("instance {inst}"))
}

/// Plans the clean-up of one region.
///
/// `inventory.snapshots` must hold the account's own snapshots tagged `DeleteOn` (others are
/// ignored here), `inventory.matched`/`instances` the instances each configuration matched, and
/// `ignored_volumes` the volumes of ignored instances.
///
/// Decisions come in a stable order, the order of planning: by volume, then oldest first, then
/// the earlier `DeleteOn`, then by id. Expired snapshots are deleted in that order, each delete
/// lowering its volume's count, so the newest expired ones are those the minimum keeps.
pub fn plan_retention<'a>(
    configs: &'a ConfigurationSet,
    inventory: &'a Inventory,
    ignored_volumes: &BTreeSet<String>,
    today: NaiveDate,
) -> RetentionPlan<'a> {
    let ignored = configs.ignored_ids();
    let ignore_retention = configs.ignore_retention();
    // A configuration whose instances could not be listed may own any volume here: every
    // minimum is at least its minimum, and no orphan is deleted on `ignore_retention` this run.
    let any_failed = !inventory.failed_configs.is_empty();
    let floor = inventory
        .failed_configs
        .keys()
        .filter_map(|id| configs.get(id))
        .map(|named| named.configuration.largest_minimum())
        .max()
        .unwrap_or(0);
    let mut plan = RetentionPlan { region: inventory.region.clone(), ..Default::default() };
    if any_failed {
        plan.warnings.push(format!(
            "configuration(s) {} could not be evaluated: every volume keeps at least {floor} snapshots and no orphan is \
             deleted on ignore_retention this run",
            inventory.failed_configs.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }

    // Volume -> the configuration that owns its instance (the one owner rule,
    // `Inventory::claims`); a multi-attached volume goes with its first owned instance.
    let mut volume_owner: FxHashMap<&str, &str> = FxHashMap::default();
    for &(named, instance_id) in &inventory.claims(configs).owned {
        if let Some(instance) = inventory.instances.get(instance_id) {
            for att in &instance.volumes {
                volume_owner.entry(att.volume_id.as_str()).or_insert(named.id.as_str());
            }
        }
    }

    // A disaster-recovery copy (SPEC §12) is kept by the copies of its source volume in this
    // region: one tier whose minimum is the destination's (else the configuration's largest).
    let copy_tiers: FxHashMap<&str, [Tier; 1]> = configs
        .valid
        .iter()
        .map(|named| {
            let c = &named.configuration;
            let tier = Tier {
                name: DEFAULT_TIER.to_string(),
                retention: c.tiers[0].retention,
                minimum: c.copy_minimum(&inventory.region),
                frequency: c.tiers[0].frequency.clone(),
                archive: false,
                lock: c.copy_destination(&inventory.region).and_then(|d| d.lock),
            };
            (named.id.as_str(), [tier])
        })
        .collect();

    // Only snapshots carrying DeleteOn are considered. They are grouped by volume (a snapshot
    // without a volume is its own group; a disaster-recovery copy goes with the copies of its
    // source volume, `ebs-snapper:volume-id`) with one hash lookup each, then laid out group by
    // group in one flat array, so the whole plan is a few passes over indices.
    struct Tagged<'s> {
        snapshot: &'s Snapshot,
        raw: &'s str,
        delete_on: Option<NaiveDate>,
    }
    let mut group_of: FxHashMap<&str, u32> = FxHashMap::default();
    let mut group_keys: Vec<&str> = Vec::new();
    let mut tagged: Vec<(u32, Tagged)> = Vec::new();
    for s in &inventory.snapshots {
        let Some(raw) = s.tags.get(DELETE_ON) else { continue };
        let key = match copied_volume(s) {
            Some(source_volume) => source_volume,
            None => s.volume_id.as_deref().unwrap_or(&s.id),
        };
        let next = group_keys.len() as u32;
        let group = *group_of.entry(key).or_insert(next);
        if group == next {
            group_keys.push(key);
        }
        tagged.push((group, Tagged { snapshot: s, raw, delete_on: parse_delete_on(raw) }));
    }
    drop(group_of);
    // Counting sort by group: `members[start[g]..start[g + 1]]` are group g's snapshots.
    let mut start = vec![0u32; group_keys.len() + 1];
    for (g, _) in &tagged {
        start[*g as usize + 1] += 1;
    }
    for g in 0..group_keys.len() {
        start[g + 1] += start[g];
    }
    let mut fill = start.clone();
    let mut members: Vec<u32> = vec![0; tagged.len()];
    for (i, (g, _)) in tagged.iter().enumerate() {
        members[fill[*g as usize] as usize] = i as u32;
        fill[*g as usize] += 1;
    }
    drop(fill);
    let mut order: Vec<u32> = (0..group_keys.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| group_keys[a as usize].cmp(group_keys[b as usize]));

    plan.decisions.reserve(tagged.len());
    for g in order {
        let group = &mut members[start[g as usize] as usize..start[g as usize + 1] as usize];
        group.sort_unstable_by(|&a, &b| {
            let (x, y) = (&tagged[a as usize].1, &tagged[b as usize].1);
            (x.snapshot.start_time, x.delete_on, x.raw, &x.snapshot.id).cmp(&(
                y.snapshot.start_time,
                y.delete_on,
                y.raw,
                &y.snapshot.id,
            ))
        });
        let mut count =
            group.iter().filter(|&&i| tagged[i as usize].1.snapshot.state == SnapshotState::Completed).count();
        // One minimum for the whole volume: the configuration owning it now, or for an orphan
        // (and for disaster-recovery copies, whose volume is in another region) the live
        // configuration with the largest minimum among those its snapshots name (so the newest
        // are always the ones kept, whichever configuration made them).
        let copies = copied_volume(tagged[group[0] as usize].1.snapshot).is_some();
        let volume_config = tagged[group[0] as usize]
            .1
            .snapshot
            .volume_id
            .as_deref()
            .filter(|_| !copies)
            .and_then(|v| volume_owner.get(v))
            .and_then(|id| configs.get(id))
            .or_else(|| {
                group
                    .iter()
                    .filter_map(|&i| tagged[i as usize].1.snapshot.tags.get(TAG_CONFIG))
                    .filter_map(|id| configs.get(id))
                    .max_by(|a, b| {
                        let minimum = |n: &crate::configuration_set::NamedConfiguration| {
                            if copies {
                                n.configuration.copy_minimum(&inventory.region)
                            } else {
                                n.configuration.largest_minimum()
                            }
                        };
                        minimum(a).cmp(&minimum(b)).then(b.id.cmp(&a.id))
                    })
            });
        // Per tier, the newest `minimum` completed snapshots carrying it are protected (SPEC
        // §11; for a `snapshot` configuration, the one tier holds every snapshot of the volume).
        let tiers: &[Tier] = match volume_config {
            Some(named) if copies => copy_tiers.get(named.id.as_str()).map(|t| t.as_slice()).unwrap_or(&[]),
            Some(named) => named.configuration.tiers.as_slice(),
            None => &[],
        };
        let carried: Vec<TierSet> =
            group.iter().map(|&i| carried_by(&tagged[i as usize].1.snapshot.tags, tiers)).collect();
        let mut protected: Vec<TierSet> = vec![TierSet::default(); group.len()];
        let mut newest_completed: Option<usize> = None;
        {
            let mut quota: Vec<u32> = tiers.iter().map(|t| t.minimum.max(floor)).collect();
            for (k, &i) in group.iter().enumerate().rev() {
                if tagged[i as usize].1.snapshot.state != SnapshotState::Completed {
                    continue;
                }
                newest_completed.get_or_insert(k);
                for t in carried[k].indices() {
                    if let Some(q) = quota.get_mut(t).filter(|q| **q > 0) {
                        *q -= 1;
                        protected[k].insert(t);
                    }
                }
            }
        }
        let archive_from =
            today.checked_add_signed(chrono::TimeDelta::days(ARCHIVE_MIN_DAYS)).unwrap_or(NaiveDate::MAX);
        for (k, &i) in group.iter().enumerate() {
            let Tagged { snapshot: s, raw, delete_on } = tagged[i as usize].1;
            let mut config_id = None;
            let protecting = protected[k].indices().next().and_then(|t| tiers.get(t));
            let action = if let Some(what) = ignored_reason(s, &ignored, ignored_volumes) {
                RetentionAction::Keep(Keep::Ignored(what))
            } else if s.state == SnapshotState::Error
                && newest_completed
                    .is_some_and(|newest| s.start_time <= tagged[group[newest] as usize].1.snapshot.start_time)
            {
                RetentionAction::Delete(Delete::Errored)
            } else if s.state != SnapshotState::Completed {
                RetentionAction::Keep(Keep::NotCompleted(s.state))
            } else {
                match delete_on {
                    None => {
                        plan.warnings
                            .push(format!("snapshot {} has DeleteOn {raw:?}, which is not a date; it is kept", s.id));
                        RetentionAction::Keep(Keep::Unparseable(raw.to_string()))
                    }
                    Some(d) if d > today => {
                        config_id = volume_config.map(|named| named.id.as_str());
                        if s.archived {
                            RetentionAction::Keep(Keep::Archived)
                        } else {
                            // Archived: a tier with `archive` it carries, not the volume's newest, kept
                            // 90 days more at least, and no tier without `archive` holding it.
                            let archive_tier = carried[k].indices().filter_map(|t| tiers.get(t)).find(|t| t.archive);
                            let held = protected[k].indices().filter_map(|t| tiers.get(t)).any(|t| !t.archive);
                            match archive_tier {
                                Some(tier) if newest_completed != Some(k) && d >= archive_from && !held => {
                                    RetentionAction::Archive(Archive { tier: tier.name.clone(), delete_on: d })
                                }
                                _ => RetentionAction::Keep(Keep::NotExpired(d)),
                            }
                        }
                    }
                    Some(delete_on) => match volume_config {
                        Some(named) if named.configuration.tiered && !copies => {
                            config_id = Some(named.id.as_str());
                            match protecting {
                                Some(tier) => RetentionAction::Keep(Keep::Newest {
                                    tier: Some(tier.name.clone()),
                                    minimum: tier.minimum.max(floor),
                                }),
                                None => {
                                    count -= 1;
                                    RetentionAction::Delete(Delete::ExpiredTiers {
                                        delete_on,
                                        tiers: carried[k].names(tiers),
                                    })
                                }
                            }
                        }
                        Some(named) => {
                            config_id = Some(named.id.as_str());
                            let minimum = largest_minimum(tiers).max(floor);
                            if count <= minimum as usize {
                                RetentionAction::Keep(Keep::Minimum { minimum, count })
                            } else if protecting.is_some() {
                                // More than the minimum remain, but not of the newest: when
                                // retention was lengthened, an older snapshot may outlive newer
                                // expired ones, and the newest `minimum` are kept all the same.
                                RetentionAction::Keep(Keep::Newest { tier: None, minimum })
                            } else {
                                count -= 1;
                                RetentionAction::Delete(Delete::Expired { delete_on, count_before: count + 1, minimum })
                            }
                        }
                        None if ignore_retention && !any_failed => {
                            count = count.saturating_sub(1);
                            RetentionAction::Delete(Delete::IgnoreRetention { delete_on })
                        }
                        None => RetentionAction::Keep(Keep::Undetermined),
                    },
                }
            };
            // A snapshot due for deletion whose lock holds is kept, and still counts.
            let lock_held = inventory.locks.get(&s.id).filter(|l| l.holds(start_of(today)));
            let action = match (action, lock_held) {
                (RetentionAction::Delete(delete), Some(lock)) => {
                    if matches!(
                        delete,
                        Delete::Expired { .. } | Delete::ExpiredTiers { .. } | Delete::IgnoreRetention { .. }
                    ) {
                        count += 1;
                    }
                    RetentionAction::Keep(Keep::Locked(lock.expires))
                }
                (action, _) => action,
            };
            // The minimum stays locked: a snapshot a tier's minimum holds, under that tier's
            // lock, is locked at least to the horizon.
            if s.state == SnapshotState::Completed && !matches!(action, RetentionAction::Keep(Keep::Ignored(_))) {
                let holding: Vec<&Tier> =
                    protected[k].indices().filter_map(|t| tiers.get(t)).filter(|t| t.lock.is_some()).collect();
                if let Some(lock) = holding.iter().filter_map(|t| t.lock).reduce(stronger) {
                    let horizon = holding.iter().map(|t| minimum_lock_horizon(t, today)).max().unwrap_or(today);
                    // Never less than its own date: a snapshot found unlocked is locked as the
                    // snapshot job would have locked it.
                    let date = delete_on.map_or(horizon, |d| d.max(horizon));
                    if let Some(decision) = decide(&s.id, lock, date, inventory.locks.get(&s.id), start_of(today)) {
                        plan.locks.push(decision);
                    }
                }
            }
            plan.decisions.push(RetentionDecision {
                snapshot_id: &s.id,
                volume_id: s.volume_id.as_deref(),
                config_id,
                action,
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration_set::StoredConfiguration;
    use crate::inventory::{Attachment, Instance, Tags};
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use std::collections::BTreeMap;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2020, 6, 15).unwrap()
    }

    fn configs(items: &[(&str, String)]) -> ConfigurationSet {
        ConfigurationSet::from_stored(
            &items
                .iter()
                .map(|(id, text)| StoredConfiguration { id: id.to_string(), text: text.clone() })
                .collect::<Vec<_>>(),
        )
    }

    fn cfg(minimum: u32, extra: &str) -> String {
        format!(
            r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "5 days", "minimum": {minimum}, "frequency": "1 day"}}{extra}}}"#
        )
    }

    fn at(days_ago: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2020, 6, 15, 12, 0, 0).unwrap() - Duration::days(days_ago)
    }

    /// A completed snapshot of `vol`, started `age` days ago, with DeleteOn `delete_on` days from today.
    fn snap(id: &str, vol: &str, age: i64, delete_on: i64) -> Snapshot {
        let date = (today() + Duration::days(delete_on)).format("%Y-%m-%d").to_string();
        crate::testing::snapshot(id).volume(vol).at(at(age)).tag(DELETE_ON, &date).build()
    }

    fn inventory(matched: &[(&str, &str, &[&str])], snapshots: Vec<Snapshot>) -> Inventory {
        let mut inv = Inventory { region: "us-east-1".into(), snapshots, ..Default::default() };
        for (config, instance, vols) in matched {
            inv.matched.entry(config.to_string()).or_default().push(instance.to_string());
            inv.instances.insert(
                instance.to_string(),
                Instance {
                    id: instance.to_string(),
                    state: "running".into(),
                    image_id: None,
                    root_device: None,
                    tags: Tags::new(),
                    volumes: vols
                        .iter()
                        .map(|v| Attachment { device: "/dev/sda1".into(), volume_id: v.to_string() })
                        .collect(),
                },
            );
        }
        inv
    }

    fn deleted<'a>(plan: &RetentionPlan<'a>) -> Vec<&'a str> {
        plan.deletes().map(|d| d.snapshot_id).collect()
    }

    fn plan<'a>(c: &'a ConfigurationSet, inv: &'a Inventory) -> RetentionPlan<'a> {
        plan_retention(c, inv, &BTreeSet::new(), today())
    }

    #[test]
    fn an_errored_snapshot_older_than_a_completed_one_is_deleted_and_the_newest_is_kept() {
        // SPEC §10.11: an errored snapshot holds no data. Once a newer one completed it is
        // deleted (not expired, not counted); the volume's newest, in error, is kept (the
        // snapshot job reports it). The minimum counts completed snapshots only.
        let c = configs(&[("a", cfg(2, ""))]);
        let errored = |id: &str, age: i64| Snapshot { state: SnapshotState::Error, ..snap(id, "vol-1", age, 30) };
        let inv = inventory(
            &[("a", "i-1", &["vol-1"])],
            vec![
                errored("err-old", 5),
                snap("ok-1", "vol-1", 4, 30),
                snap("ok-2", "vol-1", 3, -1),
                errored("err-new", 1),
            ],
        );
        let p = plan(&c, &inv);
        assert_eq!(deleted(&p), vec!["err-old"]);
        let why: BTreeMap<&str, String> = p.decisions.iter().map(|d| (d.snapshot_id, d.reason())).collect();
        assert_eq!(why["err-old"], "in state error, older than a completed snapshot of its volume");
        assert!(why["ok-2"].contains("2 completed <= minimum 2"), "{}", why["ok-2"]);
        assert!(why["err-new"].contains("not completed"), "{}", why["err-new"]);
    }

    #[test]
    fn ten_expired_minimum_five_deletes_exactly_the_five_oldest() {
        let c = configs(&[("a", cfg(5, ""))]);
        let snaps: Vec<Snapshot> = (0..10).map(|n| snap(&format!("snap-{n}"), "vol-1", 20 - n, -(n + 1))).collect();
        let inv = inventory(&[("a", "i-1", &["vol-1"])], snaps);
        let p = plan(&c, &inv);
        assert_eq!(deleted(&p), vec!["snap-0", "snap-1", "snap-2", "snap-3", "snap-4"]);
        assert_eq!(p.decisions.iter().filter(|d| !d.is_delete()).count(), 5);
        assert_eq!(p.decisions[0].reason(), "expired 2020-06-14, 10 completed > minimum 5");
        assert!(matches!(p.decisions[9].action, RetentionAction::Keep(Keep::Minimum { minimum: 5, count: 5 })));
    }

    #[test]
    fn a_locked_snapshot_is_kept_and_still_counts_so_no_newer_one_goes_in_its_place() {
        // Ten expired with minimum 5: the five oldest would go, but two of them are locked (SPEC
        // §16). They are kept, "locked until", and still counted: exactly three are deleted,
        // and the newest five are kept as always. A lock that expired keeps nothing.
        use crate::inventory::{LockState, SnapshotLock};
        let c = configs(&[("a", cfg(5, ""))]);
        let snaps: Vec<Snapshot> = (0..10).map(|n| snap(&format!("snap-{n}"), "vol-1", 20 - n, -(n + 1))).collect();
        let mut inv = inventory(&[("a", "i-1", &["vol-1"])], snaps);
        let until = start_of(today()) + chrono::TimeDelta::days(3);
        for id in ["snap-1", "snap-3"] {
            inv.locks.insert(id.into(), SnapshotLock { state: LockState::Governance, expires: Some(until) });
        }
        inv.locks.insert("snap-0".into(), SnapshotLock { state: LockState::Expired, expires: Some(start_of(today())) });
        // Listed as compliance, but its date is today 00:00: it no longer holds.
        inv.locks
            .insert("snap-2".into(), SnapshotLock { state: LockState::Compliance, expires: Some(start_of(today())) });
        let p = plan(&c, &inv);
        assert_eq!(deleted(&p), vec!["snap-0", "snap-2", "snap-4"]);
        let why: BTreeMap<&str, String> = p.decisions.iter().map(|d| (d.snapshot_id, d.reason())).collect();
        assert_eq!(why["snap-1"], "locked until 2020-06-18T00:00:00Z");
        assert_eq!(why["snap-3"], "locked until 2020-06-18T00:00:00Z");
        assert!(p.locks.is_empty(), "no tier locks, nothing to extend: {:?}", p.locks);
    }

    #[test]
    fn the_snapshots_a_locked_tiers_minimum_keeps_are_locked_to_the_horizon() {
        use crate::config::LockMode;
        use crate::inventory::{LockState, SnapshotLock};
        use crate::lock_plan::{LockDecision, LockRequest};
        let c = configs(&[(
            "a",
            r#"{"match": {"tag:backup": "yes"}, "schedules": [{"name": "daily", "frequency": "1 day",
                "retention": "5 days", "minimum": 2, "lock": {"mode": "compliance", "cool_off_hours": 6}}]}"#
                .to_string(),
        )]);
        let lock = |state, days| SnapshotLock { state, expires: Some(start_of(today() + Duration::days(days))) };
        let request = |id: &str, mode, days, cool_off| {
            LockDecision::Lock(LockRequest {
                snapshot_id: id.into(),
                mode,
                until: start_of(today() + Duration::days(days)),
                cool_off_hours: cool_off,
            })
        };
        // s0 is beyond the minimum (deleted, nothing locked); s1 and s2 are the minimum: s1's
        // lock ends tomorrow (extended to the horizon, two days, in its own mode and without a
        // cool-off), s2's in a month (left alone).
        let mut inv = inventory(
            &[("a", "i-1", &["vol-1"])],
            vec![snap("s0", "vol-1", 10, -5), snap("s1", "vol-1", 9, -4), snap("s2", "vol-1", 8, -3)],
        );
        inv.locks.insert("s1".into(), lock(LockState::Governance, 1));
        inv.locks.insert("s2".into(), lock(LockState::Compliance, 30));
        let p = plan(&c, &inv);
        assert_eq!(deleted(&p), vec!["s0"]);
        assert_eq!(p.locks, vec![request("s1", LockMode::Governance, 2, None)]);
        // A newer snapshot, never locked: it and s2 are the minimum now. It is locked to its own
        // DeleteOn (past the horizon) with the cool-off; s1 is beyond the minimum, and kept by
        // its lock, which is not extended.
        inv.snapshots.push(snap("s3", "vol-1", 1, 4));
        let p = plan(&c, &inv);
        assert_eq!(deleted(&p), vec!["s0"]);
        assert!(matches!(p.decisions[1].action, RetentionAction::Keep(Keep::Locked(_))), "{:?}", p.decisions[1]);
        assert_eq!(p.locks, vec![request("s3", LockMode::Compliance, 4, Some(6))]);
        // The horizon: the longer of 2 days and twice the tier's longest gap.
        let weekly = Tier {
            frequency: crate::schedule::Schedule::parse("7 days").unwrap(),
            ..c.valid[0].configuration.tiers[0].clone()
        };
        assert_eq!(minimum_lock_horizon(&weekly, today()), today() + Duration::days(14));
        let hourly = Tier { frequency: crate::schedule::Schedule::parse("6 hours").unwrap(), ..weekly.clone() };
        assert_eq!(minimum_lock_horizon(&hourly, today()), today() + Duration::days(2));
        let thirty_hours = Tier { frequency: crate::schedule::Schedule::parse("30 hours").unwrap(), ..weekly };
        assert_eq!(minimum_lock_horizon(&thirty_hours, today()), today() + Duration::days(3), "60 hours round up");
    }

    fn tagged(mut s: Snapshot, config: &str) -> Snapshot {
        s.tags.insert(TAG_CONFIG.to_string(), config.to_string());
        s
    }

    #[test]
    fn an_orphan_named_by_two_configurations_keeps_its_newest_under_the_larger_minimum() {
        let c = configs(&[("daily", cfg(7, "")), ("weekly", cfg(2, ""))]);
        // Ten daily snapshots, then three weekly ones; all expired, the volume gone.
        let mut snaps: Vec<Snapshot> =
            (0..10).map(|n| tagged(snap(&format!("d{n:02}"), "vol-o", 40 - n, -2), "daily")).collect();
        snaps.extend((0..3).map(|n| tagged(snap(&format!("w{n}"), "vol-o", 10 - n, -1), "weekly")));
        let inv = inventory(&[], snaps);
        let p = plan(&c, &inv);
        // One minimum for the volume (7), the six oldest deleted, the newest seven kept.
        assert_eq!(deleted(&p), vec!["d00", "d01", "d02", "d03", "d04", "d05"]);
        for id in ["d06", "d07", "d08", "d09", "w0", "w1", "w2"] {
            let d = p.decisions.iter().find(|d| d.snapshot_id == id).unwrap();
            assert!(matches!(d.action, RetentionAction::Keep(Keep::Minimum { minimum: 7, .. })), "{id}: {d:?}");
        }
    }

    #[test]
    fn a_configuration_that_could_not_be_evaluated_raises_every_minimum_and_stops_ignore_retention() {
        let c = configs(&[("a", cfg(1, r#", "ignore_retention": true"#)), ("b", cfg(4, ""))]);
        let mut snaps: Vec<Snapshot> = (0..6).map(|n| snap(&format!("s{n}"), "vol-1", 20 - n, -1)).collect();
        snaps.push(snap("orphan", "vol-gone", 30, -1));
        let mut inv = inventory(&[("a", "i-1", &["vol-1"])], snaps);
        assert_eq!(deleted(&plan(&c, &inv)), vec!["s0", "s1", "s2", "s3", "s4", "orphan"]);
        inv.failed_configs.insert("b".into(), "InvalidParameterValue".into());
        let p = plan(&c, &inv);
        assert_eq!(deleted(&p), vec!["s0", "s1"], "minimum 4 from b, the orphan kept");
        assert!(p.warnings.iter().any(|w| w.contains("b could not be evaluated")), "{:?}", p.warnings);
    }

    #[test]
    fn ten_snapshots_three_expired_minimum_eight_deletes_two_oldest_expired() {
        let c = configs(&[("a", cfg(8, ""))]);
        let mut snaps: Vec<Snapshot> = (0..3).map(|n| snap(&format!("old-{n}"), "vol-1", 30 - n, -1)).collect();
        snaps.extend((0..7).map(|n| snap(&format!("new-{n}"), "vol-1", 5 - n, 3)));
        let inv = inventory(&[("a", "i-1", &["vol-1"])], snaps);
        let p = plan(&c, &inv);
        assert_eq!(deleted(&p), vec!["old-0", "old-1"]);
    }

    #[test]
    fn no_look_back_window_and_future_kept() {
        let c = configs(&[("a", cfg(0, ""))]);
        let inv = inventory(
            &[("a", "i-1", &["vol-1"])],
            vec![
                snap("ancient", "vol-1", 400, -365),
                snap("month", "vol-1", 40, -30),
                snap("today", "vol-1", 5, 0),
                snap("tomorrow", "vol-1", 4, 1),
            ],
        );
        let p = plan(&c, &inv);
        assert_eq!(deleted(&p), vec!["ancient", "month", "today"]);
        let kept = p.decisions.iter().find(|d| d.snapshot_id == "tomorrow").unwrap();
        assert_eq!(kept.action, RetentionAction::Keep(Keep::NotExpired(today() + Duration::days(1))));
    }

    #[test]
    fn unparseable_delete_on_is_kept_with_a_warning() {
        let c = configs(&[("a", cfg(0, r#", "ignore_retention": true"#))]);
        let mut s = snap("soon", "vol-1", 10, -5);
        s.tags.insert(DELETE_ON.into(), "soon".into());
        let mut t = snap("slashes", "vol-1", 10, -5);
        t.tags.insert(DELETE_ON.into(), "2020/01/01".into());
        let inv = inventory(&[("a", "i-1", &["vol-1"])], vec![s, t]);
        let p = plan(&c, &inv);
        assert!(deleted(&p).is_empty());
        assert_eq!(p.warnings.len(), 2);
        assert!(p.warnings[0].contains("not a date"));
    }

    #[test]
    fn delete_on_dates() {
        assert_eq!(parse_delete_on("2020-06-15"), NaiveDate::from_ymd_opt(2020, 6, 15));
        assert_eq!(parse_delete_on(" 2020-06-15 "), NaiveDate::from_ymd_opt(2020, 6, 15));
        for bad in
            ["2020-02-30", "2020-6-15", "2020/06/15", "20200615", "soon", "", "2020-06-1x", "+020-06-15", "2020-13-01"]
        {
            assert_eq!(parse_delete_on(bad), None, "{bad}");
        }
    }

    #[test]
    fn pending_is_kept_and_not_counted() {
        let c = configs(&[("a", cfg(1, ""))]);
        let mut pending = snap("pending", "vol-1", 0, -1);
        pending.state = SnapshotState::Pending;
        let mut errored = snap("errored", "vol-1", 1, -1);
        errored.state = SnapshotState::Error;
        // One completed expired + pending: count of completed is 1 = minimum, so nothing goes.
        let inv = inventory(&[("a", "i-1", &["vol-1"])], vec![snap("done", "vol-1", 3, -1), pending, errored]);
        let p = plan(&c, &inv);
        assert!(deleted(&p).is_empty(), "{:?}", p.decisions);
        let d = p.decisions.iter().find(|d| d.snapshot_id == "pending").unwrap();
        assert_eq!(d.action, RetentionAction::Keep(Keep::NotCompleted(SnapshotState::Pending)));
    }

    #[test]
    fn orphan_uses_the_minimum_of_the_configuration_named_by_its_tag() {
        let c = configs(&[("a", cfg(2, ""))]);
        let snaps: Vec<Snapshot> = (0..4)
            .map(|n| {
                let mut s = snap(&format!("s{n}"), "vol-gone", 10 - n, -1);
                s.tags.insert(TAG_CONFIG.into(), "a".into());
                s
            })
            .collect();
        let inv = inventory(&[], snaps);
        let p = plan(&c, &inv);
        assert_eq!(deleted(&p), vec!["s0", "s1"]);
        assert!(p.decisions.iter().all(|d| d.config_id == Some("a")));
    }

    #[test]
    fn orphan_without_configuration_is_kept_unless_ignore_retention() {
        let orphan = || {
            let mut s = snap("orphan", "vol-gone", 10, -1);
            s.tags.insert(TAG_CONFIG.into(), "deleted-config".into());
            s
        };
        let c = configs(&[("a", cfg(5, ""))]);
        let inv = inventory(&[], vec![orphan()]);
        let p = plan(&c, &inv);
        assert!(deleted(&p).is_empty());
        assert_eq!(p.decisions[0].action, RetentionAction::Keep(Keep::Undetermined));
        let c = configs(&[("a", cfg(5, "")), ("b", cfg(5, r#", "ignore_retention": true"#))]);
        let inv = inventory(&[], vec![orphan()]);
        let p = plan(&c, &inv);
        assert_eq!(deleted(&p), vec!["orphan"]);
    }

    #[test]
    fn ignored_instance_volume_and_snapshot_are_kept() {
        let c = configs(&[("a", cfg(0, r#", "ignore": ["snap-ignored", "vol-2", "i-3"], "ignore_retention": true"#))]);
        let mut by_instance_tag = snap("by-tag", "vol-9", 10, -1);
        by_instance_tag.tags.insert(TAG_INSTANCE.into(), "i-3".into());
        let inv = inventory(
            &[("a", "i-1", &["vol-1", "vol-2"])],
            vec![
                snap("snap-ignored", "vol-1", 10, -1),
                snap("of-ignored-volume", "vol-2", 10, -1),
                snap("of-ignored-instance", "vol-3", 10, -1),
                by_instance_tag,
                snap("fine", "vol-1", 11, -1),
            ],
        );
        let ignored_volumes: BTreeSet<String> = ["vol-3".to_string()].into();
        let p = plan_retention(&c, &inv, &ignored_volumes, today());
        assert_eq!(deleted(&p), vec!["fine"]);
        for id in ["snap-ignored", "of-ignored-volume", "of-ignored-instance", "by-tag"] {
            let d = p.decisions.iter().find(|d| d.snapshot_id == id).unwrap();
            assert!(matches!(d.action, RetentionAction::Keep(Keep::Ignored(_))), "{id}: {:?}", d.action);
        }
    }

    #[test]
    fn equal_start_times_delete_the_earlier_expiry_first() {
        let c = configs(&[("a", cfg(1, ""))]);
        let inv = inventory(
            &[("a", "i-1", &["vol-1"])],
            vec![snap("a-later", "vol-1", 5, -1), snap("z-earlier", "vol-1", 5, -2)],
        );
        let p = plan(&c, &inv);
        assert_eq!(deleted(&p), vec!["z-earlier"]);
        let order: Vec<&str> = p.decisions.iter().map(|d| d.snapshot_id).collect();
        assert_eq!(order, vec!["z-earlier", "a-later"], "decisions are listed in planning order");
    }

    #[test]
    fn snapshots_without_delete_on_are_never_considered() {
        let c = configs(&[("a", cfg(0, r#", "ignore_retention": true"#))]);
        let mut untagged = snap("untagged", "vol-1", 100, -50);
        untagged.tags = Tags::new();
        let inv = inventory(&[("a", "i-1", &["vol-1"])], vec![untagged]);
        let p = plan(&c, &inv);
        assert!(p.decisions.is_empty());
    }

    #[test]
    fn matched_volume_uses_its_configuration_even_if_tagged_with_another() {
        let c = configs(&[("a", cfg(3, "")), ("b", cfg(0, ""))]);
        let snaps: Vec<Snapshot> = (0..3)
            .map(|n| {
                let mut s = snap(&format!("s{n}"), "vol-1", 10 - n, -1);
                s.tags.insert(TAG_CONFIG.into(), "b".into());
                s
            })
            .collect();
        let inv = inventory(&[("a", "i-1", &["vol-1"])], snaps);
        let p = plan(&c, &inv);
        assert!(deleted(&p).is_empty());
    }

    fn tiered(extra: &str) -> String {
        format!(
            r#"{{"match": {{"tag:backup": "yes"}}, "schedules": [
                {{"name": "daily", "frequency": "1 day", "retention": "8 days", "minimum": 2}},
                {{"name": "weekly", "frequency": "7 days", "retention": "35 days", "minimum": 1}},
                {{"name": "monthly", "frequency": "30 days", "retention": "400 days", "minimum": 1, "archive": true}}]{extra}}}"#
        )
    }

    fn in_tier(id: &str, age: i64, delete_on: i64, tier: &str) -> Snapshot {
        let mut s = snap(id, "vol-1", age, delete_on);
        s.tags.insert(crate::tags::TAG_TIER.into(), tier.into());
        s
    }

    fn actions<'a>(p: &'a RetentionPlan<'a>) -> BTreeMap<&'a str, String> {
        p.decisions.iter().map(|d| (d.snapshot_id, d.reason())).collect()
    }

    #[test]
    fn each_tier_keeps_its_own_newest_minimum_and_the_rest_expire_oldest_first() {
        let c = configs(&[("a", tiered(""))]);
        let inv = inventory(
            &[("a", "i-1", &["vol-1"])],
            vec![
                in_tier("w-old", 40, -5, "weekly"),
                in_tier("w-new", 30, -1, "weekly"),
                in_tier("d1", 12, -4, "daily"),
                in_tier("d2", 11, -3, "daily,weekly"),
                in_tier("d3", 10, -2, "daily"),
                in_tier("d4", 9, -1, "daily"),
                in_tier("d5", 1, 7, "daily"),
            ],
        );
        let p = plan(&c, &inv);
        // daily keeps d5 and d4 (its newest two, d5 not even expired); weekly keeps d2, its newest.
        assert_eq!(deleted(&p), ["w-old", "w-new", "d1", "d3"]);
        let why = actions(&p);
        assert_eq!(why["d4"], "expired, but among the newest 2 of tier daily");
        assert_eq!(why["d2"], "expired, but among the newest 1 of tier weekly");
        assert!(
            why["w-old"].starts_with("expired 2020-06-10, not among the newest minimum of tier weekly"),
            "{}",
            why["w-old"]
        );
    }

    #[test]
    fn newest_minimum_is_kept_when_an_older_snapshot_outlives_newer_expired_ones() {
        // Retention was lengthened: the oldest snapshot expires after the newer ones.
        let c = configs(&[("a", cfg(2, ""))]);
        let snaps = vec![
            snap("old-long", "vol-1", 10, 30),
            snap("b", "vol-1", 5, -2),
            snap("c", "vol-1", 4, -1),
            snap("d", "vol-1", 1, 4),
        ];
        let inv = inventory(&[("a", "i-1", &["vol-1"])], snaps);
        let p = plan(&c, &inv);
        // Counting alone would delete b and c (4 > 2, 3 > 2) and leave old-long and d; the
        // newest two, c and d, are kept instead.
        assert_eq!(deleted(&p), ["b"]);
        assert_eq!(actions(&p)["c"], "expired, but among the newest 2 completed");
    }

    #[test]
    fn archive_moves_an_archive_tiers_older_snapshots_kept_ninety_days_more() {
        let c = configs(&[("a", tiered(""))]);
        let mut archived = in_tier("m-done", 120, 280, "monthly");
        archived.archived = true;
        let inv = inventory(
            &[("a", "i-1", &["vol-1"])],
            vec![
                archived,
                in_tier("m-old", 90, 310, "monthly"),
                in_tier("m-soon", 80, 60, "monthly"),
                in_tier("m-weekly", 60, 340, "monthly,weekly"),
                in_tier("m-new", 30, 370, "monthly"),
            ],
        );
        let p = plan(&c, &inv);
        assert_eq!(p.archive_ids(), ["m-old"]);
        let why = actions(&p);
        assert_eq!(why["m-old"], "archive (tier monthly): not the newest, kept until 2021-04-21");
        assert_eq!(why["m-done"], "in the archive tier, not expired");
        assert!(why["m-soon"].starts_with("not expired"), "deleted within 90 days: {}", why["m-soon"]);
        assert!(why["m-weekly"].starts_with("not expired"), "weekly's minimum holds it: {}", why["m-weekly"]);
        assert!(why["m-new"].starts_with("not expired"), "the newest is never archived: {}", why["m-new"]);
        let opts = ReportOptions { dry_run: true, every_action: true };
        assert_eq!(
            p.report(&BTreeMap::new(), vec![], vec![], vec![], opts).summary_line(),
            "us-east-1: would delete 0, would archive 1, kept 4, ignored 0, skipped 0, failed 0"
        );
        let opts = ReportOptions { dry_run: false, every_action: false };
        let report = p.report(&BTreeMap::new(), vec![], vec![Executed::Done(None)], vec![], opts);
        assert_eq!(report.summary_line(), "us-east-1: deleted 0, archived 1, kept 4, ignored 0, skipped 0, failed 0");
    }

    /// A disaster-recovery copy in us-east-1 of a snapshot of `source_volume` (EC2 reports no
    /// volume for a copy), made by configuration `config`.
    fn dr_copy(id: &str, source_volume: &str, config: &str, age: i64, delete_on: i64) -> Snapshot {
        let mut s = tagged(snap(id, "unused", age, delete_on), config);
        s.volume_id = None;
        s.is_copy = true;
        s.tags.insert(REPLICATION_SRC.to_string(), "eu-west-1".to_string());
        s.tags.insert(TAG_VOLUME.to_string(), source_volume.to_string());
        s
    }

    #[test]
    fn dr_copies_are_kept_by_source_volume_under_the_destinations_minimum() {
        let c = configs(&[("dr", cfg(5, r#", "copies": [{"region": "us-east-1", "minimum": 2}]"#))]);
        // Four expired copies of vol-a, three of vol-b, one unexpired of vol-c; no volume here.
        let mut snaps: Vec<Snapshot> = (0..4).map(|n| dr_copy(&format!("a{n}"), "vol-a", "dr", 20 - n, -1)).collect();
        snaps.extend((0..3).map(|n| dr_copy(&format!("b{n}"), "vol-b", "dr", 20 - n, -1)));
        snaps.push(dr_copy("c0", "vol-c", "dr", 1, 30));
        let inv = inventory(&[], snaps);
        let p = plan(&c, &inv);
        // Each source volume keeps its newest two (the destination's minimum, not the
        // configuration's five), and the copies of different volumes are never counted together.
        assert_eq!(deleted(&p), vec!["a0", "a1", "b0"]);
        let kept = |id: &str| p.decisions.iter().find(|d| d.snapshot_id == id).unwrap().reason();
        assert_eq!(kept("a3"), "expired, but 2 completed <= minimum 2");
        assert!(kept("c0").starts_with("not expired"));

        // Without a destination minimum, the configuration's; with the configuration gone, kept
        // (its minimum is unknown), as any orphan.
        let c = configs(&[("dr", cfg(3, r#", "copies": [{"region": "us-east-1"}]"#))]);
        let p = plan(&c, &inv);
        assert_eq!(deleted(&p), vec!["a0"]);
        let none = configs(&[]);
        let p = plan(&none, &inv);
        assert!(deleted(&p).is_empty());
    }
}

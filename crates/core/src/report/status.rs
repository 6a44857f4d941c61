//! What is protected (SPEC §14): one row per selected volume with its newest completed snapshot,
//! its count against the minimum, when it is next due, its copies, and a verdict. Computed from
//! the snapshot job's inventory; nothing here changes anything.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use rustc_hash::FxHashSet;
use serde::Serialize;

pub use crate::report::Verdict;
pub use crate::schedule::{JOB_INTERVAL, OVERDUE_SLACK};

use crate::config::exclusion;
use crate::config::Tier;
use crate::configuration_set::ConfigurationSet;
use crate::inventory::{Inventory, Snapshot, SnapshotState};
use crate::schedule::Schedule;
use crate::tags::destinations;
use crate::tiers::carried_by;

/// One selected volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeStatus {
    pub account: String,
    pub region: String,
    pub instance: String,
    pub volume: String,
    pub configuration: String,
    /// The tier the row speaks for: the worst of the volume's tiers (`default` for a
    /// `snapshot` configuration).
    pub tier: String,
    /// The newest completed snapshot of that tier.
    pub newest: Option<DateTime<Utc>>,
    /// Its id (not in the report: what the copies are looked up by).
    #[serde(skip)]
    pub newest_id: Option<String>,
    pub age_seconds: Option<i64>,
    pub completed: usize,
    pub minimum: u32,
    /// The earliest time any of the volume's tiers is due (now, when one has no snapshot);
    /// `None` when no schedule fires again.
    pub next_due: Option<DateTime<Utc>>,
    /// Destination region -> whether the newest completed snapshot has its copy there.
    pub copies: BTreeMap<String, bool>,
    /// The lock of the newest completed snapshot while it holds (SPEC §16); `null` without one.
    pub lock: Option<StatusLock>,
    /// Whether the vault has a copy of the newest completed snapshot (SPEC §16); `null` when
    /// its configuration has no vault.
    pub vault: Option<bool>,
    /// The volume's newest restore drill (SPEC §17), on any of its snapshots; `null` when it
    /// was never drilled (or the drilled snapshots are gone).
    pub drill: Option<StatusDrill>,
    pub verdict: Verdict,
}

/// A restore drill as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusDrill {
    pub at: DateTime<Utc>,
    pub ok: bool,
    /// Time from `CreateVolume` to `available` (not a restore time); `null` for a failed drill.
    pub seconds: Option<u64>,
}

impl StatusDrill {
    /// `2026-12-07 ok (12 s)` or `2026-12-07 failed`.
    pub fn cell(&self) -> String {
        let at = self.at.format("%Y-%m-%d");
        match (self.ok, self.seconds) {
            (true, Some(s)) => format!("{at} ok ({s} s)"),
            (true, None) => format!("{at} ok"),
            (false, _) => format!("{at} failed"),
        }
    }
}

/// A snapshot's lock as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusLock {
    /// `governance` or `compliance`.
    pub mode: &'static str,
    /// EC2's lock state: `governance`, `compliance-cooloff` or `compliance`.
    pub state: &'static str,
    /// When it ends (`null` when EC2 gives no date).
    pub until: Option<DateTime<Utc>>,
}

impl StatusLock {
    /// `compliance until 2026-12-31`, `compliance (cool-off) until ...`, `governance until ...`.
    pub fn cell(&self) -> String {
        let until = self.until.map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_else(|| "?".into());
        match self.state {
            "compliance-cooloff" => format!("compliance (cool-off) until {until}"),
            _ => format!("{} until {until}", self.mode),
        }
    }
}

/// Counts by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub volumes: usize,
    pub ok: usize,
    pub never: usize,
    pub overdue: usize,
    #[serde(rename = "below-minimum")]
    pub below_minimum: usize,
    pub error: usize,
}

impl Summary {
    pub fn of<'a>(verdicts: impl IntoIterator<Item = &'a Verdict>) -> Summary {
        let mut s = Summary::default();
        for v in verdicts {
            s.volumes += 1;
            match v {
                Verdict::Ok => s.ok += 1,
                Verdict::Never => s.never += 1,
                Verdict::Overdue => s.overdue += 1,
                Verdict::BelowMinimum => s.below_minimum += 1,
                Verdict::Error => s.error += 1,
            }
        }
        s
    }

    /// `N volumes: ok A, never B, overdue C, below-minimum D, error E`.
    pub fn line(&self) -> String {
        format!(
            "{} volumes: ok {}, never {}, overdue {}, below-minimum {}, error {}",
            self.volumes, self.ok, self.never, self.overdue, self.below_minimum, self.error
        )
    }
}

/// The interval between two fires of a schedule around `now` (for a cron schedule, the two
/// next fires), for "older than minimum × frequency".
fn period(schedule: &Schedule, now: DateTime<Utc>) -> Option<TimeDelta> {
    match schedule {
        Schedule::Interval(d) => TimeDelta::from_std(*d).ok(),
        Schedule::Cron(c) => {
            let first = c.next_after(now)?;
            Some(c.next_after(first)? - first)
        }
    }
}

/// One tier's view of a volume.
struct TierStatus<'a> {
    tier: &'a Tier,
    newest: Option<&'a Snapshot>,
    completed: usize,
    next_due: Option<DateTime<Utc>>,
    verdict: Verdict,
}

fn tier_status<'a>(
    tier: &'a Tier,
    index: usize,
    tiers: &'a [Tier],
    snapshots: &[&'a Snapshot],
    volume_created: Option<DateTime<Utc>>,
    newest_is_error: bool,
    now: DateTime<Utc>,
) -> TierStatus<'a> {
    let carrying: Vec<&Snapshot> =
        snapshots.iter().copied().filter(|s| carried_by(&s.tags, tiers).contains(index)).collect();
    let completed: Vec<&Snapshot> = carrying.iter().copied().filter(|s| s.state == SnapshotState::Completed).collect();
    let newest = completed.iter().copied().max_by_key(|s| s.start_time);
    let last = carrying
        .iter()
        .filter(|s| matches!(s.state, SnapshotState::Pending | SnapshotState::Completed))
        .map(|s| s.start_time)
        .max();
    let next_due = match last {
        None => Some(now),
        Some(last) => tier.frequency.next_due(last),
    };
    let overdue = last.is_some() && next_due.is_some_and(|due| now > due + OVERDUE_SLACK + JOB_INTERVAL);
    let old_enough = match (volume_created, period(&tier.frequency, now)) {
        (Some(created), Some(p)) => now - created > p * tier.minimum as i32,
        _ => false,
    };
    let verdict = if newest_is_error {
        Verdict::Error
    } else if completed.is_empty() {
        Verdict::Never
    } else if overdue {
        Verdict::Overdue
    } else if completed.len() < tier.minimum as usize && old_enough {
        Verdict::BelowMinimum
    } else {
        Verdict::Ok
    };
    TierStatus { tier, newest, completed: completed.len(), next_due, verdict }
}

/// The status of every selected volume of a region: the volumes the snapshot job would decide
/// (owned by a configuration, not ignored, not excluded, described by EC2). `inventory` is the
/// snapshot job's (its snapshots with their `ebs-snapper:tier` and `replication_dst_region`
/// tags); `copies`: source snapshot id -> the regions where a copy of it was found.
pub fn volume_statuses(
    account: &str,
    configs: &ConfigurationSet,
    inventory: &Inventory,
    copies: &BTreeMap<String, BTreeSet<String>>,
    now: DateTime<Utc>,
) -> Vec<VolumeStatus> {
    let ignored = configs.ignored_ids();
    let mut by_volume: BTreeMap<&str, Vec<&Snapshot>> = BTreeMap::new();
    for s in &inventory.snapshots {
        if let Some(v) = s.volume_id.as_deref() {
            by_volume.entry(v).or_default().push(s);
        }
    }
    let mut seen: FxHashSet<&str> = FxHashSet::default();
    let mut out = Vec::new();
    for (named, instance_id) in inventory.claims(configs).owned {
        let configuration = &named.configuration;
        let Some(instance) = inventory.instances.get(instance_id) else { continue };
        if ignored.contains(&instance.id) {
            continue;
        }
        for att in &instance.volumes {
            if !seen.insert(att.volume_id.as_str()) || ignored.contains(&att.volume_id) {
                continue;
            }
            let Some(volume) = inventory.volumes.get(&att.volume_id) else { continue };
            if exclusion(configuration, instance, att, Some(&volume.tags)).is_some() {
                continue;
            }
            let snapshots = by_volume.get(att.volume_id.as_str()).map(Vec::as_slice).unwrap_or(&[]);
            let newest_is_error =
                snapshots.iter().max_by_key(|s| s.start_time).is_some_and(|s| s.state == SnapshotState::Error);
            let tiers = &configuration.tiers;
            let statuses: Vec<TierStatus> = tiers
                .iter()
                .enumerate()
                .map(|(i, t)| tier_status(t, i, tiers, snapshots, volume.created, newest_is_error, now))
                .collect();
            // The worst tier speaks for the volume (the first of equals).
            let Some(worst) = statuses.iter().min_by_key(|s| s.verdict) else { continue };
            // Each destination the newest snapshot is tagged for (`ebs-snapper:copy-to`,
            // `replication_dst_region`), and whether its copy is there.
            let copies = worst
                .newest
                .map(|s| {
                    destinations(s)
                        .into_iter()
                        .filter(|(dst, _)| *dst != inventory.region)
                        .map(|(dst, _)| {
                            let in_sync = copies.get(&s.id).is_some_and(|regions| regions.contains(dst));
                            (dst.to_string(), in_sync)
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(VolumeStatus {
                account: account.to_string(),
                region: inventory.region.clone(),
                instance: instance.id.clone(),
                volume: att.volume_id.clone(),
                configuration: named.id.clone(),
                tier: worst.tier.name.clone(),
                newest: worst.newest.map(|s| s.start_time),
                newest_id: worst.newest.map(|s| s.id.clone()),
                age_seconds: worst.newest.map(|s| (now - s.start_time).num_seconds()),
                completed: worst.completed,
                minimum: worst.tier.minimum,
                next_due: statuses.iter().filter_map(|s| s.next_due).min(),
                copies,
                lock: worst.newest.and_then(|s| inventory.locks.get(&s.id)).filter(|l| l.holds(now)).map(|l| {
                    StatusLock {
                        mode: crate::config::lock::mode_of(l.state).map(|m| m.as_str()).unwrap_or("compliance"),
                        state: l.state.as_str(),
                        until: l.expires,
                    }
                }),
                vault: configuration.vault.as_ref().map(|_| false),
                drill: snapshots
                    .iter()
                    .filter_map(|s| crate::report::drill_result::result_of(s))
                    .max_by_key(|r| r.at)
                    .map(|r| StatusDrill { at: r.at, ok: r.ok(), seconds: r.seconds() }),
                verdict: worst.verdict,
            });
        }
    }
    out
}

/// The rows worst first, then by account, region, instance and volume.
pub fn worst_first(rows: &mut [VolumeStatus]) {
    rows.sort_by(|a, b| {
        (a.verdict, &a.account, &a.region, &a.instance, &a.volume).cmp(&(
            b.verdict,
            &b.account,
            &b.region,
            &b.instance,
            &b.volume,
        ))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration_set::StoredConfiguration;
    use crate::inventory::{Attachment, Instance, Tags, Volume};
    use crate::tags::{REPLICATION_DST, TAG_COPY_TO, TAG_TIER};
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 15, 12, 0, 0).unwrap()
    }

    fn configs(text: &str) -> ConfigurationSet {
        ConfigurationSet::from_stored(&[StoredConfiguration { id: "c".into(), text: text.into() }])
    }

    const DAILY_MIN_3: &str =
        r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "7 days", "minimum": 3, "frequency": "1 day"}}"#;

    fn snap(id: &str, vol: &str, hours_ago: i64, state: SnapshotState, tags: &[(&str, &str)]) -> Snapshot {
        crate::testing::snapshot(id).volume(vol).at(now() - TimeDelta::hours(hours_ago)).state(state).tags(tags).build()
    }

    /// One instance per volume, each volume created `age_hours` ago.
    fn inventory(volumes: &[(&str, i64)], snapshots: Vec<Snapshot>) -> Inventory {
        let mut inv = Inventory { region: "us-east-1".into(), snapshots, ..Default::default() };
        for (n, (v, age_hours)) in volumes.iter().enumerate() {
            let id = format!("i-{n}");
            inv.matched.entry("c".into()).or_default().push(id.clone());
            inv.instances.insert(
                id.clone(),
                Instance {
                    id,
                    state: "running".into(),
                    image_id: None,
                    root_device: None,
                    tags: Tags::new(),
                    volumes: vec![Attachment { device: "/dev/sda1".into(), volume_id: v.to_string() }],
                },
            );
            inv.volumes.insert(
                v.to_string(),
                Volume {
                    id: v.to_string(),
                    tags: Tags::new(),
                    created: Some(now() - TimeDelta::hours(*age_hours)),
                    encryption: Default::default(),
                },
            );
        }
        inv
    }

    fn verdicts(rows: &[VolumeStatus]) -> BTreeMap<&str, Verdict> {
        rows.iter().map(|r| (r.volume.as_str(), r.verdict)).collect()
    }

    #[test]
    fn each_verdict_from_a_snapshot_history() {
        let c = configs(DAILY_MIN_3);
        let done = SnapshotState::Completed;
        let inv = inventory(
            &[
                ("vol-ok", 1000),
                ("vol-never", 1000),
                ("vol-pending", 1),
                ("vol-overdue", 1000),
                ("vol-late", 1000),
                ("vol-below", 1000),
                ("vol-young", 10),
                ("vol-error", 1000),
            ],
            vec![
                snap("a1", "vol-ok", 2, done, &[]),
                snap("a2", "vol-ok", 26, done, &[]),
                snap("a3", "vol-ok", 50, done, &[]),
                snap("p", "vol-pending", 0, SnapshotState::Pending, &[]),
                // Due at 26 h - 24 h (less the 15-minute grace) ago: 2 h 15 min late > 1 h 30 min.
                snap("o1", "vol-overdue", 26, done, &[]),
                snap("o2", "vol-overdue", 50, done, &[]),
                snap("o3", "vol-overdue", 74, done, &[]),
                // Due 1 h 15 min ago: late, but not yet overdue.
                snap("l1", "vol-late", 25, done, &[]),
                snap("l2", "vol-late", 49, done, &[]),
                snap("l3", "vol-late", 73, done, &[]),
                snap("b", "vol-below", 2, done, &[]),
                snap("y", "vol-young", 2, done, &[]),
                snap("e1", "vol-error", 30, done, &[]),
                snap("e2", "vol-error", 1, SnapshotState::Error, &[]),
            ],
        );
        let rows = volume_statuses("111122223333", &c, &inv, &BTreeMap::new(), now());
        let v = verdicts(&rows);
        assert_eq!(v["vol-ok"], Verdict::Ok);
        assert_eq!(v["vol-never"], Verdict::Never);
        assert_eq!(v["vol-pending"], Verdict::Never, "a pending snapshot is not a completed one");
        assert_eq!(v["vol-overdue"], Verdict::Overdue);
        assert_eq!(v["vol-late"], Verdict::Ok);
        assert_eq!(v["vol-below"], Verdict::BelowMinimum);
        assert_eq!(v["vol-young"], Verdict::Ok, "younger than minimum x frequency");
        assert_eq!(v["vol-error"], Verdict::Error);
        let ok = rows.iter().find(|r| r.volume == "vol-ok").unwrap();
        assert_eq!((ok.completed, ok.minimum, ok.age_seconds), (3, 3, Some(7200)));
        assert_eq!(ok.tier, "default");
        assert_eq!(ok.next_due, Some(now() + TimeDelta::hours(22) - TimeDelta::minutes(15)));
        let never = rows.iter().find(|r| r.volume == "vol-never").unwrap();
        assert_eq!((never.newest, never.next_due), (None, Some(now())));
        let summary = Summary::of(rows.iter().map(|r| &r.verdict));
        assert_eq!(summary.line(), "8 volumes: ok 3, never 2, overdue 1, below-minimum 1, error 1");
        let mut sorted = rows.clone();
        worst_first(&mut sorted);
        assert_eq!(
            sorted.iter().map(|r| r.verdict).collect::<Vec<_>>()[..3],
            [Verdict::Error, Verdict::Never, Verdict::Never]
        );
        let json = serde_json::to_value(summary).unwrap();
        assert_eq!(json["below-minimum"], 1);
        assert_eq!(serde_json::to_value(Verdict::BelowMinimum).unwrap(), "below-minimum");
    }

    #[test]
    fn the_worst_tier_speaks_and_copies_are_checked_per_destination() {
        let c = configs(
            r#"{"match": {"tag:backup": "yes"}, "schedules": [
                {"name": "daily", "frequency": "1 day", "retention": "8 days", "minimum": 1},
                {"name": "weekly", "frequency": "7 days", "retention": "35 days", "minimum": 1}]}"#,
        );
        let done = SnapshotState::Completed;
        let dst = [(TAG_TIER, "daily"), (REPLICATION_DST, "us-west-2")];
        let inv = inventory(
            &[("vol-1", 1000), ("vol-2", 1000)],
            vec![
                snap("d", "vol-1", 2, done, &dst),
                snap("w", "vol-1", 300, done, &[(TAG_TIER, "weekly")]),
                snap(
                    "dw",
                    "vol-2",
                    2,
                    done,
                    &[(TAG_TIER, "daily,weekly"), (REPLICATION_DST, "us-west-2"), (TAG_COPY_TO, "eu-west-1,us-west-2")],
                ),
            ],
        );
        let copies = BTreeMap::from([("dw".to_string(), BTreeSet::from(["us-west-2".to_string()]))]);
        let rows = volume_statuses("111122223333", &c, &inv, &copies, now());
        let one = rows.iter().find(|r| r.volume == "vol-1").unwrap();
        // Weekly's newest is 300 h old: due at 168 h, overdue.
        assert_eq!((one.verdict, one.tier.as_str()), (Verdict::Overdue, "weekly"));
        assert!(one.copies.is_empty(), "the weekly snapshot is not tagged for a copy");
        let two = rows.iter().find(|r| r.volume == "vol-2").unwrap();
        assert_eq!((two.verdict, two.tier.as_str()), (Verdict::Ok, "daily"));
        // A disaster-recovery destination is checked like a replica's, each region once.
        assert_eq!(two.copies, BTreeMap::from([("eu-west-1".to_string(), false), ("us-west-2".to_string(), true)]));
        let without = volume_statuses("111122223333", &c, &inv, &BTreeMap::new(), now());
        assert!(!without.iter().find(|r| r.volume == "vol-2").unwrap().copies["us-west-2"]);
    }
}

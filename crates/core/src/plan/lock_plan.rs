//! The lock planner (SPEC §16): which snapshots the tool made under a lock should be locked, or
//! locked longer, and with what. Locks only grow: a missing lock (its call failed, or its answer
//! was lost) is sent again by the next run; a lock that ends too early is extended; a lock is
//! never shortened, and its mode never changed.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::config::lock::mode_of;
use crate::config::{Lock, LockMode};
use crate::configuration_set::ConfigurationSet;
use crate::inventory::{Locks, Snapshot, SnapshotLock, SnapshotState, Tags};
use crate::report::{Action, ActionReport, Executed, Outcome, RegionReport, ReportOptions};
use crate::tags::{parse_delete_on, DELETE_ON, REPLICATION_SRC, TAG_CONFIG};
use crate::tiers::carried_by;

/// A lock whose date would be nearer than this is not sent (a skip): EC2 wants a date in the
/// future, and a lock that ends within the hour protects nothing.
pub const MIN_LOCK_AHEAD: TimeDelta = TimeDelta::hours(1);

/// One `LockSnapshot` to send: always with `ExpirationDate`, never `LockDuration` (a duration
/// would start only when a pending snapshot completes, and end later than its `DeleteOn`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    pub snapshot_id: String,
    pub mode: LockMode,
    pub until: DateTime<Utc>,
    /// Only on a snapshot's first lock: EC2 refuses a cool-off once one has ended.
    pub cool_off_hours: Option<u8>,
}

/// What the planner decided for one snapshot that should be locked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockDecision {
    Lock(LockRequest),
    /// Not locked, with the reason (the date is too near).
    Skip {
        snapshot_id: String,
        reason: String,
    },
}

/// 00:00 UTC of `date`: the moment a snapshot whose `DeleteOn` is `date` may be deleted.
pub fn start_of(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The stronger of two locks: compliance over governance, then the shorter cool-off (none is
/// the shortest).
pub fn stronger(a: Lock, b: Lock) -> Lock {
    match (a.mode, b.mode) {
        (LockMode::Compliance, LockMode::Governance) => a,
        (LockMode::Governance, LockMode::Compliance) => b,
        _ if a.cool_off_hours.unwrap_or(0) <= b.cool_off_hours.unwrap_or(0) => a,
        _ => b,
    }
}

/// The lock a source snapshot the snapshot job made should carry: the strongest lock of the
/// tiers it carries in its configuration (`ebs-snapper:config`), with its `DeleteOn` date. None
/// for a snapshot of no configuration, of tiers without a lock, or without a date.
pub fn wanted_source_lock(configs: &ConfigurationSet, s: &Snapshot) -> Option<(Lock, NaiveDate)> {
    source_lock_of(configs, &s.tags)
}

/// [`wanted_source_lock`] from the tags a snapshot is (or is about to be) made with.
pub fn source_lock_of(configs: &ConfigurationSet, tags: &Tags) -> Option<(Lock, NaiveDate)> {
    if tags.contains_key(REPLICATION_SRC) {
        return None;
    }
    let config = &configs.get(tags.get(TAG_CONFIG)?)?.configuration;
    let lock = carried_by(tags, &config.tiers).indices().filter_map(|i| config.tiers.get(i)?.lock).reduce(stronger)?;
    Some((lock, parse_delete_on(tags.get(DELETE_ON)?)?))
}

/// The lock a disaster-recovery copy in `region` should carry: its configuration's destination
/// lock there, with the copy's `DeleteOn` date.
pub fn wanted_copy_lock(configs: &ConfigurationSet, region: &str, s: &Snapshot) -> Option<(Lock, NaiveDate)> {
    copy_lock_of(configs, region, &s.tags)
}

/// [`wanted_copy_lock`] from a copy's tags.
pub fn copy_lock_of(configs: &ConfigurationSet, region: &str, tags: &Tags) -> Option<(Lock, NaiveDate)> {
    tags.get(REPLICATION_SRC)?;
    let config = &configs.get(tags.get(TAG_CONFIG)?)?.configuration;
    let lock = config.copy_destination(region)?.lock?;
    Some((lock, parse_delete_on(tags.get(DELETE_ON)?)?))
}

/// Whether any configuration locks what it makes: its snapshots (`sources`), or its copies.
pub fn any_lock(configs: &ConfigurationSet, sources: bool) -> bool {
    configs.valid.iter().any(|n| {
        let c = &n.configuration;
        if sources {
            c.tiers.iter().any(|t| t.lock.is_some())
        } else {
            c.copies.iter().any(|d| d.lock.is_some())
        }
    })
}

/// What to send for a snapshot that should carry `lock` until `date` (00:00 UTC), given its
/// current lock: `None` when that lock already holds long enough.
pub fn decide(
    snapshot_id: &str,
    lock: Lock,
    date: NaiveDate,
    current: Option<&SnapshotLock>,
    now: DateTime<Utc>,
) -> Option<LockDecision> {
    let until = start_of(date);
    let holding = current.filter(|c| c.holds(now));
    if let Some(c) = holding {
        // A lock without a date (EC2 did not say) is taken as long enough: sending one could
        // only be refused or shorten it.
        if c.expires.is_none_or(|e| e >= until) {
            return None;
        }
    }
    if until - now < MIN_LOCK_AHEAD {
        return Some(LockDecision::Skip {
            snapshot_id: snapshot_id.to_string(),
            reason: format!("not locked: its date {} is less than an hour ahead", until.format("%Y-%m-%dT%H:%MZ")),
        });
    }
    let request = match holding {
        // Extended in its own mode, without a cool-off.
        Some(c) => LockRequest {
            snapshot_id: snapshot_id.to_string(),
            mode: mode_of(c.state).unwrap_or(lock.mode),
            until,
            cool_off_hours: None,
        },
        // A first lock gets the configured cool-off; a lock again after one expired does not (its
        // cool-off ended long ago, and EC2 may refuse a second).
        None => LockRequest {
            snapshot_id: snapshot_id.to_string(),
            mode: lock.mode,
            until,
            cool_off_hours: if current.is_none() { lock.cool_off_hours } else { None },
        },
    };
    Some(LockDecision::Lock(request))
}

/// The locks to send for `snapshots` (pending or completed; EC2 locks no other), each wanting
/// the lock `wanted` gives it.
pub fn plan_locks<'a>(
    snapshots: impl IntoIterator<Item = &'a Snapshot>,
    wanted: impl Fn(&Snapshot) -> Option<(Lock, NaiveDate)>,
    locks: &Locks,
    now: DateTime<Utc>,
) -> Vec<LockDecision> {
    snapshots
        .into_iter()
        .filter(|s| matches!(s.state, SnapshotState::Pending | SnapshotState::Completed))
        .filter_map(|s| {
            let (lock, date) = wanted(s)?;
            decide(&s.id, lock, date, locks.get(&s.id), now)
        })
        .collect()
}

/// The requests among `decisions`, in order: what the executor sends.
pub fn requests(decisions: &[LockDecision]) -> Vec<&LockRequest> {
    decisions
        .iter()
        .filter_map(|d| match d {
            LockDecision::Lock(r) => Some(r),
            LockDecision::Skip { .. } => None,
        })
        .collect()
}

/// Adds `decisions` to `report`: each request with what became of it (`executed`, in the order
/// of [`requests`]; empty for a dry run), each skip as skipped. `elsewhere`: the region of the
/// snapshots when it is not the report's (copies in their destination).
pub fn report_locks(
    report: &mut RegionReport,
    opts: ReportOptions,
    decisions: &[LockDecision],
    executed: Vec<Executed>,
    elsewhere: Option<&str>,
) {
    let mut executed = executed.into_iter();
    let at = elsewhere.map(|r| format!(" (in {r})")).unwrap_or_default();
    for decision in decisions {
        match decision {
            LockDecision::Lock(r) => {
                let until = r.until.format("%Y-%m-%dT%H:%MZ");
                let reason = match r.cool_off_hours {
                    Some(h) => format!("lock {} until {until}, cool-off {h} h{at}", r.mode.as_str()),
                    None => format!("lock {} until {until}{at}", r.mode.as_str()),
                };
                if report.mutation(opts, Action::Lock, executed.next(), |kind| {
                    ActionReport::new(kind, &r.snapshot_id, reason)
                }) {
                    report.locked += 1;
                }
            }
            LockDecision::Skip { snapshot_id, reason } => {
                report.skipped += 1;
                let mut a = ActionReport::new(Action::Lock, snapshot_id, format!("{reason}{at}"));
                a.outcome = Outcome::Skipped;
                report.note(opts, || a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration_set::StoredConfiguration;
    use crate::inventory::LockState;
    use crate::testing::snapshot;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 10, 12, 0, 0).unwrap()
    }

    fn date(days: i64) -> NaiveDate {
        now().date_naive() + TimeDelta::days(days)
    }

    const COMPLIANCE: Lock = Lock { mode: LockMode::Compliance, cool_off_hours: Some(24) };
    const GOVERNANCE: Lock = Lock { mode: LockMode::Governance, cool_off_hours: None };

    fn lock(state: LockState, days: i64) -> SnapshotLock {
        SnapshotLock { state, expires: Some(start_of(date(days))) }
    }

    fn request(mode: LockMode, days: i64, cool_off: Option<u8>) -> Option<LockDecision> {
        Some(LockDecision::Lock(LockRequest {
            snapshot_id: "snap-1".into(),
            mode,
            until: start_of(date(days)),
            cool_off_hours: cool_off,
        }))
    }

    #[test]
    fn a_first_lock_has_the_configured_mode_and_cool_off_until_delete_on() {
        assert_eq!(decide("snap-1", COMPLIANCE, date(7), None, now()), request(LockMode::Compliance, 7, Some(24)));
        assert_eq!(decide("snap-1", GOVERNANCE, date(7), None, now()), request(LockMode::Governance, 7, None));
    }

    #[test]
    fn a_lock_long_enough_is_left_alone_and_one_too_short_is_extended_in_its_own_mode() {
        for state in [LockState::Governance, LockState::ComplianceCooloff, LockState::Compliance] {
            assert_eq!(decide("snap-1", COMPLIANCE, date(7), Some(&lock(state, 7)), now()), None, "{state:?}");
            assert_eq!(decide("snap-1", COMPLIANCE, date(7), Some(&lock(state, 30)), now()), None, "never shortened");
        }
        // Governance found where compliance is configured: extended, never changed to compliance.
        assert_eq!(
            decide("snap-1", COMPLIANCE, date(9), Some(&lock(LockState::Governance, 7)), now()),
            request(LockMode::Governance, 9, None)
        );
        assert_eq!(
            decide("snap-1", GOVERNANCE, date(9), Some(&lock(LockState::Compliance, 7)), now()),
            request(LockMode::Compliance, 9, None),
            "and never weakened, without a second cool-off"
        );
    }

    #[test]
    fn an_expired_lock_is_locked_again_without_a_cool_off() {
        let expired = SnapshotLock { state: LockState::Expired, expires: Some(now() - TimeDelta::days(1)) };
        assert_eq!(
            decide("snap-1", COMPLIANCE, date(3), Some(&expired), now()),
            request(LockMode::Compliance, 3, None)
        );
        // A listing that says governance but whose date passed since does not hold either.
        let passed = SnapshotLock { state: LockState::Governance, expires: Some(now() - TimeDelta::minutes(1)) };
        assert!(!passed.holds(now()));
        assert_eq!(decide("snap-1", GOVERNANCE, date(3), Some(&passed), now()), request(LockMode::Governance, 3, None));
    }

    #[test]
    fn a_date_less_than_an_hour_ahead_is_a_skip() {
        let late = Utc.with_ymd_and_hms(2026, 3, 10, 23, 30, 0).unwrap();
        match decide("snap-1", COMPLIANCE, date(1), None, late) {
            Some(LockDecision::Skip { reason, .. }) => assert!(reason.contains("less than an hour ahead"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(decide("snap-1", COMPLIANCE, date(0), None, now()), Some(LockDecision::Skip { .. })));
        let early = Utc.with_ymd_and_hms(2026, 3, 10, 22, 59, 0).unwrap();
        assert!(matches!(decide("snap-1", COMPLIANCE, date(1), None, early), Some(LockDecision::Lock(_))));
    }

    #[test]
    fn the_strongest_lock_of_the_tiers_a_snapshot_carries() {
        let configs = ConfigurationSet::from_stored(&[StoredConfiguration {
            id: "c".into(),
            text: r#"{"match": {"tag:backup": "yes"}, "schedules": [
                {"name": "daily", "frequency": "1 day", "retention": "7 days", "minimum": 3},
                {"name": "weekly", "frequency": "7 days", "retention": "35 days", "minimum": 2,
                 "lock": {"mode": "governance"}},
                {"name": "monthly", "frequency": "30 days", "retention": "365 days", "minimum": 1,
                 "lock": {"mode": "compliance", "cool_off_hours": 12}}],
                "copies": [{"region": "eu-west-1", "retention": "30 days", "lock": {"mode": "governance"}}]}"#
                .into(),
        }]);
        let s = |tiers: &str| {
            snapshot("snap-1")
                .volume("vol-1")
                .tags(&[("ebs-snapper:config", "c"), ("ebs-snapper:tier", tiers), ("DeleteOn", "2026-04-01")])
                .build()
        };
        let on = NaiveDate::from_ymd_opt(2026, 4, 1).unwrap();
        assert_eq!(wanted_source_lock(&configs, &s("daily")), None);
        assert_eq!(wanted_source_lock(&configs, &s("daily,weekly")), Some((GOVERNANCE, on)));
        assert_eq!(
            wanted_source_lock(&configs, &s("daily,weekly,monthly")),
            Some((Lock { mode: LockMode::Compliance, cool_off_hours: Some(12) }, on))
        );
        let copy = snapshot("snap-2")
            .copy()
            .tags(&[("ebs-snapper:config", "c"), ("replication_src_region", "us-east-1"), ("DeleteOn", "2026-04-01")])
            .build();
        assert_eq!(wanted_source_lock(&configs, &copy), None, "a copy is locked by its destination's lock");
        assert_eq!(wanted_copy_lock(&configs, "eu-west-1", &copy), Some((GOVERNANCE, on)));
        assert_eq!(wanted_copy_lock(&configs, "us-west-2", &copy), None);
        // Only pending and completed snapshots are locked.
        let errored = snapshot("snap-3").state(SnapshotState::Error).tags(&[("ebs-snapper:config", "c")]).build();
        let plan = plan_locks([&s("weekly"), &errored], |x| wanted_source_lock(&configs, x), &Locks::new(), now());
        assert_eq!(plan.len(), 1);
    }
}

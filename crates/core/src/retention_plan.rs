//! The retention planner: configurations + inventory + today -> one decision per snapshot tagged
//! `DeleteOn` (SPEC §5).
//!
//! The Python tool had two bugs this planner is built against: it compared every expired
//! snapshot with the count taken *before* deleting (ten expired snapshots with `minimum: 5` were
//! all deleted), and it only looked at `DeleteOn` dates of the last eight days. Here each
//! planned delete lowers the volume's count, and any date on or before today is expired.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;

use crate::configurations::ConfigurationSet;
use crate::inventory::{Inventory, Snapshot, SnapshotState};
use crate::tags::{DELETE_ON, TAG_CONFIG, TAG_INSTANCE};

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
    /// An orphan whose minimum cannot be determined, and `ignore_retention` is off.
    Undetermined,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delete {
    /// Expired and more than the minimum remain.
    Expired { delete_on: NaiveDate, count_before: usize, minimum: u32 },
    /// Expired orphan with undetermined minimum, deleted because `ignore_retention` is set.
    IgnoreRetention { delete_on: NaiveDate },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetentionAction {
    Delete(Delete),
    Keep(Keep),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionDecision {
    pub snapshot_id: String,
    pub volume_id: Option<String>,
    /// The configuration whose minimum applied, when one did.
    pub config_id: Option<String>,
    pub action: RetentionAction,
}

impl RetentionDecision {
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
            RetentionAction::Keep(Keep::NotExpired(d)) => format!("not expired until {d}"),
            RetentionAction::Keep(Keep::Unparseable(t)) => format!("DeleteOn {t:?} is not a date (YYYY-MM-DD); kept"),
            RetentionAction::Keep(Keep::NotCompleted(s)) => format!("state {s:?}, not completed"),
            RetentionAction::Keep(Keep::Ignored(what)) => format!("{what} is ignored"),
            RetentionAction::Keep(Keep::Minimum { minimum, count }) => {
                format!("expired, but {count} completed <= minimum {minimum}")
            }
            RetentionAction::Keep(Keep::Undetermined) => {
                "expired, but the volume's minimum is unknown (no configuration); set ignore_retention to delete"
                    .to_string()
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RetentionPlan {
    pub region: String,
    pub decisions: Vec<RetentionDecision>,
    pub warnings: Vec<String>,
}

impl RetentionPlan {
    pub fn deletes(&self) -> impl Iterator<Item = &RetentionDecision> {
        self.decisions.iter().filter(|d| d.is_delete())
    }
}

/// Parses a `DeleteOn` value (`YYYY-MM-DD`).
pub fn parse_delete_on(text: &str) -> Option<NaiveDate> {
    // Hand-parsed: this runs once per snapshot, and chrono's format-string parser is slow.
    let b = text.trim().as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        b[r].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)
}

/// Plans the clean-up of one region.
///
/// `inventory.snapshots` must hold the account's own snapshots tagged `DeleteOn` (others are
/// ignored here), `inventory.matched`/`instances` the instances each configuration matched, and
/// `ignored_volumes` the volumes of ignored instances.
pub fn plan_retention(
    configs: &ConfigurationSet,
    inventory: &Inventory,
    ignored_volumes: &BTreeSet<String>,
    today: NaiveDate,
) -> RetentionPlan {
    let ignored = configs.ignored_ids();
    let mut plan = RetentionPlan { region: inventory.region.clone(), ..Default::default() };

    // Volume -> the configuration that owns it (first configuration by id matching its instance).
    let mut volume_owner: BTreeMap<&str, &str> = BTreeMap::new();
    let mut claimed: BTreeSet<&str> = BTreeSet::new();
    for named in &configs.valid {
        for instance_id in inventory.matched.get(&named.id).into_iter().flatten() {
            if !claimed.insert(instance_id.as_str()) {
                continue;
            }
            if let Some(instance) = inventory.instances.get(instance_id) {
                for att in &instance.volumes {
                    volume_owner.entry(att.volume_id.as_str()).or_insert(named.id.as_str());
                }
            }
        }
    }

    // Only snapshots carrying DeleteOn are ever considered. Everything below works on indices
    // into `tagged` and borrowed keys, so the plan costs no allocation per comparison.
    let tagged: Vec<&Snapshot> = inventory.snapshots.iter().filter(|s| s.tags.contains_key(DELETE_ON)).collect();
    // A snapshot without a volume is its own group.
    fn group(s: &Snapshot) -> &str {
        s.volume_id.as_deref().unwrap_or(&s.id)
    }

    // Completed count per volume group.
    let mut completed: HashMap<&str, usize> = HashMap::new();
    for s in &tagged {
        if s.state == SnapshotState::Completed {
            *completed.entry(group(s)).or_default() += 1;
        }
    }

    // First pass: decisions that do not depend on counts; collect expired candidates per group.
    let mut decided: Vec<Option<RetentionDecision>> = vec![None; tagged.len()];
    let mut candidates: HashMap<&str, Vec<(usize, NaiveDate)>> = HashMap::new();
    for (i, s) in tagged.iter().enumerate() {
        let raw = &s.tags[DELETE_ON];
        let instance_tag = s.tags.get(TAG_INSTANCE);
        let keep = if ignored.contains(&s.id) {
            Some(Keep::Ignored(format!("snapshot {}", s.id)))
        } else if let Some(v) = s.volume_id.as_ref().filter(|v| ignored.contains(*v) || ignored_volumes.contains(*v)) {
            Some(Keep::Ignored(format!("volume {v}")))
        } else if let Some(inst) = instance_tag.filter(|inst| ignored.contains(*inst)) {
            Some(Keep::Ignored(format!("instance {inst}")))
        } else if s.state != SnapshotState::Completed {
            Some(Keep::NotCompleted(s.state))
        } else {
            match parse_delete_on(raw) {
                None => {
                    plan.warnings
                        .push(format!("snapshot {} has DeleteOn {raw:?}, which is not a date; it is kept", s.id));
                    Some(Keep::Unparseable(raw.clone()))
                }
                Some(d) if d > today => Some(Keep::NotExpired(d)),
                Some(d) => {
                    candidates.entry(group(s)).or_default().push((i, d));
                    None
                }
            }
        };
        if let Some(k) = keep {
            decided[i] = Some(RetentionDecision {
                snapshot_id: s.id.clone(),
                volume_id: s.volume_id.clone(),
                config_id: None,
                action: RetentionAction::Keep(k),
            });
        }
    }

    // Second pass: per group, oldest expired first, each delete lowering the count.
    let ignore_retention = configs.ignore_retention();
    for (group_key, mut expired) in candidates {
        // Oldest first; on equal start times the earlier expiry first, then by id.
        expired.sort_by(|a, b| {
            let (x, y) = (tagged[a.0], tagged[b.0]);
            x.start_time.cmp(&y.start_time).then(a.1.cmp(&b.1)).then_with(|| x.id.cmp(&y.id))
        });
        let mut count = completed.get(group_key).copied().unwrap_or(0);
        for (i, delete_on) in expired {
            let s = tagged[i];
            let owner = s
                .volume_id
                .as_deref()
                .and_then(|v| volume_owner.get(v).copied())
                .or_else(|| s.tags.get(TAG_CONFIG).and_then(|id| configs.get(id)).map(|c| c.id.as_str()));
            let (config_id, action) = match owner.and_then(|id| configs.get(id)) {
                Some(named) => {
                    let minimum = named.configuration.snapshot.minimum;
                    if count > minimum as usize {
                        let a = RetentionAction::Delete(Delete::Expired { delete_on, count_before: count, minimum });
                        count -= 1;
                        (Some(named.id.clone()), a)
                    } else {
                        (Some(named.id.clone()), RetentionAction::Keep(Keep::Minimum { minimum, count }))
                    }
                }
                None if ignore_retention => {
                    count = count.saturating_sub(1);
                    (None, RetentionAction::Delete(Delete::IgnoreRetention { delete_on }))
                }
                None => (None, RetentionAction::Keep(Keep::Undetermined)),
            };
            decided[i] = Some(RetentionDecision {
                snapshot_id: s.id.clone(),
                volume_id: s.volume_id.clone(),
                config_id,
                action,
            });
        }
    }

    // Decisions in a stable order, the same as planning: by volume, oldest first, then the
    // earlier DeleteOn, then id.
    // Sort the group keys once (far fewer than snapshots), then each group's few snapshots.
    let mut by_group: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in tagged.iter().enumerate() {
        by_group.entry(group(s)).or_default().push(i);
    }
    let mut groups: Vec<(&str, Vec<usize>)> = by_group.into_iter().collect();
    groups.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let order = groups.into_iter().flat_map(|(_, mut members)| {
        members.sort_by(|&a, &b| {
            let (x, y) = (tagged[a], tagged[b]);
            x.start_time
                .cmp(&y.start_time)
                .then_with(|| x.tags[DELETE_ON].cmp(&y.tags[DELETE_ON]))
                .then_with(|| x.id.cmp(&y.id))
        });
        members
    });
    plan.decisions = order.filter_map(|i| decided[i].take()).collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configurations::StoredConfiguration;
    use crate::inventory::{Attachment, Instance, Tags};
    use chrono::{DateTime, Duration, TimeZone, Utc};

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
        Snapshot {
            id: id.into(),
            volume_id: Some(vol.into()),
            start_time: at(age),
            state: SnapshotState::Completed,
            tags: [(DELETE_ON.to_string(), date)].into(),
            description: String::new(),
        }
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

    fn deleted(plan: &RetentionPlan) -> Vec<&str> {
        plan.deletes().map(|d| d.snapshot_id.as_str()).collect()
    }

    fn plan(c: &ConfigurationSet, inv: &Inventory) -> RetentionPlan {
        plan_retention(c, inv, &BTreeSet::new(), today())
    }

    #[test]
    fn ten_expired_minimum_five_deletes_exactly_the_five_oldest() {
        let c = configs(&[("a", cfg(5, ""))]);
        let snaps: Vec<Snapshot> = (0..10).map(|n| snap(&format!("snap-{n}"), "vol-1", 20 - n, -(n + 1))).collect();
        let p = plan(&c, &inventory(&[("a", "i-1", &["vol-1"])], snaps));
        assert_eq!(deleted(&p), vec!["snap-0", "snap-1", "snap-2", "snap-3", "snap-4"]);
        assert_eq!(p.decisions.iter().filter(|d| !d.is_delete()).count(), 5);
        assert_eq!(p.decisions[0].reason(), "expired 2020-06-14, 10 completed > minimum 5");
        assert!(matches!(p.decisions[9].action, RetentionAction::Keep(Keep::Minimum { minimum: 5, count: 5 })));
    }

    #[test]
    fn ten_snapshots_three_expired_minimum_eight_deletes_two_oldest_expired() {
        let c = configs(&[("a", cfg(8, ""))]);
        let mut snaps: Vec<Snapshot> = (0..3).map(|n| snap(&format!("old-{n}"), "vol-1", 30 - n, -1)).collect();
        snaps.extend((0..7).map(|n| snap(&format!("new-{n}"), "vol-1", 5 - n, 3)));
        let p = plan(&c, &inventory(&[("a", "i-1", &["vol-1"])], snaps));
        assert_eq!(deleted(&p), vec!["old-0", "old-1"]);
    }

    #[test]
    fn no_look_back_window_and_future_kept() {
        let c = configs(&[("a", cfg(0, ""))]);
        let p = plan(
            &c,
            &inventory(
                &[("a", "i-1", &["vol-1"])],
                vec![
                    snap("ancient", "vol-1", 400, -365),
                    snap("month", "vol-1", 40, -30),
                    snap("today", "vol-1", 5, 0),
                    snap("tomorrow", "vol-1", 4, 1),
                ],
            ),
        );
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
        let p = plan(&c, &inventory(&[("a", "i-1", &["vol-1"])], vec![s, t]));
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
        let p = plan(&c, &inventory(&[("a", "i-1", &["vol-1"])], vec![snap("done", "vol-1", 3, -1), pending, errored]));
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
        let p = plan(&c, &inventory(&[], snaps));
        assert_eq!(deleted(&p), vec!["s0", "s1"]);
        assert!(p.decisions.iter().all(|d| d.config_id.as_deref() == Some("a")));
    }

    #[test]
    fn orphan_without_configuration_is_kept_unless_ignore_retention() {
        let orphan = || {
            let mut s = snap("orphan", "vol-gone", 10, -1);
            s.tags.insert(TAG_CONFIG.into(), "deleted-config".into());
            s
        };
        let c = configs(&[("a", cfg(5, ""))]);
        let p = plan(&c, &inventory(&[], vec![orphan()]));
        assert!(deleted(&p).is_empty());
        assert_eq!(p.decisions[0].action, RetentionAction::Keep(Keep::Undetermined));
        let c = configs(&[("a", cfg(5, "")), ("b", cfg(5, r#", "ignore_retention": true"#))]);
        let p = plan(&c, &inventory(&[], vec![orphan()]));
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
        let p = plan(
            &c,
            &inventory(
                &[("a", "i-1", &["vol-1"])],
                vec![snap("a-later", "vol-1", 5, -1), snap("z-earlier", "vol-1", 5, -2)],
            ),
        );
        assert_eq!(deleted(&p), vec!["z-earlier"]);
        let order: Vec<&str> = p.decisions.iter().map(|d| d.snapshot_id.as_str()).collect();
        assert_eq!(order, vec!["z-earlier", "a-later"], "decisions are listed in planning order");
    }

    #[test]
    fn snapshots_without_delete_on_are_never_considered() {
        let c = configs(&[("a", cfg(0, r#", "ignore_retention": true"#))]);
        let mut untagged = snap("untagged", "vol-1", 100, -50);
        untagged.tags.clear();
        let p = plan(&c, &inventory(&[("a", "i-1", &["vol-1"])], vec![untagged]));
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
        let p = plan(&c, &inventory(&[("a", "i-1", &["vol-1"])], snaps));
        assert!(deleted(&p).is_empty());
    }
}

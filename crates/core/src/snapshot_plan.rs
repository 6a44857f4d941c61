//! The snapshot planner: configurations + inventory + now -> one decision per volume (SPEC §4).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::configurations::ConfigurationSet;
use crate::inventory::{Inventory, SnapshotState};
use crate::job::Job;
use crate::report::{Action, ActionReport, Executed, RegionReport, ReportOptions};
use crate::schedule::{due, Due};
use crate::tags::{snapshot_description, snapshot_tags};

/// A complete `CreateSnapshot` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub volume_id: String,
    pub description: String,
    /// Tags applied atomically at creation, in order.
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeAction {
    /// Take a snapshot now.
    Create { request: SnapshotRequest, due: Due },
    /// The newest snapshot is recent enough.
    NotDue { last: DateTime<Utc>, until: DateTime<Utc> },
    /// A cron schedule that never fires again after the newest snapshot.
    NeverDue { last: DateTime<Utc> },
    /// The volume id is in an `ignore` list.
    IgnoredVolume,
    /// The instance id is in an `ignore` list.
    IgnoredInstance,
    /// DescribeVolumes did not return the volume (detached or deleted meanwhile).
    VolumeNotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDecision {
    pub volume_id: String,
    pub instance_id: String,
    pub device: String,
    pub config_id: String,
    pub action: VolumeAction,
}

impl VolumeDecision {
    /// The reason, for people.
    pub fn reason(&self) -> String {
        match &self.action {
            VolumeAction::Create { due: Due::NoSnapshot, .. } => "no pending or completed snapshot".to_string(),
            VolumeAction::Create { due: Due::Due { since }, .. } => {
                format!("due since {}", since.format("%Y-%m-%d %H:%M UTC"))
            }
            VolumeAction::Create { .. } => "due".to_string(),
            VolumeAction::NotDue { last, until } => format!(
                "not due until {} (last snapshot {})",
                until.format("%Y-%m-%d %H:%M UTC"),
                last.format("%Y-%m-%d %H:%M UTC")
            ),
            VolumeAction::NeverDue { last } => {
                format!("schedule never fires after the last snapshot ({})", last.format("%Y-%m-%d %H:%M UTC"))
            }
            VolumeAction::IgnoredVolume => "volume is ignored".to_string(),
            VolumeAction::IgnoredInstance => "instance is ignored".to_string(),
            VolumeAction::VolumeNotFound => "volume not found".to_string(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SnapshotPlan {
    pub region: String,
    pub decisions: Vec<VolumeDecision>,
    /// Problems worth telling the operator (overlapping configurations...).
    pub warnings: Vec<String>,
}

impl SnapshotPlan {
    /// The snapshots to create, in the plan's order.
    pub fn requests(&self) -> impl Iterator<Item = (&VolumeDecision, &SnapshotRequest)> {
        self.decisions.iter().filter_map(|d| match &d.action {
            VolumeAction::Create { request, .. } => Some((d, request)),
            _ => None,
        })
    }

    /// The report of this plan. `created`: what became of each request of [`Self::requests`],
    /// in that order (empty for a dry run: the creates are reported planned).
    /// `failed_configs`: the configurations whose instances could not be listed (id -> error).
    pub fn report<'a>(
        &self,
        failed_configs: impl IntoIterator<Item = (&'a String, &'a String)>,
        created: Vec<Executed>,
        opts: ReportOptions,
    ) -> RegionReport {
        let mut report = RegionReport::for_plan(Job::Snapshot, &self.region, opts, &self.warnings, failed_configs);
        let mut created = created.into_iter();
        for decision in &self.decisions {
            let listed = |action: Action| {
                let mut a = ActionReport::new(action, &decision.volume_id, decision.reason());
                a.instance_id = Some(decision.instance_id.clone());
                a.device = Some(decision.device.clone());
                a.config_id = Some(decision.config_id.clone());
                a
            };
            match &decision.action {
                VolumeAction::Create { .. } => {
                    if report.mutation(listed(Action::Create), created.next()) {
                        report.created += 1;
                    }
                }
                VolumeAction::NotDue { .. } | VolumeAction::NeverDue { .. } => {
                    report.not_due += 1;
                    report.note(opts, || listed(Action::NotDue));
                }
                VolumeAction::IgnoredVolume | VolumeAction::IgnoredInstance => {
                    report.ignored += 1;
                    report.note(opts, || listed(Action::Ignored));
                }
                VolumeAction::VolumeNotFound => {
                    report.skipped += 1;
                    report.note(opts, || listed(Action::Skipped));
                }
            }
        }
        report
    }
}

/// The UTC date on which a snapshot taken at `now` with this retention may be deleted.
pub fn delete_on(now: DateTime<Utc>, retention: std::time::Duration) -> NaiveDate {
    let retention = TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX);
    now.checked_add_signed(retention).map(|t| t.date_naive()).unwrap_or(NaiveDate::MAX)
}

/// Plans the snapshots of one region. `version` goes into descriptions.
pub fn plan_snapshots(
    configs: &ConfigurationSet,
    inventory: &Inventory,
    now: DateTime<Utc>,
    version: &str,
) -> SnapshotPlan {
    let ignored = configs.ignored_ids();
    let mut plan = SnapshotPlan { region: inventory.region.clone(), ..Default::default() };

    // Newest pending/completed start time per volume (errored snapshots do not count).
    let mut last: HashMap<&str, DateTime<Utc>> = HashMap::new();
    for s in &inventory.snapshots {
        if matches!(s.state, SnapshotState::Pending | SnapshotState::Completed) {
            if let Some(v) = s.volume_id.as_deref() {
                let entry = last.entry(v).or_insert(s.start_time);
                if s.start_time > *entry {
                    *entry = s.start_time;
                }
            }
        }
    }

    // Which configuration each instance belongs to (the one owner rule, `Inventory::claims`).
    let claims = inventory.claims(configs);
    let mut seen_volumes: HashSet<&str> = HashSet::new();

    for &(named, instance_id) in &claims.owned {
        let policy = &named.configuration.snapshot;
        let Some(instance) = inventory.instances.get(instance_id) else { continue };
        let instance_ignored = ignored.contains(&instance.id);
        for att in &instance.volumes {
            // A multi-attached volume is decided once, by its first instance.
            if !seen_volumes.insert(att.volume_id.as_str()) {
                continue;
            }
            let action = if instance_ignored {
                VolumeAction::IgnoredInstance
            } else if ignored.contains(&att.volume_id) {
                VolumeAction::IgnoredVolume
            } else if let Some(volume) = inventory.volumes.get(&att.volume_id) {
                let last = last.get(att.volume_id.as_str()).copied();
                match due(&policy.frequency, last, now) {
                    d @ (Due::NoSnapshot | Due::Due { .. }) => VolumeAction::Create {
                        request: SnapshotRequest {
                            volume_id: att.volume_id.clone(),
                            description: snapshot_description(
                                &instance.id,
                                version,
                                instance.image_id.as_deref(),
                                &att.volume_id,
                            ),
                            tags: snapshot_tags(
                                &instance.tags,
                                &volume.tags,
                                delete_on(now, policy.retention),
                                &instance.id,
                                &att.device,
                                &named.id,
                            ),
                        },
                        due: d,
                    },
                    Due::NotUntil(until) => VolumeAction::NotDue { last: last.unwrap_or(now), until },
                    Due::Never => VolumeAction::NeverDue { last: last.unwrap_or(now) },
                }
            } else {
                VolumeAction::VolumeNotFound
            };
            plan.decisions.push(VolumeDecision {
                volume_id: att.volume_id.clone(),
                instance_id: instance.id.clone(),
                device: att.device.clone(),
                config_id: named.id.clone(),
                action,
            });
        }
    }
    for (instance_id, ids) in &claims.overlaps {
        plan.warnings.push(format!(
            "instance {instance_id} is matched by configurations {} and {}; {} applies",
            ids[0],
            ids[1..].join(", "),
            ids[0]
        ));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configurations::StoredConfiguration;
    use crate::inventory::{Attachment, Instance, Snapshot, Tags, Volume};
    use crate::tags::{DELETE_ON, TAG_CONFIG};
    use chrono::TimeZone;
    use std::collections::BTreeMap;

    #[derive(Debug, Default, PartialEq, Eq)]
    struct Counts {
        due: usize,
        not_due: usize,
        ignored: usize,
        skipped: usize,
    }

    /// The plan's counts, as its dry-run report gives them.
    fn counts(plan: &SnapshotPlan) -> Counts {
        let report = plan.report(&BTreeMap::new(), Vec::new(), ReportOptions { dry_run: true, every_action: false });
        // Without every action, only the mutations (the creates) are listed.
        Counts { due: report.actions.len(), not_due: report.not_due, ignored: report.ignored, skipped: report.skipped }
    }

    fn t(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2020, 1, d, h, m, 0).unwrap()
    }

    fn configs(items: &[(&str, &str)]) -> ConfigurationSet {
        ConfigurationSet::from_stored(
            &items
                .iter()
                .map(|(id, text)| StoredConfiguration { id: id.to_string(), text: text.to_string() })
                .collect::<Vec<_>>(),
        )
    }

    fn cfg(freq: &str, ignore: &[&str]) -> String {
        format!(
            r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "5 days", "minimum": 5, "frequency": "{freq}"}}, "ignore": {}}}"#,
            serde_json::to_string(ignore).unwrap()
        )
    }

    fn instance(id: &str, vols: &[&str]) -> Instance {
        Instance {
            id: id.into(),
            state: "running".into(),
            image_id: Some("ami-1".into()),
            tags: [("Name".to_string(), format!("name-{id}")), ("backup".to_string(), "yes".to_string())].into(),
            volumes: vols
                .iter()
                .enumerate()
                .map(|(i, v)| Attachment {
                    device: format!("/dev/xvd{}", (b'a' + i as u8) as char),
                    volume_id: v.to_string(),
                })
                .collect(),
        }
    }

    fn inventory(matched: &[(&str, &[&str])], instances: Vec<Instance>, snapshots: Vec<Snapshot>) -> Inventory {
        let mut inv = Inventory { region: "us-east-1".into(), ..Default::default() };
        for (cfg, ids) in matched {
            inv.matched.insert(cfg.to_string(), ids.iter().map(|s| s.to_string()).collect());
        }
        for i in instances {
            for a in &i.volumes {
                inv.volumes.insert(a.volume_id.clone(), Volume { id: a.volume_id.clone(), tags: Tags::new() });
            }
            inv.instances.insert(i.id.clone(), i);
        }
        inv.snapshots = snapshots;
        inv
    }

    fn snap(id: &str, vol: &str, at: DateTime<Utc>, state: SnapshotState) -> Snapshot {
        Snapshot {
            id: id.into(),
            is_copy: false,
            volume_id: Some(vol.into()),
            start_time: at,
            state,
            tags: Tags::new(),
            description: String::new(),
        }
    }

    #[test]
    fn every_attached_volume_without_snapshot_is_due() {
        let c = configs(&[("a", &cfg("2 hours", &[]))]);
        let inv = inventory(&[("a", &["i-1"])], vec![instance("i-1", &["vol-1", "vol-2"])], vec![]);
        let plan = plan_snapshots(&c, &inv, t(6, 12, 0), "9.9.9");
        assert_eq!(counts(&plan), Counts { due: 2, ..Default::default() });
        let (d, r) = plan.requests().next().unwrap();
        assert_eq!(d.device, "/dev/xvda");
        assert_eq!(r.description, "Created from i-1 by EbsSnapper(9.9.9) for ami-1 from vol-1");
        assert!(r.tags.contains(&(DELETE_ON.to_string(), "2020-01-11".to_string())));
        assert!(r.tags.contains(&(TAG_CONFIG.to_string(), "a".to_string())));
        assert!(r.tags.contains(&("backup".to_string(), "yes".to_string())));
    }

    #[test]
    fn recent_snapshot_is_not_due_pending_counts_error_does_not() {
        let c = configs(&[("a", &cfg("2 hours", &[]))]);
        let now = t(6, 12, 0);
        let inv = inventory(
            &[("a", &["i-1"])],
            vec![instance("i-1", &["vol-1", "vol-2", "vol-3"])],
            vec![
                snap("s1", "vol-1", t(6, 11, 0), SnapshotState::Completed),
                snap("s2", "vol-2", t(6, 11, 30), SnapshotState::Pending),
                snap("s3", "vol-3", t(6, 11, 30), SnapshotState::Error),
                snap("s4", "vol-3", t(6, 9, 0), SnapshotState::Completed),
            ],
        );
        let plan = plan_snapshots(&c, &inv, now, "v");
        let by_vol: BTreeMap<&str, &VolumeAction> =
            plan.decisions.iter().map(|d| (d.volume_id.as_str(), &d.action)).collect();
        assert_eq!(by_vol["vol-1"], &VolumeAction::NotDue { last: t(6, 11, 0), until: t(6, 12, 54) });
        assert!(matches!(by_vol["vol-2"], VolumeAction::NotDue { .. }));
        assert!(matches!(by_vol["vol-3"], VolumeAction::Create { due: Due::Due { .. }, .. }), "{:?}", by_vol["vol-3"]);
    }

    #[test]
    fn ignored_instance_and_volume() {
        let c = configs(&[("a", &cfg("2 hours", &["i-2", "vol-1"]))]);
        let inv = inventory(
            &[("a", &["i-1", "i-2"])],
            vec![instance("i-1", &["vol-1", "vol-3"]), instance("i-2", &["vol-2"])],
            vec![],
        );
        let plan = plan_snapshots(&c, &inv, t(6, 12, 0), "v");
        let by_vol: BTreeMap<&str, &VolumeAction> =
            plan.decisions.iter().map(|d| (d.volume_id.as_str(), &d.action)).collect();
        assert_eq!(by_vol["vol-1"], &VolumeAction::IgnoredVolume);
        assert_eq!(by_vol["vol-2"], &VolumeAction::IgnoredInstance);
        assert!(matches!(by_vol["vol-3"], VolumeAction::Create { .. }));
        assert_eq!(counts(&plan), Counts { due: 1, ignored: 2, ..Default::default() });
    }

    #[test]
    fn ignore_lists_apply_account_wide() {
        let c = configs(&[("a", &cfg("2 hours", &[])), ("b", &cfg("1 day", &["vol-1"]))]);
        let inv = inventory(&[("a", &["i-1"])], vec![instance("i-1", &["vol-1"])], vec![]);
        let plan = plan_snapshots(&c, &inv, t(6, 12, 0), "v");
        assert_eq!(plan.decisions[0].action, VolumeAction::IgnoredVolume);
    }

    /// The one owner rule the snapshot and retention planners and the fleet check share.
    #[test]
    fn claims_give_each_instance_to_the_first_configuration_by_id() {
        let c = configs(&[("b", &cfg("1 week", &[])), ("a", &cfg("1 day", &[])), ("c", &cfg("1 day", &[]))]);
        let inv = inventory(
            &[("a", &["i-2", "i-1"]), ("b", &["i-1", "i-3"]), ("c", &["i-1", "i-3"])],
            vec![instance("i-1", &["vol-1"]), instance("i-2", &["vol-2"]), instance("i-3", &["vol-3"])],
            vec![],
        );
        let claims = inv.claims(&c);
        let owned: Vec<(&str, &str)> = claims.owned.iter().map(|(n, i)| (n.id.as_str(), *i)).collect();
        assert_eq!(owned, [("a", "i-2"), ("a", "i-1"), ("b", "i-3")]);
        let overlaps: Vec<(&str, Vec<&str>)> = claims.overlaps.iter().map(|(i, ids)| (*i, ids.clone())).collect();
        assert_eq!(overlaps, [("i-1", vec!["a", "b", "c"]), ("i-3", vec!["b", "c"])]);
    }

    #[test]
    fn overlap_first_configuration_wins_with_warning() {
        let c = configs(&[("b-weekly", &cfg("1 week", &[])), ("a-daily", &cfg("1 day", &[]))]);
        let inv =
            inventory(&[("a-daily", &["i-1"]), ("b-weekly", &["i-1"])], vec![instance("i-1", &["vol-1"])], vec![]);
        let plan = plan_snapshots(&c, &inv, t(6, 12, 0), "v");
        assert_eq!(plan.decisions.len(), 1);
        assert_eq!(plan.decisions[0].config_id, "a-daily");
        assert_eq!(
            plan.warnings,
            vec!["instance i-1 is matched by configurations a-daily and b-weekly; a-daily applies"]
        );
    }

    #[test]
    fn multi_attached_volume_is_decided_once() {
        let c = configs(&[("a", &cfg("2 hours", &[]))]);
        let inv = inventory(
            &[("a", &["i-1", "i-2"])],
            vec![instance("i-1", &["vol-1"]), instance("i-2", &["vol-1"])],
            vec![],
        );
        let plan = plan_snapshots(&c, &inv, t(6, 12, 0), "v");
        assert_eq!(plan.decisions.len(), 1);
    }

    #[test]
    fn invalid_configuration_plans_nothing() {
        let c = configs(&[(
            "bad",
            r#"{"match": {}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}}"#,
        )]);
        let inv = inventory(&[("bad", &["i-1"])], vec![instance("i-1", &["vol-1"])], vec![]);
        assert!(plan_snapshots(&c, &inv, t(6, 12, 0), "v").decisions.is_empty());
    }

    #[test]
    fn missing_volume_is_skipped() {
        let c = configs(&[("a", &cfg("2 hours", &[]))]);
        let mut inv = inventory(&[("a", &["i-1"])], vec![instance("i-1", &["vol-1"])], vec![]);
        inv.volumes.clear();
        let plan = plan_snapshots(&c, &inv, t(6, 12, 0), "v");
        assert_eq!(plan.decisions[0].action, VolumeAction::VolumeNotFound);
        assert_eq!(counts(&plan).skipped, 1);
    }

    #[test]
    fn delete_on_is_the_utc_date_of_now_plus_retention() {
        assert_eq!(
            delete_on(t(6, 23, 30), std::time::Duration::from_secs(3600)),
            NaiveDate::from_ymd_opt(2020, 1, 7).unwrap()
        );
        assert_eq!(delete_on(t(6, 12, 0), std::time::Duration::from_secs(u64::MAX / 4)), NaiveDate::MAX);
    }
}

//! The snapshot planner: configurations + inventory + now -> one decision per volume (SPEC §4,
//! §11): which tiers are due, which volumes are selected, and which are taken together as an
//! instance's crash-consistent set.

use std::collections::BTreeSet;

use rustc_hash::{FxHashMap, FxHashSet};

use chrono::{DateTime, NaiveDate, Utc};

pub use crate::config::{excluding_tag, exclusion};
use crate::config::{Configuration, Consistency};
use crate::configuration_set::{ConfigurationSet, NamedConfiguration};
use crate::inventory::{Attachment, Instance, Inventory, SnapshotState, Tags};
use crate::job::Job;
use crate::report::Verdict;
use crate::report::{Action, ActionReport, Executed, RegionReport, ReportOptions};
use crate::schedule::{due, Due};
pub use crate::tags::delete_on;
use crate::tags::{set_description, snapshot_description, snapshot_tags, Provenance, TAG_TIER};
use crate::tiers::{carried, TierSet};

/// A complete `CreateSnapshot` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequest {
    pub volume_id: String,
    pub description: String,
    /// Tags applied atomically at creation, in order.
    pub tags: Vec<(String, String)>,
    /// The newest start time among the volume's pending and completed snapshots as listed for
    /// the plan: a snapshot this request makes starts after it (by AWS's clock), so one started
    /// at or before it is never taken for the effect of a lost answer.
    pub newer_than: Option<DateTime<Utc>>,
}

/// A complete `CreateSnapshots` request: one crash-consistent set of an instance's selected
/// volumes, every snapshot with the same tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetRequest {
    pub instance_id: String,
    /// The `ebs-snapper:set` id shared by the set's snapshots: the instance and the run's time,
    /// so a lost answer can be looked up by it.
    pub set_id: String,
    /// The volumes in the set (those selected).
    pub volume_ids: Vec<String>,
    /// `ExcludeBootVolume`: the root volume is attached but not selected.
    pub exclude_boot: bool,
    /// `ExcludeDataVolumeIds`: the other attached volumes not selected.
    pub exclude_data_volumes: Vec<String>,
    pub description: String,
    pub tags: Vec<(String, String)>,
}

/// What became of a set: the outcome of its one call, and the snapshot of each volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetExecuted {
    pub outcome: Executed,
    /// (volume id, snapshot id) of each snapshot the call made.
    pub snapshots: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeAction {
    /// Take a snapshot now, for the tiers that are due.
    Create { request: SnapshotRequest, due: Due, tiers: Option<String> },
    /// Taken now with its instance's other selected volumes: the plan's `sets[set]`.
    InSet { set: usize, due: Option<Due>, tiers: Option<String> },
    /// The newest snapshot (of the tier due soonest) is recent enough.
    NotDue { last: DateTime<Utc>, until: DateTime<Utc>, tier: Option<String> },
    /// A cron schedule that never fires again after the newest snapshot (of every tier).
    NeverDue { last: DateTime<Utc> },
    /// The volume id is in an `ignore` list.
    IgnoredVolume,
    /// The instance id is in an `ignore` list.
    IgnoredInstance,
    /// Not selected by `exclude_boot` or `exclude_tags`: the reason.
    Excluded(String),
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

const TIME: &str = "%Y-%m-%d %H:%M UTC";

fn due_reason(due: &Due) -> String {
    match due {
        Due::NoSnapshot => "no pending or completed snapshot".to_string(),
        Due::Due { since } => format!("due since {}", since.format(TIME)),
        _ => "due".to_string(),
    }
}

fn for_tiers(tiers: &Option<String>) -> String {
    match tiers {
        Some(t) if t.contains(',') => format!(" (tiers {t})"),
        Some(t) => format!(" (tier {t})"),
        None => String::new(),
    }
}

impl VolumeDecision {
    /// The reason, for people; a tiered configuration's decisions name the tier that made them.
    pub fn reason(&self) -> String {
        match &self.action {
            VolumeAction::Create { due, tiers, .. } => format!("{}{}", due_reason(due), for_tiers(tiers)),
            VolumeAction::InSet { due, tiers, .. } => {
                let why = match due {
                    Some(d) => due_reason(d),
                    None => "its instance is due".to_string(),
                };
                format!("{why}{}, in a crash-consistent set of instance {}", for_tiers(tiers), self.instance_id)
            }
            VolumeAction::NotDue { last, until, tier } => {
                format!("not due until {}{} (last snapshot {})", until.format(TIME), for_tiers(tier), last.format(TIME))
            }
            VolumeAction::NeverDue { last } => {
                format!("schedule never fires after the last snapshot ({})", last.format(TIME))
            }
            VolumeAction::IgnoredVolume => "volume is ignored".to_string(),
            VolumeAction::IgnoredInstance => "instance is ignored".to_string(),
            VolumeAction::Excluded(why) => format!("excluded: {why}"),
            VolumeAction::VolumeNotFound => "volume not found".to_string(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SnapshotPlan {
    pub region: String,
    /// When it was planned.
    pub now: DateTime<Utc>,
    pub decisions: Vec<VolumeDecision>,
    /// The crash-consistent sets to take, each one `CreateSnapshots`.
    pub sets: Vec<SetRequest>,
    /// Problems worth telling the operator (overlapping configurations...).
    pub warnings: Vec<String>,
    /// Selected volumes whose newest snapshot is in state `error` (SPEC §10.11), each a failure
    /// of the run: (volume, snapshot, AWS's reason).
    pub errored: Vec<(String, String, String)>,
}

impl SnapshotPlan {
    /// The snapshots to create one by one, in the plan's order.
    pub fn requests(&self) -> impl Iterator<Item = (&VolumeDecision, &SnapshotRequest)> {
        self.decisions.iter().filter_map(|d| match &d.action {
            VolumeAction::Create { request, .. } => Some((d, request)),
            _ => None,
        })
    }

    /// The mutations the plan asks for: one per volume snapshot and one per set.
    pub fn mutations(&self) -> usize {
        self.requests().count() + self.sets.len()
    }

    /// The report of this plan. `created`: what became of each request of [`Self::requests`],
    /// in that order, and `sets` of each of [`Self::sets`] (both empty for a dry run: the
    /// creates are reported planned). `failed_configs`: the configurations whose instances could
    /// not be listed (id -> error). A set's volumes are reported one by one, each with its
    /// snapshot.
    pub fn report<'a>(
        &self,
        failed_configs: impl IntoIterator<Item = (&'a String, &'a String)>,
        created: Vec<Executed>,
        sets: Vec<SetExecuted>,
        opts: ReportOptions,
    ) -> RegionReport {
        let mut report = RegionReport::for_plan(Job::Snapshot, &self.region, opts, &self.warnings, failed_configs);
        for (volume, snapshot, message) in &self.errored {
            report.failed += 1;
            report.errors.push(format!(
                "{volume}: its newest snapshot {snapshot} ended in state error ({message}); a new one is taken"
            ));
        }
        let mut created = created.into_iter();
        for decision in &self.decisions {
            let listed = |action: Action| {
                let mut a = ActionReport::new(action, &decision.volume_id, decision.reason());
                a.instance_id = Some(decision.instance_id.clone());
                a.device = Some(decision.device.clone());
                a.config_id = Some(decision.config_id.clone());
                a
            };
            match protection(&decision.action, self.now) {
                Some(Verdict::Never) => report.volumes.never += 1,
                Some(Verdict::Overdue) => report.volumes.overdue += 1,
                Some(_) => report.volumes.ok += 1,
                None => {}
            }
            match &decision.action {
                VolumeAction::Create { .. } => {
                    if report.mutation(opts, Action::Create, created.next(), listed) {
                        report.created += 1;
                    }
                }
                VolumeAction::InSet { set, .. } => {
                    let executed = sets.get(*set).map(|done| match &done.outcome {
                        Executed::Done(_) => {
                            match done.snapshots.iter().find(|(volume, _)| *volume == decision.volume_id) {
                                Some((_, snapshot)) => Executed::Done(Some(snapshot.clone())),
                                None => Executed::Failed("CreateSnapshots made no snapshot of this volume".to_string()),
                            }
                        }
                        other => other.clone(),
                    });
                    if report.mutation(opts, Action::Create, executed, listed) {
                        report.created += 1;
                    }
                }
                VolumeAction::NotDue { .. } | VolumeAction::NeverDue { .. } => {
                    report.not_due += 1;
                    report.note(opts, || listed(Action::NotDue));
                }
                VolumeAction::IgnoredVolume | VolumeAction::IgnoredInstance | VolumeAction::Excluded(_) => {
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

/// A selected volume's protection as the run found it, before taking anything (the per-run
/// metric; `ebs-snapper status` gives the full verdicts): `never` without a pending or
/// completed snapshot, `overdue` when it became due more than the status report's slack ago,
/// otherwise `ok`. `None` for a volume not selected.
fn protection(action: &VolumeAction, now: DateTime<Utc>) -> Option<Verdict> {
    let of_due = |due: &Due| match due {
        Due::NoSnapshot => Verdict::Never,
        Due::Due { since } if now - *since > crate::schedule::OVERDUE_SLACK + crate::schedule::JOB_INTERVAL => {
            Verdict::Overdue
        }
        _ => Verdict::Ok,
    };
    match action {
        VolumeAction::Create { due, .. } => Some(of_due(due)),
        VolumeAction::InSet { due, .. } => Some(due.as_ref().map(of_due).unwrap_or(Verdict::Ok)),
        VolumeAction::NotDue { .. } | VolumeAction::NeverDue { .. } => Some(Verdict::Ok),
        VolumeAction::IgnoredVolume
        | VolumeAction::IgnoredInstance
        | VolumeAction::Excluded(_)
        | VolumeAction::VolumeNotFound => None,
    }
}

/// A volume's pending and completed snapshots as the due rule reads them: per distinct
/// `ebs-snapper:tier` value (a handful per volume), the newest start time.
type History<'a> = Vec<(Option<&'a str>, DateTime<Utc>)>;

/// Which of a configuration's tiers are due for a volume with this history.
struct TierDue {
    /// The due tiers, and the due state of the first of them.
    due: Option<(TierSet, Due)>,
    /// When nothing is due: the tier due soonest, when, and its newest snapshot.
    next: Option<(usize, DateTime<Utc>, DateTime<Utc>)>,
    /// The newest snapshot of any tier (for a schedule that never fires again).
    last: Option<DateTime<Utc>>,
}

fn tiers_due(configuration: &Configuration, history: Option<&History<'_>>, now: DateTime<Utc>) -> TierDue {
    let tiers = &configuration.tiers;
    let mut newest: [Option<DateTime<Utc>>; crate::config::MAX_TIERS] = [None; crate::config::MAX_TIERS];
    let mut last = None;
    for &(tag, start) in history.map(|h| h.as_slice()).unwrap_or(&[]) {
        last = last.max(Some(start));
        for i in carried(tag, tiers).indices() {
            if let Some(slot) = newest.get_mut(i) {
                *slot = (*slot).max(Some(start));
            }
        }
    }
    let mut out = TierDue { due: None, next: None, last };
    for (i, tier) in tiers.iter().enumerate() {
        match due(&tier.frequency, newest[i], now) {
            d @ (Due::NoSnapshot | Due::Due { .. }) => match &mut out.due {
                Some((set, _)) => set.insert(i),
                None => out.due = Some((TierSet::of(i), d)),
            },
            Due::NotUntil(until) => {
                if out.next.is_none_or(|(_, soonest, _)| until < soonest) {
                    out.next = Some((i, until, newest[i].unwrap_or(now)));
                }
            }
            Due::Never => {}
        }
    }
    out
}

/// The tag value and `DeleteOn` of a snapshot taken for the `due` tiers: the longest retention
/// among them decides the date.
fn tier_tag_and_delete_on(
    configuration: &Configuration,
    due: TierSet,
    now: DateTime<Utc>,
) -> (Option<String>, NaiveDate) {
    let retention =
        due.indices().filter_map(|i| configuration.tiers.get(i)).map(|t| t.retention).max().unwrap_or_default();
    let tag = configuration.tiered.then(|| due.names(&configuration.tiers));
    (tag, delete_on(now, retention))
}

/// The not-due decision of a volume with nothing due.
fn not_due(configuration: &Configuration, found: &TierDue, now: DateTime<Utc>) -> VolumeAction {
    match found.next {
        Some((i, until, last)) => VolumeAction::NotDue {
            last,
            until,
            tier: configuration.tiered.then(|| configuration.tiers[i].name.clone()),
        },
        None => VolumeAction::NeverDue { last: found.last.unwrap_or(now) },
    }
}

/// Plans the snapshots of one region. `version` goes into descriptions.
pub fn plan_snapshots(
    configs: &ConfigurationSet,
    inventory: &Inventory,
    now: DateTime<Utc>,
    version: &str,
) -> SnapshotPlan {
    let ignored = configs.ignored_ids();
    let mut plan = SnapshotPlan { region: inventory.region.clone(), now, ..Default::default() };

    // Each volume's pending and completed snapshots (errored snapshots do not count), and in
    // the same pass its newest snapshot in any of those states or in error. Of two started in
    // the same second (EC2's resolution), the one not in error is taken for the newer: the
    // volume has a snapshot of that moment.
    let mut history: FxHashMap<&str, History<'_>> = FxHashMap::default();
    let mut newest: FxHashMap<&str, &crate::inventory::Snapshot> = FxHashMap::default();
    let newer = |s: &crate::inventory::Snapshot| (s.start_time, s.state != SnapshotState::Error);
    for s in &inventory.snapshots {
        let Some(v) = s.volume_id.as_deref() else { continue };
        if matches!(s.state, SnapshotState::Pending | SnapshotState::Completed | SnapshotState::Error) {
            let slot = newest.entry(v).or_insert(s);
            if newer(s) > newer(slot) {
                *slot = s;
            }
        }
        if matches!(s.state, SnapshotState::Pending | SnapshotState::Completed) {
            let tag = s.tags.get(TAG_TIER);
            let entries = history.entry(v).or_default();
            match entries.iter_mut().find(|(t, _)| *t == tag) {
                Some((_, latest)) => *latest = (*latest).max(s.start_time),
                None => entries.push((tag, s.start_time)),
            }
        }
    }

    // Which configuration each instance belongs to (the one owner rule, `Inventory::claims`).
    let claims = inventory.claims(configs);
    let mut seen_volumes: FxHashSet<&str> = FxHashSet::default();

    let mut copy_to_self: BTreeSet<&str> = BTreeSet::new();
    for &(named, instance_id) in &claims.owned {
        let configuration = &named.configuration;
        let Some(instance) = inventory.instances.get(instance_id) else { continue };
        let copy_to = configuration.copy_to(&inventory.region);
        let vault_to = configuration.vault.as_ref().map(|v| v.vault_to(&inventory.region));
        if configuration.copy_destination(&inventory.region).is_some() {
            copy_to_self.insert(named.id.as_str());
        }
        let instance_ignored = ignored.contains(&instance.id);
        // The volumes this configuration selects, with what is due for each.
        let mut selected: Vec<(usize, TierDue)> = Vec::new();
        for att in &instance.volumes {
            // A multi-attached volume is decided once, by its first instance.
            if !seen_volumes.insert(att.volume_id.as_str()) {
                continue;
            }
            let volume = inventory.volumes.get(&att.volume_id);
            let action = if instance_ignored {
                VolumeAction::IgnoredInstance
            } else if ignored.contains(&att.volume_id) {
                VolumeAction::IgnoredVolume
            } else if let Some(why) = exclusion(configuration, instance, att, volume.map(|v| &v.tags)) {
                VolumeAction::Excluded(why)
            } else if let Some(volume) = volume {
                let found = tiers_due(configuration, history.get(att.volume_id.as_str()), now);
                match (&found.due, configuration.consistency) {
                    (_, Consistency::Instance) => {
                        selected.push((plan.decisions.len(), found));
                        VolumeAction::VolumeNotFound // decided below, with the instance
                    }
                    (Some((tiers, d)), Consistency::Volume) => {
                        let (tier, delete_on) = tier_tag_and_delete_on(configuration, *tiers, now);
                        let provenance = Provenance {
                            delete_on,
                            instance_id: &instance.id,
                            device: Some(&att.device),
                            config_id: &named.id,
                            tier: tier.clone(),
                            set: None,
                            copy_to: copy_to.as_deref(),
                            vault_to: vault_to.as_deref(),
                        };
                        VolumeAction::Create {
                            request: SnapshotRequest {
                                volume_id: att.volume_id.clone(),
                                description: snapshot_description(
                                    &instance.id,
                                    version,
                                    instance.image_id.as_deref(),
                                    &att.volume_id,
                                ),
                                tags: snapshot_tags(&instance.tags, &volume.tags, &provenance, &configuration.tags),
                                newer_than: found.last,
                            },
                            due: d.clone(),
                            tiers: tier,
                        }
                    }
                    (None, Consistency::Volume) => not_due(configuration, &found, now),
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
        if configuration.consistency == Consistency::Instance {
            plan_set(&mut plan, named, instance, inventory, selected, now, version);
        }
    }
    plan.errored = newest_in_error(&plan.decisions, &newest);
    for id in copy_to_self {
        plan.warnings.push(format!(
            "configuration {id} copies to {region}, the region of these snapshots: they are not copied there (a copy \
             goes to another region)",
            region = inventory.region
        ));
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

/// The selected volumes whose newest snapshot (`newest`: pending, completed or in error, by
/// volume) is in state `error`: (volume, snapshot, AWS's reason). Once a newer one is listed,
/// pending or completed, the volume is no longer named, so a failed snapshot is reported by one
/// run, not by every run.
fn newest_in_error(
    decisions: &[VolumeDecision],
    newest: &FxHashMap<&str, &crate::inventory::Snapshot>,
) -> Vec<(String, String, String)> {
    decisions
        .iter()
        .filter(|d| {
            matches!(
                d.action,
                VolumeAction::Create { .. }
                    | VolumeAction::InSet { .. }
                    | VolumeAction::NotDue { .. }
                    | VolumeAction::NeverDue { .. }
            )
        })
        .filter_map(|d| {
            let s = newest.get(d.volume_id.as_str()).filter(|s| s.state == SnapshotState::Error)?;
            let message = s.state_message.as_deref().unwrap_or("AWS gave no reason");
            Some((d.volume_id.clone(), s.id.clone(), message.to_string()))
        })
        .collect()
}

/// Decides an instance's selected volumes under `consistency: "instance"`: when any of them is
/// due, all of them go into one set (tagged for every tier due on any of them); otherwise each
/// is not due on its own terms.
fn plan_set(
    plan: &mut SnapshotPlan,
    named: &NamedConfiguration,
    instance: &Instance,
    inventory: &Inventory,
    selected: Vec<(usize, TierDue)>,
    now: DateTime<Utc>,
    version: &str,
) {
    let configuration = &named.configuration;
    let due = selected.iter().filter_map(|(_, f)| f.due.as_ref().map(|(t, _)| *t)).reduce(TierSet::union);
    let Some(due) = due else {
        for (index, found) in &selected {
            plan.decisions[*index].action = not_due(configuration, found, now);
        }
        return;
    };
    let (tier, delete_on) = tier_tag_and_delete_on(configuration, due, now);
    let copy_to = configuration.copy_to(&inventory.region);
    let vault_to = configuration.vault.as_ref().map(|v| v.vault_to(&inventory.region));
    let set_id = format!("{}-{}", instance.id, now.format("%Y%m%dT%H%M%SZ"));
    let volume_ids: Vec<String> = selected.iter().map(|(i, _)| plan.decisions[*i].volume_id.clone()).collect();
    // Every snapshot of the set carries the same tags: the instance's, and of the volumes' tags
    // those all the set's volumes share.
    let shared: Tags = match volume_ids.split_first() {
        Some((head, rest)) => inventory
            .volumes
            .get(head)
            .map(|v| {
                v.tags
                    .iter()
                    .filter(|(k, val)| {
                        rest.iter().all(|id| inventory.volumes.get(id).and_then(|o| o.tags.get(k)) == Some(*val))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        None => Tags::new(),
    };
    let provenance = Provenance {
        delete_on,
        instance_id: &instance.id,
        device: None,
        config_id: &named.id,
        tier: tier.clone(),
        set: Some(&set_id),
        copy_to: copy_to.as_deref(),
        vault_to: vault_to.as_deref(),
    };
    let tags = snapshot_tags(&instance.tags, &shared, &provenance, &configuration.tags);
    let boot = instance.root_device.as_deref();
    let in_set = |att: &&Attachment| volume_ids.contains(&att.volume_id);
    let exclude_boot = instance.volumes.iter().any(|a| Some(a.device.as_str()) == boot && !in_set(&a));
    let exclude_data_volumes: Vec<String> = instance
        .volumes
        .iter()
        .filter(|a| Some(a.device.as_str()) != boot && !in_set(a))
        .map(|a| a.volume_id.clone())
        .collect();
    let set = plan.sets.len();
    plan.sets.push(SetRequest {
        instance_id: instance.id.clone(),
        set_id: set_id.clone(),
        description: set_description(&instance.id, version, instance.image_id.as_deref(), volume_ids.len()),
        volume_ids,
        exclude_boot,
        exclude_data_volumes,
        tags,
    });
    for (index, found) in selected {
        plan.decisions[index].action = VolumeAction::InSet { set, due: found.due.map(|(_, d)| d), tiers: tier.clone() };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration_set::StoredConfiguration;
    use crate::inventory::{Instance, Snapshot, Tags, Volume};
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
        let report =
            plan.report(&BTreeMap::new(), Vec::new(), Vec::new(), ReportOptions { dry_run: true, every_action: false });
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
        crate::testing::instance(id, vols)
    }

    fn inventory(matched: &[(&str, &[&str])], instances: Vec<Instance>, snapshots: Vec<Snapshot>) -> Inventory {
        let mut inv = Inventory { region: "us-east-1".into(), ..Default::default() };
        for (cfg, ids) in matched {
            inv.matched.insert(cfg.to_string(), ids.iter().map(|s| s.to_string()).collect());
        }
        for i in instances {
            for a in &i.volumes {
                inv.volumes.insert(
                    a.volume_id.clone(),
                    Volume {
                        id: a.volume_id.clone(),
                        tags: Tags::new(),
                        created: None,
                        encryption: Default::default(),
                    },
                );
            }
            inv.instances.insert(i.id.clone(), i);
        }
        inv.snapshots = snapshots;
        inv
    }

    fn snap(id: &str, vol: &str, at: DateTime<Utc>, state: SnapshotState) -> Snapshot {
        crate::testing::snapshot(id).volume(vol).at(at).state(state).build()
    }

    #[test]
    fn every_attached_volume_without_snapshot_is_due() {
        let c = configs(&[("a", &cfg("2 hours", &[]))]);
        let inv = inventory(&[("a", &["i-1"])], vec![instance("i-1", &["vol-1", "vol-2"])], vec![]);
        let plan = plan_snapshots(&c, &inv, t(6, 12, 0), "9.9.9");
        assert_eq!(counts(&plan), Counts { due: 2, ..Default::default() });
        let opts = ReportOptions { dry_run: true, every_action: false };
        assert_eq!(plan.report(&BTreeMap::new(), vec![], vec![], opts).volumes.never, 2);
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
        assert_eq!(by_vol["vol-1"], &VolumeAction::NotDue { last: t(6, 11, 0), until: t(6, 12, 54), tier: None });
        // vol-3 became due at 10:54, 66 minutes ago: not yet overdue (1 h + one job interval).
        let opts = ReportOptions { dry_run: true, every_action: false };
        assert_eq!(
            plan.report(&BTreeMap::new(), vec![], vec![], opts).volumes,
            crate::report::Protection { ok: 3, never: 0, overdue: 0 }
        );
        let later = plan_snapshots(&c, &inv, t(6, 12, 30), "v");
        assert_eq!(later.report(&BTreeMap::new(), vec![], vec![], opts).volumes.overdue, 1);
        assert!(matches!(by_vol["vol-2"], VolumeAction::NotDue { .. }));
        assert!(matches!(by_vol["vol-3"], VolumeAction::Create { due: Due::Due { .. }, .. }), "{:?}", by_vol["vol-3"]);
        // A lost answer is looked for only among snapshots newer than every one listed (the
        // errored one does not count, as it does not for the due rule).
        let requests: BTreeMap<&str, Option<DateTime<Utc>>> =
            plan.requests().map(|(d, r)| (d.volume_id.as_str(), r.newer_than)).collect();
        assert_eq!(requests, BTreeMap::from([("vol-3", Some(t(6, 9, 0)))]));
        let fresh = inventory(&[("a", &["i-1"])], vec![instance("i-1", &["vol-1"])], vec![]);
        assert_eq!(plan_snapshots(&c, &fresh, now, "v").requests().next().unwrap().1.newer_than, None);
    }

    #[test]
    fn a_volume_whose_newest_snapshot_is_in_error_fails_the_run_until_a_newer_one_is_there() {
        // SPEC §10.11: the run that finds the volume's newest snapshot in error fails, naming it
        // with AWS's reason, and takes a new one; once a newer one exists, nothing is reported.
        let c = configs(&[("a", &cfg("2 hours", &[]))]);
        let mut errored = snap("s-err", "vol-1", t(6, 11, 30), SnapshotState::Error);
        errored.state_message = Some("Internal error while creating snapshot".into());
        let older_error = snap("s-old", "vol-2", t(6, 8, 0), SnapshotState::Error);
        let inv = inventory(
            &[("a", &["i-1"])],
            vec![instance("i-1", &["vol-1", "vol-2"])],
            vec![
                errored.clone(),
                snap("s-ok", "vol-1", t(6, 9, 0), SnapshotState::Completed),
                older_error,
                snap("s-new", "vol-2", t(6, 11, 0), SnapshotState::Completed),
            ],
        );
        let plan = plan_snapshots(&c, &inv, t(6, 12, 0), "v");
        let created: Vec<&str> = plan.requests().map(|(d, _)| d.volume_id.as_str()).collect();
        assert_eq!(created, ["vol-1"], "the volume is due again at once");
        let opts = ReportOptions { dry_run: false, every_action: false };
        let report = plan.report(&BTreeMap::new(), vec![Executed::Done(Some("s-2nd".into()))], vec![], opts);
        assert_eq!((report.failed, report.created), (1, 1));
        assert_eq!(
            report.errors,
            ["vol-1: its newest snapshot s-err ended in state error (Internal error while creating snapshot); a new \
              one is taken"]
        );
        // The next run lists the new one (pending, then completed): nothing more is reported.
        let mut later = inv.clone();
        later.snapshots.push(snap("s-2nd", "vol-1", t(6, 12, 1), SnapshotState::Pending));
        let plan = plan_snapshots(&c, &later, t(6, 12, 30), "v");
        let report =
            plan.report(&BTreeMap::new(), vec![], vec![], ReportOptions { dry_run: true, every_action: false });
        assert_eq!((report.failed, report.errors.len()), (0, 0), "{:?}", report.errors);
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

    const TIERED: &str = r#"{"match": {"tag:backup": "yes"}, "schedules": [
        {"name": "daily", "frequency": "1 day", "retention": "8 days", "minimum": 7},
        {"name": "weekly", "frequency": "7 days", "retention": "35 days", "minimum": 4},
        {"name": "monthly", "frequency": "30 days", "retention": "400 days", "minimum": 12}]}"#;

    fn with_tier(mut s: Snapshot, tier: &str) -> Snapshot {
        s.tags.insert(crate::tags::TAG_TIER.into(), tier.into());
        s
    }

    fn tag<'a>(r: &'a [(String, String)], key: &str) -> Option<&'a str> {
        r.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_fresh_volume_is_due_for_every_tier_and_kept_for_the_longest() {
        let c = configs(&[("a", TIERED)]);
        let inv = inventory(&[("a", &["i-1"])], vec![instance("i-1", &["vol-1"])], vec![]);
        let plan = plan_snapshots(&c, &inv, t(6, 12, 0), "v");
        let (d, r) = plan.requests().next().unwrap();
        assert_eq!(tag(&r.tags, crate::tags::TAG_TIER), Some("daily,weekly,monthly"));
        // now + 400 days
        assert_eq!(tag(&r.tags, DELETE_ON), Some("2021-02-09"));
        assert_eq!(d.reason(), "no pending or completed snapshot (tiers daily,weekly,monthly)");
    }

    #[test]
    fn each_tier_is_due_on_its_own_snapshots_and_untagged_ones_count_as_the_first() {
        let c = configs(&[("a", TIERED)]);
        let now = t(20, 12, 0);
        let inv = inventory(
            &[("a", &["i-1"])],
            vec![instance("i-1", &["vol-1", "vol-2"])],
            vec![
                // vol-1: daily 2 days ago (due), weekly 3 days ago, monthly 10 days ago (not due)
                with_tier(snap("d", "vol-1", t(18, 12, 0), SnapshotState::Completed), "daily"),
                with_tier(snap("w", "vol-1", t(17, 12, 0), SnapshotState::Completed), "weekly,monthly"),
                // vol-2: an untagged snapshot an hour ago is a daily one: only weekly and monthly
                // are due (they have none)
                snap("u", "vol-2", t(20, 11, 0), SnapshotState::Completed),
            ],
        );
        let plan = plan_snapshots(&c, &inv, now, "v");
        let tiers: Vec<(String, Option<String>)> = plan
            .requests()
            .map(|(d, r)| (d.volume_id.clone(), tag(&r.tags, crate::tags::TAG_TIER).map(String::from)))
            .collect();
        assert_eq!(
            tiers,
            [
                ("vol-1".to_string(), Some("daily".to_string())),
                ("vol-2".to_string(), Some("weekly,monthly".to_string()))
            ]
        );
        let (_, r) = plan.requests().next().unwrap();
        assert_eq!(tag(&r.tags, DELETE_ON), Some("2020-01-28"), "daily alone: 8 days");
        let (_, r) = plan.requests().nth(1).unwrap();
        assert_eq!(tag(&r.tags, DELETE_ON), Some("2021-02-23"), "weekly and monthly: the longer, 400 days");

        // A day later than the daily snapshot + 1 hour: nothing due on vol-1 but daily, which
        // the dry run names.
        let plan = plan_snapshots(&c, &inv, t(18, 13, 0), "v");
        let d = plan.decisions.iter().find(|d| d.volume_id == "vol-1").unwrap();
        assert_eq!(
            d.action,
            VolumeAction::NotDue { last: t(18, 12, 0), until: t(19, 11, 45), tier: Some("daily".into()) }
        );
        assert!(d.reason().contains("(tier daily)"), "{}", d.reason());
    }

    #[test]
    fn a_snapshot_configuration_tags_no_tier_and_keeps_its_part_one_tags() {
        let c = configs(&[("a", &cfg("2 hours", &[]))]);
        let inv = inventory(&[("a", &["i-1"])], vec![instance("i-1", &["vol-1"])], vec![]);
        let plan = plan_snapshots(&c, &inv, t(6, 12, 0), "v");
        let (_, r) = plan.requests().next().unwrap();
        assert_eq!(tag(&r.tags, crate::tags::TAG_TIER), None);
        assert_eq!(tag(&r.tags, crate::tags::TAG_DEVICE), Some("/dev/xvda"));
    }

    #[test]
    fn a_configuration_with_a_vault_tags_each_snapshot_for_it_sets_included() {
        // SPEC §16: ebs-snapper:vault-to = ACCOUNT:REGION, the vault's region or the snapshot's.
        let inv = || inventory(&[("a", &["i-1"])], vec![instance("i-1", &["vol-1", "vol-2"])], vec![]);
        let in_region = selection(r#", "vault": {"account": "444455556666", "retention": "30 days"}"#);
        let c = configs(&[("a", &in_region)]);
        let plan = plan_snapshots(&c, &inv(), t(6, 12, 0), "v");
        assert_eq!(plan.requests().count(), 2);
        for (_, r) in plan.requests() {
            assert_eq!(tag(&r.tags, "ebs-snapper:vault-to"), Some("444455556666:us-east-1"));
        }
        let elsewhere = selection(
            r#", "consistency": "instance", "vault": {"account": "444455556666", "region": "eu-west-1", "retention": "30 days"}"#,
        );
        let c = configs(&[("a", &elsewhere)]);
        let plan = plan_snapshots(&c, &inv(), t(6, 12, 0), "v");
        assert_eq!(tag(&plan.sets[0].tags, "ebs-snapper:vault-to"), Some("444455556666:eu-west-1"));
        // Without a vault, no tag.
        let plan = plan_snapshots(&configs(&[("a", &selection(""))]), &inv(), t(6, 12, 0), "v");
        assert!(plan.requests().all(|(_, r)| tag(&r.tags, "ebs-snapper:vault-to").is_none()));
    }

    fn selection(extra: &str) -> String {
        format!(
            r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "5 days", "minimum": 5, "frequency": "1 day"}}{extra}}}"#
        )
    }

    #[test]
    fn excluded_boot_and_tagged_volumes_and_instances_are_ignored_with_the_reason() {
        let c = configs(&[(
            "a",
            &selection(
                r#", "exclude_boot": true, "exclude_tags": {"skip": "*", "tier": ["scratch", "tmp"]}, "tags": {"Team": "payments", "Name": "configured"}"#,
            ),
        )]);
        let mut inv = inventory(
            &[("a", &["i-1", "i-2"])],
            vec![
                instance("i-1", &["vol-boot", "vol-data", "vol-tmp", "vol-skip"]),
                instance("i-2", &["vol-boot9", "vol-9"]),
            ],
            vec![],
        );
        inv.volumes.get_mut("vol-tmp").unwrap().tags.insert("tier".into(), "tmp".into());
        inv.volumes.get_mut("vol-skip").unwrap().tags.insert("skip".into(), "".into());
        inv.instances.get_mut("i-2").unwrap().tags.insert("skip".into(), "yes".into());
        let plan = plan_snapshots(&c, &inv, t(6, 12, 0), "v");
        let reasons: BTreeMap<&str, String> =
            plan.decisions.iter().map(|d| (d.volume_id.as_str(), d.reason())).collect();
        assert_eq!(reasons["vol-boot"], "excluded: boot volume /dev/xvda (exclude_boot)");
        assert_eq!(reasons["vol-tmp"], "excluded: volume tag tier=tmp (exclude_tags)");
        assert_eq!(reasons["vol-skip"], "excluded: volume tag skip= (exclude_tags)");
        assert_eq!(reasons["vol-9"], "excluded: instance tag skip=yes (exclude_tags)");
        assert_eq!(counts(&plan), Counts { due: 1, ignored: 5, ..Default::default() });
        let (d, r) = plan.requests().next().unwrap();
        assert_eq!(d.volume_id, "vol-data");
        // Configured tags win over copied ones (the instance's Name).
        assert_eq!(tag(&r.tags, "Name"), Some("configured"));
        assert_eq!(tag(&r.tags, "Team"), Some("payments"));
    }

    #[test]
    fn an_instance_set_takes_every_selected_volume_once_any_is_due() {
        let c = configs(&[(
            "a",
            &selection(r#", "consistency": "instance", "exclude_boot": true, "ignore": ["vol-ign"]"#),
        )]);
        let now = t(6, 12, 0);
        let mut inv = inventory(
            &[("a", &["i-1", "i-2"])],
            vec![instance("i-1", &["vol-boot", "vol-a", "vol-b", "vol-ign"]), instance("i-2", &["vol-boot2", "vol-c"])],
            vec![
                // vol-a was snapshotted an hour ago, vol-b two days ago: the instance is due.
                snap("sa", "vol-a", t(6, 11, 0), SnapshotState::Completed),
                snap("sb", "vol-b", t(4, 12, 0), SnapshotState::Completed),
                // i-2's only selected volume is recent: not due.
                snap("sc", "vol-c", t(6, 11, 0), SnapshotState::Completed),
            ],
        );
        for v in ["vol-a", "vol-b"] {
            inv.volumes.get_mut(v).unwrap().tags.insert("Shared".into(), "same".into());
        }
        inv.volumes.get_mut("vol-a").unwrap().tags.insert("Own".into(), "a".into());
        let plan = plan_snapshots(&c, &inv, now, "v");
        assert_eq!(plan.requests().count(), 0, "no volume is snapshotted alone");
        let [set] = &plan.sets[..] else { panic!("{:?}", plan.sets) };
        assert_eq!(set.instance_id, "i-1");
        assert_eq!(set.volume_ids, ["vol-a", "vol-b"]);
        assert!(set.exclude_boot);
        assert_eq!(set.exclude_data_volumes, ["vol-ign"]);
        assert_eq!(set.set_id, "i-1-20200106T120000Z");
        assert_eq!(tag(&set.tags, crate::tags::TAG_SET), Some("i-1-20200106T120000Z"));
        assert_eq!(tag(&set.tags, crate::tags::TAG_DEVICE), None);
        assert_eq!(tag(&set.tags, "Shared"), Some("same"), "a tag every volume of the set has");
        assert_eq!(tag(&set.tags, "Own"), None, "a tag one volume has is not on all the set");
        assert_eq!(plan.mutations(), 1);
        let by_vol: BTreeMap<&str, &VolumeAction> =
            plan.decisions.iter().map(|d| (d.volume_id.as_str(), &d.action)).collect();
        assert!(matches!(by_vol["vol-a"], VolumeAction::InSet { set: 0, due: None, .. }), "{:?}", by_vol["vol-a"]);
        assert!(matches!(by_vol["vol-b"], VolumeAction::InSet { set: 0, due: Some(_), .. }));
        assert!(matches!(by_vol["vol-c"], VolumeAction::NotDue { .. }));

        // The report: one snapshot per volume from the set's one call, or the call's failure.
        let opts = ReportOptions { dry_run: false, every_action: false };
        let done = SetExecuted {
            outcome: Executed::Done(None),
            snapshots: vec![("vol-a".into(), "snap-a".into()), ("vol-b".into(), "snap-b".into())],
        };
        let report = plan.report(&BTreeMap::new(), vec![], vec![done], opts);
        assert_eq!(report.created, 2);
        assert_eq!(report.created_ids().collect::<Vec<_>>(), ["snap-a", "snap-b"]);
        let partial = SetExecuted { outcome: Executed::Done(None), snapshots: vec![("vol-a".into(), "snap-a".into())] };
        let report = plan.report(&BTreeMap::new(), vec![], vec![partial], opts);
        assert_eq!((report.created, report.failed), (1, 1));
        let failed = SetExecuted { outcome: Executed::Failed("denied".into()), snapshots: vec![] };
        let report = plan.report(&BTreeMap::new(), vec![], vec![failed], opts);
        assert_eq!((report.created, report.failed), (0, 2));
    }
}

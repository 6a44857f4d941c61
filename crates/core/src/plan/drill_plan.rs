//! Restore drills (SPEC §17): which volumes a clean run drills, which snapshot of each, and the
//! result a drill leaves on its snapshot (the `ebs-snapper:drill` tag), which is also how the
//! next run knows when a volume was last drilled.
//!
//! A volume here is a source volume: a source snapshot's own volume, or for a copy (disaster
//! recovery or vault) the source volume it names in `ebs-snapper:volume-id`.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::drill::Drill;
use crate::configuration_set::ConfigurationSet;
use crate::inventory::{Inventory, Snapshot, SnapshotState};
use crate::report::{Action, ActionReport, Executed, Outcome, RegionReport, ReportOptions};
use crate::tags::{REPLICATION_SNAPSHOT_ID, REPLICATION_SRC, TAG_CONFIG, TAG_VAULT_SHARE_OF, TAG_VOLUME};

pub use crate::report::drill_result::{result_of, DrillOutcome, DrillResult};
pub use crate::tags::TAG_DRILL;

/// What a drilled snapshot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DrillKind {
    /// A snapshot of the configuration's own volume, in its region.
    Source,
    /// A disaster-recovery copy, in its destination region (SPEC §12).
    Copy,
    /// A copy in the vault account (SPEC §16).
    Vault,
}

impl DrillKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DrillKind::Source => "snapshot",
            DrillKind::Copy => "copy",
            DrillKind::Vault => "vault copy",
        }
    }
}

/// One drill to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillPick {
    pub config: String,
    pub kind: DrillKind,
    /// The source volume.
    pub volume: String,
    /// The snapshot to restore: the volume's newest completed one in the standard tier.
    pub snapshot: String,
    /// For a copy: its source (region, snapshot), whose blocks the copy's must equal while it
    /// still exists.
    pub source: Option<(String, String)>,
    /// The volume's newest drill, when it had one.
    pub last: Option<DrillResult>,
    pub sample_blocks: u32,
}

impl DrillPick {
    /// Why this volume is drilled now (the dry run's reason).
    pub fn reason(&self, drill: &Drill) -> String {
        let every = crate::duration::format_duration(drill.every);
        match &self.last {
            None => format!("{} of {}: never drilled (every {every})", self.kind.as_str(), self.volume),
            Some(last) => {
                format!("{} of {}: last drilled {} (every {every})", self.kind.as_str(), self.volume, last.describe())
            }
        }
    }
}

/// The source volume a snapshot belongs to.
pub fn volume_of(s: &Snapshot) -> Option<&str> {
    match s.volume_id.as_deref() {
        Some(v) if !s.is_copy => Some(v),
        _ => s.tags.get(TAG_VOLUME),
    }
}

/// One volume's drill history and candidate, from its snapshots.
#[derive(Debug, Default)]
struct VolumeDrills<'a> {
    last: Option<DrillResult>,
    last_ok: Option<DateTime<Utc>>,
    newest: Option<&'a Snapshot>,
    oldest_completed: Option<DateTime<Utc>>,
}

fn by_volume<'a>(snapshots: impl IntoIterator<Item = &'a Snapshot>) -> BTreeMap<&'a str, VolumeDrills<'a>> {
    let mut volumes: BTreeMap<&str, VolumeDrills> = BTreeMap::new();
    for s in snapshots {
        let Some(volume) = volume_of(s) else { continue };
        let v = volumes.entry(volume).or_default();
        if let Some(result) = result_of(s) {
            if result.ok() && v.last_ok.is_none_or(|at| at < result.at) {
                v.last_ok = Some(result.at);
            }
            if v.last.as_ref().is_none_or(|l| l.at < result.at) {
                v.last = Some(result);
            }
        }
        if s.state == SnapshotState::Completed {
            v.oldest_completed = Some(v.oldest_completed.map_or(s.start_time, |t| t.min(s.start_time)));
            // Archived snapshots are never drilled: a restore from the archive takes hours and
            // is billed per gibibyte.
            if !s.archived && v.newest.is_none_or(|n| n.start_time < s.start_time) {
                v.newest = Some(s);
            }
        }
    }
    volumes
}

/// Up to `drill.per_run` volumes of these snapshots (one configuration's, of one kind) whose last
/// drill is older than `drill.every`: never-drilled first, then the longest ago; each with its
/// newest completed snapshot in the standard tier.
pub fn pick<'a>(
    config: &str,
    kind: DrillKind,
    drill: &Drill,
    snapshots: impl IntoIterator<Item = &'a Snapshot>,
    now: DateTime<Utc>,
) -> Vec<DrillPick> {
    let every = TimeDelta::from_std(drill.every).unwrap_or(TimeDelta::MAX);
    // (last drill's time, volume, newest snapshot, last drill)
    type Due<'s> = (Option<DateTime<Utc>>, &'s str, &'s Snapshot, Option<DrillResult>);
    let mut due: Vec<Due> = by_volume(snapshots)
        .into_iter()
        .filter_map(|(volume, v)| {
            let newest = v.newest?;
            let last_at = v.last.as_ref().map(|l| l.at);
            if last_at.is_some_and(|at| now.signed_duration_since(at) < every) {
                return None;
            }
            Some((last_at, volume, newest, v.last))
        })
        .collect();
    // `None` sorts first: never drilled.
    due.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    due.into_iter()
        .take(drill.per_run as usize)
        .map(|(_, volume, s, last)| DrillPick {
            config: config.to_string(),
            kind,
            volume: volume.to_string(),
            snapshot: s.id.clone(),
            // A vault copy's source is in another account, which the vault may not read.
            source: match kind {
                DrillKind::Source | DrillKind::Vault => None,
                DrillKind::Copy => s
                    .tags
                    .get(REPLICATION_SRC)
                    .zip(s.tags.get(REPLICATION_SNAPSHOT_ID))
                    .map(|(r, id)| (r.to_string(), id.to_string())),
            },
            last,
            sample_blocks: drill.sample_blocks,
        })
        .collect()
}

/// The volumes of these snapshots that went two `every` periods without a drill that passed,
/// although they had a completed snapshot all that time: `(volume, last drill that passed)`.
pub fn overdue<'a>(
    drill: &Drill,
    snapshots: impl IntoIterator<Item = &'a Snapshot>,
    now: DateTime<Utc>,
) -> Vec<(String, Option<DateTime<Utc>>)> {
    let window = TimeDelta::from_std(drill.every * 2).unwrap_or(TimeDelta::MAX);
    by_volume(snapshots)
        .into_iter()
        .filter(|(_, v)| {
            let restorable_long = v.oldest_completed.is_some_and(|t| now.signed_duration_since(t) >= window);
            restorable_long && v.last_ok.is_none_or(|at| now.signed_duration_since(at) >= window)
        })
        .map(|(volume, v)| (volume.to_string(), v.last_ok))
        .collect()
}

/// The source snapshots a configuration may drill in a region: those of the volumes of the
/// instances it owns now (the first configuration by id owns an instance several match, as in
/// the other jobs), not ignored (SPEC §10.4: an ignored instance, volume or snapshot is never
/// touched).
pub fn source_snapshots<'a>(
    configs: &'a ConfigurationSet,
    inventory: &'a Inventory,
    config: &str,
) -> Vec<&'a Snapshot> {
    let ignored = configs.ignored_ids();
    let claims = inventory.claims(configs);
    let volumes: std::collections::BTreeSet<&str> = claims
        .owned
        .iter()
        .filter(|(named, instance)| named.id == config && !ignored.contains(*instance))
        .filter_map(|(_, id)| inventory.instances.get(*id))
        .flat_map(|i| i.volumes.iter().map(|a| a.volume_id.as_str()))
        .filter(|v| !ignored.contains(*v))
        .collect();
    inventory
        .snapshots
        .iter()
        .filter(|s| !s.is_copy && s.volume_id.as_deref().is_some_and(|v| volumes.contains(v)))
        .filter(|s| !ignored.contains(&s.id))
        .collect()
}

/// A configuration's copies among `snapshots` (disaster-recovery copies in their destination,
/// or vault copies in the vault): tagged with its id and a source region, share copies left out.
pub fn copies_of<'a>(snapshots: &'a [Snapshot], config: &'a str) -> impl Iterator<Item = &'a Snapshot> + 'a {
    snapshots.iter().filter(move |s| {
        s.tags.get(TAG_CONFIG) == Some(config)
            && s.tags.contains_key(REPLICATION_SRC)
            && !s.tags.contains_key(TAG_VAULT_SHARE_OF)
    })
}

/// The drills of one clean run in `region` of the account's own snapshots: per configuration
/// with `drill`, its source volumes; per configuration whose `copies` have a `drill` for this
/// region, its copies here.
///
/// `keep`: whether a snapshot stays (the clean run's own deletions are not drilled).
pub fn plan_drills(
    configs: &ConfigurationSet,
    inventory: &Inventory,
    keep: impl Fn(&Snapshot) -> bool,
    now: DateTime<Utc>,
) -> Vec<DrillPick> {
    let ignored = configs.ignored_ids();
    let mut picks: Vec<DrillPick> = Vec::new();
    for named in &configs.valid {
        let c = &named.configuration;
        if let Some(drill) = &c.drill {
            let sources = source_snapshots(configs, inventory, &named.id).into_iter().filter(|s| keep(s));
            picks.extend(pick(&named.id, DrillKind::Source, drill, sources, now));
        }
        if let Some(drill) = c.copy_destination(&inventory.region).and_then(|d| d.drill.as_ref()) {
            let copies = copies_of(&inventory.snapshots, &named.id).filter(|s| keep(s) && !ignored.contains(&s.id));
            picks.extend(pick(&named.id, DrillKind::Copy, drill, copies, now));
        }
    }
    // A snapshot is drilled once per run, whichever configurations would pick it.
    let mut seen = std::collections::BTreeSet::new();
    picks.retain(|p| seen.insert(p.snapshot.clone()));
    picks
}

/// The drill of one snapshot an operator named (`ebs-snapper drill --snapshot`), due or not, with
/// its configuration's `sample_blocks` (the default's when it has none); why not, when it cannot
/// be drilled.
pub fn pick_one(configs: &ConfigurationSet, region: &str, s: &Snapshot) -> Result<DrillPick, String> {
    let ignored = configs.ignored_ids();
    if ignored.contains(&s.id) || s.volume_id.as_deref().is_some_and(|v| ignored.contains(v)) {
        return Err("it is ignored by a configuration (an ignored snapshot or volume is never touched)".into());
    }
    if s.archived {
        return Err("it is archived: a restore from the archive takes hours and is billed; restore it to the \
                    standard tier first"
            .into());
    }
    if s.state != SnapshotState::Completed {
        return Err(format!("it is {}, not completed", crate::replication_plan::state_name(s.state)));
    }
    let config = s.tags.get(TAG_CONFIG).unwrap_or("").to_string();
    let kind = if s.tags.contains_key(crate::tags::TAG_VAULT_OF) {
        DrillKind::Vault
    } else if s.is_copy || s.tags.contains_key(REPLICATION_SRC) {
        DrillKind::Copy
    } else {
        DrillKind::Source
    };
    let configured = configs.valid.iter().find(|n| n.id == config).and_then(|n| match kind {
        DrillKind::Source => n.configuration.drill,
        DrillKind::Copy => n.configuration.copy_destination(region).and_then(|d| d.drill),
        DrillKind::Vault => n.configuration.vault.as_ref().and_then(|v| v.drill),
    });
    let source = (kind == DrillKind::Copy)
        .then(|| s.tags.get(REPLICATION_SRC).zip(s.tags.get(REPLICATION_SNAPSHOT_ID)))
        .flatten()
        .map(|(r, id)| (r.to_string(), id.to_string()));
    Ok(DrillPick {
        config,
        kind,
        volume: volume_of(s).unwrap_or("an unknown volume").to_string(),
        snapshot: s.id.clone(),
        source,
        last: result_of(s),
        sample_blocks: configured.unwrap_or(crate::config::drill::DEFAULT_DRILL).sample_blocks,
    })
}

/// What became of one picked drill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrillDone {
    /// The drill ran to its end: its result (tagged on the snapshot), and what went wrong around
    /// it (its volume not deleted, the tag not written), each a failure of the run.
    Ran { result: DrillResult, problems: Vec<String> },
    /// Not run: skipped (the snapshot is gone), failed before a volume existed, or deferred.
    NotRun(Executed),
}

/// Adds the drills of `picks` to `report`: `None` for a dry run (each planned), else what became
/// of each. A failed drill is a failure of the run, named with its snapshot and reason (SPEC §17).
/// `label` (the vault) is added to each reason.
pub fn report_drills(
    report: &mut RegionReport,
    opts: ReportOptions,
    picks: &[DrillPick],
    done: Option<Vec<DrillDone>>,
    label: Option<&str>,
) {
    let reason = |p: &DrillPick| {
        let why = match &p.last {
            None => format!("{} of {}, never drilled", p.kind.as_str(), p.volume),
            Some(last) => format!("{} of {}, last drilled {}", p.kind.as_str(), p.volume, last.describe()),
        };
        match label {
            Some(label) => format!("{why} ({label})"),
            None => why,
        }
    };
    let described = |kind: Action, p: &DrillPick| {
        let mut a = ActionReport::new(kind, &p.snapshot, reason(p));
        a.config_id = Some(p.config.clone());
        a
    };
    let Some(done) = done else {
        for p in picks {
            report.mutation(opts, Action::Drill, None, |kind| described(kind, p));
        }
        return;
    };
    for (p, done) in picks.iter().zip(done) {
        match done {
            DrillDone::NotRun(executed) => {
                // A drill refused before a volume existed (its key, a refusal of CreateVolume)
                // is a failed drill too: its alarm must fire.
                if matches!(executed, Executed::Failed(_)) {
                    report.drills_failed += 1;
                }
                report.mutation(opts, Action::Drill, Some(executed), |kind| described(kind, p));
            }
            DrillDone::Ran { result, problems } => {
                report.drilled += 1;
                let mut action = described(Action::Drill, p);
                action.outcome = Outcome::Done;
                action.result_id = Some(result.to_tag());
                if !result.ok() {
                    report.drills_failed += 1;
                    report.failed += 1;
                    let why = result.describe();
                    report.errors.push(format!("drill of {} ({} {}): {why}", p.snapshot, p.kind.as_str(), p.volume));
                    action.outcome = Outcome::Failed;
                    action.error = Some(why);
                }
                for problem in problems {
                    report.failed += 1;
                    report.errors.push(format!("drill of {}: {problem}", p.snapshot));
                }
                // Always listed: a drill is rare and its result is what an operator looks for.
                report.actions.push(action);
            }
        }
    }
}

/// Adds the deletion of a drill volume left behind (`volume`, its `DeleteOn`) to `report`:
/// `None` for a dry run. Always listed, never counted as a deleted snapshot.
pub fn report_swept(
    report: &mut RegionReport,
    opts: ReportOptions,
    volume: &str,
    delete_on: &str,
    executed: Option<Executed>,
) {
    let opts = ReportOptions { every_action: true, ..opts };
    report.mutation(opts, Action::Delete, executed, |kind| {
        ActionReport::new(kind, volume, format!("drill volume left by an earlier run (DeleteOn {delete_on})"))
    });
}

/// A drill volume's `DeleteOn`: the day after it is made, so that a volume a killed run left
/// behind is deleted by a later clean run, and a drill in progress never is.
pub fn volume_delete_on(now: DateTime<Utc>) -> chrono::NaiveDate {
    now.date_naive() + chrono::Days::new(1)
}

/// Whether a drill volume left behind may be deleted: its `DeleteOn` is readable and before
/// today (a drill lasts minutes; its volume is dated the day after it began).
pub fn volume_expired(delete_on: Option<&str>, today: chrono::NaiveDate) -> bool {
    delete_on.and_then(|d| chrono::NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").ok()).is_some_and(|d| d < today)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Tags;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn snap(id: &str, volume: &str, start: &str, drill: Option<&str>) -> Snapshot {
        let mut tags = Tags::new();
        if let Some(d) = drill {
            tags.insert(TAG_DRILL.into(), d.into());
        }
        Snapshot {
            id: id.into(),
            volume_id: Some(volume.into()),
            is_copy: false,
            start_time: at(start),
            state: SnapshotState::Completed,
            tags,
            description: String::new(),
            archived: false,
            state_message: None,
        }
    }

    const WEEKLY: Drill = Drill { every: std::time::Duration::from_secs(7 * 86_400), per_run: 2, sample_blocks: 16 };

    #[test]
    fn the_result_tag_reads_back_and_stays_within_a_tag_value() {
        let now = at("2026-12-07T05:00:00Z");
        for outcome in [
            DrillOutcome::Ok { seconds: 42, empty: false },
            DrillOutcome::Ok { seconds: 3, empty: true },
            DrillOutcome::Failed("the volume ended in state error".into()),
        ] {
            let r = DrillResult { at: now, outcome };
            assert_eq!(DrillResult::parse(&r.to_tag()), Some(r.clone()), "{}", r.to_tag());
        }
        let ok = DrillResult { at: now, outcome: DrillOutcome::Ok { seconds: 42, empty: false } };
        assert_eq!(ok.to_tag(), "2026-12-07T05:00:00Z ok 42s");
        assert_eq!(ok.describe(), "2026-12-07 05:00 ok (42 s to available)");
        let long = DrillResult { at: now, outcome: DrillOutcome::Failed("é".repeat(400)) };
        assert_eq!(long.to_tag().chars().count(), 256);
        for junk in
            ["", "yes", "2026-12-07T05:00:00Z", "2026-12-07T05:00:00Z ok", "2026-12-07T05:00:00Z ok xs", "x ok 1s"]
        {
            assert_eq!(DrillResult::parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn never_drilled_volumes_come_first_then_the_longest_ago_and_recent_ones_wait() {
        let now = at("2026-12-07T05:00:00Z");
        let snapshots = [
            // vol-a: drilled 3 days ago -> not due.
            snap("snap-a1", "vol-a", "2026-12-01T00:00:00Z", Some("2026-12-04T05:00:00Z ok 10s")),
            snap("snap-a2", "vol-a", "2026-12-06T00:00:00Z", None),
            // vol-b: drilled 20 days ago (failed) -> due, after the never-drilled.
            snap("snap-b1", "vol-b", "2026-11-10T00:00:00Z", Some("2026-11-17T05:00:00Z failed: x")),
            snap("snap-b2", "vol-b", "2026-12-06T00:00:00Z", None),
            // vol-c: drilled 10 days ago -> due, but vol-b waited longer.
            snap("snap-c1", "vol-c", "2026-11-20T00:00:00Z", Some("2026-11-27T05:00:00Z ok 5s")),
            // vol-d: never drilled -> first; its newest completed snapshot is d2.
            snap("snap-d1", "vol-d", "2026-12-01T00:00:00Z", None),
            snap("snap-d2", "vol-d", "2026-12-05T00:00:00Z", None),
        ];
        let picks = pick("cfg", DrillKind::Source, &WEEKLY, &snapshots, now);
        let got: Vec<(&str, &str)> = picks.iter().map(|p| (p.volume.as_str(), p.snapshot.as_str())).collect();
        assert_eq!(got, [("vol-d", "snap-d2"), ("vol-b", "snap-b2")]);
        assert_eq!(picks[0].reason(&WEEKLY), "snapshot of vol-d: never drilled (every 7days)");
        assert!(
            picks[1].reason(&WEEKLY).contains("last drilled 2026-11-17 05:00 failed: x"),
            "{}",
            picks[1].reason(&WEEKLY)
        );
        let three = Drill { per_run: 3, ..WEEKLY };
        let got: Vec<String> =
            pick("cfg", DrillKind::Source, &three, &snapshots, now).into_iter().map(|p| p.volume).collect();
        assert_eq!(got, ["vol-d", "vol-b", "vol-c"]);
    }

    #[test]
    fn only_completed_snapshots_in_the_standard_tier_are_drilled() {
        let now = at("2026-12-07T05:00:00Z");
        let mut pending = snap("snap-new", "vol-a", "2026-12-07T04:00:00Z", None);
        pending.state = SnapshotState::Pending;
        let mut errored = snap("snap-err", "vol-a", "2026-12-06T04:00:00Z", None);
        errored.state = SnapshotState::Error;
        let mut archived = snap("snap-arch", "vol-a", "2026-12-05T04:00:00Z", None);
        archived.archived = true;
        let older = snap("snap-old", "vol-a", "2026-12-01T04:00:00Z", None);
        let picks = pick("cfg", DrillKind::Source, &WEEKLY, [&pending, &errored, &archived, &older], now);
        assert_eq!(picks.iter().map(|p| p.snapshot.as_str()).collect::<Vec<_>>(), ["snap-old"]);
        // Only archived: nothing to drill.
        assert!(pick("cfg", DrillKind::Source, &WEEKLY, [&archived, &pending], now).is_empty());
    }

    #[test]
    fn copies_are_drilled_by_their_source_volume_and_name_their_source() {
        let now = at("2026-12-07T05:00:00Z");
        let mut copy = snap("snap-copy", "vol-ffffffff", "2026-12-06T00:00:00Z", None);
        copy.is_copy = true;
        copy.volume_id = None;
        for (k, v) in [
            (TAG_VOLUME, "vol-src"),
            (TAG_CONFIG, "cfg"),
            (REPLICATION_SRC, "us-east-1"),
            (REPLICATION_SNAPSHOT_ID, "snap-src"),
        ] {
            copy.tags.insert(k.into(), v.into());
        }
        let mut share = copy.clone();
        share.id = "snap-share".into();
        share.tags.insert(TAG_VAULT_SHARE_OF.into(), "snap-src".into());
        let list = [copy, share];
        let picks = pick("cfg", DrillKind::Copy, &WEEKLY, copies_of(&list, "cfg"), now);
        assert_eq!(picks.len(), 1);
        assert_eq!((picks[0].volume.as_str(), picks[0].snapshot.as_str()), ("vol-src", "snap-copy"));
        assert_eq!(picks[0].source, Some(("us-east-1".to_string(), "snap-src".to_string())));
        assert!(copies_of(&list, "other").next().is_none());
    }

    #[test]
    fn a_volume_is_overdue_after_two_periods_without_a_drill_that_passed() {
        let now = at("2026-12-30T00:00:00Z");
        let snapshots = [
            // Restorable for a month, last ok 20 days ago (> 14): overdue.
            snap("s1", "vol-a", "2026-11-30T00:00:00Z", Some("2026-12-10T00:00:00Z ok 3s")),
            snap("s2", "vol-a", "2026-12-20T00:00:00Z", Some("2026-12-28T00:00:00Z failed: x")),
            // Ok 5 days ago: fine.
            snap("s3", "vol-b", "2026-11-30T00:00:00Z", Some("2026-12-25T00:00:00Z ok 3s")),
            // Never drilled but its first snapshot is 10 days old: not yet.
            snap("s4", "vol-c", "2026-12-20T00:00:00Z", None),
            // Never drilled, 20 days: overdue.
            snap("s5", "vol-d", "2026-12-10T00:00:00Z", None),
        ];
        assert_eq!(
            overdue(&WEEKLY, &snapshots, now),
            [("vol-a".to_string(), Some(at("2026-12-10T00:00:00Z"))), ("vol-d".to_string(), None)]
        );
    }

    #[test]
    fn ignored_ids_are_never_drilled_and_a_snapshot_is_picked_once_whoever_matches_it() {
        use crate::configuration_set::StoredConfiguration;
        use crate::inventory::{Attachment, Instance};
        let now = at("2026-12-07T05:00:00Z");
        let text = |ignore: &str| {
            format!(
                r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "7 days", "minimum": 1, "frequency": "1 day"}},
                    "drill": {{}}, "ignore": [{ignore}]}}"#
            )
        };
        let configs = ConfigurationSet::from_stored(&[
            StoredConfiguration { id: "a".into(), text: text(r#""vol-ignored", "snap-c1""#) },
            StoredConfiguration { id: "b".into(), text: text("") },
        ]);
        let mut inventory = Inventory { region: "us-east-1".into(), ..Default::default() };
        let instance = Instance {
            volumes: ["vol-a", "vol-ignored", "vol-c"]
                .iter()
                .map(|v| Attachment { device: format!("/dev/{v}"), volume_id: v.to_string() })
                .collect(),
            ..crate::testing::instance("i-1", &[])
        };
        inventory.instances.insert("i-1".into(), instance);
        // Both configurations match the instance: the first by id owns it.
        inventory.matched.insert("a".into(), vec!["i-1".into()]);
        inventory.matched.insert("b".into(), vec!["i-1".into()]);
        inventory.snapshots = vec![
            snap("snap-a1", "vol-a", "2026-12-06T00:00:00Z", None),
            snap("snap-i1", "vol-ignored", "2026-12-06T00:00:00Z", None),
            snap("snap-c1", "vol-c", "2026-12-06T00:00:00Z", None),
        ];
        let picks = plan_drills(&configs, &inventory, |_| true, now);
        let got: Vec<(&str, &str)> = picks.iter().map(|p| (p.config.as_str(), p.snapshot.as_str())).collect();
        assert_eq!(got, [("a", "snap-a1")], "vol-ignored and snap-c1 are ignored; b does not own i-1");
        assert!(pick_one(&configs, "us-east-1", &inventory.snapshots[1]).unwrap_err().contains("ignored"));
        assert!(pick_one(&configs, "us-east-1", &inventory.snapshots[2]).is_err());
        assert!(pick_one(&configs, "us-east-1", &inventory.snapshots[0]).is_ok());
    }

    #[test]
    fn a_drill_refused_before_its_volume_existed_counts_as_a_failed_drill() {
        let mut report = RegionReport::new(crate::job::Job::Clean, "us-east-1", false);
        let opts = ReportOptions { dry_run: false, every_action: false };
        let picks = pick(
            "cfg",
            DrillKind::Source,
            &WEEKLY,
            [&snap("s1", "vol-a", "2026-12-06T00:00:00Z", None)],
            at("2026-12-07T00:00:00Z"),
        );
        let done = vec![DrillDone::NotRun(Executed::Failed("KMS refused".into()))];
        report_drills(&mut report, opts, &picks, Some(done), None);
        assert_eq!((report.drills_failed, report.failed), (1, 1));
        let done = vec![DrillDone::NotRun(Executed::Deferred)];
        let mut later = RegionReport::new(crate::job::Job::Clean, "us-east-1", false);
        report_drills(&mut later, opts, &picks, Some(done), None);
        assert_eq!((later.drills_failed, later.failed, later.deferred), (0, 0, 1));
    }

    #[test]
    fn a_drill_volume_is_swept_only_after_its_delete_on_day() {
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 7).unwrap();
        assert_eq!(volume_delete_on(at("2026-12-07T23:59:00Z")).to_string(), "2026-12-08");
        assert!(volume_expired(Some("2026-12-06"), today));
        assert!(!volume_expired(Some("2026-12-07"), today));
        assert!(!volume_expired(Some("2026-12-08"), today));
        assert!(!volume_expired(Some("soon"), today));
        assert!(!volume_expired(None, today));
    }
}

//! The scenes the invariant tests share (faults, member accounts, the real-account behaviours):
//! a fleet to snapshot and a history to clean, each with the end state it must reach, and the CLI
//! run through the fault proxy that they are checked after.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::fault_proxy::FaultProxy;
use super::{date, text, Account, Snap};

const R: &str = "us-east-1";
/// Short enough that a killed run's lease runs out within the test, long enough that renewals
/// delayed by throttling (the SDK's adaptive retry can hold a request for seconds) keep it, and
/// that the third of it kept free after the last mutation (8 s) outlasts the emulator's delays
/// when every test binary loads it at once (at 12 s, a mutation sent inside the window once
/// landed after the next holder had listed).
pub(crate) const LEASE_SECONDS: &str = "24";

pub(crate) fn config(minimum: u32, frequency: &str, extra: &str) -> String {
    format!(
        r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "5 days", "minimum": {minimum}, "frequency": "{frequency}"}}{extra}}}"#
    )
}

/// Runs `ebs-snapper JOB ARGS --json` through `proxy`; returns the exit code and the document.
pub(crate) fn run(acct: &Account, proxy: &FaultProxy, job: &str, args: &[&str]) -> (i32, Value, String) {
    let out = acct
        .cli()
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .env("EBS_SNAPPER_LEASE_SECONDS", LEASE_SECONDS)
        .arg(job)
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    let doc = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{job}: stdout is not one JSON document ({e}): {}\nstderr: {stderr}", text(&out.stdout))
    });
    (out.status.code().unwrap_or(-1), doc, stderr)
}

/// The actions of one region's report with the given outcome, as (action, resource).
pub(crate) fn actions(doc: &Value, region: &str, outcome: &str) -> BTreeSet<(String, String)> {
    doc["regions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["region"] == region)
        .flat_map(|r| r["actions"].as_array().cloned().unwrap_or_default())
        .filter(|a| a["outcome"] == outcome)
        .map(|a| (a["action"].as_str().unwrap_or("").to_string(), a["resource"].as_str().unwrap_or("").to_string()))
        .collect()
}

pub(crate) fn by_volume(snaps: &[Snap]) -> BTreeMap<String, Vec<&Snap>> {
    let mut out: BTreeMap<String, Vec<&Snap>> = BTreeMap::new();
    for s in snaps {
        out.entry(s.volume_id.clone()).or_default().push(s);
    }
    out
}

/// A fleet in `R`: `n` instances tagged for backup with a data volume each, one ignored
/// instance, and one instance whose root volume was snapshotted an hour ago (not due).
pub(crate) struct Fleet {
    pub(crate) due: BTreeSet<String>,
    ignored_volumes: BTreeSet<String>,
    recent: (String, String),
}

/// The configuration goes into `table`'s table, under `acct` (a member when they differ).
pub(crate) async fn fleet(acct: &Account, table: &Account, n: usize, frequency: &str) -> Fleet {
    let mut due = BTreeSet::new();
    for k in 0..n {
        let i = acct.launch(R, &[("backup", "yes"), ("Name", &format!("web-{k}"))]).await;
        acct.attach_volume(R, &i, "/dev/xvdf", &[]).await;
        due.extend(acct.volumes_of(R, &i).await);
    }
    let ignored = acct.launch(R, &[("backup", "yes")]).await;
    let ignored_volumes: BTreeSet<String> = acct.volumes_of(R, &ignored).await.into_iter().collect();
    let recent_instance = acct.launch(R, &[("backup", "yes")]).await;
    let recent_volume = acct.volumes_of(R, &recent_instance).await[0].clone();
    let recent = acct.make_snapshot(R, &recent_volume, &[("DeleteOn", &date(5)), ("ebs-snapper:config", "cfg")]).await;
    table.create_table(R).await;
    table.put_raw_for(R, &acct.id, "cfg", &config(1, frequency, &format!(r#", "ignore": ["{ignored}"]"#))).await;
    Fleet { due, ignored_volumes, recent: (recent_volume, recent) }
}

/// Invariants 4 and 7 after a snapshot run, and the end state: each due volume has exactly one
/// new snapshot unless the report lists its creation as failed.
pub(crate) fn check_snapshot_state(f: &Fleet, snaps: &[Snap], failed: &BTreeSet<(String, String)>) {
    let vols = by_volume(snaps);
    for v in &f.due {
        let n = vols.get(v).map_or(0, Vec::len);
        let reported_failed = failed.contains(&("create".to_string(), v.clone()));
        match (n, reported_failed) {
            (1, false) => {}
            (0, true) => {}
            _ => panic!("volume {v}: {n} snapshot(s), reported failed: {reported_failed}; snapshots: {snaps:#?}"),
        }
    }
    for v in &f.ignored_volumes {
        assert!(!vols.contains_key(v), "ignored volume {v} was snapshotted");
    }
    let recent: Vec<&&Snap> = vols.get(&f.recent.0).into_iter().flatten().collect();
    assert_eq!(recent.len(), 1, "the volume snapshotted an hour ago is not due: {recent:?}");
    assert_eq!(recent[0].id, f.recent.1);
}

/// A clean-up scenario: expected deletions and everything that must survive.
pub(crate) struct CleanScene {
    pub(crate) must_delete: BTreeSet<String>,
    pub(crate) must_keep: BTreeSet<String>,
}

/// The configuration goes into `table`'s table, under `acct` (a member when they differ).
pub(crate) async fn clean_scene(acct: &Account, table: &Account) -> CleanScene {
    let mut must_delete = BTreeSet::new();
    let mut must_keep = BTreeSet::new();
    // Eight expired snapshots of one volume with minimum 5: the three oldest go.
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    for k in 0..8 {
        let id = acct.make_snapshot(R, &vol, &[("DeleteOn", &date(-20 + k))]).await;
        if k < 3 {
            must_delete.insert(id);
        } else {
            must_keep.insert(id);
        }
    }
    // A volume with snapshots that have no DeleteOn, a future one and an unparseable one.
    let j = acct.launch(R, &[("backup", "yes")]).await;
    let vol2 = acct.volumes_of(R, &j).await[0].clone();
    must_keep.insert(acct.make_snapshot(R, &vol2, &[]).await);
    must_keep.insert(acct.make_snapshot(R, &vol2, &[("DeleteOn", &date(3))]).await);
    must_keep.insert(acct.make_snapshot(R, &vol2, &[("DeleteOn", "next tuesday")]).await);
    // An ignored instance's expired snapshots.
    let ignored = acct.launch(R, &[("backup", "yes")]).await;
    let vol3 = acct.volumes_of(R, &ignored).await[0].clone();
    for k in 0..7 {
        must_keep.insert(acct.make_snapshot(R, &vol3, &[("DeleteOn", &date(-10 - k))]).await);
    }
    // Six expired snapshots of a third volume with minimum 5: the oldest goes.
    let k = acct.launch(R, &[("backup", "yes")]).await;
    let vol4 = acct.volumes_of(R, &k).await[0].clone();
    for d in 0..6 {
        let id = acct.make_snapshot(R, &vol4, &[("DeleteOn", &date(-9 + d))]).await;
        if d == 0 {
            must_delete.insert(id);
        } else {
            must_keep.insert(id);
        }
    }
    table.create_table(R).await;
    table.put_raw_for(R, &acct.id, "cfg", &config(5, "1 day", &format!(r#", "ignore": ["{ignored}"]"#))).await;
    CleanScene { must_delete, must_keep }
}

pub(crate) fn check_clean_state(scene: &CleanScene, remaining: &BTreeSet<String>, failed: &BTreeSet<(String, String)>) {
    for id in &scene.must_keep {
        assert!(remaining.contains(id), "{id} must never be deleted");
    }
    for id in &scene.must_delete {
        let reported_failed = failed.contains(&("delete".to_string(), id.clone()));
        assert!(
            !remaining.contains(id) || reported_failed,
            "{id} expired beyond the minimum: deleted, or reported failed"
        );
        assert!(!reported_failed || remaining.contains(id), "{id} reported failed but gone");
    }
}

/// A snapshot of `volume` (in `R`) made by configuration `config` for its `monthly` tier, started
/// at `start` (RFC 3339, the test bed backdates it) and dated `delete_on` days from today; its id.
pub(crate) async fn plant_monthly(acct: &Account, volume: &str, config: &str, start: &str, delete_on: i64) -> String {
    let delete_on = date(delete_on);
    let tags = [
        ("DeleteOn", delete_on.as_str()),
        ("ebs-snapper:config", config),
        ("ebs-snapper:tier", "monthly"),
        ("test-bed:start-time", start),
    ];
    acct.make_snapshot(R, volume, &tags).await
}

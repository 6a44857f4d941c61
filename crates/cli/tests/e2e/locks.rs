//! Snapshot lock (SPEC §16) against the stricter emulator, which locks as EC2 does: the snapshot
//! job locks what it makes and what lost its lock, the replication job its copies, the clean job
//! never sends a locked snapshot to `DeleteSnapshot` and keeps the minimum locked, and `status`
//! shows each volume's lock.

use std::collections::{BTreeMap, BTreeSet};

use crate::support;

use serde_json::Value;
use support::fault_proxy::{Fault, FaultPlan, FaultProxy};
use support::scenes::{actions, run};
use support::{date, text, Account};

const R: &str = "us-east-1";
const WEST: &str = "us-west-2";

/// A lock as `DescribeLockedSnapshots` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    state: String,
    /// `LockExpiresOn`, RFC 3339 to the second.
    until: String,
    cool_off: Option<i32>,
}

/// Every lock in the region, every page followed.
async fn locks(acct: &Account, region: &str) -> BTreeMap<String, Listed> {
    let ec2 = acct.ec2(region).await;
    let mut out = BTreeMap::new();
    let mut token = None;
    loop {
        let page = ec2.describe_locked_snapshots().set_next_token(token).send().await.expect("locks");
        for s in page.snapshots() {
            let until = s
                .lock_expires_on()
                .map(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).unwrap())
                .unwrap_or_default();
            out.insert(
                s.snapshot_id().unwrap().to_string(),
                Listed {
                    state: s.lock_state().map(|l| l.as_str().to_string()).unwrap_or_default(),
                    until,
                    cool_off: s.cool_off_period(),
                },
            );
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return out;
        }
    }
}

/// 00:00 UTC of a `DeleteOn` date, as `LockExpiresOn` reads.
fn midnight(date: &str) -> String {
    format!("{date}T00:00:00Z")
}

fn cli(acct: &Account, args: &[&str]) -> (i32, String, String) {
    let out = acct.cli().args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn json(acct: &Account, args: &[&str]) -> (i32, Value, String) {
    let out = acct.cli().args(args).arg("--json").output().unwrap();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), doc, text(&out.stderr))
}

async fn unlock(acct: &Account, region: &str, id: &str) {
    acct.ec2(region).await.unlock_snapshot().snapshot_id(id).send().await.expect("unlock");
}

/// A snapshot of `volume` as the tool made it for tier `daily` of configuration `config`,
/// started `days` ago and expired yesterday.
async fn plant_expired_daily(acct: &Account, volume: &str, config: &str, days: i64) -> String {
    let start = (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339();
    let delete_on = date(-1);
    let tags = [
        ("DeleteOn", delete_on.as_str()),
        ("ebs-snapper:config", config),
        ("ebs-snapper:tier", "daily"),
        ("test-bed:start-time", start.as_str()),
    ];
    acct.make_snapshot(R, volume, &tags).await
}

/// A request body names `id` as its snapshot.
fn names(body: &str, id: &str) -> bool {
    body.split('&').any(|p| p == format!("SnapshotId={id}"))
}

const LOCKED_DAILY: &str = r#"{"match": {"tag:backup": "yes"}, "schedules": [
    {"name": "daily", "frequency": "1 day", "retention": "7 days", "minimum": 2,
     "lock": {"mode": "compliance", "cool_off_hours": 24}}]}"#;

#[tokio::test]
async fn the_snapshot_job_locks_what_it_makes_and_the_next_run_what_lost_its_lock() {
    let acct = Account::with_configs(R, &[("locked", LOCKED_DAILY)]).await;
    acct.launch(R, &[("backup", "yes")]).await;
    acct.launch(R, &[("backup", "yes")]).await;

    let (code, out, err) = cli(&acct, &["snapshot", "--region", R]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created 2") && out.contains("locked 2"), "{out}");
    let snaps = acct.snapshots(R).await;
    assert_eq!(snaps.len(), 2);
    let listed = locks(&acct, R).await;
    for s in &snaps {
        let delete_on = s.tag("DeleteOn").unwrap();
        assert_eq!(
            listed.get(&s.id),
            Some(&Listed { state: "compliance-cooloff".into(), until: midnight(delete_on), cool_off: Some(24) }),
            "{} locked until its DeleteOn at 00:00 UTC, with the cool-off",
            s.id
        );
    }

    // A lock lifted in its cool-off (or never sent: its call failed) is sent again by the next
    // run, though no volume is due; a lock in place is not sent again.
    unlock(&acct, R, &snaps[0].id).await;
    let before = acct.count("LockSnapshot", Some(R));
    let listings = acct.count("DescribeLockedSnapshots", Some(R));
    let (code, out, err) = cli(&acct, &["snapshot", "--region", R]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created 0") && out.contains("locked 1"), "{out}");
    assert_eq!(acct.count("LockSnapshot", Some(R)) - before, 1, "only the missing lock is sent");
    assert_eq!(acct.count("DescribeLockedSnapshots", Some(R)) - listings, 1, "one lock listing per run");
    assert_eq!(locks(&acct, R).await.get(&snaps[0].id).map(|l| l.state.as_str()), Some("compliance-cooloff"));
}

#[tokio::test]
async fn without_a_lock_in_any_configuration_the_snapshot_job_reads_no_locks() {
    let acct = Account::with_configs(R, &[("plain", &support::backup_config("1 day", ""))]).await;
    acct.launch(R, &[("backup", "yes")]).await;
    let (code, out, err) = cli(&acct, &["snapshot", "--region", R]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("locked"), "{out}");
    assert_eq!(acct.count("DescribeLockedSnapshots", None), 0);
    assert_eq!(acct.count("LockSnapshot", None), 0);
    assert!(locks(&acct, R).await.is_empty());
}

/// Every lock the snapshot job sends fails (refused, dropped, or done with its answer lost):
/// the run reports each one it cannot confirm, and the next run locks every snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_failed_or_lost_its_answer_is_in_place_after_the_next_run() {
    let acct = Account::with_configs(R, &[("locked", LOCKED_DAILY)]).await;
    for _ in 0..4 {
        acct.launch(R, &[("backup", "yes")]).await;
    }
    let proxy = FaultProxy::start(FaultPlan::every_call(31, 1.0).only_operations(&["LockSnapshot"]).kinds(&[
        Fault::Internal,
        Fault::Drop,
        Fault::LostAnswer,
    ]))
    .await;
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(doc["regions"][0]["created"], 4, "{doc:#}");
    let failed = actions(&doc, R, "failed");
    assert!(failed.iter().all(|(action, _)| action == "lock"), "{failed:?}");
    assert_eq!(code, if failed.is_empty() { 0 } else { 1 }, "{err}");
    assert!(proxy.faulted() > 0);

    proxy.set_plan(FaultPlan::none());
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}\n{doc:#}");
    let listed = locks(&acct, R).await;
    for s in acct.snapshots(R).await {
        let lock = listed.get(&s.id).unwrap_or_else(|| panic!("{} is not locked after the next run", s.id));
        assert_eq!(lock.until, midnight(s.tag("DeleteOn").unwrap()));
    }
}

#[tokio::test]
async fn the_clean_job_never_sends_a_locked_snapshot_to_delete_snapshot() {
    // Expired snapshots of one volume, beyond a minimum of 1; two of them locked by someone
    // (governance, three days): those two are kept, "locked until", and never sent to delete.
    let acct = Account::with_configs(
        R,
        &[("c", r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "2 days", "minimum": 1, "frequency": "1 day"}}"#)],
    )
    .await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    let mut planted = Vec::new();
    for days in [9, 8, 7, 6] {
        let start = (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339();
        planted.push(
            acct.make_snapshot(
                R,
                &vol,
                &[("DeleteOn", &date(-1)), ("ebs-snapper:config", "c"), ("test-bed:start-time", &start)],
            )
            .await,
        );
    }
    let until = chrono::Utc::now() + chrono::Duration::days(3);
    let ec2 = acct.ec2(R).await;
    for id in &planted[..2] {
        ec2.lock_snapshot()
            .snapshot_id(id)
            .lock_mode(aws_sdk_ec2::types::LockMode::Governance)
            .expiration_date(aws_smithy_types::DateTime::from_secs(until.timestamp()))
            .send()
            .await
            .expect("lock");
    }

    let (code, doc, err) = json(&acct, &["clean", "--region", R]);
    assert_eq!(code, 0, "{err}");
    // Of the four (minimum 1), the newest is kept by the minimum, the two locked by their lock
    // (and they still count), so only the unlocked old one goes.
    assert_eq!(doc["regions"][0]["deleted"], 1, "the unlocked beyond the minimum: {doc:#}");
    let remaining: BTreeSet<String> = acct.snapshots(R).await.into_iter().map(|s| s.id).collect();
    assert_eq!(remaining, BTreeSet::from([planted[0].clone(), planted[1].clone(), planted[3].clone()]));
    for id in &planted[..2] {
        let action = doc["regions"][0]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["resource"] == id.as_str())
            .unwrap_or_else(|| panic!("{id} not reported: {doc:#}"));
        assert_eq!(action["action"], "keep");
        assert!(action["reason"].as_str().unwrap().starts_with("locked until "), "{action}");
    }
    let sent: Vec<String> =
        acct.recorded().into_iter().filter(|r| r.action == "DeleteSnapshot").map(|r| r.body).collect();
    for id in &planted[..2] {
        assert!(!sent.iter().any(|b| names(b, id)), "{id} was sent to DeleteSnapshot");
    }
    assert_eq!(acct.count("DescribeLockedSnapshots", Some(R)), 1, "one listing per clean run and region");
}

#[tokio::test]
async fn the_minimum_stays_locked() {
    // Two expired snapshots that the minimum of 2 keeps, under a governance lock: the clean job
    // locks both to 00:00 UTC two days ahead (the longer of 2 days and twice the daily
    // frequency), once; a newer snapshot then frees the older, which its lock still keeps.
    let config = r#"{"match": {"tag:backup": "yes"}, "schedules": [
        {"name": "daily", "frequency": "1 day", "retention": "2 days", "minimum": 2, "lock": {"mode": "governance"}}]}"#;
    let acct = Account::with_configs(R, &[("c", config)]).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    let mut old = Vec::new();
    for days in [5, 4] {
        old.push(plant_expired_daily(&acct, &vol, "c", days).await);
    }
    let (code, out, err) = cli(&acct, &["clean", "--region", R]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("deleted 0") && out.contains("locked 2"), "{out}");
    let listed = locks(&acct, R).await;
    for id in &old {
        assert_eq!(
            listed.get(id).map(|l| (l.state.as_str(), l.until.clone())),
            Some(("governance", midnight(&date(2))))
        );
    }
    let sent = acct.count("LockSnapshot", Some(R));
    let (code, out, err) = cli(&acct, &["clean", "--region", R]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("locked"), "{out}");
    assert_eq!(acct.count("LockSnapshot", Some(R)), sent, "a lock long enough is not sent again");

    // A newer snapshot: the oldest is beyond the minimum now, and kept by its lock.
    let (code, _, err) = cli(&acct, &["snapshot", "--region", R]);
    assert_eq!(code, 0, "{err}");
    let (code, doc, err) = json(&acct, &["clean", "--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["regions"][0]["deleted"], 0, "{doc:#}");
    let kept =
        doc["regions"][0]["actions"].as_array().unwrap().iter().find(|a| a["resource"] == old[0].as_str()).cloned();
    assert!(kept.as_ref().is_some_and(|a| a["reason"].as_str().unwrap().starts_with("locked until")), "{kept:?}");
}

#[tokio::test]
async fn the_replication_job_locks_its_copies_and_locks_again_a_lock_that_went_missing() {
    let config = format!(
        r#"{{"match": {{"tag:backup": "yes"}},
            "snapshot": {{"retention": "3 days", "minimum": 1, "frequency": "1 day"}},
            "copies": [{{"region": "{WEST}", "retention": "30 days", "lock": {{"mode": "governance"}}}}]}}"#
    );
    let acct = Account::with_configs(R, &[("dr", &config)]).await;
    acct.launch(R, &[("backup", "yes")]).await;
    let (code, out, err) = cli(&acct, &["snapshot", "--region", R]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("locked"), "the source's tier has no lock: {out}");
    let (code, out, err) = cli(&acct, &["replication", "--region", R]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("copied 1") && out.contains("locked 1"), "{out}");
    let copy = acct.snapshots(WEST).await.pop().expect("a copy");
    let listed = locks(&acct, WEST).await;
    assert_eq!(
        listed.get(&copy.id),
        Some(&Listed { state: "governance".into(), until: midnight(copy.tag("DeleteOn").unwrap()), cool_off: None })
    );
    assert!(locks(&acct, R).await.is_empty(), "the source is not locked");

    unlock(&acct, WEST, &copy.id).await;
    let (code, out, err) = cli(&acct, &["replication", "--region", R]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("copied 0") && out.contains("locked 1"), "{out}");
    assert!(locks(&acct, WEST).await.contains_key(&copy.id));
}

#[tokio::test]
async fn status_shows_the_lock_of_each_volumes_newest_snapshot() {
    let acct = Account::with_configs(R, &[("locked", LOCKED_DAILY)]).await;
    acct.launch(R, &[("backup", "yes")]).await;
    let (code, _, err) = cli(&acct, &["snapshot", "--region", R]);
    assert_eq!(code, 0, "{err}");
    let delete_on = acct.snapshots(R).await[0].tag("DeleteOn").unwrap().to_string();
    let (code, out, err) = cli(&acct, &["status", "--region", R]);
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().unwrap();
    assert!(header.contains(" LOCK ") && header.trim_end().ends_with("VAULT  DRILL"), "{out}");
    let row = out.lines().nth(1).unwrap();
    assert!(row.contains(&format!("compliance (cool-off) until {delete_on}")), "{out}");
    let last: Vec<&str> = row.split_whitespace().rev().take(2).collect();
    assert_eq!(last, ["-", "-"], "no vault, no drill: {out}");
    let (code, doc, err) = json(&acct, &["status", "--region", R]);
    assert_eq!(code, 0, "{err}");
    let lock = &doc["volumes"][0]["lock"];
    assert_eq!(lock["mode"], "compliance", "{doc:#}");
    assert_eq!(lock["state"], "compliance-cooloff");
    assert!(lock["until"].as_str().unwrap().starts_with(&delete_on), "{lock}");
}

#[tokio::test]
async fn configure_refuses_a_bad_lock_and_warns_of_compliance() {
    let acct = Account::with_configs(R, &[]).await;
    for (config, expected) in [
        (
            r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day", "lock": {"mode": "governance"}}}"#,
            "snapshot.lock: needs a retention of at least 2 days",
        ),
        (
            r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "7 days", "minimum": 1, "frequency": "1 day", "lock": {"mode": "governance", "cool_off_hours": 4}}}"#,
            "snapshot.lock.cool_off_hours: is for compliance mode only",
        ),
        (
            r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "7 days", "minimum": 1, "frequency": "1 day"}, "copies": [{"region": "us-west-2", "lock": {"mode": "compliance", "cool_off_hours": 80}}]}"#,
            "copies[0].lock.cool_off_hours: must be a whole number of hours from 1 to 72, found 80",
        ),
    ] {
        acct.assert_refused(config, expected);
    }
    assert!(acct.items(R).await.is_empty(), "nothing stored");

    let (code, out, err) = cli(&acct, &["configure", "-s", "locked", LOCKED_DAILY]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Saved to key locked"), "{out}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning:")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("compliance lock on tier daily") && warnings[0].contains("root included"), "{err}");
    let (code, _, err) = cli(&acct, &["configure", "-s", "plain", &support::backup_config("1 day", "")]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning:"), "{err}");
}

/// Every lock call of the three workers, each under its own role as Lambda runs it, behind the
/// IAM gate: the snapshot worker locks what it makes, the clean worker keeps the minimum locked,
/// the replication worker locks its copy in the destination (a refusal of any fails the test,
/// through the gates' own check). The same roles may lock no snapshot without the tool's tags,
/// and none may unlock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lock_call_of_every_worker_is_allowed_by_its_role_and_nothing_more() {
    let config = format!(
        r#"{{"match": {{"tag:backup": "yes"}}, "schedules": [
            {{"name": "daily", "frequency": "1 day", "retention": "3 days", "minimum": 2,
              "lock": {{"mode": "compliance", "cool_off_hours": 2}}}}],
            "copies": [{{"region": "{WEST}", "retention": "30 days", "lock": {{"mode": "governance"}}}}]}}"#
    );
    let acct = Account::with_configs(R, &[("locked", &config)]).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    let mut expired = Vec::new();
    for days in [6, 5] {
        expired.push(plant_expired_daily(&acct, &vol, "locked", days).await);
    }
    // Someone else's snapshot (no tool tags), of a volume no configuration selects.
    let other = acct.launch(R, &[("Name", "not backed up")]).await;
    let other_volume = acct.volumes_of(R, &other).await[0].clone();
    let foreign = acct.make_snapshot(R, &other_volume, &[("Name", "someone else's")]).await;

    let mut lambda = support::lambda::LambdaHarness::new(&acct).await;
    lambda.start(&acct, "clean", "clean-snapshot", &[]).await;
    lambda.start(&acct, "create", "create-snapshot", &[]).await;
    lambda.start(&acct, "replication", "replication", &[]).await;
    let ok = |r: Result<Value, Value>| {
        let summary = r.unwrap_or_else(|e| panic!("the run failed: {e}"));
        assert_eq!(summary["failed"], 0, "{summary:#}");
        summary
    };
    let cleaned = ok(lambda.call("clean", serde_json::json!({"region": R})).await);
    assert_eq!(cleaned["locked"], 2, "the minimum kept locked: {cleaned:#}");
    let created = ok(lambda.call("create", serde_json::json!({"region": R})).await);
    assert_eq!((created["created"].as_u64(), created["locked"].as_u64()), (Some(1), Some(1)), "{created:#}");
    let copied = ok(lambda.call("replication", serde_json::json!({"region": R})).await);
    assert_eq!((copied["copied"].as_u64(), copied["locked"].as_u64()), (Some(1), Some(1)), "{copied:#}");
    let listed = locks(&acct, R).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(expired.iter().all(|id| listed[id].until == midnight(&date(2))), "{listed:?}");
    assert_eq!(locks(&acct, WEST).await.len(), 1);

    for binary in ["create-snapshot", "clean-snapshot", "replication"] {
        let (aws, gate) = acct.aws_as(R, binary, &[]).await;
        let ec2 = aws_sdk_ec2::Client::new(&aws.in_region(R));
        let until = aws_smithy_types::DateTime::from_secs((chrono::Utc::now() + chrono::Duration::days(3)).timestamp());
        let err = ec2
            .lock_snapshot()
            .snapshot_id(&foreign)
            .lock_mode(aws_sdk_ec2::types::LockMode::Compliance)
            .expiration_date(until)
            .send()
            .await
            .expect_err("not the tool's snapshot");
        assert_eq!(aws_sdk_ec2::error::ProvideErrorMetadata::code(&err), Some("UnauthorizedOperation"), "{binary}");
        let err = ec2.unlock_snapshot().snapshot_id(&expired[0]).send().await.expect_err("no role unlocks");
        assert_eq!(aws_sdk_ec2::error::ProvideErrorMetadata::code(&err), Some("UnauthorizedOperation"), "{binary}");
        assert_eq!(gate.refused().len(), 2, "{binary}: {:?}", gate.refused());
    }
    assert!(!locks(&acct, R).await.contains_key(&foreign));
}

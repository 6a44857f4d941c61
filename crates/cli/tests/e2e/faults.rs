//! The safety invariants (SPEC §10) under injected AWS faults: the jobs run through a proxy that
//! answers a fixed-seed fraction of every call with throttling, internal errors or a dropped
//! connection (`support::fault_proxy`; the scenes they share are `support::scenes`). Afterwards the end state is the fault-free one, or the run
//! reported exactly what it could not do; and nothing it must not touch was touched.

use crate::support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::fault_proxy::{Fault, FaultPlan, FaultProxy, Strict};
use support::scenes::{
    actions, by_volume, check_clean_state, check_snapshot_state, clean_scene, config, fleet, run, LEASE_SECONDS,
};
use support::{date, text, Account, Snap};

const R: &str = "us-east-1";
const WEST: &str = "us-west-2";
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_under_twenty_percent_faults_ends_as_without_faults() {
    let acct = Account::new().await;
    let f = fleet(&acct, &acct, 6, "1 day").await;
    let proxy = FaultProxy::start(FaultPlan::every_call(7, 0.2)).await;
    proxy.set_strict(Strict::on());

    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    let failed = actions(&doc, R, "failed");
    assert_eq!(code, if failed.is_empty() { 0 } else { 1 }, "{err}");
    assert!(proxy.faulted() > 0, "the proxy injected nothing");
    check_snapshot_state(&f, &acct.snapshots(R).await, &failed);
    assert_eq!(doc["regions"][0]["created"].as_u64().unwrap() as usize + failed.len(), f.due.len(), "{doc:#}");

    // A second run, still under faults, completes whatever the first reported failed and
    // creates nothing twice.
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    let failed = actions(&doc, R, "failed");
    assert_eq!(code, if failed.is_empty() { 0 } else { 1 }, "{err}");
    check_snapshot_state(&f, &acct.snapshots(R).await, &failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_failures_are_reported_exactly() {
    // Two volumes' creations fail on every attempt; the others are faulted at random.
    let acct = Account::new().await;
    let f = fleet(&acct, &acct, 6, "1 day").await;
    let doomed: Vec<&str> = f.due.iter().take(2).map(String::as_str).collect();
    let plan = FaultPlan::every_call(11, 1.0)
        .only_operations(&["CreateSnapshot"])
        .only_naming(&doomed)
        .kinds(&[Fault::Internal]);
    let proxy = FaultProxy::start(plan).await;

    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 1, "{err}");
    let failed = actions(&doc, R, "failed");
    let expected: BTreeSet<(String, String)> = doomed.iter().map(|v| ("create".to_string(), v.to_string())).collect();
    assert_eq!(failed, expected, "exactly the two volumes are reported failed: {doc:#}");
    check_snapshot_state(&f, &acct.snapshots(R).await, &failed);
    assert_eq!(doc["regions"][0]["failed"], 2);
    assert_eq!(doc["regions"][0]["created"].as_u64().unwrap() as usize, f.due.len() - 2);
    let errors = doc["regions"][0]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{doc:#}");
    for volume in &doomed {
        assert!(errors.iter().any(|e| e.as_str().unwrap().contains(volume)), "{volume} named: {errors:?}");
    }
    assert!(errors.iter().all(|e| e.as_str().unwrap().contains("InternalError")), "{errors:?}");
    assert!(err.contains("failed"), "{err}");

    // Without faults, the rerun creates exactly the two that failed.
    proxy.set_plan(FaultPlan::none());
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["regions"][0]["created"], 2);
    check_snapshot_state(&f, &acct.snapshots(R).await, &BTreeSet::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_under_twenty_percent_faults_deletes_exactly_the_expired_beyond_minimum() {
    let acct = Account::new().await;
    let scene = clean_scene(&acct, &acct).await;
    let proxy = FaultProxy::start(FaultPlan::every_call(3, 0.2)).await;
    proxy.set_strict(Strict::on());

    let (code, doc, err) = run(&acct, &proxy, "clean", &["--region", R]);
    let failed = actions(&doc, R, "failed");
    assert_eq!(code, if failed.is_empty() { 0 } else { 1 }, "{err}");
    assert!(proxy.faulted() > 0);
    let remaining: BTreeSet<String> = acct.snapshots(R).await.into_iter().map(|s| s.id).collect();
    check_clean_state(&scene, &remaining, &failed);

    // Again under faults: nothing more is deleted than the fault-free run would.
    let (_, doc, _) = run(&acct, &proxy, "clean", &["--region", R]);
    let failed = actions(&doc, R, "failed");
    let remaining: BTreeSet<String> = acct.snapshots(R).await.into_iter().map(|s| s.id).collect();
    check_clean_state(&scene, &remaining, &failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_delete_failures_are_reported_and_never_lower_the_minimum() {
    let acct = Account::new().await;
    let scene = clean_scene(&acct, &acct).await;
    // One deletion fails on every attempt (throttled or dropped); the others go through.
    let doomed = scene.must_delete.iter().next().unwrap().clone();
    let plan = FaultPlan::every_call(5, 1.0)
        .only_operations(&["DeleteSnapshot"])
        .only_naming(&[&doomed])
        .kinds(&[Fault::Throttle, Fault::Drop]);
    let proxy = FaultProxy::start(plan).await;
    let (code, doc, err) = run(&acct, &proxy, "clean", &["--region", R]);
    assert_eq!(code, 1, "{err}");
    let failed = actions(&doc, R, "failed");
    assert_eq!(failed, BTreeSet::from([("delete".to_string(), doomed.clone())]), "{doc:#}");
    assert_eq!(doc["regions"][0]["failed"], 1);
    assert_eq!(doc["regions"][0]["deleted"].as_u64().unwrap() as usize, scene.must_delete.len() - 1);
    let remaining: BTreeSet<String> = acct.snapshots(R).await.into_iter().map(|s| s.id).collect();
    assert!(remaining.contains(&doomed));
    check_clean_state(&scene, &remaining, &failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_runs_under_faults_change_nothing() {
    let acct = Account::new().await;
    let f = fleet(&acct, &acct, 3, "1 day").await;
    let before: Vec<String> = acct.snapshots(R).await.into_iter().map(|s| s.id).collect();
    let proxy = FaultProxy::start(FaultPlan::every_call(9, 0.2)).await;
    proxy.set_strict(Strict::on());
    for job in ["snapshot", "clean", "replication"] {
        let (code, doc, err) = run(&acct, &proxy, job, &["--region", R, "--dry-run"]);
        let report = &doc["regions"][0];
        assert_eq!(report["dry_run"], true, "{job}: {doc:#}");
        // Either the plan is complete, or the failure is reported (exit 1, named errors).
        if report["failed"] != 0 {
            assert_eq!(code, 1, "{job}: {err}");
            assert!(!report["errors"].as_array().unwrap().is_empty(), "{job}: {report:#}");
            continue;
        }
        assert_eq!(code, 0, "{job}: {err}");
        let planned = actions(&doc, R, "planned");
        match job {
            "snapshot" => {
                let creates: BTreeSet<String> =
                    planned.iter().filter(|(a, _)| a == "create").map(|(_, v)| v.clone()).collect();
                assert_eq!(creates, f.due, "the dry run plans a snapshot of every due volume: {doc:#}");
                assert_eq!(report["not_due"], 1, "{report:#}");
            }
            "clean" => {
                assert!(planned.iter().all(|(a, _)| a != "delete"), "{report:#}");
                assert_eq!(report["kept"], 1, "the one DeleteOn snapshot is kept: {report:#}");
            }
            _ => assert!(planned.is_empty(), "{report:#}"),
        }
    }
    let after: Vec<String> = acct.snapshots(R).await.into_iter().map(|s| s.id).collect();
    assert_eq!(before, after);
    assert!(!f.due.is_empty());
    let mutations = ["CreateSnapshot", "DeleteSnapshot", "CopySnapshot", "CreateTags", "PutItem", "DeleteItem"];
    let seen = proxy.seen();
    assert!(seen.iter().all(|s| !mutations.contains(&s.operation.as_str())), "a dry run sent a mutation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_region_does_not_stop_the_others() {
    let acct = Account::new().await;
    let f = fleet(&acct, &acct, 2, "1 day").await;
    let west = acct.launch(WEST, &[("backup", "yes")]).await;
    // Every EC2 call to us-west-2 fails, every time.
    let proxy = FaultProxy::start(FaultPlan::every_call(1, 1.0).only_region(WEST).kinds(&[Fault::Internal])).await;
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R, "--region", WEST]);
    assert_eq!(code, 1, "{err}");
    check_snapshot_state(&f, &acct.snapshots(R).await, &BTreeSet::new());
    let west_report = doc["regions"].as_array().unwrap().iter().find(|r| r["region"] == WEST).unwrap();
    assert!(west_report["failed"].as_u64().unwrap() >= 1, "{west_report:#}");
    assert!(west_report["errors"].to_string().contains("InternalError"), "{west_report:#}");
    assert!(acct.snapshots(WEST).await.is_empty(), "{west}");
}

/// A snapshot with a replication tag in `region`.
async fn tagged_for_replication(acct: &Account, region: &str, dst: &str) -> String {
    let i = acct.launch(region, &[]).await;
    let vol = acct.volumes_of(region, &i).await[0].clone();
    acct.make_snapshot(region, &vol, &[("replication_dst_region", dst), ("Name", "ledger")]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_under_twenty_percent_faults_copies_once_and_deletes_only_orphans() {
    let acct = Account::new().await;
    acct.create_table(R).await;
    let sources: BTreeSet<String> = {
        let mut s = BTreeSet::new();
        for _ in 0..4 {
            s.insert(tagged_for_replication(&acct, WEST, R).await);
        }
        s
    };
    // A replica (a copy) in R whose source is gone, and one whose source exists.
    let gone = tagged_for_replication(&acct, WEST, "eu-west-1").await;
    let orphan =
        acct.make_copy(R, WEST, &gone, &[("replication_src_region", WEST), ("replication_snapshot_id", &gone)]).await;
    acct.ec2(WEST).await.delete_snapshot().snapshot_id(&gone).send().await.unwrap();
    let kept_source = sources.iter().next().unwrap().clone();
    let kept_replica = acct
        .make_copy(
            R,
            WEST,
            &kept_source,
            &[("replication_src_region", WEST), ("replication_snapshot_id", &kept_source)],
        )
        .await;
    let proxy = FaultProxy::start(FaultPlan::every_call(21, 0.2)).await;
    proxy.set_strict(Strict::on());

    for region in [R, WEST] {
        let (code, doc, err) = run(&acct, &proxy, "replication", &["--region", region]);
        let failed = actions(&doc, region, "failed");
        assert_eq!(code, if failed.is_empty() { 0 } else { 1 }, "{err}");
        assert!(failed.is_empty(), "20% faults are retried away here: {doc:#}");
    }
    assert!(proxy.faulted() > 0);
    let replicas: Vec<Snap> = acct.snapshots(R).await;
    let ids: BTreeSet<&str> = replicas.iter().map(|s| s.id.as_str()).collect();
    assert!(!ids.contains(orphan.as_str()), "the replica whose source is gone is deleted");
    assert!(ids.contains(kept_replica.as_str()), "a replica whose source exists stays");
    for src in &sources {
        let copies = replicas.iter().filter(|s| s.tag("replication_snapshot_id") == Some(src.as_str())).count();
        assert_eq!(copies, 1, "{src} has exactly one replica: {replicas:#?}");
    }
    // The sources themselves are untouched.
    let west_ids: BTreeSet<String> = acct.snapshots(WEST).await.into_iter().map(|s| s.id).collect();
    assert!(sources.is_subset(&west_ids));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_runs_create_no_duplicates() {
    let acct = Account::new().await;
    let f = fleet(&acct, &acct, 6, "1 day").await;
    // Every kind of fault (lost answers and lease-write failures included), so that the runs
    // are slowed down and overlap, and the paths where a lease write fails are taken too.
    let proxy = FaultProxy::start(FaultPlan::every_call(13, 0.2)).await;
    proxy.set_strict(Strict::on());
    let spawn = || {
        acct.cli_env(std::process::Command::new(assert_cmd::cargo::cargo_bin("ebs-snapper")))
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .env("EBS_SNAPPER_LEASE_SECONDS", LEASE_SECONDS)
            .args(["snapshot", "--region", R, "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // The second run starts once the first holds the region's lease, so the two overlap.
    let a = spawn();
    let ddb = acct.dynamodb(R).await;
    let started = std::time::Instant::now();
    loop {
        let held = ddb
            .get_item()
            .table_name(support::TABLE)
            .key("aws_account_id", aws_sdk_dynamodb::types::AttributeValue::S(format!("lease#{}", acct.id)))
            .key("id", aws_sdk_dynamodb::types::AttributeValue::S(format!("snapshot/{R}")))
            .send()
            .await
            .is_ok_and(|o| o.item.is_some());
        if held {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the first run never took the lease");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let b = spawn();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut created = 0;
    // Creations whose answer was lost and could not be verified: reported failed, maybe made.
    let mut unverified = 0;
    let mut docs = Vec::new();
    for out in [&a, &b] {
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        let report = &doc["regions"][0];
        let expected = if report["failed"] == 0 { 0 } else { 1 };
        assert_eq!(out.status.code(), Some(expected), "{}", text(&out.stderr));
        created += report["created"].as_u64().unwrap();
        unverified += report["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e.to_string().contains("could not be verified"))
            .count();
        docs.push(doc);
    }
    // The runs overlapped: one found the region's lease held by the other and watched it (a
    // lease is read only after a conditional write found it taken).
    let watched = proxy.seen().iter().filter(|s| s.operation == "GetItem").count();
    assert!(watched > 0, "one run waited on the other's lease");
    // No volume has two new snapshots (a run may have deferred some when throttling delayed a
    // lease renewal; those are still due).
    let snaps = acct.snapshots(R).await;
    let made = snaps.len() - 1;
    assert!(
        created as usize <= made && made <= created as usize + unverified,
        "every snapshot made is reported once, as created or as an unverified failure: {docs:#?}"
    );
    for (v, s) in by_volume(&snaps) {
        assert_eq!(s.len(), 1, "{v} has {} snapshots", s.len());
    }
    // A fault-free run completes whatever is left.
    proxy.set_plan(FaultPlan::none());
    let (code, _, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    check_snapshot_state(&f, &acct.snapshots(R).await, &BTreeSet::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_halfway_then_rerun_completes_without_duplicates() {
    let acct = Account::new().await;
    let f = fleet(&acct, &acct, 10, "1 day").await;
    // Creations are slowed by throttling, so the run is still creating when it is killed.
    let proxy = FaultProxy::start(
        FaultPlan::every_call(17, 0.5).only_operations(&["CreateSnapshot"]).kinds(&[Fault::Throttle]),
    )
    .await;
    let mut child = acct
        .cli_env(std::process::Command::new(assert_cmd::cargo::cargo_bin("ebs-snapper")))
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .env("EBS_SNAPPER_LEASE_SECONDS", LEASE_SECONDS)
        .args(["snapshot", "--region", R])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once some, but not all, creations went through.
    let started = std::time::Instant::now();
    let created = || proxy.seen().iter().filter(|s| s.operation == "CreateSnapshot" && s.fault.is_none()).count();
    while created() < 2 {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "the run made no progress in 60 s");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Requests the proxy already forwarded may still land: count once the proxy is quiet.
    let mut seen = proxy.seen().len();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = proxy.seen().len();
        if now == seen {
            break;
        }
        seen = now;
    }
    let after_kill = acct.snapshots(R).await.len() - 1;
    assert!(after_kill >= 2, "killed after two creations went through ({after_kill} found)");
    assert!(after_kill < f.due.len(), "the run was killed mid-work ({after_kill} of {} created)", f.due.len());

    // The rerun waits out the dead run's lease, then creates only what is missing.
    proxy.set_plan(FaultPlan::none());
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["regions"][0]["created"].as_u64().unwrap() as usize, f.due.len() - after_kill, "{doc:#}");
    check_snapshot_state(&f, &acct.snapshots(R).await, &BTreeSet::new());
}

// ---- The stricter AWS (SPEC §15): what AWS does that the emulator alone does not ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_aws_refuses_fails_alone_and_the_others_snapshot_and_clean() {
    let acct = Account::new().await;
    acct.create_table(R).await;
    // Written by the Python tool, which never checked filter names: EC2 refuses `instance_id`.
    acct.put_raw(R, "a-python", r#"{"match": {"instance_id": ["i-0123456789abcdef0"]}, "snapshot": {"retention": "5 days", "minimum": 1, "frequency": "1 day"}}"#).await;
    acct.put_raw(R, "b-good", &config(1, "1 day", "")).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    let mut expired = BTreeSet::new();
    let mut newest_planted = String::new();

    for job in ["snapshot", "clean"] {
        if job == "clean" {
            // Planted a second after the job's own snapshot (EC2's start times are to the
            // second), so they are the volume's newest: minimum 1 keeps the newest of them and
            // the two older ones go. Planted in the same second, the job's snapshot would win
            // the tie on its later DeleteOn, and the count would depend on the clock.
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            for days in [-4, -3, -2] {
                let tags = [("DeleteOn", date(days)), ("ebs-snapper:config", "b-good".to_string())];
                let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let id = acct.make_snapshot(R, &vol, &tags).await;
                if days == -2 {
                    newest_planted = id;
                } else {
                    expired.insert(id);
                }
            }
        }
        let (code, doc, err) = run(&acct, &proxy, job, &["--region", R]);
        assert_eq!(code, 1, "{job}: the refused configuration is a failure: {err}");
        let report = &doc["regions"][0];
        assert_eq!(report["failed"], 1, "{job}: {report:#}");
        assert_eq!(
            actions(&doc, R, "failed"),
            BTreeSet::from([("match".to_string(), "configuration a-python".to_string())])
        );
        let errors = report["errors"].to_string();
        assert!(errors.contains("configuration a-python") && errors.contains("InvalidParameterValue"), "{errors}");
        if job == "snapshot" {
            assert_eq!(report["created"], 1, "b-good still snapshots: {report:#}");
        } else {
            assert_eq!(report["deleted"], 2, "b-good still cleans: {report:#}");
        }
    }
    let left: BTreeSet<String> = acct.snapshots(R).await.into_iter().map(|s| s.id).collect();
    assert!(left.is_disjoint(&expired) && left.len() == 2 && left.contains(&newest_planted), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_are_found_behind_an_empty_first_page() {
    let acct = Account::new().await;
    acct.create_table(R).await;
    acct.put_raw(R, "cfg", &config(1, "1 day", "")).await;
    acct.launch(WEST, &[("backup", "yes")]).await;
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    proxy.set_strict(Strict { empty_first_pages: true, ..Strict::default() });

    // No --region: every region is probed, and each probe's first page comes back empty.
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &[]);
    assert_eq!(code, 0, "{err}");
    let regions: Vec<&str> = doc["regions"].as_array().unwrap().iter().map(|r| r["region"].as_str().unwrap()).collect();
    assert_eq!(regions, [WEST], "{doc:#}");
    assert_eq!(doc["regions"][0]["created"], 1, "{doc:#}");
    assert_eq!(acct.snapshots(WEST).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_never_makes_a_second_snapshot_or_copy() {
    let acct = Account::new().await;
    let f = fleet(&acct, &acct, 4, "1 day").await;
    // Every CreateSnapshot is carried out and its answer lost; new snapshots show late.
    let proxy = FaultProxy::start(
        FaultPlan::every_call(5, 1.0).only_operations(&["CreateSnapshot"]).kinds(&[Fault::LostAnswer]),
    )
    .await;
    proxy.set_strict(Strict::on());
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["regions"][0]["created"].as_u64().unwrap() as usize, f.due.len(), "{doc:#}");
    check_snapshot_state(&f, &acct.snapshots(R).await, &BTreeSet::new());

    // The same for crash-consistent sets: each lost answer is found by the set's tag.
    let acct_sets = Account::new().await;
    let f = fleet(&acct_sets, &acct_sets, 3, "1 day").await;
    let stored = acct_sets.items(R).await[0].1.clone();
    let with_sets = stored.trim_end().trim_end_matches('}').to_string() + r#", "consistency": "instance"}"#;
    acct_sets.put_raw(R, "cfg", &with_sets).await;
    proxy.set_plan(FaultPlan::every_call(7, 1.0).only_operations(&["CreateSnapshots"]).kinds(&[Fault::LostAnswer]));
    let (code, doc, err) = run(&acct_sets, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["regions"][0]["created"].as_u64().unwrap() as usize, f.due.len(), "{doc:#}");
    assert_eq!(acct_sets.count("CreateSnapshots", None), 3, "one call per instance, none repeated");
    check_snapshot_state(&f, &acct_sets.snapshots(R).await, &BTreeSet::new());

    // The same for copies.
    let source = tagged_for_replication(&acct, WEST, R).await;
    proxy.set_plan(FaultPlan::every_call(6, 1.0).only_operations(&["CopySnapshot"]).kinds(&[Fault::LostAnswer]));
    let (code, doc, err) = run(&acct, &proxy, "replication", &["--region", WEST]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["regions"][0]["copied"], 1, "{doc:#}");
    let copies = acct
        .snapshots(R)
        .await
        .into_iter()
        .filter(|s| s.tag("replication_snapshot_id") == Some(source.as_str()))
        .count();
    assert_eq!(copies, 1);
}

/// A lost answer is settled only by this tool's own snapshot of the volume, never by one someone
/// else took at that moment (a DLM policy on the same hour, a person): that one carries no
/// `DeleteOn` and no tier, and taking it for ours would leave the volume without this tool's
/// snapshot while the report names someone else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_not_settled_by_someone_elses_snapshot() {
    let acct = Account::new().await;
    let f = fleet(&acct, &acct, 2, "1 day").await;
    let volume = f.due.iter().next().unwrap().clone();
    let proxy = FaultProxy::start(
        FaultPlan::every_call(3, 1.0)
            .only_operations(&["CreateSnapshot"])
            .only_naming(&[&volume])
            .kinds(&[Fault::LostBesideAnother])
            .at_most(1),
    )
    .await;
    proxy.set_strict(Strict::on());
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    let lost = proxy.seen().iter().filter(|s| s.fault == Some(Fault::LostBesideAnother)).count();
    assert_eq!(lost, 1, "the first CreateSnapshot of {volume} was lost");
    assert_eq!(doc["regions"][0]["created"].as_u64().unwrap() as usize, f.due.len(), "{doc:#}");

    let snaps = acct.snapshots(R).await;
    let of_volume: Vec<&Snap> = snaps.iter().filter(|s| s.volume_id == volume).collect();
    let ours: Vec<&&Snap> = of_volume.iter().filter(|s| s.tag("ebs-snapper:config") == Some("cfg")).collect();
    assert_eq!((of_volume.len(), ours.len()), (2, 1), "someone else's and this tool's: {of_volume:#?}");
    assert!(ours[0].tag("DeleteOn").is_some(), "{:#?}", ours[0]);
    let reported: Vec<&Value> = doc["regions"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "create" && a["resource"] == volume.as_str())
        .collect();
    assert_eq!(reported.len(), 1, "{doc:#}");
    assert_eq!(
        (reported[0]["outcome"].as_str(), reported[0]["result_id"].as_str()),
        (Some("done"), Some(ours[0].id.as_str())),
        "the report names this tool's snapshot: {doc:#}"
    );
}

/// A lost answer is never settled by a snapshot the plan already listed. With a cron frequency
/// that fires every minute, the configuration's previous snapshot is a minute old, well inside
/// the 5 minutes the lookup allows for AWS's clock; taking it for the new one would leave the
/// minute without its snapshot and report the old one as made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_not_settled_by_the_snapshot_listed_before_it() {
    let acct = Account::new().await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let volume = acct.volumes_of(R, &i).await[0].clone();
    acct.create_table(R).await;
    acct.put_raw(R, "cfg", &config(0, "* * * * *", "")).await;
    let previous = acct.make_snapshot(R, &volume, &[("DeleteOn", &date(5)), ("ebs-snapper:config", "cfg")]).await;
    // The cron fires once after the previous snapshot started: the volume is due.
    let into_minute = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 60_000;
    tokio::time::sleep(std::time::Duration::from_millis(61_000 - into_minute as u64)).await;
    // The first CreateSnapshot is lost before EC2 carries it out.
    let proxy = FaultProxy::start(
        FaultPlan::every_call(4, 1.0).only_operations(&["CreateSnapshot"]).kinds(&[Fault::Drop]).at_most(1),
    )
    .await;
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}\n{doc:#}");
    let dropped = proxy.seen().iter().filter(|s| s.fault == Some(Fault::Drop)).count();
    assert_eq!(dropped, 1, "the first CreateSnapshot was lost");
    let snaps = acct.snapshots(R).await;
    let new: Vec<&Snap> = snaps.iter().filter(|s| s.volume_id == volume && s.id != previous).collect();
    assert_eq!(new.len(), 1, "the minute has its own snapshot: {snaps:#?}");
    let action = &doc["regions"][0]["actions"][0];
    assert_eq!((action["action"].as_str(), action["outcome"].as_str()), (Some("create"), Some("done")), "{doc:#}");
    assert_eq!(action["result_id"].as_str(), Some(new[0].id.as_str()), "the report names the new snapshot: {doc:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_right_after_another_does_not_miss_its_unlisted_snapshots() {
    let acct = Account::new().await;
    let f = fleet(&acct, &acct, 3, "1 day").await;
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    // New snapshots stay out of DescribeSnapshots for 3 s (EC2 is eventually consistent).
    proxy.set_strict(Strict { unlisted_for: std::time::Duration::from_secs(3), ..Strict::default() });
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!((code, doc["regions"][0]["created"].as_u64()), (0, Some(f.due.len() as u64)), "{err}");
    // At once the next run (the schedule, say) takes the region over.
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["regions"][0]["created"], 0, "nothing is due again: {doc:#}");
    check_snapshot_state(&f, &acct.snapshots(R).await, &BTreeSet::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_written_leaves_the_region_and_says_so() {
    let acct = Account::new().await;
    let f = fleet(&acct, &acct, 2, "1 day").await;
    let proxy =
        FaultProxy::start(FaultPlan::every_call(8, 1.0).only_operations(&["PutItem"]).kinds(&[Fault::Internal])).await;
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 1, "{err}");
    let report = &doc["regions"][0];
    assert_eq!((report["created"].as_u64(), report["failed"].as_u64()), (Some(0), Some(1)), "{report:#}");
    assert!(
        report["errors"].to_string().contains("could not take the snapshot lease of region us-east-1"),
        "{report:#}"
    );
    let vols = by_volume(&acct.snapshots(R).await).into_keys().collect::<BTreeSet<_>>();
    assert!(vols.is_disjoint(&f.due), "nothing was snapshotted without the lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_region_that_cannot_be_listed_is_a_failure() {
    let acct = Account::new().await;
    acct.create_table(R).await;
    tagged_for_replication(&acct, WEST, R).await;
    let proxy = FaultProxy::start(
        FaultPlan::every_call(2, 1.0).only_region(R).only_operations(&["DescribeSnapshots"]).kinds(&[Fault::Internal]),
    )
    .await;
    let (code, doc, err) = run(&acct, &proxy, "replication", &["--region", WEST]);
    assert_eq!(code, 1, "replication is stalled, which must alarm: {err}");
    let report = &doc["regions"][0];
    assert_eq!(report["failed"], 1, "{report:#}");
    assert!(report["errors"].to_string().contains("could not list us-east-1"), "{report:#}");
    assert_eq!(report["copied"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_accounts_shared_snapshot_is_never_touched() {
    let acct = Account::new().await;
    acct.create_table(R).await;
    acct.put_raw(R, "cfg", &config(0, "1 day", r#", "ignore_retention": true"#)).await;
    acct.launch(R, &[("backup", "yes")]).await;
    tagged_for_replication(&acct, R, WEST).await;
    // A snapshot another account shares with this one: listed unless OwnerIds=self is asked,
    // expired long ago and tagged for replication. Every request naming it is refused and
    // counted by the proxy.
    let strict = Strict::on();
    let foreign = strict.foreign_snapshot.clone().unwrap();
    let proxy =
        FaultProxy::start(FaultPlan::every_call(4, 1.0).only_naming(&[&foreign]).kinds(&[Fault::Internal])).await;
    proxy.set_strict(strict);
    for job in ["snapshot", "clean", "replication"] {
        let (code, doc, err) = run(&acct, &proxy, job, &[]);
        assert_eq!(code, 0, "{job}: {err}\n{doc:#}");
    }
    assert_eq!(proxy.faulted(), 0, "no request named the other account's snapshot");
    assert!(!acct.snapshots(WEST).await.iter().any(|s| s.tag("replication_snapshot_id") == Some(foreign.as_str())));
}

/// Crosses the limits no smaller test reaches: more than 1,000 instances (two pages of
/// `DescribeInstances`), more than 200 volumes (six batches of ids), more than 1,000 snapshots
/// (two pages of `DescribeSnapshots`); nothing is missed and nothing is read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_batches_are_crossed_without_missing_or_repeating() {
    use futures::StreamExt;
    const N: usize = 1001;
    let acct = Account::new().await;
    acct.create_table(R).await;
    acct.put_raw(R, "cfg", &config(1, "1 day", "")).await;
    let ec2 = acct.ec2(R).await;
    // One reservation each, as launches one by one make them (a page counts reservations).
    futures::stream::iter(0..N)
        .map(|_| {
            let ec2 = ec2.clone();
            async move {
                ec2.run_instances()
                    .image_id("ami-12345678")
                    .min_count(1)
                    .max_count(1)
                    .tag_specifications(
                        aws_sdk_ec2::types::TagSpecification::builder()
                            .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                            .tags(aws_sdk_ec2::types::Tag::builder().key("backup").value("yes").build())
                            .build(),
                    )
                    .send()
                    .await
                    .expect("run instance")
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;

    let count = |calls: &[support::Recorded], action: &str| calls.iter().filter(|c| c.action == action).count();
    let before = acct.recorded().len();
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["regions"][0]["created"], N, "every volume once");
    let calls: Vec<support::Recorded> = acct.recorded().into_iter().skip(before).collect();
    assert_eq!(count(&calls, "DescribeInstances"), 2, "two pages of instances");
    assert_eq!(count(&calls, "DescribeVolumes"), N.div_ceil(200), "batches of 200 volume ids");
    assert_eq!(count(&calls, "CreateSnapshot"), N);
    let snaps = acct.snapshots(R).await;
    assert_eq!(snaps.len(), N);
    assert!(by_volume(&snaps).values().all(|s| s.len() == 1), "no volume snapshotted twice");

    let before = acct.recorded().len();
    let (code, doc, err) = run(&acct, &proxy, "clean", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["regions"][0]["kept"], N, "every DeleteOn snapshot read once: {}", doc["regions"][0]["warnings"]);
    let calls: Vec<support::Recorded> = acct.recorded().into_iter().skip(before).collect();
    assert_eq!(count(&calls, "DescribeSnapshots"), 2, "two pages of snapshots");
}

/// EC2's token bucket for `CreateSnapshot` made small (10 tokens, refilled at 2 per second): the
/// run is refused by the empty bucket, paces itself to it, and ends with every due volume
/// snapshotted once and nothing failed. (How few throttles the pace costs on a long run is a
/// benchmark's question: `scripts/bench.sh`, and the pace's own simulation in `core::pace`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_token_bucket_slows_the_run_and_fails_nothing() {
    use support::fault_proxy::Buckets;
    let acct = Account::new().await;
    let f = fleet(&acct, &acct, 16, "1 day").await;
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    proxy.set_strict(Strict { buckets: Some(Buckets::aws().with("CreateSnapshot", 10.0, 2.0)), ..Strict::default() });

    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(doc["regions"][0]["failed"], 0, "{doc:#}");
    check_snapshot_state(&f, &acct.snapshots(R).await, &BTreeSet::new());
    let seen: Vec<_> = proxy.seen().into_iter().filter(|s| s.operation == "CreateSnapshot").collect();
    let calls = seen.len();
    let refused = proxy.bucket_refusals("CreateSnapshot");
    assert!(refused > 0, "the bucket was never empty: the test tests nothing");
    eprintln!("{refused} of {calls} CreateSnapshot calls refused by the empty bucket");
    // Paced, not merely retried: few refusals (the SDK's retries alone also end with nothing
    // failed, after many more), and after the first one the calls go at about the refill rate.
    assert!(refused * 4 <= calls, "{refused} of {calls} calls refused: more than a quarter");
    let first = seen.iter().position(|s| s.fault.is_some()).unwrap();
    let after = &seen[first..];
    let span = (after.last().unwrap().at - after[0].at).as_secs_f64();
    let rate = (after.len() - 1) as f64 / span.max(0.001);
    assert!(
        rate <= 2.0 * 1.5,
        "{} calls in {span:.1} s after the first refusal: {rate:.1}/s against a refill of 2/s",
        after.len()
    );
    // Once the requests in flight at the first refusal are answered (a second), the pace keeps
    // to the bucket: hardly a refusal more (retries without a pace keep meeting the empty bucket).
    let late =
        after.iter().filter(|s| s.fault.is_some() && s.at > after[0].at + std::time::Duration::from_secs(1)).count();
    eprintln!("refusals more than a second after the first: {late}");
    assert!(late <= 1, "{late} refusals after the pace had settled");
}

/// A CLI run that can no longer renew its region lease stops starting mutations (a taker may
/// already be working the region). Nothing takes over what it did not start, so those volumes
/// are failures: exit 1, each listed failed, and a later run makes them. It used to say
/// `deferred N` and exit 0, a volume without its snapshot and a run reported successful.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_run_that_loses_its_lease_fails_what_it_did_not_start() {
    use support::fault_proxy::Buckets;
    let acct = Account::new().await;
    let f = fleet(&acct, &acct, 5, "1 day").await;
    // Every renewal of the lease fails (the take is a PutItem, renewals are UpdateItems), so
    // mutations stop 16 s (+4 s grace) into the run; the bucket lets through one creation every
    // 10 s, so at most three start in time.
    let proxy =
        FaultProxy::start(FaultPlan::every_call(2, 1.0).only_operations(&["UpdateItem"]).kinds(&[Fault::Internal]))
            .await;
    proxy.set_strict(Strict { buckets: Some(Buckets::aws().with("CreateSnapshot", 1.0, 0.1)), ..Strict::default() });

    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    let report = &doc["regions"][0];
    let failed = actions(&doc, R, "failed");
    assert_eq!(code, 1, "{err}\n{doc:#}");
    assert_eq!(report["deferred"], 0, "nothing is left as if someone would take it: {report:#}");
    assert!(!failed.is_empty() && failed.len() < f.due.len(), "{report:#}");
    assert_eq!(report["failed"].as_u64().unwrap() as usize, failed.len(), "{report:#}");
    assert_eq!(report["created"].as_u64().unwrap() as usize + failed.len(), f.due.len(), "{report:#}");
    let said = format!("{} action(s) not started: the region's lease could not be renewed", failed.len());
    assert!(report["errors"].as_array().unwrap().iter().any(|e| e.as_str().unwrap().starts_with(&said)), "{report:#}");
    check_snapshot_state(&f, &acct.snapshots(R).await, &failed);

    // A later run makes exactly those, and every due volume then has its one snapshot.
    proxy.set_plan(FaultPlan::none());
    proxy.set_strict(Strict::default());
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}\n{doc:#}");
    let made: BTreeSet<String> = actions(&doc, R, "done").into_iter().map(|(_, volume)| volume).collect();
    let missed: BTreeSet<String> = failed.iter().map(|(_, volume)| volume.clone()).collect();
    assert_eq!(made, missed, "the rerun makes what the first run did not start: {doc:#}");
    check_snapshot_state(&f, &acct.snapshots(R).await, &BTreeSet::new());
}

/// A worker whose time runs out while the pace holds its mutations back hands the rest to its
/// continuation at once and answers before its deadline (Lambda would kill it at the deadline,
/// and the rest of the region would wait for the next schedule). It once let every remaining
/// volume wait its paced turn before finding the budget spent: minutes past the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_worker_hands_over_when_its_time_is_up_not_after_its_deadline() {
    use std::time::Duration;
    use support::fault_proxy::Buckets;
    use support::lambda::LambdaHarness;
    let acct = Account::new().await;
    acct.create_table(R).await;
    acct.put_raw(R, "cfg", &config(0, "1 day", "")).await;
    acct.launch_count(R, 100, &[("backup", "yes")]).await;
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    // Five at once, then one a second: in the 3 s before its budget ends it makes about eight.
    proxy.set_strict(Strict { buckets: Some(Buckets::aws().with("CreateSnapshot", 5.0, 1.0)), ..Strict::default() });
    let mut lambda = LambdaHarness::new(&acct).await;
    lambda.start(&acct, "create", "create-snapshot", &[("AWS_ENDPOINT_URL", &proxy.endpoint())]).await;
    // Mutations stop 60 s before the deadline: after 3 s.
    let deadline = Duration::from_secs(63);
    lambda.set_invoke_timeout(Duration::from_secs(900));
    lambda.invoke("create", serde_json::json!({ "region": R }), deadline);

    let done = lambda.wait_finished("create", 1, deadline).await;
    let summary = done[0].result.as_ref().expect("a summary");
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["continued"], true, "{summary}");
    let (created, deferred) = (summary["created"].as_u64().unwrap(), summary["deferred"].as_u64().unwrap());
    assert!(deferred > 50 && created + deferred == 100, "{summary}");
}

/// EC2 keeps one token bucket per API for the whole account and region: the CLI, each worker and
/// each member session draw from the same one (the stricter AWS once kept one per access key,
/// giving each caller a full bucket of its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_in_an_account_draws_from_one_token_bucket() {
    use support::fault_proxy::Buckets;
    let acct = Account::new().await;
    let second = acct.other_role("second-caller").await;
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    proxy.set_strict(Strict { buckets: Some(Buckets::aws().with("DescribeVolumes", 2.0, 0.01)), ..Strict::default() });
    let no_retries = aws_config::retry::RetryConfig::disabled();
    let first = aws_sdk_ec2::Client::new(&acct.sdk_via(R, &proxy.endpoint(), no_retries.clone()).await);
    let other = aws_sdk_ec2::Client::new(&second.sdk_via(R, &proxy.endpoint(), no_retries).await);
    first.describe_volumes().send().await.expect("a token");
    first.describe_volumes().send().await.expect("the last token");
    let err = other.describe_volumes().send().await.expect_err("the account's bucket is empty");
    assert_eq!(aws_sdk_ec2::error::ProvideErrorMetadata::code(&err), Some("RequestLimitExceeded"), "{err:?}");
    assert_eq!(proxy.bucket_refusals("DescribeVolumes"), 1);
}

/// A filtered describe that AWS throttles is answered with the throttle, not with an empty first
/// page (the stricter AWS once answered the empty page and dropped the fault it had chosen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulted_filtered_describe_gets_its_fault_not_an_empty_page() {
    let acct = Account::new().await;
    let proxy = FaultProxy::start(
        FaultPlan::every_call(1, 1.0).only_operations(&["DescribeSnapshots"]).kinds(&[Fault::Throttle]).at_most(1),
    )
    .await;
    proxy.set_strict(Strict { empty_first_pages: true, ..Strict::default() });
    let ec2 =
        aws_sdk_ec2::Client::new(&acct.sdk_via(R, &proxy.endpoint(), aws_config::retry::RetryConfig::disabled()).await);
    let filter = aws_sdk_ec2::types::Filter::builder().name("tag-key").values("DeleteOn").build();
    let err = ec2.describe_snapshots().owner_ids("self").filters(filter).send().await.expect_err("throttled");
    assert_eq!(aws_sdk_ec2::error::ProvideErrorMetadata::code(&err), Some("RequestLimitExceeded"), "{err:?}");
}

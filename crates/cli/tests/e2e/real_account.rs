//! What a real account does after a call returned, or between the listing and the call, that
//! the emulator does not (SPEC §10.11–12, §15): snapshots and copies that end in `error`,
//! resources that vanish during a run, and archive refusals. Each runs the CLI through the fault
//! proxy, which presents that behaviour (`support::fault_proxy::Strict`, `Fault::Gone`).

use crate::support;
use support::scenes::{plant_monthly, run};

use serde_json::Value;
use support::fault_proxy::{Fault, FaultPlan, FaultProxy, Strict};
use support::{backup_config, Account};

const R: &str = "us-east-1";
const WEST: &str = "us-west-2";

fn errors(doc: &Value) -> Vec<String> {
    doc["regions"][0]["errors"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_string()).collect()
}

/// A snapshot AWS accepted and then failed is reported by the next run, which takes a new one;
/// once that one is there, no run reports it again, and the clean job deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_that_ends_in_error_fails_one_run_is_taken_again_and_then_cleaned() {
    let acct = Account::with_configs(R, &[("cfg", &backup_config("1 day", ""))]).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let volume = acct.volumes_of(R, &i).await[0].clone();
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    let message = "Internal error while creating the snapshot";
    proxy.set_strict(Strict { end_in_error: vec![(volume.clone(), message.to_string())], ..Strict::default() });
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!((code, doc["regions"][0]["created"].as_u64()), (0, Some(1)), "{err}");
    let first = doc["regions"][0]["actions"][0]["result_id"].as_str().unwrap().to_string();

    // It ended in error: the next run says so with AWS's reason, and takes a new one.
    proxy.set_strict(Strict::default());
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 1, "{err}\n{doc:#}");
    assert_eq!(doc["regions"][0]["created"], 1, "{doc:#}");
    assert_eq!(doc["regions"][0]["failed"], 1, "{doc:#}");
    assert_eq!(
        errors(&doc),
        [format!("{volume}: its newest snapshot {first} ended in state error ({message}); a new one is taken")]
    );

    // The new one is there: nothing is reported again, nothing is due.
    let (code, doc, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!((code, doc["regions"][0]["created"].as_u64()), (0, Some(0)), "{err}\n{doc:#}");
    assert!(errors(&doc).is_empty(), "{doc:#}");

    // The clean job deletes the one in error (it holds no data), and only it.
    let (code, doc, err) = run(&acct, &proxy, "clean", &["--region", R]);
    assert_eq!((code, doc["regions"][0]["deleted"].as_u64()), (0, Some(1)), "{err}\n{doc:#}");
    let left: Vec<String> = acct.snapshots(R).await.into_iter().map(|s| s.id).collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_ne!(left[0], first);
}

/// A disaster-recovery copy that AWS accepted and then failed (the destination's key not
/// usable) is no copy: the replication run fails naming it with AWS's reason, deletes it and
/// copies the source again; `status` never shows the volume's copy in sync meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_ends_in_error_is_reported_deleted_and_made_again() {
    let key = "arn:aws:kms:us-west-2:111122223333:key/0000aaaa-12ab-34cd-56ef-1234567890ab";
    let config = format!(
        r#"{{"match": {{"tag:backup": "yes"}},
            "snapshot": {{"retention": "7 days", "minimum": 1, "frequency": "1 day"}},
            "copies": [{{"region": "{WEST}", "retention": "30 days", "kms_key": "{key}"}}]}}"#
    );
    let acct = Account::with_configs(R, &[("dr", &config)]).await;
    acct.launch(R, &[("backup", "yes")]).await;
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    let message = "Given key ID is not accessible";
    proxy.set_strict(Strict { end_in_error: vec![(key.to_string(), message.to_string())], ..Strict::default() });
    let (code, _, err) = run(&acct, &proxy, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    let source = acct.snapshots(R).await.remove(0).id;
    let (code, doc, err) = run(&acct, &proxy, "replication", &["--region", R]);
    assert_eq!((code, doc["regions"][0]["copied"].as_u64()), (0, Some(1)), "{err}\n{doc:#}");
    let bad = acct.snapshots(WEST).await.remove(0).id;

    let status = |acct: &Account, proxy: &FaultProxy| {
        let (code, doc, err) = run(acct, proxy, "status", &["--region", R]);
        assert_eq!(code, 0, "{err}");
        doc["volumes"][0]["copies"][WEST].clone()
    };
    assert_eq!(status(&acct, &proxy), Value::Bool(false), "a copy in error is not in sync");

    // The key is fixed: the next run reports the copy in error, deletes it and copies again.
    proxy.set_strict(Strict::default());
    let (code, doc, err) = run(&acct, &proxy, "replication", &["--region", R]);
    assert_eq!(code, 1, "{err}\n{doc:#}");
    assert_eq!((doc["regions"][0]["copied"].as_u64(), doc["regions"][0]["failed"].as_u64()), (Some(1), Some(1)));
    assert_eq!(
        errors(&doc),
        [format!("{source}: its copy {bad} in {WEST} ended in error ({message}); deleted and copied again")]
    );
    let copies = acct.snapshots(WEST).await;
    assert_eq!(copies.len(), 1, "{copies:#?}");
    assert_ne!(copies[0].id, bad, "the copy in error is gone");
    assert_eq!(copies[0].tag("replication_snapshot_id"), Some(source.as_str()));
    assert_eq!(status(&acct, &proxy), Value::Bool(true));

    // In sync now: nothing more is reported.
    let (code, doc, err) = run(&acct, &proxy, "replication", &["--region", R]);
    assert_eq!((code, doc["regions"][0]["in_sync"].as_u64()), (0, Some(1)), "{err}\n{doc:#}");
}

/// A volume deleted, or an instance terminated, between the listing and the call (autoscaling
/// during a long paced run) is a skip with the reason, not a failure; the others are snapshotted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_or_instance_gone_since_the_listing_is_a_skip() {
    let acct = Account::with_configs(R, &[("cfg", &backup_config("1 day", ""))]).await;
    let gone_volume_instance = acct.launch(R, &[("backup", "yes")]).await;
    let gone_volume = acct.volumes_of(R, &gone_volume_instance).await[0].clone();
    acct.launch(R, &[("backup", "yes")]).await;
    let proxy = FaultProxy::start(
        FaultPlan::every_call(1, 1.0)
            .only_operations(&["CreateSnapshot"])
            .only_naming(&[&gone_volume])
            .kinds(&[Fault::Gone]),
    )
    .await;
    // A snapshot run that made one, skipped one and failed nothing: its report.
    let one_made_one_skipped = |acct: &Account, proxy: &FaultProxy| {
        let (code, doc, err) = run(acct, proxy, "snapshot", &["--region", R]);
        assert_eq!(code, 0, "{err}\n{doc:#}");
        let report = doc["regions"][0].clone();
        let counts = (report["created"].as_u64(), report["skipped"].as_u64(), report["failed"].as_u64());
        assert_eq!(counts, (Some(1), Some(1), Some(0)), "{doc:#}");
        report
    };
    let report = one_made_one_skipped(&acct, &proxy);
    let skipped = report["actions"].as_array().unwrap().iter().find(|a| a["outcome"] == "skipped").unwrap();
    assert_eq!(skipped["resource"], gone_volume.as_str());
    assert!(skipped["error"].as_str().unwrap().contains("InvalidVolume.NotFound"), "{skipped}");

    // The same for a crash-consistent set whose instance was terminated.
    let sets = backup_config("1 day", r#", "consistency": "instance""#);
    let acct = Account::with_configs(R, &[("cfg", &sets)]).await;
    let gone = acct.launch(R, &[("backup", "yes")]).await;
    acct.launch(R, &[("backup", "yes")]).await;
    proxy.set_plan(
        FaultPlan::every_call(2, 1.0).only_operations(&["CreateSnapshots"]).only_naming(&[&gone]).kinds(&[Fault::Gone]),
    );
    one_made_one_skipped(&acct, &proxy);
}

/// Archive refusals that mean there is nothing to do are skips (SPEC §10.12): an archival in
/// progress still reads `standard` and refuses a second request (`IncorrectState`), and a
/// snapshot an image uses cannot be archived (`InvalidSnapshot.InUse`). A run meeting them
/// fails nothing, so no alarm fires every six hours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_refusals_that_mean_nothing_to_do_are_skips() {
    let tiered = r#"{"match": {"tag:backup": "yes"},
        "schedules": [{"name": "monthly", "frequency": "30 days", "retention": "365 days", "minimum": 1, "archive": true}]}"#;
    let acct = Account::with_configs(R, &[("cfg", tiered)]).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let volume = acct.volumes_of(R, &i).await[0].clone();
    let mut planted = Vec::new();
    for start in ["2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"] {
        planted.push(plant_monthly(&acct, &volume, "cfg", start, 300).await);
    }
    // The oldest backs an image.
    acct.register_image_of(R, &planted[0]).await;
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    proxy.set_strict(Strict { archival_for: std::time::Duration::from_secs(600), ..Strict::default() });
    // A clean run that succeeds with (archived, skipped) and nothing failed: its report.
    let clean = |archived: u64, skipped: u64| {
        let (code, doc, err) = run(&acct, &proxy, "clean", &["--region", R]);
        assert_eq!(code, 0, "{err}\n{doc:#}");
        let report = doc["regions"][0].clone();
        let counts = (report["archived"].as_u64(), report["skipped"].as_u64(), report["failed"].as_u64());
        assert_eq!(counts, (Some(archived), Some(skipped), Some(0)), "{doc:#}");
        report
    };
    // The newest is kept in the standard tier; the second is archived; the oldest is refused.
    clean(1, 1);
    // The next run finds the archival still in progress (it reads standard): a skip again.
    let report = clean(0, 2);
    let refused: Vec<String> = report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["outcome"] == "skipped")
        .map(|a| a["error"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(refused.iter().any(|e| e.contains("IncorrectState")), "{refused:?}");
    assert!(refused.iter().any(|e| e.contains("InvalidSnapshot.InUse")), "{refused:?}");
}

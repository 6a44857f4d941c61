//! `ebs-snapper clean` through the built binary, and the clean handlers, against the emulator.

use crate::support;

use ebs_snapper_lambda::handlers::{clean_snapshot, fanout_clean, Environment, Invocation};
use serde_json::json;
use support::{date, text, Account};

const R: &str = "us-east-1";

fn config(minimum: u32, extra: &str) -> String {
    format!(
        r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "5 days", "minimum": {minimum}, "frequency": "1 day"}}{extra}}}"#
    )
}

async fn account_with(json: &str) -> Account {
    Account::with_configs(R, &[("cfg", json)]).await
}

fn run(acct: &Account, args: &[&str]) -> (i32, String, String) {
    let out = acct.cli().arg("clean").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

async fn ids(acct: &Account) -> Vec<String> {
    acct.snapshots(R).await.into_iter().map(|s| s.id).collect()
}

#[tokio::test]
async fn expired_today_is_deleted_with_minimum_zero_and_kept_with_minimum_five() {
    for (minimum, expect_deleted) in [(0u32, true), (5, false)] {
        let acct = account_with(&config(minimum, "")).await;
        let i = acct.launch(R, &[("backup", "yes")]).await;
        let vol = acct.volumes_of(R, &i).await[0].clone();
        let snap = acct.make_snapshot(R, &vol, &[("DeleteOn", &date(0))]).await;
        let (code, out, err) = run(&acct, &["--region", R]);
        assert_eq!(code, 0, "{err}");
        let remaining = ids(&acct).await;
        if expect_deleted {
            assert_eq!(out, "us-east-1: deleted 1, kept 0, ignored 0, skipped 0, failed 0\n");
            assert!(remaining.is_empty());
        } else {
            assert_eq!(out, "us-east-1: deleted 0, kept 1, ignored 0, skipped 0, failed 0\n");
            assert_eq!(remaining, vec![snap]);
        }
    }
}

#[tokio::test]
async fn orphan_of_terminated_instance_is_deleted_under_ignore_retention() {
    let acct = account_with(&config(5, r#", "ignore_retention": true"#)).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    acct.make_snapshot(R, &vol, &[("DeleteOn", &date(-3))]).await;
    let future = acct.make_snapshot(R, &vol, &[("DeleteOn", &date(3))]).await;
    acct.terminate(R, &i).await;
    let (code, out, err) = run(&acct, &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "us-east-1: deleted 1, kept 1, ignored 0, skipped 0, failed 0\n");
    assert_eq!(ids(&acct).await, vec![future], "the unexpired one stays");
}

#[tokio::test]
async fn orphan_without_ignore_retention_is_kept() {
    let acct = account_with(&config(0, "")).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    let snap = acct.make_snapshot(R, &vol, &[("DeleteOn", &date(-3))]).await;
    acct.terminate(R, &i).await;
    let (code, _, err) = run(&acct, &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(ids(&acct).await, vec![snap]);
}

#[tokio::test]
async fn ignored_instance_and_volume_are_kept() {
    let acct = Account::new().await;
    acct.create_table(R).await;
    let ignored_instance = acct.launch(R, &[("backup", "yes")]).await;
    let other = acct.launch(R, &[("backup", "yes")]).await;
    let ignored_volume = acct.attach_volume(R, &other, "/dev/xvdf", &[]).await;
    let root_of_ignored = acct.volumes_of(R, &ignored_instance).await[0].clone();
    let root_of_other = acct.volumes_of(R, &other).await[0].clone();
    let extra = format!(r#", "ignore": ["{ignored_instance}", "{ignored_volume}"], "ignore_retention": true"#);
    acct.put_raw(R, "cfg", &config(0, &extra)).await;
    let keep1 = acct.make_snapshot(R, &root_of_ignored, &[("DeleteOn", &date(-1))]).await;
    let keep2 = acct.make_snapshot(R, &ignored_volume, &[("DeleteOn", &date(-1))]).await;
    acct.make_snapshot(R, &root_of_other, &[("DeleteOn", &date(-1))]).await;

    let (code, out, err) = run(&acct, &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "us-east-1: deleted 1, kept 2, ignored 2, skipped 0, failed 0\n");
    let mut expected = vec![keep1, keep2];
    expected.sort();
    assert_eq!(ids(&acct).await, expected);
}

#[tokio::test]
async fn snapshot_backing_an_image_is_skipped_and_the_rest_deleted() {
    let acct = account_with(&config(0, "")).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let data = acct.attach_volume(R, &i, "/dev/xvdf", &[]).await;
    let image_snaps = acct.create_image(R, &i).await;
    assert!(!image_snaps.is_empty());
    // Tagged as if this tool had made them under the configuration, so their minimum (0) is known.
    for s in &image_snaps {
        acct.tag(R, s, "DeleteOn", &date(-1)).await;
        acct.tag(R, s, "ebs-snapper:config", "cfg").await;
    }
    acct.make_snapshot(R, &data, &[("DeleteOn", &date(-1))]).await;

    let (code, out, err) = run(&acct, &["--region", R]);
    assert_eq!(code, 0, "an in-use snapshot is not a failure: {err}");
    assert_eq!(out, format!("us-east-1: deleted 1, kept 0, ignored 0, skipped {}, failed 0\n", image_snaps.len()));
    let mut remaining = ids(&acct).await;
    remaining.sort();
    let mut expected = image_snaps.clone();
    expected.sort();
    assert_eq!(remaining, expected);
}

#[tokio::test]
async fn snapshots_without_delete_on_are_never_deleted() {
    let acct = account_with(&config(0, r#", "ignore_retention": true"#)).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    let untagged = acct.make_snapshot(R, &vol, &[("Name", "manual")]).await;
    let unparseable = acct.make_snapshot(R, &vol, &[("DeleteOn", "soon")]).await;
    acct.terminate(R, &i).await;
    let (code, out, err) = run(&acct, &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "us-east-1: deleted 0, kept 1, ignored 0, skipped 0, failed 0\n");
    assert!(err.contains("which is not a date"), "{err}");
    let mut expected = vec![untagged, unparseable];
    expected.sort();
    assert_eq!(ids(&acct).await, expected);
    assert_eq!(acct.count("DeleteSnapshot", None), 0);
}

#[tokio::test]
async fn dry_run_lists_and_deletes_nothing() {
    let acct = account_with(&config(1, "")).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    let a = acct.make_snapshot(R, &vol, &[("DeleteOn", &date(-2))]).await;
    let b = acct.make_snapshot(R, &vol, &[("DeleteOn", &date(-1))]).await;
    let (code, out, err) = run(&acct, &["--region", R, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "us-east-1: delete {a} (configuration cfg): expired {}, 2 completed > minimum 1 (volume {vol})\n\
             us-east-1: keep {b} (configuration cfg): expired, but 1 completed <= minimum 1 (volume {vol})\n\
             us-east-1: would delete 1, kept 1, ignored 0, skipped 0, failed 0\n",
            date(-2)
        )
    );
    assert_eq!(ids(&acct).await.len(), 2);
    assert_eq!(acct.count("DeleteSnapshot", None), 0);
}

#[tokio::test]
async fn clean_handlers() {
    let acct = account_with(&config(0, r#", "ignore_retention": true"#)).await;
    // A region with expired snapshots but no instance left is still cleaned.
    let i = acct.launch("us-west-1", &[("backup", "yes")]).await;
    let vol = acct.volumes_of("us-west-1", &i).await[0].clone();
    acct.make_snapshot("us-west-1", &vol, &[("DeleteOn", &date(-1))]).await;
    acct.terminate("us-west-1", &i).await;
    acct.create_function(R, "clean-worker").await;
    let (aws, _role) = acct.aws_as(R, "fanout-clean", &[("clean-worker", "clean-snapshot")]).await;
    let env = Environment { clean_snapshot_function: Some("clean-worker".into()), ..Default::default() };
    let inv = |payload| Invocation { payload, function_arn: acct.function_arn("f"), deadline: None };

    let summary = fanout_clean(&aws, &env, inv(json!({}))).await.expect("fanout");
    assert_eq!(summary["regions"], json!(["us-west-1"]));
    let invokes: Vec<_> = acct.recorded().into_iter().filter(|r| r.action == "Invoke").collect();
    assert_eq!(invokes.len(), 1);
    assert!(invokes[0].url.contains("/functions/clean-worker/invocations"));
    assert_eq!(invokes[0].body, r#"{"region":"us-west-1"}"#);

    let (aws, _role) = acct.aws_as(R, "clean-snapshot", &[]).await;
    let summary = clean_snapshot(&aws, &env, inv(json!({"region": "us-west-1"}))).await.expect("worker");
    assert_eq!(summary["deleted"], 1);
    assert_eq!(summary["failed"], 0);
    assert!(acct.snapshots("us-west-1").await.is_empty());
}

/// An instance changing state (pending, stopping, shutting-down) still belongs to its
/// configuration in the clean job: its volumes keep their minimum instead of becoming orphans.
#[tokio::test]
async fn clean_matches_instances_in_every_state_but_terminated() {
    let acct = account_with(&config(1, r#", "ignore_retention": true"#)).await;
    acct.launch(R, &[("backup", "yes")]).await;
    let before = acct.recorded().len();
    let out = acct.cli().args(["clean", "--region", R]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let describes: Vec<String> = acct
        .recorded()
        .into_iter()
        .skip(before)
        .filter(|r| r.action == "DescribeInstances" && r.body.contains("tag%3Abackup"))
        .map(|r| r.body)
        .collect();
    assert_eq!(describes.len(), 1, "{describes:?}");
    for state in ["pending", "running", "stopping", "stopped", "shutting-down"] {
        assert!(describes[0].contains(&format!("={state}")), "{state} is matched: {}", describes[0]);
    }
    assert!(!describes[0].contains("=terminated"));
    // The snapshot job still takes only running and stopped instances.
    let before = acct.recorded().len();
    let out = acct.cli().args(["snapshot", "--region", R]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let body = acct.recorded().into_iter().skip(before).find(|r| r.action == "DescribeInstances").unwrap().body;
    assert!(body.contains("=running") && body.contains("=stopped") && !body.contains("=pending"), "{body}");
}

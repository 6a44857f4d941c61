//! `ebs-snapper configure` through the built binary against the AWS emulator.

use crate::support;

use support::{text, Account};

const DAILY: &str =
    r#"{"snapshot": {"minimum": 5, "frequency": "1 day", "retention": "5 days"}, "match": {"tag:backup": "daily"}}"#;

#[tokio::test]
async fn set_list_get_delete_round_trip() {
    let acct = Account::new().await;
    acct.create_table("us-east-1").await;
    let a = acct.id.as_str();

    let out = acct.cli().args(["configure", "-l"]).output().unwrap();
    assert_eq!(text(&out.stdout), "No configurations found\n");
    assert!(out.status.success());

    let out = acct.cli().args(["configure", "-s", "daily_tagged", DAILY]).output().unwrap();
    assert_eq!(text(&out.stdout), format!("Saved to key daily_tagged under account {a}\n"), "{}", text(&out.stderr));
    assert!(out.status.success());

    // Python tool order: flags first, then -a, then the id.
    let out = acct.cli().args(["configure", "-s", "-a", a, "tagged_instances", r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "4 days", "minimum": 5, "frequency": "12 hours"}, "ignore": []}"#]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = acct.cli().args(["configure", "-l"]).output().unwrap();
    assert_eq!(text(&out.stdout), format!("aws_account_id,id\n{a},daily_tagged\n{a},tagged_instances\n"));

    let out = acct.cli().args(["configure", "-g", "daily_tagged"]).output().unwrap();
    assert_eq!(
        text(&out.stdout),
        r#"{"snapshot":{"minimum":5,"frequency":"1 day","retention":"5 days"},"match":{"tag:backup":"daily"}}"#
            .to_string()
            + "\n"
    );
    assert!(out.status.success());

    let out = acct.cli().args(["configure", "-g", "-a", a, "daily_tagged"]).output().unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("\"1 day\""));

    let out = acct.cli().args(["configure", "-d", "-a", a, "daily_tagged"]).output().unwrap();
    assert_eq!(text(&out.stdout), "{}\n");
    assert!(out.status.success());

    let out = acct.cli().args(["configure", "-l", "-a", a]).output().unwrap();
    assert_eq!(text(&out.stdout), format!("aws_account_id,id\n{a},tagged_instances\n"));

    let out = acct.cli().args(["configure", "-g", "daily_tagged"]).output().unwrap();
    assert_eq!(text(&out.stdout), "No configuration found\n");
    assert_eq!(out.status.code(), Some(1));

    let out = acct.cli().args(["configure", "-d", "daily_tagged"]).output().unwrap();
    assert_eq!(text(&out.stdout), "No configuration found\n");
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn set_reads_json_from_stdin() {
    let acct = Account::new().await;
    acct.create_table("us-east-1").await;
    let out = acct.cli().args(["configure", "-s", "from_stdin", "-"]).write_stdin(DAILY).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let items = acct.items("us-east-1").await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].0, "from_stdin");
    let stored: serde_json::Value = serde_json::from_str(&items[0].1).unwrap();
    assert_eq!(stored, serde_json::from_str::<serde_json::Value>(DAILY).unwrap());
}

#[tokio::test]
async fn invalid_configurations_exit_2_with_one_line_and_store_nothing() {
    let acct = Account::new().await;
    acct.create_table("us-east-1").await;
    let snap = r#""snapshot": {"retention": "4 days", "minimum": 5, "frequency": "12 hours"}"#;
    let cases = [
        ("{not json".to_string(), "configuration: is not valid JSON"),
        (format!(r#"{{"match": {{}}, {snap}}}"#), "match: is empty"),
        (r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "4 days", "minimum": -1, "frequency": "12 hours"}}"#.to_string(), "snapshot.minimum: -1 is not a whole number"),
        (r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "4 dayz", "minimum": 1, "frequency": "12 hours"}}"#.to_string(), "snapshot.retention: \"4 dayz\" is not a duration"),
        (r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "4 days", "minimum": 1, "frequency": "0 25 * * *"}}"#.to_string(), "snapshot.frequency: \"0 25 * * *\" is not a valid cron expression"),
        (format!(r#"{{"match": {{"tag:b": "y"}}, {snap}, "retension": "1 day"}}"#), "retension: unknown key"),
    ];
    for (json, expected) in cases {
        acct.assert_refused(&json, expected);
    }
    assert!(acct.items("us-east-1").await.is_empty(), "nothing may be stored");
}

#[tokio::test]
async fn usage_errors_exit_2_with_one_line() {
    let acct = Account::new().await;
    acct.create_table("us-east-1").await;
    let cases: &[&[&str]] = &[
        &["configure"],
        &["configure", "-g"],
        &["configure", "-s", "only_id"],
        &["configure", "-l", "-g", "x"],
        &["configure", "-l", "extra"],
        &["configure", "-g", "x", "-a", "12345"],
        &["configure", "-g", "x", "unexpected"],
        &["configure", "-d", ""],
        &["nonsense"],
    ];
    for args in cases {
        let out = acct.cli().args(*args).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    assert!(acct.items("us-east-1").await.is_empty());
}

#[tokio::test]
async fn python_written_item_is_listed_read_and_valid() {
    let acct = Account::new().await;
    acct.create_table("us-east-1").await;
    // json.dumps style of the Python tool, minimum as a string as it allowed.
    let python = r#"{"snapshot": {"minimum": "5", "frequency": "6 hours", "retention": "5 days"}, "match": {"tag:backup": "yes"}}"#;
    acct.put_raw("us-east-1", "tagged_instances", python).await;

    let out = acct.cli().args(["configure", "-l"]).output().unwrap();
    assert_eq!(text(&out.stdout), format!("aws_account_id,id\n{},tagged_instances\n", acct.id));
    let out = acct.cli().args(["configure", "-g", "tagged_instances"]).output().unwrap();
    assert_eq!(
        text(&out.stdout),
        "{\"snapshot\":{\"minimum\":\"5\",\"frequency\":\"6 hours\",\"retention\":\"5 days\"},\"match\":{\"tag:backup\":\"yes\"}}\n"
    );
    // The check finds nothing wrong with it, and the snapshot job uses it.
    let instance = acct.launch("us-east-1", &[("backup", "yes")]).await;
    let out = acct.cli().args(["configure", "-c"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    let out = acct.cli().args(["snapshot", "--region", "us-east-1"]).output().unwrap();
    assert_eq!(
        text(&out.stdout),
        "us-east-1: created 1, not due 0, ignored 0, skipped 0, failed 0\n",
        "{}",
        text(&out.stderr)
    );
    let snaps = acct.snapshots("us-east-1").await;
    assert_eq!(snaps[0].tag("ebs-snapper:config"), Some("tagged_instances"));
    assert_eq!(snaps[0].tag("ebs-snapper:instance-id"), Some(instance.as_str()));
}

#[tokio::test]
async fn check_reports_invalid_stored_configurations() {
    let acct = Account::new().await;
    acct.create_table("us-east-1").await;
    acct.put_raw("us-east-1", "good", DAILY).await;
    acct.put_raw(
        "us-east-1",
        "broken",
        r#"{"match": {}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}}"#,
    )
    .await;
    acct.put_raw("us-east-1", "typo", r#"{"match": {"tag:b": "y"}, "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}, "replicaton": "yes"}"#).await;
    acct.launch("us-east-1", &[("backup", "daily")]).await;
    acct.launch("us-west-1", &[("b", "y")]).await;
    let a = &acct.id;
    let out = acct.cli().args(["configure", "-c"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!(
            "{a}: configuration broken is invalid and is skipped: match: is empty; it would select every instance, so it is not allowed\n\
             {a}: configuration typo: replicaton: unknown key (known keys: match, snapshot, schedules, ignore, ignore_retention, replication, exclude_boot, exclude_tags, consistency, tags, copies, vault, drill); ignored\n"
        )
    );
    let out = acct.cli().args(["configure", "-c", "-e", "customer-7"]).output().unwrap();
    assert!(text(&out.stdout).lines().all(|l| l.starts_with(&format!("customer-7,{a}: "))));
}

#[tokio::test]
async fn check_reports_empty_and_undeployed() {
    let acct = Account::new().await;
    let out = acct.cli().args(["configure", "-c"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("{}: ebs-snapper is not deployed in us-east-1: table ebs_snapshot_configuration does not exist (run `ebs-snapper deploy`, or pass -t with the region it was deployed to)\n", acct.id)
    );
    acct.create_table("us-east-1").await;
    let out = acct.cli().args(["configure", "-c"]).output().unwrap();
    assert_eq!(
        text(&out.stdout),
        format!("{}: No configurations existed for this account, but ebs-snapper was deployed\n", acct.id)
    );
}

#[tokio::test]
async fn missing_table_is_one_clear_line() {
    let acct = Account::new().await;
    let out = acct.cli().args(["configure", "-l"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err, "error: ebs-snapper is not deployed in us-east-1: table ebs_snapshot_configuration does not exist (run `ebs-snapper deploy`, or pass -t with the region it was deployed to)\n");
}

#[tokio::test]
async fn tool_region_and_table_override_are_honoured() {
    let acct = Account::new().await;
    acct.create_table("eu-west-1").await;
    let out = acct.cli().args(["-t", "eu-west-1", "configure", "-s", "x", DAILY]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(acct.items("eu-west-1").await.len(), 1);
    // The default tool region has no table.
    let out = acct.cli().args(["configure", "-l"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    // A table named by EBS_SNAPPER_TABLE that does not exist is reported by name.
    let out = acct
        .cli()
        .env("EBS_SNAPPER_TABLE", "other_table")
        .args(["-t", "eu-west-1", "configure", "-l"])
        .output()
        .unwrap();
    assert!(text(&out.stderr).contains("table other_table does not exist"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn account_comes_from_sts_when_not_given() {
    let acct = Account::new().await;
    acct.create_table("us-east-1").await;
    let out = acct.cli().args(["configure", "-s", "x", DAILY]).output().unwrap();
    assert_eq!(text(&out.stdout), format!("Saved to key x under account {}\n", acct.id));
}

#[test]
fn version_and_help() {
    let out = assert_cmd::Command::cargo_bin("ebs-snapper").unwrap().arg("--version").output().unwrap();
    assert!(out.status.success());
    // The version and the commit the binary was built from (a release's, or the checkout's).
    assert_eq!(
        text(&out.stdout),
        format!("ebs-snapper {} (commit {})\n", env!("CARGO_PKG_VERSION"), ebs_snapper_version::COMMIT)
    );
    assert_ne!(ebs_snapper_version::COMMIT, "unknown", "built in a git checkout");
    let out = assert_cmd::Command::cargo_bin("ebs-snapper").unwrap().arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("configure"));
}

#[tokio::test]
async fn unreachable_aws_is_one_line_exit_1() {
    let acct = Account::new().await;
    let out = acct
        .cli()
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .args(["configure", "-l", "-a", "123456789012"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: Query in us-east-1 failed: "), "{err}");
}

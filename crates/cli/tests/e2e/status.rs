//! `ebs-snapper status` (SPEC §14) against the emulator, with snapshot histories planted in the
//! test bed (its stricter AWS backdates a snapshot or volume tagged `test-bed:start-time` /
//! `test-bed:create-time`, and sets `test-bed:state`).

use crate::support;

use chrono::{Duration, SecondsFormat, Utc};
use support::{text, Account};

const R: &str = "us-east-1";
const WEST: &str = "us-west-2";

fn ago(hours: i64) -> String {
    (Utc::now() - Duration::hours(hours)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One instance whose data volumes (the boot volume is excluded) show each verdict.
struct Scene {
    acct: Account,
    ok: String,
    never: String,
    overdue: String,
    below: String,
    error: String,
    copied: String,
    /// When the `ok` volume's newest snapshot started (RFC 3339, to the second).
    ok_newest: String,
}

async fn scene() -> Scene {
    let acct = Account::new().await;
    acct.create_table(R).await;
    acct.put_raw(
        R,
        "daily",
        r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "7 days", "minimum": 3, "frequency": "1 day"}, "exclude_boot": true}"#,
    )
    .await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let old = ago(24 * 10);
    let vol = |device: &'static str| {
        let (acct, i, old) = (&acct, i.clone(), old.clone());
        async move { acct.attach_volume(R, &i, device, &[("test-bed:create-time", &old)]).await }
    };
    let ok = vol("/dev/xvdf").await;
    let never = vol("/dev/xvdg").await;
    let overdue = vol("/dev/xvdh").await;
    let below = vol("/dev/xvdi").await;
    let error = vol("/dev/xvdj").await;
    let copied = vol("/dev/xvdk").await;
    let plant = |volume: &String, hours: i64, extra: &'static [(&'static str, &'static str)]| {
        let (acct, volume) = (&acct, volume.clone());
        async move {
            let start = ago(hours);
            let mut tags = vec![("test-bed:start-time", start.as_str()), ("ebs-snapper:config", "daily")];
            tags.extend_from_slice(extra);
            acct.make_snapshot(R, &volume, &tags).await
        }
    };
    for h in [26, 50] {
        plant(&ok, h, &[]).await;
    }
    let ok_newest = ago(2);
    acct.make_snapshot(R, &ok, &[("test-bed:start-time", ok_newest.as_str()), ("ebs-snapper:config", "daily")]).await;
    for h in [30, 54, 78] {
        plant(&overdue, h, &[]).await;
    }
    plant(&below, 2, &[]).await;
    for h in [26, 50] {
        plant(&error, h, &[]).await;
    }
    plant(&error, 1, &[("test-bed:state", "error")]).await;
    for h in [26, 50] {
        plant(&copied, h, &[]).await;
    }
    let newest = plant(&copied, 2, &[("replication_dst_region", WEST)]).await;
    acct.make_copy(WEST, R, &newest, &[("replication_src_region", R), ("replication_snapshot_id", &newest)]).await;
    Scene { acct, ok, never, overdue, below, error, copied, ok_newest }
}

#[tokio::test]
async fn each_verdict_worst_first_with_the_summary_and_no_write_call() {
    let s = scene().await;
    let before = s.acct.recorded().len();
    let out = s.acct.cli().args(["status", "--region", R]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("VERDICT ") && lines[0].contains(" ACCOUNT "), "{stdout}");
    assert_eq!(*lines.last().unwrap(), "6 volumes: ok 2, never 1, overdue 1, below-minimum 1, error 1");
    let verdict_of = |volume: &str| {
        lines.iter().find(|l| l.contains(volume)).map(|l| l.split_whitespace().next().unwrap().to_string())
    };
    assert_eq!(verdict_of(&s.ok).as_deref(), Some("ok"));
    assert_eq!(verdict_of(&s.never).as_deref(), Some("never"));
    assert_eq!(verdict_of(&s.overdue).as_deref(), Some("overdue"));
    assert_eq!(verdict_of(&s.below).as_deref(), Some("below-minimum"));
    assert_eq!(verdict_of(&s.error).as_deref(), Some("error"));
    let order: Vec<&str> = lines[1..lines.len() - 1].iter().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(order, ["error", "never", "overdue", "below-minimum", "ok", "ok"], "worst first");
    let copied = lines.iter().find(|l| l.contains(&s.copied)).unwrap();
    assert!(copied.contains("us-west-2:in-sync") && copied.contains("3/3"), "{copied}");
    // Columns line up: every row's verdict column is as wide as the widest.
    let width = lines[0].find("ACCOUNT").unwrap();
    assert!(lines[1..lines.len() - 1].iter().all(|l| l[width..].starts_with(s.acct.id.as_str())), "{stdout}");

    let calls: Vec<String> = s.acct.recorded().into_iter().skip(before).map(|r| r.action).collect();
    let writes: Vec<&String> = calls
        .iter()
        .filter(|a| !a.starts_with("Describe") && !["Query", "GetCallerIdentity"].contains(&a.as_str()))
        .collect();
    assert!(writes.is_empty(), "status makes no write call: {writes:?}");
    // Batched as the jobs are: one listing each, whatever the number of volumes.
    let count = |a: &str| calls.iter().filter(|c| c.as_str() == a).count();
    assert_eq!((count("DescribeVolumes"), count("DescribeSnapshots")), (1, 2), "{calls:?}");
}

#[tokio::test]
async fn json_is_one_document_with_the_spec_keys() {
    let s = scene().await;
    let out = s.acct.cli().args(["status", "--region", R, "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["summary"]["volumes"], 6);
    assert_eq!(doc["summary"]["below-minimum"], 1);
    let volumes = doc["volumes"].as_array().unwrap();
    let keys: Vec<&str> = volumes[0].as_object().unwrap().keys().map(String::as_str).collect();
    for key in [
        "account",
        "region",
        "instance",
        "volume",
        "configuration",
        "tier",
        "newest",
        "age_seconds",
        "completed",
        "minimum",
        "next_due",
        "copies",
        "verdict",
    ] {
        assert!(keys.contains(&key), "{key} missing: {keys:?}");
    }
    let never = volumes.iter().find(|v| v["volume"] == s.never.as_str()).unwrap();
    assert_eq!((never["newest"].is_null(), never["verdict"].as_str()), (true, Some("never")));
    let ok = volumes.iter().find(|v| v["volume"] == s.ok.as_str()).unwrap();
    assert_eq!(
        (ok["completed"].as_u64(), ok["minimum"].as_u64(), ok["tier"].as_str()),
        (Some(3), Some(3), Some("default"))
    );
    // The newest is the snapshot planted two hours before its start, and its age is measured
    // from that start (however long the scene took to build).
    let newest = ok["newest"].as_str().unwrap();
    assert!(newest.ends_with('Z'), "UTC: {newest}");
    let start = chrono::DateTime::parse_from_rfc3339(newest).unwrap();
    assert_eq!(start, chrono::DateTime::parse_from_rfc3339(&s.ok_newest).unwrap(), "{newest} vs {}", s.ok_newest);
    let age = ok["age_seconds"].as_i64().unwrap();
    let since = (Utc::now() - start.with_timezone(&Utc)).num_seconds();
    assert!((since - 5..=since).contains(&age), "age {age} s, {since} s since its start");
    let copied = volumes.iter().find(|v| v["volume"] == s.copied.as_str()).unwrap();
    assert_eq!(copied["copies"], serde_json::json!({"us-west-2": true}));
}

#[tokio::test]
async fn bad_arguments_are_refused_and_an_unreachable_account_is_named() {
    let acct = Account::new().await;
    acct.create_table(R).await;
    let out = acct.cli().args(["status", "--account", "123"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--account \"123\" is not an AWS account id"), "{}", text(&out.stderr));
    // An account without the member role: named on stderr, exit 1, the report of the others made.
    let out = acct.cli().args(["status", "--account", "999988887777", "--account", &acct.id]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("error: account 999988887777: account 999988887777 could not be reached"),
        "{}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).ends_with("0 volumes: ok 0, never 0, overdue 0, below-minimum 0, error 0\n"));
    // No configuration: an empty report, exit 0.
    let out = acct.cli().args(["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "0 volumes: ok 0, never 0, overdue 0, below-minimum 0, error 0\n");
}

/// A volume whose newest snapshot has no copy in its destination, and one whose copy there is of
/// an older snapshot, are not in sync: the join of copies happens in the fetching half
/// (`aws::status`), which only this test sees read a destination without the copy.
#[tokio::test]
async fn a_missing_or_stale_copy_is_not_in_sync() {
    let acct = Account::new().await;
    acct.create_table(R).await;
    acct.put_raw(
        R,
        "daily",
        r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "7 days", "minimum": 1, "frequency": "1 day"}, "exclude_boot": true}"#,
    )
    .await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let missing = acct.attach_volume(R, &i, "/dev/xvdf", &[]).await;
    let stale = acct.attach_volume(R, &i, "/dev/xvdg", &[]).await;
    let copied = acct.attach_volume(R, &i, "/dev/xvdh", &[]).await;
    let tagged = |hours: i64| {
        [
            ("test-bed:start-time", ago(hours)),
            ("ebs-snapper:config", "daily".into()),
            ("replication_dst_region", WEST.into()),
        ]
    };
    let plant = |volume: String, hours: i64| {
        let acct = &acct;
        async move {
            let tags = tagged(hours);
            let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
            acct.make_snapshot(R, &volume, &tags).await
        }
    };
    plant(missing.clone(), 2).await;
    let older = plant(stale.clone(), 26).await;
    plant(stale.clone(), 2).await;
    let newest = plant(copied.clone(), 2).await;
    for source in [&older, &newest] {
        acct.make_copy(WEST, R, source, &[("replication_src_region", R), ("replication_snapshot_id", source)]).await;
    }

    let out = acct.cli().args(["status", "--region", R, "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let copies = |volume: &str| {
        doc["volumes"].as_array().unwrap().iter().find(|v| v["volume"] == volume).unwrap()["copies"].clone()
    };
    assert_eq!(copies(&missing), serde_json::json!({WEST: false}), "{doc:#}");
    assert_eq!(copies(&stale), serde_json::json!({WEST: false}), "a copy of an older snapshot: {doc:#}");
    assert_eq!(copies(&copied), serde_json::json!({WEST: true}), "{doc:#}");
    let out = acct.cli().args(["status", "--region", R]).output().unwrap();
    let stdout = text(&out.stdout);
    let line = |volume: &str| stdout.lines().find(|l| l.contains(volume)).unwrap().to_string();
    assert!(line(&missing).contains("us-west-2:missing"), "{stdout}");
    assert!(line(&stale).contains("us-west-2:missing"), "{stdout}");
    assert!(line(&copied).contains("us-west-2:in-sync"), "{stdout}");
}

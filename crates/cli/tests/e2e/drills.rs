//! Restore drills (SPEC §17): the clean job's, through the built binary, against the emulator
//! with the EBS direct APIs on EC2's snapshots (`strict_moto.py`) and, where AWS is slower or
//! harsher than the emulator, through the fault proxy.

use crate::support;

use support::fault_proxy::{FaultPlan, FaultProxy, Strict};
use support::{date, text, Account};

const R: &str = "us-east-1";
const WEST: &str = "us-west-2";
const DRILL: &str = "ebs-snapper:drill";

fn config(drill: &str, extra: &str) -> String {
    format!(
        r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "30 days", "minimum": 5, "frequency": "1 day"}}, "drill": {drill}{extra}}}"#
    )
}

/// An instance to back up, with one snapshot of its root volume taken by an earlier run; the
/// snapshot and the volume.
async fn backed_up(acct: &Account, volume_tags: &[(&str, &str)]) -> (String, String) {
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    for (k, v) in volume_tags {
        acct.tag(R, &vol, k, v).await;
    }
    // Made two days ago, so that a snapshot a test makes now is newer.
    let then = (chrono::Utc::now() - chrono::TimeDelta::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let tags = [("DeleteOn", date(20)), ("ebs-snapper:config", "cfg".into()), ("test-bed:start-time", then)];
    let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let snap = acct.make_snapshot(R, &vol, &tags).await;
    (snap, vol)
}

fn clean(acct: &Account, endpoint: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = acct.cli();
    if let Some(e) = endpoint {
        cmd.env("AWS_ENDPOINT_URL", e);
    }
    let out = cmd.env("EBS_SNAPPER_DRILL_WAIT", "8").arg("clean").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The volumes tagged `ebs-snapper:drill` in `region`: (id, state).
async fn drill_volumes(acct: &Account, region: &str) -> Vec<(String, String)> {
    let out = acct
        .ec2(region)
        .await
        .describe_volumes()
        .filters(aws_sdk_ec2::types::Filter::builder().name("tag-key").values(DRILL).build())
        .send()
        .await
        .expect("describe volumes");
    out.volumes()
        .iter()
        .map(|v| (v.volume_id().unwrap().to_string(), v.state().map(|s| s.as_str().to_string()).unwrap_or_default()))
        .collect()
}

async fn drill_tag(acct: &Account, region: &str, snapshot: &str) -> Option<String> {
    acct.snapshots(region).await.into_iter().find(|s| s.id == snapshot)?.tag(DRILL).map(str::to_string)
}

#[tokio::test]
async fn a_clean_run_drills_the_newest_snapshot_reads_its_blocks_and_leaves_no_volume() {
    let acct = Account::with_configs(R, &[("cfg", &config(r#"{"every": "7 days", "sample_blocks": 4}"#, ""))]).await;
    let (_older, vol) = backed_up(&acct, &[]).await;
    let newest = acct.make_snapshot(R, &vol, &[("DeleteOn", &date(25)), ("ebs-snapper:config", "cfg")]).await;
    let (code, out, err) = clean(&acct, None, &["--region", R]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("drilled 1 (0 failed)"), "{out}");
    let tag = drill_tag(&acct, R, &newest).await.expect("the newest snapshot carries the drill's result");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(tag.starts_with(&today) && tag.contains(" ok ") && tag.ends_with('s'), "{tag}");
    assert!(drill_volumes(&acct, R).await.is_empty(), "the drill volume is deleted");
    assert_eq!((acct.count("CreateVolume", Some(R)), acct.count("DeleteVolume", Some(R))), (1, 1));
    // The sample was read through the EBS direct APIs: 4 blocks, each checked.
    let reads: Vec<String> =
        acct.recorded().into_iter().filter(|r| r.url.contains("/blocks/")).map(|r| r.url).collect();
    assert_eq!(reads.len(), 4, "one GetSnapshotBlock per sampled block");
    let distinct: std::collections::BTreeSet<&String> = reads.iter().collect();
    assert_eq!(distinct.len(), 4, "four distinct blocks: {reads:?}");
    assert!(reads.iter().all(|u| u.contains(&newest)), "of the newest snapshot: {reads:?}");
    // Drilled within `every`: the next run drills nothing.
    let (code, out, err) = clean(&acct, None, &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("drilled"), "{out}");
    assert_eq!(acct.count("CreateVolume", Some(R)), 1);
}

#[tokio::test]
async fn a_never_written_volume_passes_as_empty_and_a_dry_run_makes_nothing() {
    let acct = Account::with_configs(R, &[("cfg", &config("{}", ""))]).await;
    let (snap, _) = backed_up(&acct, &[("test-bed:written-blocks", "0")]).await;
    let out = acct.cli().args(["clean", "--dry-run", "--region", R]).output().unwrap();
    let listing = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(listing.contains("would drill 1"), "{listing}");
    assert!(listing.contains(&snap) && listing.contains("never drilled"), "{listing}");
    assert_eq!(acct.count("CreateVolume", None), 0, "a dry run makes no volume");
    let (code, out, err) = clean(&acct, None, &["--region", R]);
    assert_eq!(code, 0, "{out}{err}");
    let tag = drill_tag(&acct, R, &snap).await.unwrap();
    assert!(tag.ends_with("s (empty)") && tag.contains(" ok "), "{tag}");
}

#[tokio::test]
async fn a_block_whose_checksum_does_not_match_fails_the_drill_and_the_run() {
    let acct = Account::with_configs(R, &[("cfg", &config(r#"{"sample_blocks": 2}"#, ""))]).await;
    let (snap, vol) = backed_up(&acct, &[]).await;
    acct.tag(R, &snap, "test-bed:bad-checksum", "yes").await;
    let (code, out, err) = clean(&acct, None, &["--region", R]);
    assert_eq!(code, 1, "a failed drill fails the run: {out}{err}");
    assert!(out.contains("drilled 1 (1 failed)"), "{out}");
    assert!(err.contains(&snap) && err.contains(&vol) && err.contains("does not match its checksum"), "{err}");
    let tag = drill_tag(&acct, R, &snap).await.unwrap();
    assert!(tag.contains(" failed: ") && tag.contains("does not match its checksum"), "{tag}");
    assert!(drill_volumes(&acct, R).await.is_empty(), "the volume is deleted after a failed drill too");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_that_never_becomes_available_is_deleted_and_the_drill_fails() {
    let acct = Account::with_configs(R, &[("cfg", &config(r#"{"sample_blocks": 2}"#, ""))]).await;
    let (snap, _) = backed_up(&acct, &[]).await;
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    proxy.set_strict(Strict { volumes_creating_for: std::time::Duration::MAX, ..Strict::default() });
    let endpoint = proxy.endpoint();
    // Blocking here is fine: the runtime is multi-threaded, and the proxy serves on another
    // thread.
    let (code, out, err) = clean(&acct, Some(&endpoint), &["--region", R]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("was not available after 8 s"), "{err}");
    let tag = drill_tag(&acct, R, &snap).await.unwrap();
    assert!(tag.contains(" failed: the volume vol-") && tag.contains("not available"), "{tag}");
    assert!(drill_volumes(&acct, R).await.is_empty(), "deleted although it never became available");
    // The wait's polls back off: after 2, 4, 7 and 10 s, then every 5 s (none past 8 s here),
    // besides the run's zone lookup and its sweep.
    let polls = proxy.seen().iter().filter(|s| s.operation == "DescribeVolumes").count();
    assert_eq!(polls, 3 + 2, "{polls} DescribeVolumes");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_that_ends_in_error_fails_the_drill_with_the_reason() {
    let acct = Account::with_configs(R, &[("cfg", &config("{}", ""))]).await;
    let (snap, _) = backed_up(&acct, &[]).await;
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    proxy.set_strict(Strict {
        volumes_creating_for: std::time::Duration::from_secs(3),
        volumes_fail_from: vec![snap.clone()],
        ..Strict::default()
    });
    let endpoint = proxy.endpoint();
    // Blocking here is fine: the runtime is multi-threaded, and the proxy serves on another
    // thread.
    let (code, out, err) = clean(&acct, Some(&endpoint), &["--region", R]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("ended in state error") && err.contains("key or its grants"), "{err}");
    assert!(drill_tag(&acct, R, &snap).await.unwrap().contains(" failed: "));
    assert!(drill_volumes(&acct, R).await.is_empty());
}

#[tokio::test]
async fn a_drill_volume_a_killed_run_left_is_deleted_once_its_delete_on_passed() {
    let acct = Account::with_configs(R, &[("cfg", &config("{}", ""))]).await;
    // Drilled already (not due): this run only sweeps.
    let (snap, _) = backed_up(&acct, &[]).await;
    acct.tag(R, &snap, DRILL, &format!("{}T00:00:00Z ok 3s", date(0))).await;
    let ec2 = acct.ec2(R).await;
    let volume = |drill: String, delete_on: String, config: bool| {
        let ec2 = &ec2;
        let snap = snap.clone();
        async move {
            let mut tags = aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Volume)
                .tags(aws_sdk_ec2::types::Tag::builder().key(DRILL).value(drill).build())
                .tags(aws_sdk_ec2::types::Tag::builder().key("DeleteOn").value(delete_on).build());
            if config {
                tags = tags.tags(aws_sdk_ec2::types::Tag::builder().key("ebs-snapper:config").value("cfg").build());
            }
            let v = ec2
                .create_volume()
                .availability_zone(format!("{R}a"))
                .snapshot_id(&snap)
                .tag_specifications(tags.build());
            v.send().await.unwrap().volume_id().unwrap().to_string()
        }
    };
    let left_behind = volume(snap.clone(), date(-1), true).await;
    let kept = [
        volume(snap.clone(), date(1), true).await, // a drill in progress: DeleteOn tomorrow
        volume(snap.clone(), date(0), true).await, // DeleteOn today: not yet
        // Someone restored the drilled snapshot with its tags: the value is a result, not a
        // snapshot id.
        volume(format!("{}T00:00:00Z ok 3s", date(-9)), date(-1), true).await,
        volume(snap.clone(), date(-1), false).await, // no configuration: not one of ours
    ];
    let (code, out, err) = clean(&acct, None, &["--region", R]);
    assert_eq!(code, 0, "{out}{err}");
    let mut left: Vec<String> = drill_volumes(&acct, R).await.into_iter().map(|(id, _)| id).collect();
    left.sort();
    let mut expected = kept.to_vec();
    expected.sort();
    assert_eq!(left, expected, "only the drill volume left behind ({left_behind}) is deleted");
    assert_eq!(acct.count("DeleteVolume", Some(R)), 1);
}

#[tokio::test]
async fn a_dr_copy_is_drilled_in_its_region_and_must_equal_its_source() {
    let copies = r#", "copies": [{"region": "us-west-2", "drill": {"sample_blocks": 3}}]"#;
    // Only the copies are drilled here: the top-level drill is off.
    let json = config("null", copies);
    let acct = Account::with_configs(R, &[("cfg", &json)]).await;
    let (snap, vol) = backed_up(&acct, &[]).await;
    let copy_tags = |s: &str| -> Vec<(String, String)> {
        vec![
            ("DeleteOn".into(), date(20)),
            ("ebs-snapper:config".into(), "cfg".into()),
            ("ebs-snapper:volume-id".into(), vol.clone()),
            ("replication_src_region".into(), R.into()),
            ("replication_snapshot_id".into(), s.into()),
        ]
    };
    let tags = copy_tags(&snap);
    let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let copy = acct.make_copy(WEST, R, &snap, &tags).await;
    let (code, out, err) = clean(&acct, None, &["--region", WEST]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(drill_tag(&acct, WEST, &copy).await.unwrap().contains(" ok "), "the copy is drilled in its region");
    assert_eq!(drill_tag(&acct, R, &snap).await, None, "the source is not drilled by the copy's drill");
    assert_eq!((acct.count("CreateVolume", Some(WEST)), acct.count("CreateVolume", Some(R))), (1, 0));
    // The source's blocks were read too, in the source's region.
    let source_reads = acct.recorded().into_iter().filter(|r| r.url.contains(&format!("{snap}/blocks/"))).count();
    assert_eq!(source_reads, 3, "each sampled block is compared with the source's");
    // A second copy that differs from its source (with checksums of its own data) fails.
    let newer = acct.make_snapshot(R, &vol, &[("DeleteOn", &date(21)), ("ebs-snapper:config", "cfg")]).await;
    let tags = copy_tags(&newer);
    let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let altered = acct.make_copy(WEST, R, &newer, &tags).await;
    acct.tag(WEST, &altered, "test-bed:altered", "yes").await;
    // The drilled copy expires: the volume's newest copy has never been drilled.
    acct.ec2(WEST).await.delete_snapshot().snapshot_id(&copy).send().await.unwrap();
    let (code, out, err) = clean(&acct, None, &["--region", WEST]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&altered) && err.contains("differs from the source snapshot"), "{err}");
}

fn drill(acct: &Account, args: &[&str]) -> (i32, String, String) {
    let out = acct.cli().env("EBS_SNAPPER_DRILL_WAIT", "12").arg("drill").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn ebs_snapper_drill_runs_the_due_drills_without_cleaning_and_drills_a_named_snapshot() {
    let acct = Account::with_configs(R, &[("cfg", &config(r#"{"sample_blocks": 2}"#, ""))]).await;
    let (older, vol) = backed_up(&acct, &[]).await;
    let (yesterday, expired_on) = ((chrono::Utc::now() - chrono::TimeDelta::days(1)).to_rfc3339(), date(-1));
    let expired_tags =
        [("DeleteOn", expired_on.as_str()), ("ebs-snapper:config", "cfg"), ("test-bed:start-time", &yesterday)];
    let expired = acct.make_snapshot(R, &vol, &expired_tags).await;
    let newest = acct.make_snapshot(R, &vol, &[("DeleteOn", &date(25)), ("ebs-snapper:config", "cfg")]).await;
    let (code, out, err) = drill(&acct, &["--dry-run", "--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "us-east-1: drill {newest} (configuration cfg): snapshot of {vol}, never drilled\nus-east-1: would drill 1, skipped 0, failed 0\n"
        )
    );
    assert_eq!(acct.count("CreateVolume", None), 0);
    let (code, out, err) = drill(&acct, &["--region", R, "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["regions"][0]["drilled"], 1, "{doc:#}");
    assert!(drill_tag(&acct, R, &newest).await.unwrap().contains(" ok "));
    let ids: Vec<String> = acct.snapshots(R).await.into_iter().map(|s| s.id).collect();
    assert!(ids.contains(&expired), "a drill run deletes nothing");
    // Not due again; a named snapshot is drilled all the same.
    let (code, out, _) = drill(&acct, &["--region", R]);
    assert_eq!((code, out.as_str()), (0, "us-east-1: drilled 0 (0 failed), skipped 0, failed 0\n"));
    let (code, out, err) = drill(&acct, &["--snapshot", &older]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("us-east-1: drilled 1 (0 failed)"), "{out}");
    assert!(drill_tag(&acct, R, &older).await.unwrap().contains(" ok "));
    // Bad input: one line, exit 2; a snapshot that is not there: exit 1, named.
    let (code, _, err) = drill(&acct, &["--snapshot", "vol-123"]);
    assert_eq!((code, err.lines().count()), (2, 1), "{err}");
    assert!(err.contains("--snapshot \"vol-123\" is not a snapshot id"), "{err}");
    let (code, _, err) = drill(&acct, &["--snapshot", "snap-0123456789abcdef0", "--region", R]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("snapshot snap-0123456789abcdef0 is not one of the account's own"), "{err}");
}

#[tokio::test]
async fn status_shows_each_volumes_newest_drill() {
    let acct = Account::with_configs(R, &[("cfg", &config(r#"{"sample_blocks": 1}"#, ""))]).await;
    let (snap, vol) = backed_up(&acct, &[]).await;
    // Another volume of the configuration, never drilled; and one whose drill failed long ago.
    let other = acct.launch(R, &[("backup", "yes")]).await;
    let other_vol = acct.volumes_of(R, &other).await[0].clone();
    let failed = acct.launch(R, &[("backup", "yes")]).await;
    let failed_vol = acct.volumes_of(R, &failed).await[0].clone();
    let failed_tags =
        [("DeleteOn", "2099-01-01"), ("ebs-snapper:drill", "2026-01-02T03:04:05Z failed: block 7 differs")];
    acct.make_snapshot(R, &failed_vol, &failed_tags).await;
    let (code, _, err) = drill(&acct, &["--snapshot", &snap]);
    assert_eq!(code, 0, "{err}");
    let out = acct.cli().args(["status", "--region", R]).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(stdout.lines().next().unwrap().trim_end().ends_with("DRILL"), "{stdout}");
    let row = |v: &str| stdout.lines().find(|l| l.contains(v)).unwrap().to_string();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(row(&vol).contains(&format!("{today} ok (")), "{}", row(&vol));
    assert!(row(&other_vol).trim_end().ends_with(" -"), "{}", row(&other_vol));
    assert!(row(&failed_vol).trim_end().ends_with("2026-01-02 failed"), "{}", row(&failed_vol));
    let out = acct.cli().args(["status", "--region", R, "--json"]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let of = |v: &str| doc["volumes"].as_array().unwrap().iter().find(|r| r["volume"] == v).unwrap()["drill"].clone();
    assert_eq!(of(&other_vol), serde_json::Value::Null);
    assert_eq!(of(&failed_vol), serde_json::json!({"at": "2026-01-02T03:04:05Z", "ok": false, "seconds": null}));
    let drilled = of(&vol);
    assert_eq!(drilled["ok"], true, "{drilled}");
    assert!(drilled["seconds"].is_u64() && drilled["at"].as_str().unwrap().starts_with(&today), "{drilled}");
}

#[tokio::test]
async fn configure_check_names_volumes_two_periods_without_a_drill_that_passed() {
    let acct = Account::with_configs(R, &[("cfg", &config(r#"{"every": "7 days"}"#, ""))]).await;
    let weeks_ago = |days: i64| (chrono::Utc::now() - chrono::TimeDelta::days(days)).to_rfc3339();
    let volume_with = |drill: Option<String>, days: i64| {
        let acct = &acct;
        async move {
            let i = acct.launch(R, &[("backup", "yes")]).await;
            let vol = acct.volumes_of(R, &i).await[0].clone();
            let start = weeks_ago(days);
            let mut tags = vec![("DeleteOn", "2099-01-01".to_string()), ("test-bed:start-time", start)];
            tags.extend(drill.map(|d| ("ebs-snapper:drill", d)));
            let tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (*k, v.as_str())).collect();
            acct.make_snapshot(R, &vol, &tags).await;
            vol
        }
    };
    let never = volume_with(None, 20).await;
    let long_ago = volume_with(Some(format!("{}Z ok 3s", &weeks_ago(18)[..19])), 30).await;
    let recent = volume_with(Some(format!("{}Z ok 3s", &weeks_ago(1)[..19])), 30).await;
    let young = volume_with(None, 3).await;
    let out = acct.cli().args(["configure", "-c"]).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let finding = |v: &str| stdout.lines().find(|l| l.contains(v)).map(str::to_string);
    assert!(
        finding(&never).is_some_and(|l| l.contains(
            "(configuration cfg) went 14days (two drill periods) without a restore drill that passed (none passed)"
        )),
        "{stdout}"
    );
    assert!(finding(&long_ago).is_some_and(|l| l.contains("last passed ")), "{stdout}");
    assert_eq!(finding(&recent), None, "{stdout}");
    assert_eq!(finding(&young), None, "restorable for less than two periods: {stdout}");
}

/// The clean worker as Lambda runs it (under its role, deadline enforced): a drill that passes
/// and one that fails; the failed one fails the invocation, named, and counts in `DrillsFailed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clean_worker_drills_as_lambda_runs_it_and_a_failed_drill_fails_it() {
    let acct = Account::deployment().await;
    acct.create_table(R).await;
    acct.put_raw(R, "cfg", &config(r#"{"sample_blocks": 2}"#, "")).await;
    let (good, _) = backed_up(&acct, &[]).await;
    let (bad, bad_vol) = backed_up(&acct, &[]).await;
    acct.tag(R, &bad, "test-bed:bad-checksum", "yes").await;
    let mut lambda = support::lambda::LambdaHarness::new(&acct).await;
    lambda.start(&acct, "clean", "clean-snapshot", &[("EBS_SNAPPER_DRILL_WAIT", "12")]).await;
    let failure = lambda.call("clean", serde_json::json!({"region": R})).await.expect_err("a drill failed");
    assert_eq!(failure["errorType"], "EbsSnapper.ActionsFailed", "{failure:#}");
    let message = failure["errorMessage"].as_str().unwrap();
    let summary: serde_json::Value = serde_json::from_str(message.split_once(": ").unwrap().1).unwrap();
    assert_eq!((summary["drilled"].as_u64(), summary["drills_failed"].as_u64()), (Some(2), Some(1)), "{summary:#}");
    let errors = summary["errors"].to_string();
    assert!(errors.contains(&bad) && errors.contains(&bad_vol) && errors.contains("checksum"), "{summary:#}");
    assert!(drill_tag(&acct, R, &good).await.unwrap().contains(" ok "));
    let emf: Vec<serde_json::Value> = lambda
        .logs("clean")
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("_aws").is_some())
        .collect();
    assert_eq!((emf[0]["Drills"].as_u64(), emf[0]["DrillsFailed"].as_u64()), (Some(2), Some(1)), "{emf:#?}");
    assert!(drill_volumes(&acct, R).await.is_empty());
}

/// Benchmark of SPEC §17's bounds: DRILLS volumes (4 here; scripts/bench.sh runs 100), each with
/// a snapshot to drill, all due in one run (`per_run` = DRILLS), each volume `creating` for
/// CREATING seconds (3) behind the test bed's stricter AWS, the clean worker as Lambda runs it
/// with DEADLINE-second invocations (900) and its own continuations. Prints the calls per drill;
/// fails when a volume is drilled twice or not at all, or a drill takes more EC2 calls than 3 plus
/// the run's zone lookups, more polls than its wait allows, or other than one
/// `GetSnapshotBlock` per sampled block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drill_budget() {
    let env = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (drills, creating, deadline) = (env("DRILLS", 4), env("CREATING", 3), env("DEADLINE", 900));
    const SAMPLE: u64 = 4;
    let acct = Account::deployment().await;
    acct.create_table(R).await;
    let drill = format!(r#"{{"per_run": {drills}, "sample_blocks": {SAMPLE}}}"#);
    acct.put_raw(R, "cfg", &config(&drill, "")).await;
    let instances = acct.launch_count(R, drills as i32, &[("backup", "yes")]).await;
    let mut snapshots = Vec::new();
    for i in &instances {
        let vol = acct.volumes_of(R, i).await[0].clone();
        snapshots.push(acct.make_snapshot(R, &vol, &[("DeleteOn", &date(20)), ("ebs-snapper:config", "cfg")]).await);
    }
    let proxy = FaultProxy::start(FaultPlan::none()).await;
    let creating_for = std::time::Duration::from_secs(creating);
    proxy.set_strict(Strict { volumes_creating_for: creating_for, ..Strict::default() });
    let mut lambda = support::lambda::LambdaHarness::new(&acct).await;
    let endpoint = proxy.endpoint();
    lambda
        .start(&acct, "clean", "clean-snapshot", &[("AWS_ENDPOINT_URL", &endpoint), ("EBS_SNAPPER_DRILL_WAIT", "60")])
        .await;
    let deadline = std::time::Duration::from_secs(deadline);
    lambda.set_invoke_timeout(deadline);
    let started = std::time::Instant::now();
    lambda.invoke("clean", serde_json::json!({ "region": R }), deadline);
    let mut summaries: Vec<serde_json::Value> = Vec::new();
    loop {
        let done =
            lambda.wait_finished("clean", summaries.len() + 1, deadline + std::time::Duration::from_secs(100)).await;
        let summary = done.last().unwrap().result.clone().unwrap_or_else(|e| panic!("the clean worker failed: {e}"));
        let continued = summary["continued"] == true;
        summaries.push(summary);
        if !continued {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let seen = proxy.seen();
    let count = |op: &str| seen.iter().filter(|s| s.operation == op).count() as u64;
    let drilled: u64 = summaries.iter().map(|s| s["drilled"].as_u64().unwrap_or(0)).sum();
    assert_eq!(drilled, drills, "{summaries:#?}");
    assert_eq!(count("CreateVolume"), drills, "one volume per drill, none twice");
    let tags = acct.snapshots(R).await;
    assert!(snapshots
        .iter()
        .all(|id| tags.iter().any(|s| &s.id == id && s.tag(DRILL).is_some_and(|t| t.contains(" ok ")))));
    let invocations = summaries.len() as u64;
    let per_drill = |n: u64| n as f64 / drills as f64;
    let ec2 = count("CreateVolume") + count("DeleteVolume") + count("CreateTags") + count("DescribeAvailabilityZones");
    // DescribeVolumes: the polls, plus per invocation the zone lookup and the sweep.
    let polls = count("DescribeVolumes").saturating_sub(2 * invocations);
    // A wait of `creating` seconds takes the polls at 2, 4, 7 and 10 s, then one per 5 s.
    let polls_each = 4 + creating.saturating_sub(10).div_ceil(5) + 1;
    println!("| drills | creating (s) | invocations | wall (s) | EC2 per drill | polls per drill | ListSnapshotBlocks per drill | GetSnapshotBlock per drill |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {drills} | {creating} | {invocations} | {secs:.0} | {:.2} | {:.2} | {:.1} | {:.1} |",
        per_drill(ec2 + 2 * invocations),
        per_drill(polls),
        per_drill(count("ListSnapshotBlocks")),
        per_drill(count("GetSnapshotBlock"))
    );
    assert!(ec2 <= 3 * drills + invocations, "EC2 calls {ec2} for {drills} drills");
    assert!(polls <= polls_each * drills, "{polls} polls for {drills} drills of {creating} s");
    assert_eq!(count("GetSnapshotBlock"), SAMPLE * drills, "one read per sampled block");
}

/// SPEC §10.9 for drills: a `CreateVolume` whose answer was lost after EC2 made the volume is
/// retried by the SDK with the same client token, and EC2 (the test bed too) answers with that
/// volume: no second volume, and none is left behind.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_create_volume_answer_makes_no_second_volume() {
    use support::fault_proxy::Fault;
    let acct = Account::with_configs(R, &[("cfg", &config(r#"{"sample_blocks": 1}"#, ""))]).await;
    let (snap, _) = backed_up(&acct, &[]).await;
    let plan = FaultPlan::every_call(5, 1.0).only_operations(&["CreateVolume"]).kinds(&[Fault::LostAnswer]).at_most(2);
    let proxy = FaultProxy::start(plan).await;
    let (code, out, err) = clean(&acct, Some(&proxy.endpoint()), &["--region", R]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(proxy.faulted(), 2, "two answers lost");
    assert_eq!(acct.count("CreateVolume", Some(R)), 3, "the SDK sent it three times");
    assert!(drill_tag(&acct, R, &snap).await.unwrap().contains(" ok "));
    assert!(drill_volumes(&acct, R).await.is_empty(), "one volume was made, and it is deleted");
}

/// The EBS direct APIs throttle (AWS allows `ListSnapshotBlocks` about 50 a second per
/// account): a throttled read is retried, and the drill passes.
#[tokio::test(flavor = "multi_thread")]
async fn throttled_block_reads_are_retried_and_the_drill_passes() {
    use support::fault_proxy::Fault;
    let acct = Account::with_configs(R, &[("cfg", &config(r#"{"sample_blocks": 2}"#, ""))]).await;
    // Blocks in every page: few listings, so that the SDK's slower pace after a throttle (its
    // adaptive retry) does not make a long test.
    let (snap, _) = backed_up(&acct, &[("test-bed:written-blocks", "4096")]).await;
    let plan = FaultPlan::every_call(13, 0.5)
        .only_operations(&["ListSnapshotBlocks", "GetSnapshotBlock"])
        .kinds(&[Fault::Throttle])
        .at_most(2);
    let proxy = FaultProxy::start(plan).await;
    let (code, out, err) = clean(&acct, Some(&proxy.endpoint()), &["--region", R]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(proxy.faulted() > 0, "some reads were throttled");
    assert!(drill_tag(&acct, R, &snap).await.unwrap().contains(" ok "));
}

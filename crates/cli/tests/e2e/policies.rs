//! Policies (SPEC §11) end to end: tiers, archive, volume selection, configured tags and
//! crash-consistent sets, through the CLI and the worker functions against the emulator.

use crate::support;

use ebs_snapper_lambda::handlers::{clean_snapshot, create_snapshot, Environment, Invocation};
use serde_json::json;
use support::{date, dated, text, Account};

const R: &str = "us-east-1";

fn run(acct: &Account, job: &str, args: &[&str]) -> (i32, String, String) {
    let out = acct.cli().arg(job).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Two tiers and whatever else `extra` adds.
fn tiered(extra: &str) -> String {
    format!(
        r#"{{"match": {{"tag:backup": "yes"}}, "schedules": [
            {{"name": "daily", "frequency": "1 day", "retention": "2 days", "minimum": 1}},
            {{"name": "weekly", "frequency": "7 days", "retention": "30 days", "minimum": 1}},
            {{"name": "monthly", "frequency": "30 days", "retention": "400 days", "minimum": 1, "archive": true}}]{extra}}}"#
    )
}

#[tokio::test]
async fn each_tier_is_due_on_its_own_snapshots_and_one_snapshot_serves_every_due_tier() {
    let acct = Account::with_configs(R, &[("tiers", &tiered(""))]).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let root = acct.volumes_of(R, &i).await[0].clone();

    // A fresh volume: every tier is due, one snapshot for all, kept for the longest retention.
    let (code, out, err) = run(&acct, "snapshot", &["--region", R, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("create {root} ({i} /dev/sda1, configuration tiers): no pending or completed snapshot (tiers daily,weekly,monthly)")),
        "the dry run names the tiers: {out}"
    );
    let (code, out, err) = run(&acct, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "us-east-1: created 1, not due 0, ignored 0, skipped 0, failed 0\n");
    let snaps = acct.snapshots(R).await;
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].tag("ebs-snapper:tier"), Some("daily,weekly,monthly"));
    assert!(dated(snaps[0].tag("DeleteOn"), 400), "{:?}", snaps[0].tag("DeleteOn"));

    // A weekly-and-monthly snapshot alone (as if the daily one had expired): only daily is due.
    let acct = Account::with_configs(R, &[("tiers", &tiered(""))]).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let root = acct.volumes_of(R, &i).await[0].clone();
    acct.make_snapshot(R, &root, &[("DeleteOn", &date(30)), ("ebs-snapper:tier", "weekly,monthly")]).await;
    let (code, out, err) = run(&acct, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "us-east-1: created 1, not due 0, ignored 0, skipped 0, failed 0\n");
    let made: Vec<_> = acct.snapshots(R).await.into_iter().filter(|s| s.description != "planted").collect();
    assert_eq!(made[0].tag("ebs-snapper:tier"), Some("daily"));
    assert!(dated(made[0].tag("DeleteOn"), 2), "daily's retention alone: {:?}", made[0].tag("DeleteOn"));
    // Now nothing is due, and the dry run says which tier comes next.
    let (_, out, _) = run(&acct, "snapshot", &["--region", R, "--dry-run"]);
    assert!(out.contains("not due until") && out.contains("(tier daily)"), "{out}");
}

#[tokio::test]
async fn retention_keeps_each_tiers_newest_minimum_and_archives_the_monthly_ones() {
    let acct = Account::with_configs(R, &[("tiers", &tiered(""))]).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let root = acct.volumes_of(R, &i).await[0].clone();
    // Oldest first; the DeleteOn dates rise with age too, so the order is the same either way.
    let plant = |delete_on: i64, tier: &'static str| {
        let acct = &acct;
        let root = root.clone();
        async move {
            acct.make_snapshot(
                R,
                &root,
                &[("DeleteOn", &date(delete_on)), ("ebs-snapper:tier", tier), ("ebs-snapper:config", "tiers")],
            )
            .await
        }
    };
    let w1 = plant(-9, "weekly").await;
    let d1 = plant(-8, "daily").await;
    let m1 = plant(200, "monthly").await;
    let d2 = plant(-7, "daily").await;
    let w2 = plant(-6, "weekly").await;
    let m2 = plant(230, "monthly").await;

    let (code, out, err) = run(&acct, "clean", &["--region", R, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("delete {w1}")) && out.contains(&format!("delete {d1}")), "{out}");
    assert!(out.contains(&format!("keep {d2}")) && out.contains("among the newest 1 of tier daily"), "{out}");
    assert!(out.contains(&format!("archive {m1}")), "{out}");
    assert!(
        out.ends_with("us-east-1: would delete 2, would archive 1, kept 3, ignored 0, skipped 0, failed 0\n"),
        "{out}"
    );

    let (code, out, err) = run(&acct, "clean", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "us-east-1: deleted 2, archived 1, kept 3, ignored 0, skipped 0, failed 0\n");
    let left: Vec<_> = acct.snapshots(R).await;
    let ids: std::collections::BTreeSet<&str> = left.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, [d2.as_str(), w2.as_str(), m1.as_str(), m2.as_str()].into());
    let archived: Vec<&str> = left.iter().filter(|s| s.archived).map(|s| s.id.as_str()).collect();
    assert_eq!(archived, [m1.as_str()], "the older monthly snapshot, never the newest");
    assert_eq!(acct.count("ModifySnapshotTier", None), 1);

    // A second run finds nothing to do: the archived one stays where it is.
    let (code, out, _) = run(&acct, "clean", &["--region", R]);
    assert_eq!(code, 0);
    assert_eq!(out, "us-east-1: deleted 0, kept 4, ignored 0, skipped 0, failed 0\n");
    assert_eq!(acct.count("ModifySnapshotTier", None), 1);
}

#[tokio::test]
async fn excluded_volumes_are_ignored_with_the_reason_and_configured_tags_win() {
    let acct = Account::with_configs(
        R,
        &[(
            "sel",
            r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "5 days", "minimum": 1, "frequency": "1 day"},
            "exclude_boot": true, "exclude_tags": {"ebs-snapper:skip": "*", "kind": ["scratch", "tmp"]},
            "tags": {"Team": "payments", "Name": "from-config"}}"#,
        )],
    )
    .await;
    let i = acct.launch(R, &[("backup", "yes"), ("Name", "from-instance")]).await;
    let data = acct.attach_volume(R, &i, "/dev/xvdf", &[("kind", "data")]).await;
    let scratch = acct.attach_volume(R, &i, "/dev/xvdg", &[("kind", "scratch")]).await;
    let skipped = acct.attach_volume(R, &i, "/dev/xvdh", &[("ebs-snapper:skip", "")]).await;
    let excluded_instance = acct.launch(R, &[("backup", "yes"), ("ebs-snapper:skip", "yes")]).await;

    let (code, out, err) = run(&acct, "snapshot", &["--region", R, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("excluded: boot volume /dev/sda1 (exclude_boot)"), "{out}");
    assert!(
        out.contains(&format!(
            "ignored {scratch} ({i} /dev/xvdg, configuration sel): excluded: volume tag kind=scratch (exclude_tags)"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("ignored {skipped}")), "{out}");
    assert!(out.contains(&format!("({excluded_instance} /dev/sda1, configuration sel): excluded: instance tag ebs-snapper:skip=yes (exclude_tags)")), "{out}");

    let (code, out, err) = run(&acct, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "us-east-1: created 1, not due 0, ignored 4, skipped 0, failed 0\n");
    let snaps = acct.snapshots(R).await;
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].volume_id, data);
    assert_eq!(snaps[0].tag("Team"), Some("payments"));
    assert_eq!(snaps[0].tag("Name"), Some("from-config"), "a configured tag wins over a copied one");
    assert_eq!(snaps[0].tag("kind"), Some("data"));
    assert_eq!(snaps[0].tag("ebs-snapper:tier"), None, "a `snapshot` configuration tags no tier");
}

#[tokio::test]
async fn an_instance_set_is_one_call_and_leaves_out_what_is_not_selected() {
    let acct = Account::with_configs(
        R,
        &[(
            "set",
            r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "5 days", "minimum": 1, "frequency": "1 day"},
            "consistency": "instance", "exclude_tags": {"kind": "scratch"}}"#,
        )],
    )
    .await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let root = acct.volumes_of(R, &i).await[0].clone();
    let data = acct.attach_volume(R, &i, "/dev/xvdf", &[("kind", "data")]).await;
    let scratch = acct.attach_volume(R, &i, "/dev/xvdg", &[("kind", "scratch")]).await;

    let (code, out, err) = run(&acct, "snapshot", &["--region", R, "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["regions"][0]["created"], 2);
    assert_eq!(doc["regions"][0]["ignored"], 1);
    assert_eq!(acct.count("CreateSnapshots", None), 1, "one call for the instance");
    assert_eq!(acct.count("CreateSnapshot", None), 0);

    let snaps = acct.snapshots(R).await;
    let volumes: std::collections::BTreeSet<&str> = snaps.iter().map(|s| s.volume_id.as_str()).collect();
    assert_eq!(volumes, [root.as_str(), data.as_str()].into(), "the scratch volume {scratch} is left out");
    let set = snaps[0].tag("ebs-snapper:set").expect("a set id");
    assert!(set.starts_with(&format!("{i}-")), "{set}");
    for s in &snaps {
        assert_eq!(s.tag("ebs-snapper:set"), Some(set));
        assert!(dated(s.tag("DeleteOn"), 5), "{:?}", s.tag("DeleteOn"));
        assert_eq!(s.tag("ebs-snapper:config"), Some("set"));
        assert_eq!(s.tag("ebs-snapper:instance-id"), Some(i.as_str()));
        assert_eq!(s.tag("ebs-snapper:device"), None, "the device differs per volume; a set's tags do not");
    }
    let created: Vec<&str> = doc["regions"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "create")
        .map(|a| a["result_id"].as_str().unwrap())
        .collect();
    assert_eq!(created.len(), 2, "each volume reported with its own snapshot");

    // Not due any more: a second run makes no call.
    let (code, out, _) = run(&acct, "snapshot", &["--region", R]);
    assert_eq!(code, 0);
    assert_eq!(out, "us-east-1: created 0, not due 2, ignored 1, skipped 0, failed 0\n");
    assert_eq!(acct.count("CreateSnapshots", None), 1);
}

/// The crash-consistent run makes one mutation call per instance: 100 instances with two
/// volumes each, 100 `CreateSnapshots` and nothing else that mutates.
#[tokio::test]
async fn a_hundred_instance_sets_take_one_call_each() {
    let acct = Account::with_configs(
        R,
        &[(
            "set",
            r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "5 days", "minimum": 1, "frequency": "1 day"},
            "consistency": "instance"}"#,
        )],
    )
    .await;
    let ec2 = acct.ec2(R).await;
    let out = ec2
        .run_instances()
        .image_id("ami-12345678")
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .min_count(100)
        .max_count(100)
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                .tags(aws_sdk_ec2::types::Tag::builder().key("backup").value("yes").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    for i in out.instances() {
        acct.attach_volume(R, i.instance_id().unwrap(), "/dev/xvdf", &[]).await;
    }
    let before = acct.recorded().len();
    let out = acct.cli().args(["snapshot", "--region", R, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["regions"][0]["created"], 200, "{doc:#}");
    // EC2 holds exactly one snapshot of each selected volume, every one tagged with its set.
    let snaps = acct.snapshots(R).await;
    let mut of_volume: std::collections::BTreeMap<&str, usize> = Default::default();
    for s in &snaps {
        *of_volume.entry(s.volume_id.as_str()).or_default() += 1;
        assert!(s.tag("ebs-snapper:set").is_some(), "{s:#?}");
    }
    assert_eq!((of_volume.len(), snaps.len()), (200, 200), "one snapshot per volume");
    // The report names exactly the snapshots that exist, each volume's own.
    let made: std::collections::BTreeSet<(String, String)> =
        snaps.iter().map(|s| (s.volume_id.clone(), s.id.clone())).collect();
    let reported: std::collections::BTreeSet<(String, String)> = doc["regions"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "create")
        .map(|a| (a["resource"].as_str().unwrap().to_string(), a["result_id"].as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(reported, made);
    let calls: Vec<_> = acct.recorded().into_iter().skip(before).collect();
    let mutations: Vec<&str> = calls
        .iter()
        .map(|c| c.action.as_str())
        .filter(|a| {
            !a.starts_with("Describe")
                && !["Query", "GetItem", "PutItem", "UpdateItem", "DeleteItem", "GetCallerIdentity"].contains(a)
        })
        .collect();
    eprintln!(
        "instances=100 volumes=200 CreateSnapshots={} other mutations={:?}",
        mutations.iter().filter(|a| **a == "CreateSnapshots").count(),
        mutations.iter().filter(|a| **a != "CreateSnapshots").collect::<Vec<_>>()
    );
    assert_eq!(mutations, vec!["CreateSnapshots"; 100], "exactly one CreateSnapshots per instance, nothing else");
}

#[tokio::test]
async fn the_workers_run_tiers_sets_and_archive_as_the_cli_does() {
    let acct = Account::with_configs(
        R,
        &[(
            "tiers",
            &tiered(
                r#", "consistency": "instance", "exclude_tags": {"kind": "scratch"}, "tags": {"Team": "payments"}"#,
            ),
        )],
    )
    .await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    acct.attach_volume(R, &i, "/dev/xvdf", &[]).await;
    let scratch = acct.attach_volume(R, &i, "/dev/xvdg", &[("kind", "scratch")]).await;
    let aws = acct.aws(R).await;
    let env = Environment::default();
    let invocation = |name: &str| Invocation {
        payload: json!({"region": R}),
        function_arn: acct.function_arn(name),
        deadline: None,
    };
    let summary = create_snapshot(&aws, &env, invocation("create")).await.expect("success");
    assert_eq!(
        (summary["created"].as_u64(), summary["ignored"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(1), Some(0))
    );
    assert_eq!(acct.count("CreateSnapshots", None), 1);
    let snaps = acct.snapshots(R).await;
    assert_eq!(snaps.len(), 2);
    assert!(snaps.iter().all(|s| s.volume_id != scratch), "{snaps:?}");
    assert!(snaps.iter().all(|s| s.tag("ebs-snapper:tier") == Some("daily,weekly,monthly")), "{snaps:?}");
    assert!(snaps.iter().all(|s| s.tag("Team") == Some("payments")), "{snaps:?}");

    // Two monthly snapshots of a volume no configuration matches now, made by this one (its
    // tag names it): the clean worker archives the older, kept long enough, never the newer.
    let other = acct.launch(R, &[("backup", "no")]).await;
    let vol = acct.volumes_of(R, &other).await[0].clone();
    let tags = |delete_on: String| {
        [
            ("DeleteOn".to_string(), delete_on),
            ("ebs-snapper:tier".into(), "monthly".into()),
            ("ebs-snapper:config".into(), "tiers".into()),
        ]
    };
    let planted = |t: [(String, String); 3]| {
        let acct = &acct;
        let vol = vol.clone();
        async move {
            let refs: Vec<(&str, &str)> = t.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            acct.make_snapshot(R, &vol, &refs).await
        }
    };
    let old = planted(tags(date(300))).await;
    planted(tags(date(330))).await;
    let summary = clean_snapshot(&aws, &env, invocation("clean")).await.expect("success");
    assert_eq!(summary["archived"], 1, "{summary}");
    assert!(acct.snapshots(R).await.iter().any(|s| s.id == old && s.archived));
}

#[tokio::test]
async fn configure_refuses_bad_policies_and_the_check_finds_dead_tiers_and_excluded_volumes() {
    let acct = Account::with_configs(R, &[]).await;
    let set = |json: &str| {
        let out = acct.cli().args(["configure", "-s", "bad", json]).output().unwrap();
        (out.status.code(), text(&out.stderr))
    };
    let (code, err) = set(
        r#"{"match": {"tag:backup": "yes"}, "schedules": [{"name": "Daily", "frequency": "1 day", "retention": "1 day", "minimum": 1}]}"#,
    );
    assert_eq!(code, Some(2));
    assert!(err.contains("schedules[0].name: \"Daily\" is not a tier name"), "{err}");
    let (code, err) = set(&tiered(r#", "consistency": "crash""#));
    assert_eq!(code, Some(2));
    assert!(err.contains("consistency: must be \"volume\" or \"instance\""), "{err}");
    let (code, err) = set(&tiered(r#", "tags": {"DeleteOn": "2099-01-01"}"#));
    assert_eq!(code, Some(2));
    assert!(err.contains("tags.DeleteOn: is a key this tool or AWS sets itself"), "{err}");
    assert!(acct.items(R).await.is_empty(), "nothing stored");

    let dead = r#"{"match": {"tag:backup": "yes"}, "schedules": [
        {"name": "daily", "frequency": "1 day", "retention": "1 day", "minimum": 1},
        {"name": "y2020", "frequency": "cron(0 3 1 1 ? 2020)", "retention": "1 day", "minimum": 1}],
        "exclude_boot": true}"#;
    let out = acct.cli().args(["configure", "-s", "dead", dead]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let root = acct.volumes_of(R, &i).await[0].clone();
    let out = acct.cli().args(["configure", "-c"]).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(stdout.contains("configuration dead: tier y2020 can never be due"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "volume {root} of instance {i} in us-east-1 is excluded by every configuration that matches it (dead)"
        )),
        "{stdout}"
    );
}

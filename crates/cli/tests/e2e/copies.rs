//! Disaster-recovery copies (SPEC §12) against the emulator: the snapshot job tags, the
//! replication job copies with the destination's key and date, the clean job in the
//! destination keeps each source volume's copies by their own minimum, and a copy outlives its
//! source.

use crate::support;

use support::{date, dated, text, Account};

const R: &str = "us-east-1";
const WEST: &str = "us-west-2";
const KEY: &str = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn run(acct: &Account, job: &str, args: &[&str]) -> (i32, String, String) {
    let out = acct.cli().arg(job).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Kept a day in the source region; copies kept 30 days (at least two per volume) in us-west-2
/// under KEY.
fn dr_config() -> String {
    format!(
        r#"{{"match": {{"tag:backup": "yes"}},
            "snapshot": {{"retention": "1 day", "minimum": 1, "frequency": "1 day"}},
            "copies": [{{"region": "{WEST}", "retention": "30 days", "minimum": 2, "kms_key": "{KEY}"}}]}}"#
    )
}

#[tokio::test]
async fn a_copy_with_its_key_and_retention_outlives_its_deleted_source() {
    let acct = Account::with_configs(R, &[("dr", &dr_config())]).await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();

    let (code, _, err) = run(&acct, "snapshot", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    let sources = acct.snapshots(R).await;
    assert_eq!(sources.len(), 1);
    let source = &sources[0];
    assert_eq!(source.tag("ebs-snapper:copy-to"), Some(WEST));

    let (code, out, err) = run(&acct, "replication", &["--region", R]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "us-east-1: copied 1, deleted 0, in sync 0, ignored 0, skipped 0, failed 0\n");
    let copies = acct.snapshots(WEST).await;
    assert_eq!(copies.len(), 1);
    let copy = &copies[0];
    assert_eq!(copy.tag("replication_src_region"), Some(R));
    assert_eq!(copy.tag("replication_snapshot_id"), Some(source.id.as_str()));
    assert_eq!(copy.tag("ebs-snapper:config"), Some("dr"));
    assert_eq!(copy.tag("ebs-snapper:volume-id"), Some(vol.as_str()));
    assert!(dated(copy.tag("DeleteOn"), 30), "the copy's own date, not the source's: {:?}", copy.tag("DeleteOn"));
    assert_eq!(copy.tag("ebs-snapper:copy-to"), None);
    assert!(copy.encrypted, "encrypted with the destination's key");
    assert_eq!(copy.kms_key_id.as_deref(), Some(KEY));
    assert_eq!(copy.description, source.description);

    // The status report finds the copy.
    let out = acct.cli().args(["status", "--region", R, "--json"]).output().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["volumes"][0]["copies"], serde_json::json!({ WEST: true }), "{doc}");

    // The source goes (its day is over); the copy stays, in every job of either region.
    acct.ec2(R).await.delete_snapshot().snapshot_id(&source.id).send().await.unwrap();
    let (code, out, err) = run(&acct, "replication", &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "us-west-2: copied 0, deleted 0, in sync 0, ignored 0, skipped 1, failed 0\n");
    let (code, _, err) = run(&acct, "clean", &["--region", WEST]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(acct.snapshots(WEST).await.len(), 1, "a copy is never deleted because its source is gone");
    let out = acct.cli().args(["replication", "--region", WEST, "--dry-run"]).output().unwrap();
    assert!(text(&out.stdout).contains("lives by its own date"), "{}", text(&out.stdout));
}

#[tokio::test]
async fn copies_are_cleaned_by_source_volume_under_their_own_minimum() {
    let acct = Account::with_configs(R, &[("dr", &dr_config())]).await;
    let i = acct.launch(R, &[]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    let source = acct.make_snapshot(R, &vol, &[]).await;
    // Expired copies, as the replication job would have made them: three of vol-a, two of vol-b
    // (EC2 reports every copy's volume as vol-ffffffff; the tag says whose copy it is).
    let mut made = Vec::new();
    for (volume, days) in [("vol-0aaaaaaaaaaaaaaaa", -3), ("vol-0aaaaaaaaaaaaaaaa", -2), ("vol-0aaaaaaaaaaaaaaaa", -1)]
        .into_iter()
        .chain([("vol-0bbbbbbbbbbbbbbbb", -2), ("vol-0bbbbbbbbbbbbbbbb", -1)])
    {
        let delete_on = date(days);
        let tags = [
            ("replication_src_region", R),
            ("replication_snapshot_id", source.as_str()),
            ("DeleteOn", delete_on.as_str()),
            ("ebs-snapper:config", "dr"),
            ("ebs-snapper:volume-id", volume),
        ];
        made.push(acct.make_copy(WEST, R, &source, &tags).await);
    }
    let (code, out, err) = run(&acct, "clean", &["--region", WEST]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("us-west-2: deleted 1,"), "{out}");
    let left: Vec<String> = acct.snapshots(WEST).await.into_iter().map(|s| s.id).collect();
    assert!(!left.contains(&made[0]), "the oldest copy of vol-a goes");
    for kept in &made[1..] {
        assert!(left.contains(kept), "{kept}: each volume keeps its newest two");
    }
}

#[tokio::test]
async fn bad_copies_are_refused_with_field_and_problem() {
    let acct = Account::with_configs(R, &[]).await;
    let snap = r#""snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"}"#;
    let cases = [
        (
            format!(
                r#"{{"match": {{"tag:b": "y"}}, {snap}, "copies": [{{"region": "us-west-1"}}, {{"region": "us-west-2"}}, {{"region": "eu-west-1"}}, {{"region": "eu-west-2"}}]}}"#
            ),
            "copies: has 4 destinations; at most 3",
        ),
        (
            format!(
                r#"{{"match": {{"availability-zone": "us-east-1a"}}, {snap}, "copies": [{{"region": "us-east-1"}}]}}"#
            ),
            "copies[0].region: us-east-1 is the source region",
        ),
        (
            format!(
                r#"{{"match": {{"tag:b": "y"}}, {snap}, "copies": [{{"region": "us-west-2", "kms_key": "arn:aws:kms:eu-west-1:111122223333:key/k"}}]}}"#
            ),
            "copies[0].kms_key: the key is in eu-west-1, not in us-west-2",
        ),
        (format!(r#"{{"match": {{"tag:b": "y"}}, {snap}, "copies": [{{"region": "west"}}]}}"#), "copies[0].region:"),
    ];
    for (json, expected) in cases {
        acct.assert_refused(&json, expected);
    }
    assert!(acct.items(R).await.is_empty(), "nothing may be stored");
}

#[tokio::test]
async fn a_copy_to_its_own_region_is_not_made_and_the_run_says_so() {
    // Configurations apply in every region: one copying to us-west-2 snapshots instances there
    // too, whose snapshots are copied to its other destinations only.
    let config = r#"{"match": {"tag:backup": "yes"},
        "snapshot": {"retention": "1 day", "minimum": 1, "frequency": "1 day"},
        "copies": [{"region": "us-west-2"}, {"region": "eu-west-1"}]}"#;
    let acct = Account::with_configs(R, &[("dr", config)]).await;
    acct.launch(WEST, &[("backup", "yes")]).await;
    let (code, _, err) = run(&acct, "snapshot", &["--region", WEST]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("configuration dr copies to us-west-2, the region of these snapshots"), "{err}");
    let snaps = acct.snapshots(WEST).await;
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0].tag("ebs-snapper:copy-to"), Some("eu-west-1"));
    // Replication copies it to its other destination only: nothing is copied into its own region.
    let (code, out, err) = run(&acct, "replication", &["--region", WEST]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("us-west-2: copied 1,"), "{out}");
    let in_west = acct.snapshots(WEST).await;
    assert_eq!(in_west.len(), 1, "no copy of it in its own region: {in_west:#?}");
    let in_eu = acct.snapshots("eu-west-1").await;
    assert_eq!(in_eu.len(), 1);
    assert_eq!(in_eu[0].tag("replication_snapshot_id"), Some(snaps[0].id.as_str()));
}

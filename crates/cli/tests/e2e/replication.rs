//! `ebs-snapper replication` and the replication function against the emulator.

use crate::support;

use ebs_snapper_lambda::handlers::{replication, Environment, Invocation};
use serde_json::json;
use support::{text, Account};

const SRC: &str = "us-west-1";
const DST: &str = "us-east-1";

async fn deployed() -> Account {
    let acct = Account::new().await;
    acct.create_table(DST).await;
    acct
}

/// A volume in `region` with a snapshot tagged for replication to `dst`; returns the snapshot id.
async fn source(acct: &Account, region: &str, dst: &str) -> String {
    let i = acct.launch(region, &[]).await;
    let vol = acct.volumes_of(region, &i).await[0].clone();
    let ec2 = acct.ec2(region).await;
    let out = ec2
        .create_snapshot()
        .volume_id(vol)
        .description("Created from i-1 by EbsSnapper(0.1.0) for ami-1 from vol-1")
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::Snapshot)
                .tags(aws_sdk_ec2::types::Tag::builder().key("replication_dst_region").value(dst).build())
                .tags(aws_sdk_ec2::types::Tag::builder().key("Name").value("Snapshot_Name").build())
                .tags(aws_sdk_ec2::types::Tag::builder().key("DeleteOn").value("2099-01-01").build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    out.snapshot_id().unwrap().to_string()
}

fn run(acct: &Account, args: &[&str]) -> (i32, String, String) {
    let out = acct.cli().arg("replication").args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn copies_once_with_tags_and_description() {
    let acct = deployed().await;
    let src = source(&acct, SRC, DST).await;

    let (code, out, err) = run(&acct, &["--region", SRC]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "us-west-1: copied 1, deleted 0, in sync 0, ignored 0, skipped 0, failed 0\n");
    let copies = acct.snapshots(DST).await;
    assert_eq!(copies.len(), 1);
    let c = &copies[0];
    assert_eq!(c.tag("replication_src_region"), Some(SRC));
    assert_eq!(c.tag("replication_snapshot_id"), Some(src.as_str()));
    assert_eq!(c.tag("Name"), Some("Snapshot_Name"));
    assert_eq!(c.tag("DeleteOn"), None, "a copy is not cleaned by date");
    assert_eq!(c.tag("replication_dst_region"), None);
    assert_eq!(c.description, "Created from i-1 by EbsSnapper(0.1.0) for ami-1 from vol-1");

    // A second run creates none.
    let (code, out, _) = run(&acct, &["--region", SRC]);
    assert_eq!(code, 0);
    assert_eq!(out, "us-west-1: copied 0, deleted 0, in sync 1, ignored 0, skipped 0, failed 0\n");
    assert_eq!(acct.snapshots(DST).await.len(), 1);
}

#[tokio::test]
async fn copy_of_a_deleted_source_is_deleted_and_a_live_one_kept() {
    let acct = deployed().await;
    let gone = source(&acct, SRC, DST).await;
    let alive = source(&acct, SRC, DST).await;
    let (code, _, err) = run(&acct, &["--region", SRC]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(acct.snapshots(DST).await.len(), 2);

    acct.ec2(SRC).await.delete_snapshot().snapshot_id(&gone).send().await.unwrap();
    // A snapshot of a volume restored from the copy carries the copy's tags, but is no copy:
    // it is kept although the source it names is gone.
    let copy_of_gone = acct
        .snapshots(DST)
        .await
        .into_iter()
        .find(|s| s.tag("replication_snapshot_id") == Some(gone.as_str()))
        .unwrap();
    assert_eq!(copy_of_gone.volume_id, "vol-ffffffff", "EC2 reports a copy's volume so");
    let i = acct.launch(DST, &[]).await;
    let restored = acct.volumes_of(DST, &i).await[0].clone();
    let not_a_copy = acct
        .make_snapshot(DST, &restored, &[("replication_src_region", SRC), ("replication_snapshot_id", &gone)])
        .await;
    // Without --region both regions are visited (both carry replication tags).
    let (code, out, err) = run(&acct, &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "us-east-1: copied 0, deleted 1, in sync 1, ignored 0, skipped 1, failed 0\n\
         us-west-1: copied 0, deleted 0, in sync 1, ignored 0, skipped 0, failed 0\n"
    );
    let copies: Vec<_> =
        acct.snapshots(DST).await.into_iter().filter(|s| s.tag("replication_src_region").is_some()).collect();
    assert_eq!(copies.len(), 2);
    assert!(copies.iter().any(|c| c.id == not_a_copy));
    assert!(copies.iter().any(|c| c.tag("replication_snapshot_id") == Some(alive.as_str())));
}

#[tokio::test]
async fn copy_whose_source_region_cannot_be_listed_is_kept() {
    let acct = deployed().await;
    // A replica claiming a source in a region this account cannot list (not opted in).
    let i = acct.launch(DST, &[]).await;
    let vol = acct.volumes_of(DST, &i).await[0].clone();
    let replica = acct
        .make_snapshot(
            DST,
            &vol,
            &[("replication_src_region", "ap-east-1"), ("replication_snapshot_id", "snap-0123456789abcdef0")],
        )
        .await;
    let (code, out, err) = run(&acct, &["--region", DST]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "us-east-1: copied 0, deleted 0, in sync 0, ignored 0, skipped 1, failed 0\n");
    assert_eq!(acct.snapshots(DST).await.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![replica]);
    let (_, out, _) = run(&acct, &["--region", DST, "--dry-run"]);
    assert!(
        out.contains("source region ap-east-1 could not be listed (not an enabled region of this account); kept"),
        "{out}"
    );
}

#[tokio::test]
async fn ignored_source_is_not_copied_and_dry_run_changes_nothing() {
    let acct = deployed().await;
    let ignored = source(&acct, SRC, DST).await;
    let other = source(&acct, SRC, DST).await;
    acct.put_raw(DST, "cfg", &format!(r#"{{"match": {{"tag:backup": "yes"}}, "snapshot": {{"retention": "1 day", "minimum": 1, "frequency": "1 day"}}, "ignore": ["{ignored}"]}}"#)).await;

    let (code, out, err) = run(&acct, &["--region", SRC, "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("us-west-1: copy {other}: copy to us-east-1 (not there yet)")), "{out}");
    assert!(out.contains(&format!("us-west-1: skip {ignored}: ignored")), "{out}");
    assert!(
        out.ends_with("us-west-1: would copy 1, would delete 0, in sync 0, ignored 1, skipped 0, failed 0\n"),
        "{out}"
    );
    assert!(acct.snapshots(DST).await.is_empty());
    assert_eq!(acct.count("CopySnapshot", None), 0);

    let (code, out, _) = run(&acct, &["--region", SRC]);
    assert_eq!(code, 0);
    assert_eq!(out, "us-west-1: copied 1, deleted 0, in sync 0, ignored 1, skipped 0, failed 0\n");
    let copies = acct.snapshots(DST).await;
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].tag("replication_snapshot_id"), Some(other.as_str()));
}

#[tokio::test]
async fn function_fans_out_to_itself_then_works_a_region() {
    let acct = deployed().await;
    source(&acct, SRC, DST).await;
    acct.create_function(DST, "replication-fn").await;
    let aws = acct.aws(DST).await;
    let env = Environment { own_function: Some("replication-fn".into()), ..Default::default() };
    let inv = |payload| Invocation { payload, function_arn: acct.function_arn("replication-fn"), deadline: None };

    let summary = replication(&aws, &env, inv(json!({"source": "aws.events", "detail-type": "Scheduled Event"})))
        .await
        .expect("fanout");
    assert_eq!(summary["regions"], json!([SRC]));
    let invokes: Vec<_> = acct.recorded().into_iter().filter(|r| r.action == "Invoke").collect();
    assert_eq!(invokes.len(), 1);
    assert!(invokes[0].url.contains("/functions/replication-fn/invocations"));
    assert_eq!(invokes[0].headers["X-Amz-Invocation-Type"], "Event");
    assert_eq!(invokes[0].body, r#"{"region":"us-west-1"}"#);
    assert_eq!(acct.count("CopySnapshot", None), 0, "the fanout copies nothing");

    let summary = replication(&aws, &env, inv(json!({"region": SRC}))).await.expect("worker");
    assert_eq!(summary["copied"], 1);
    assert_eq!(acct.snapshots(DST).await.len(), 1);

    let err = replication(&aws, &env, inv(json!({"region": 12}))).await.unwrap_err();
    assert_eq!(err.kind(), "EbsSnapper.InvalidEvent");
}

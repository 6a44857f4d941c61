//! The function binaries run as Lambda runs them: each process polls a Runtime API, and the
//! Lambda `Invoke` endpoint hands asynchronous invocations to the worker processes.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::lambda::LambdaHarness;
use support::{backup_config, Account};

const R: &str = "us-east-1";
const WAIT: Duration = Duration::from_secs(60);

async fn deployed(config: &str) -> Account {
    let acct = Account::new().await;
    acct.create_table(R).await;
    acct.put_raw(R, "cfg", config).await;
    acct
}

fn emf_lines(logs: &[String]) -> Vec<Value> {
    logs.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|v| v.get("_aws").is_some()).collect()
}

#[tokio::test]
async fn fanout_invokes_the_worker_which_snapshots() {
    let acct = deployed(&backup_config("1 day", "")).await;
    acct.launch(R, &[("backup", "yes")]).await;
    acct.launch("eu-west-1", &[("backup", "yes")]).await;
    let mut lambda = LambdaHarness::new(&acct).await;
    lambda.start(&acct, "create", "create-snapshot", &[]).await;
    lambda.start(&acct, "fanout", "fanout-snapshot", &[("CREATE_SNAPSHOT_FUNCTION", "create")]).await;

    // The schedule's event.
    let scheduled =
        json!({"version": "0", "id": "x", "detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    let summary = lambda.call("fanout", scheduled).await.expect("fanout succeeds");
    assert_eq!(summary["regions"], json!(["eu-west-1", "us-east-1"]));

    let invokes = lambda.invokes();
    assert_eq!(invokes.len(), 2);
    assert!(invokes.iter().all(|i| i.function == "create" && i.invocation_type == "Event"));
    let done = lambda.wait_finished("create", 2, WAIT).await;
    for f in &done {
        let s = f.result.as_ref().expect("worker succeeds");
        assert_eq!(s["created"], 1, "{s}");
    }
    assert_eq!(acct.snapshots(R).await.len(), 1);
    assert_eq!(acct.snapshots("eu-west-1").await.len(), 1);

    // Metrics: one EMF line per region run.
    let emf = emf_lines(&lambda.logs("create"));
    assert_eq!(emf.len(), 2, "{:#?}", lambda.logs("create"));
    assert!(emf.iter().all(|m| m["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "EbsSnapper"
        && m["SnapshotsCreated"] == 1
        && m["function"] == "create"));
    // Every mutation is logged with its region and ids.
    let logs = lambda.logs("create").join("\n");
    assert!(
        logs.contains("created snapshot region=us-east-1 volume_id=vol-") && logs.contains("snapshot_id=snap-"),
        "{logs}"
    );
}

#[tokio::test]
async fn worker_event_forms_and_malformed_events() {
    let acct = deployed(&backup_config("1 day", "")).await;
    acct.launch(R, &[("backup", "yes")]).await;
    let mut lambda = LambdaHarness::new(&acct).await;
    lambda.start(&acct, "create", "create-snapshot", &[]).await;

    let ok = lambda.call("create", json!({"region": R})).await.expect("region event");
    assert_eq!(ok["created"], 1);
    let sns = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "{\"region\": \"us-east-1\"}"}}]});
    assert_eq!(lambda.call("create", sns).await.expect("SNS envelope")["not_due"], 1);
    assert_eq!(
        lambda.call("create", json!({"region": R, "continuation": 3})).await.expect("continuation")["created"],
        0
    );

    let before = acct.recorded().len();
    for (event, message) in [
        (json!({}), "invalid event: missing \"region\""),
        (json!({"region": "nowhere"}), "invalid event: \"region\": \"nowhere\" is not an AWS region name"),
        (json!({"Records": [{"Sns": {"Message": "not json"}}]}), "invalid event: Sns.Message is not JSON"),
        (json!({"region": ["us-east-1"]}), "invalid event: \"region\" must be a string, found a list"),
        (json!({"region": R, "continuation": 1.5}), "invalid event: \"continuation\" must be a whole number"),
    ] {
        let err = lambda.call("create", event.clone()).await.expect_err("malformed event is a function error");
        assert_eq!(err["errorType"], "EbsSnapper.InvalidEvent", "{event}: {err}");
        assert!(err["errorMessage"].as_str().unwrap().starts_with(message), "{event}: {err}");
    }
    assert_eq!(acct.recorded().len(), before, "malformed events make no AWS call");

    let err = lambda.call("create", json!({"region": "xx-nowhere-1"})).await.expect_err("unknown region");
    assert_eq!(
        err["errorMessage"],
        "invalid event: \"region\": \"xx-nowhere-1\" is not an enabled region of this account"
    );
    assert_eq!(acct.snapshots(R).await.len(), 1, "one snapshot in all");
    // The process survived every bad event.
    assert_eq!(lambda.call("create", json!({"region": R})).await.expect("still serving")["not_due"], 1);
}

#[tokio::test]
async fn short_deadline_defers_and_the_continuation_finishes_without_duplicates() {
    let acct = deployed(&backup_config("1 day", "")).await;
    for _ in 0..3 {
        let i = acct.launch(R, &[("backup", "yes")]).await;
        acct.attach_volume(R, &i, "/dev/xvdf", &[]).await;
    }
    let mut lambda = LambdaHarness::new(&acct).await;
    lambda.start(&acct, "create", "create-snapshot", &[]).await;

    // 30 s left is inside the 60 s reserve: no mutation may start, the rest is handed on.
    lambda.invoke("create", json!({"region": R}), Duration::from_secs(30));
    let done = lambda.wait_finished("create", 2, WAIT).await;
    let first = done[0].result.as_ref().expect("first invocation");
    assert_eq!(
        (first["created"].as_u64(), first["deferred"].as_u64(), first["continued"].as_bool()),
        (Some(0), Some(6), Some(true)),
        "{first}"
    );
    let invokes = lambda.invokes();
    assert_eq!(invokes.len(), 1);
    assert_eq!(invokes[0].payload, json!({"region": R, "continuation": 1}));
    assert_eq!(invokes[0].invocation_type, "Event");
    let second = done[1].result.as_ref().expect("continuation");
    assert_eq!(done[1].payload, json!({"region": R, "continuation": 1}));
    assert_eq!(
        (second["created"].as_u64(), second["deferred"].as_u64(), second["continued"].as_bool()),
        (Some(6), Some(0), Some(false))
    );

    let snaps = acct.snapshots(R).await;
    assert_eq!(snaps.len(), 6);
    let mut volumes: Vec<&str> = snaps.iter().map(|s| s.volume_id.as_str()).collect();
    volumes.sort();
    volumes.dedup();
    assert_eq!(volumes.len(), 6, "no volume got two snapshots");
}

#[tokio::test]
async fn continuation_stops_after_ten_hops() {
    let acct = deployed(&backup_config("1 day", "")).await;
    acct.launch(R, &[("backup", "yes")]).await;
    let mut lambda = LambdaHarness::new(&acct).await;
    lambda.start(&acct, "create", "create-snapshot", &[]).await;
    lambda.invoke("create", json!({"region": R, "continuation": 10}), Duration::from_secs(30));
    let done = lambda.wait_finished("create", 1, WAIT).await;
    let summary = done[0].result.as_ref().expect("a summary");
    assert_eq!(summary["deferred"], 1);
    assert_eq!(summary["continued"], false);
    assert!(summary["errors"][0].as_str().unwrap().contains("after 10 continuations"), "{summary}");
    assert!(lambda.invokes().is_empty(), "no eleventh hop");
}

#[tokio::test]
async fn every_function_serves_its_events() {
    let acct = deployed(
        r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "1 day", "minimum": 0, "frequency": "1 day"}}"#,
    )
    .await;
    let i = acct.launch(R, &[("backup", "yes")]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    acct.make_snapshot(R, &vol, &[("DeleteOn", "2000-01-01")]).await;
    acct.make_snapshot(R, &vol, &[("replication_dst_region", "us-west-2")]).await;
    let mut lambda = LambdaHarness::new(&acct).await;
    lambda.start(&acct, "clean", "clean-snapshot", &[]).await;
    lambda.start(&acct, "fanout-clean", "fanout-clean", &[("CLEAN_SNAPSHOT_FUNCTION", "clean")]).await;
    lambda.start(&acct, "replication", "replication", &[]).await;

    let fan = lambda.call("fanout-clean", json!({})).await.expect("fanout-clean");
    assert_eq!(fan["regions"], json!([R]));
    let cleaned = lambda.wait_finished("clean", 1, WAIT).await;
    assert_eq!(cleaned[0].result.as_ref().expect("clean worker")["deleted"], 1);

    let fan = lambda.call("replication", json!({"source": "aws.events"})).await.expect("replication fanout");
    assert_eq!(fan["regions"], json!([R]));
    let runs = lambda.wait_finished("replication", 2, WAIT).await;
    let worker = runs.iter().find(|r| r.payload.get("region").is_some()).expect("worker run");
    assert_eq!(worker.result.as_ref().expect("replication worker")["copied"], 1);
    assert_eq!(acct.snapshots("us-west-2").await.len(), 1);
    let emf = emf_lines(&lambda.logs("replication"));
    assert_eq!(emf.len(), 1);
    assert_eq!(emf[0]["SnapshotsCopied"], 1);
}

#[tokio::test]
async fn json_logs_when_asked() {
    let acct = deployed(&backup_config("1 day", "")).await;
    acct.launch(R, &[("backup", "yes")]).await;
    let mut lambda = LambdaHarness::new(&acct).await;
    lambda.start(&acct, "create", "create-snapshot", &[("AWS_LAMBDA_LOG_FORMAT", "JSON")]).await;
    lambda.call("create", json!({"region": R})).await.expect("success");
    let logs = lambda.logs("create");
    let created: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "created snapshot")
        .collect();
    assert_eq!(created.len(), 1, "{logs:#?}");
    assert_eq!(created[0]["fields"]["region"], R);
    assert!(created[0]["fields"]["volume_id"].as_str().unwrap().starts_with("vol-"));
}

//! The function binaries run as Lambda runs them: each process polls a Runtime API, and the
//! Lambda `Invoke` endpoint hands asynchronous invocations to the worker processes.

use crate::support;

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
    let emf: Vec<Value> =
        emf_lines(&lambda.logs("create")).into_iter().filter(|m| m.get("SnapshotsCreated").is_some()).collect();
    assert_eq!(emf.len(), 2, "{:#?}", lambda.logs("create"));
    assert!(emf.iter().all(|m| m["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "EbsSnapper"
        && m["SnapshotsCreated"] == 1
        && m["VolumesNever"] == 1
        && m["function"] == "create"
        && m["account"] == acct.id.as_str()
        && m["_aws"]["CloudWatchMetrics"][0]["Dimensions"][1] == json!(["function", "account", "region"])));
    // Each worker run that succeeded beats the heart the template alarms on when it stops
    // (SPEC §10.13: the workers' runs, not the fanout's, so one bad member does not silence it).
    let heartbeats: Vec<Value> =
        emf_lines(&lambda.logs("create")).into_iter().filter(|m| m.get("SnapshotRunHeartbeat").is_some()).collect();
    assert_eq!(heartbeats.len(), 2, "{:#?}", lambda.logs("create"));
    assert!(heartbeats.iter().all(|h| h["SnapshotRunHeartbeat"] == 1 && h["function"] == "create"), "{heartbeats:#?}");
    // The fanout's own line: the failures it could not hand to a worker, which an alarm watches.
    let fanout = emf_lines(&lambda.logs("fanout"));
    assert_eq!(fanout.len(), 1, "{:#?}", lambda.logs("fanout"));
    assert_eq!((fanout[0]["Failures"].as_u64(), fanout[0]["function"].as_str()), (Some(0), Some("fanout")));
    assert!(fanout[0].get("SnapshotRunHeartbeat").is_none(), "{:#?}", fanout[0]);
    // Each function says which build it is when it starts: a release's version and commit.
    for f in ["create", "fanout"] {
        let first = lambda.logs(f).into_iter().find(|l| !l.starts_with("[harness]")).unwrap_or_default();
        assert!(
            first.contains("ebs-snapper starting")
                && first.contains(&format!("version=\"{}\"", ebs_snapper_version::VERSION))
                && first.contains(&format!("commit=\"{}\"", ebs_snapper_version::COMMIT)),
            "{f}: {first}"
        );
    }
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
    // What is left after the last hop will not be done by this run: a volume that goes without
    // its snapshot is a failure, so the invocation fails and the Errors alarm fires.
    let error = done[0].result.as_ref().expect_err("the work left fails the invocation");
    assert_eq!(error["errorType"], "EbsSnapper.ActionsFailed", "{error}");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(message.contains("1 action(s) not started: time ran out in the last of 10 continuations"), "{message}");
    assert!(message.contains(r#""failed":1"#) && message.contains(r#""deferred":0"#), "{message}");
    assert!(message.contains(r#""continued":false"#), "{message}");
    assert!(lambda.invokes().is_empty(), "no eleventh hop");
    let emf = emf_lines(&lambda.logs("create"));
    assert_eq!(emf[0]["Failures"], 1, "the Failures metric counts it");
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
    // The worker's line, and the fanout's (its Failures, which an alarm watches).
    let emf = emf_lines(&lambda.logs("replication"));
    assert_eq!(emf.len(), 2, "{emf:#?}");
    let worker: Vec<&Value> = emf.iter().filter(|m| m.get("SnapshotsCopied").is_some()).collect();
    assert_eq!((worker.len(), worker[0]["SnapshotsCopied"].as_u64()), (1, Some(1)), "{emf:#?}");
    assert!(emf.iter().any(|m| m.get("SnapshotsCopied").is_none() && m["Failures"] == 0), "{emf:#?}");
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

/// The schedule's event as EventBridge really delivers it: with `account`, `time`, `resources`
/// and `region` (where the rule lives).
fn real_scheduled_event() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/events/scheduled/schedule-rule-us-east-1.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn every_function_takes_the_real_scheduled_event_as_every_region() {
    let acct = deployed(&backup_config("1 day", "")).await;
    acct.launch(R, &[("backup", "yes")]).await;
    acct.launch("eu-west-1", &[("backup", "yes")]).await;
    let vol = acct.volumes_of(R, &acct.launch(R, &[("other", "x")]).await).await[0].clone();
    acct.make_snapshot(R, &vol, &[("replication_dst_region", "eu-west-1")]).await;
    let mut lambda = LambdaHarness::new(&acct).await;
    for (name, binary) in [("create", "create-snapshot"), ("clean", "clean-snapshot"), ("replication", "replication")] {
        lambda.start(&acct, name, binary, &[]).await;
    }
    lambda.start(&acct, "fanout-snapshot", "fanout-snapshot", &[("CREATE_SNAPSHOT_FUNCTION", "create")]).await;
    lambda.start(&acct, "fanout-clean", "fanout-clean", &[("CLEAN_SNAPSHOT_FUNCTION", "clean")]).await;

    // Every function fans out: the event's region is where the rule lives, not a work order.
    let expected = [
        ("fanout-snapshot", "create", json!(["eu-west-1", "us-east-1"])),
        ("fanout-clean", "clean", json!(["eu-west-1", "us-east-1"])),
        ("create", "create", json!(["eu-west-1", "us-east-1"])),
        ("clean", "clean", json!(["eu-west-1", "us-east-1"])),
        ("replication", "replication", json!([R])),
    ];
    for (function, worker, regions) in expected {
        let before = lambda.invokes().len();
        let summary = lambda.call(function, real_scheduled_event()).await.unwrap_or_else(|e| panic!("{function}: {e}"));
        assert_eq!(summary["regions"], regions, "{function}: {summary}");
        let invokes = &lambda.invokes()[before..];
        assert!(
            invokes.len() == regions.as_array().unwrap().len() && invokes.iter().all(|i| i.function == worker),
            "{function} invoked {invokes:?}"
        );
    }
    // The worker invocations that followed did the work: one snapshot per backed-up volume.
    // (Each function's count includes the scheduled call made above.)
    let workers = [
        lambda.wait_finished("create", 5, WAIT).await,
        lambda.wait_finished("clean", 5, WAIT).await,
        lambda.wait_finished("replication", 2, WAIT).await,
    ];
    // Every run succeeded and failed nothing: the scheduled calls (fanouts) and the worker runs.
    for run in workers.iter().flatten() {
        let summary = run.result.as_ref().unwrap_or_else(|e| panic!("{}: {e}", run.function));
        assert_eq!(summary["failed"], 0, "{}: {summary}", run.function);
    }
    let worker_runs = workers.iter().flatten().filter(|r| r.payload.get("source").is_none()).count();
    assert_eq!(worker_runs, 4 + 4 + 1, "the workers the fanouts and the workers' own fan-outs invoked");
    assert_eq!(
        acct.snapshots("eu-west-1").await.iter().filter(|s| s.tag("replication_src_region").is_some()).count(),
        1
    );
    let ours = acct.snapshots(R).await.into_iter().filter(|s| s.tag("DeleteOn").is_some()).count();
    assert_eq!(ours, 1, "one volume in {R} is backed up, snapshotted once");
}

/// Lambda's deadline (SPEC §15): an invocation still running at its deadline is failed
/// (`Sandbox.Timedout`) and its process killed; the next invocation gets a new process. A harness
/// that took answers after the deadline would count work Lambda had thrown away.
#[tokio::test]
async fn an_invocation_still_running_at_its_deadline_is_killed_and_failed() {
    let acct = Account::new().await;
    let mut lambda = LambdaHarness::new(&acct).await;
    // Takes its invocation, then works for a minute without answering.
    let never_answers = "import os, time, urllib.request\n\
        api = os.environ['AWS_LAMBDA_RUNTIME_API']\n\
        urllib.request.urlopen(f'http://{api}/2018-06-01/runtime/invocation/next').read()\n\
        time.sleep(60)\n";
    lambda.start_program("slow", "python3", &["-c", never_answers]).await;
    let started = std::time::Instant::now();
    lambda.invoke("slow", json!({"region": R}), Duration::from_secs(1));
    let done = lambda.wait_finished("slow", 1, WAIT).await;
    assert!(started.elapsed() < Duration::from_secs(10), "failed at its deadline, not when it ended");
    let error = done[0].result.as_ref().expect_err("a timed-out invocation fails");
    assert_eq!(error["errorType"], "Sandbox.Timedout", "{error}");
    // A new process takes the next invocation (and is killed at its deadline in turn).
    lambda.invoke("slow", json!({"region": R}), Duration::from_secs(1));
    let done = lambda.wait_finished("slow", 2, WAIT).await;
    assert!(done.iter().all(|f| f.result.is_err()));
    assert_eq!(lambda.starts("slow"), 3, "{:#?}", lambda.logs("slow"));
}

//! The Lambda handlers called directly with events, against the AWS emulator. (The real
//! binaries under the Lambda runtime protocol are tested separately.)

use crate::support;

use ebs_snapper_lambda::handlers::{create_snapshot, fanout_snapshot, Environment, FunctionError, Invocation};
use serde_json::{json, Value};
use support::{backup_config, Account};

const R: &str = "us-east-1";

fn invocation(acct: &Account, name: &str, payload: Value) -> Invocation {
    Invocation { payload, function_arn: acct.function_arn(name), deadline: None }
}

async fn deployed() -> Account {
    let acct = Account::new().await;
    acct.create_table(R).await;
    acct
}

#[tokio::test]
async fn worker_snapshots_its_region_and_returns_a_summary() {
    let acct = deployed().await;
    acct.put_raw(R, "cfg", &backup_config("1 day", "")).await;
    acct.launch("us-west-2", &[("backup", "yes")]).await;
    let (aws, _role) = acct.aws_as(R, "create-snapshot", &[]).await;
    let env = Environment::default();

    let summary = create_snapshot(&aws, &env, invocation(&acct, "create", json!({"region": "us-west-2"})))
        .await
        .expect("success");
    assert_eq!(summary["region"], "us-west-2");
    assert_eq!(summary["created"], 1);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["continued"], false);
    assert_eq!(acct.snapshots("us-west-2").await.len(), 1);

    // The SNS envelope and the continuation form are accepted; a replay does no work twice.
    let sns = json!({"Records": [{"Sns": {"Message": "{\"region\": \"us-west-2\"}"}}]});
    let summary = create_snapshot(&aws, &env, invocation(&acct, "create", sns)).await.expect("success");
    assert_eq!((summary["created"].as_u64(), summary["not_due"].as_u64()), (Some(0), Some(1)));
    let cont = json!({"region": "us-west-2", "continuation": 2});
    let summary = create_snapshot(&aws, &env, invocation(&acct, "create", cont)).await.expect("success");
    assert_eq!(summary["created"], 0);
    assert_eq!(acct.snapshots("us-west-2").await.len(), 1);
}

#[tokio::test]
async fn malformed_events_are_function_errors_and_do_no_work() {
    let acct = deployed().await;
    acct.put_raw(R, "cfg", &backup_config("1 day", "")).await;
    acct.launch(R, &[("backup", "yes")]).await;
    let (aws, _role) = acct.aws_as(R, "create-snapshot", &[]).await;
    let env = Environment::default();
    let before = acct.recorded().len();
    for (event, expected) in [
        (json!({}), "invalid event: missing \"region\""),
        (json!({"region": 7}), "invalid event: \"region\" must be a string"),
        (json!({"Records": [{"Sns": {"Message": "{oops"}}]}), "invalid event: Sns.Message is not JSON"),
        (json!({"region": "us-east-1", "continuation": "x"}), "invalid event: \"continuation\" must be a whole number"),
    ] {
        let err = create_snapshot(&aws, &env, invocation(&acct, "create", event.clone())).await.unwrap_err();
        assert!(matches!(err, FunctionError::Event(_)), "{event}: {err}");
        assert!(err.to_string().starts_with(expected), "{event}: {err}");
        assert_eq!(err.kind(), "EbsSnapper.InvalidEvent");
    }
    assert_eq!(acct.recorded().len(), before, "a malformed event makes no AWS call");

    // A well-formed name of a region this account does not have: an error, nothing created.
    let err =
        create_snapshot(&aws, &env, invocation(&acct, "create", json!({"region": "xx-nowhere-1"}))).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid event: \"region\": \"xx-nowhere-1\" is not an enabled region of this account");
    assert_eq!(acct.count("CreateSnapshot", None), 0);
    assert!(acct.snapshots(R).await.is_empty());
}

#[tokio::test]
async fn fanout_switches_the_rule_and_invokes_one_worker_per_region() {
    let acct = deployed().await;
    acct.put_raw(R, "cfg", &backup_config("1 day", r#", "replication": "yes""#)).await;
    acct.launch(R, &[("backup", "yes")]).await;
    acct.launch("eu-west-1", &[("backup", "no")]).await;
    acct.create_function(R, "create-worker").await;
    acct.create_rule(R, "replication-schedule", false).await;
    let (aws, _role) = acct
        .aws_as(R, "fanout-snapshot", &[("create-worker", "create-snapshot"), ("replication-schedule", "replication")])
        .await;
    let env = Environment {
        create_snapshot_function: Some("create-worker".into()),
        replication_rule: Some("replication-schedule".into()),
        ..Default::default()
    };

    let summary = fanout_snapshot(&aws, &env, invocation(&acct, "fanout", json!({"source": "aws.events"})))
        .await
        .expect("success");
    assert_eq!(summary["regions"], json!(["eu-west-1", "us-east-1"]));
    assert_eq!(summary["replication_rule"], "enabled");
    assert!(acct.rule_enabled(R, "replication-schedule").await);

    let invokes: Vec<_> = acct.recorded().into_iter().filter(|r| r.action == "Invoke").collect();
    assert_eq!(invokes.len(), 2);
    let mut payloads: Vec<Value> = invokes.iter().map(|r| serde_json::from_str(&r.body).unwrap()).collect();
    payloads.sort_by_key(|p| p["region"].as_str().unwrap().to_string());
    assert_eq!(payloads, vec![json!({"region": "eu-west-1"}), json!({"region": "us-east-1"})]);
    for r in &invokes {
        assert!(r.url.contains("/functions/create-worker/invocations"), "{}", r.url);
        assert_eq!(r.headers["X-Amz-Invocation-Type"], "Event");
    }
    // Nothing was snapshotted by the fanout itself.
    assert_eq!(acct.count("CreateSnapshot", None), 0);

    // Without any configuration asking for replication, the rule is disabled again.
    acct.put_raw(R, "cfg", &backup_config("1 day", "")).await;
    let summary = fanout_snapshot(&aws, &env, invocation(&acct, "fanout", json!({}))).await.expect("success");
    assert_eq!(summary["replication_rule"], "disabled");
    assert!(!acct.rule_enabled(R, "replication-schedule").await);
    let summary = fanout_snapshot(&aws, &env, invocation(&acct, "fanout", json!({}))).await.expect("success");
    assert_eq!(summary["replication_rule"], "unchanged");
}

#[tokio::test]
async fn fanout_without_worker_setting_is_a_clear_error() {
    let acct = deployed().await;
    let (aws, _role) = acct.aws_as(R, "fanout-snapshot", &[]).await;
    let err = fanout_snapshot(&aws, &Environment::default(), invocation(&acct, "fanout", json!({}))).await.unwrap_err();
    assert_eq!(err.to_string(), "environment variable CREATE_SNAPSHOT_FUNCTION is not set");
}

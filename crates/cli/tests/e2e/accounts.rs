//! Member accounts (SPEC §13): configurations stored under another account id are run in that
//! account through its member role, installed there by `deploy --member`; the stricter AWS
//! (`scripts/testbed/strict_moto.py`) refuses `AssumeRole` unless the role exists and trusts the
//! caller with the right `ExternalId`, as AWS does.

use crate::support;
use support::scenes::{actions, check_clean_state, check_snapshot_state, clean_scene, fleet, run};

use std::collections::BTreeSet;

use ebs_snapper_lambda::handlers::{clean_snapshot, create_snapshot, fanout_snapshot, Environment, Invocation};
use serde_json::{json, Value};
use support::fault_proxy::{FaultPlan, FaultProxy, Strict};
use support::{backup_config, text, Account};

const R: &str = "us-east-1";
const WEST: &str = "us-west-2";

fn invocation(acct: &Account, name: &str, payload: Value) -> Invocation {
    Invocation { payload, function_arn: acct.function_arn(name), deadline: None }
}

/// A deployment (its table in `R`) and a member with the member role installed, trusting it.
async fn deployment_and_member() -> (Account, Account) {
    let deployment = Account::deployment().await;
    deployment.create_table(R).await;
    let member = Account::new().await;
    member.install_member_role(&deployment.id, &[]);
    (deployment, member)
}

/// The invocations the deployment made, as their payloads, sorted.
fn invoked(deployment: &Account) -> Vec<Value> {
    let mut payloads: Vec<Value> = deployment
        .recorded()
        .into_iter()
        .filter(|r| r.action == "Invoke")
        .map(|r| serde_json::from_str(&r.body).unwrap())
        .collect();
    payloads.sort_by_key(|p| p.to_string());
    payloads
}

#[tokio::test]
async fn a_member_is_protected_from_the_deployment_and_nothing_is_touched_in_the_deployment() {
    let (deployment, member) = deployment_and_member().await;
    // The same tags in both accounts: only the member's configuration exists.
    deployment.launch(R, &[("backup", "yes")]).await;
    member.launch(R, &[("backup", "yes")]).await;
    let out = deployment
        .cli()
        .args(["configure", "-a", &member.id, "-s", "cfg", &backup_config("1 day", "")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));

    let out = deployment.cli().args(["snapshot", "--account", &member.id, "-r", R]).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with(&format!("{} {R}: created 1,", member.id)), "{stdout}");
    let snaps = member.snapshots(R).await;
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    assert_eq!(snaps[0].tag("ebs-snapper:config"), Some("cfg"));
    assert!(deployment.snapshots(R).await.is_empty(), "nothing is snapshotted in the deployment");
    assert_eq!(deployment.count("CreateSnapshot", None), 0);
    // The lease was the member's (per account, job and region), in the deployment's table.
    let lease_writes = deployment
        .recorded()
        .into_iter()
        .filter(|r| r.action == "PutItem" && r.body.contains(&format!("lease#{}", member.id)))
        .count();
    assert!(lease_writes > 0, "the member's lease is written in the deployment's table");

    // The status report reads the member through its role.
    let out = deployment.cli().args(["status", "--account", &member.id, "-r", R, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let volumes = doc["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 1, "{doc:#}");
    assert_eq!(volumes[0]["account"], member.id.as_str());
    assert_eq!(volumes[0]["verdict"], "ok", "{doc:#}");

    // The functions: the fanout lists the member in the table and invokes one worker per
    // (account, region); the deployment itself has no configuration and gets no worker.
    member.launch(WEST, &[("backup", "yes")]).await;
    deployment.create_function(R, "create-worker").await;
    let env = Environment { create_snapshot_function: Some("create-worker".into()), ..Default::default() };
    let (aws, _role) = deployment.aws_as(R, "fanout-snapshot", &[("create-worker", "create-snapshot")]).await;
    let summary = fanout_snapshot(&aws, &env, invocation(&deployment, "fanout", json!({}))).await.expect("success");
    assert_eq!(summary["regions"], json!([]), "{summary:#}");
    assert_eq!(summary["accounts"][0]["account"], member.id.as_str(), "{summary:#}");
    assert_eq!(summary["accounts"][0]["regions"], json!([R, WEST]), "{summary:#}");
    assert_eq!(
        invoked(&deployment),
        vec![json!({"account": member.id, "region": R}), json!({"account": member.id, "region": WEST})]
    );

    // The worker given such an event works in the member.
    let (aws, _role) = deployment.aws_as(R, "create-snapshot", &[]).await;
    let event = json!({"account": member.id, "region": WEST});
    let summary = create_snapshot(&aws, &env, invocation(&deployment, "create", event)).await.expect("success");
    assert_eq!(summary["account"], member.id.as_str());
    assert_eq!((summary["region"].as_str(), summary["created"].as_u64()), (Some(WEST), Some(1)));
    assert_eq!(member.snapshots(WEST).await.len(), 1);
    assert!(deployment.snapshots(WEST).await.is_empty());
    let event = json!({"account": member.id, "region": R});
    let summary = create_snapshot(&aws, &env, invocation(&deployment, "create", event)).await.expect("success");
    assert_eq!((summary["created"].as_u64(), summary["not_due"].as_u64()), (Some(0), Some(1)), "{summary:#}");
    assert_eq!(deployment.count("CreateSnapshot", None), 0);
}

#[tokio::test]
async fn an_unreachable_member_fails_alone() {
    let deployment = Account::deployment().await;
    deployment.create_table(R).await;
    let good = Account::new().await;
    good.install_member_role(&deployment.id, &[]);
    // No member role at all, and a member role trusting another deployment.
    let bare = Account::new().await;
    let elsewhere = Account::new().await;
    let other = Account::deployment().await;
    elsewhere.install_member_role(&other.id, &[]);
    for acct in [&deployment, &good, &bare, &elsewhere] {
        acct.launch(R, &[("backup", "yes")]).await;
        deployment.put_raw_for(R, &acct.id, "cfg", &backup_config("1 day", "")).await;
    }

    let out = deployment.cli().args(["snapshot", "--all-accounts", "-r", R]).output().unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    for acct in [&deployment, &good] {
        assert!(stdout.contains(&format!("{} {R}: created 1,", acct.id)), "{stdout}");
        assert_eq!(acct.snapshots(R).await.len(), 1);
    }
    for acct in [&bare, &elsewhere] {
        let line = format!(
            "error: account {0}: account {0} could not be reached through role arn:aws:iam::{0}:role/ebs-snapper-member",
            acct.id
        );
        assert!(stderr.contains(&line), "{stderr}");
        assert!(acct.snapshots(R).await.is_empty());
    }
    assert!(stderr.contains("AccessDenied"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // The fanout: workers for the others, and the two named. It succeeds (SPEC §10.13): an
    // error would make Lambda run it, and every worker it invoked, twice more for one bad
    // member; its Failures metric carries the two to an alarm instead.
    deployment.create_function(R, "create-worker").await;
    let env = Environment { create_snapshot_function: Some("create-worker".into()), ..Default::default() };
    let (aws, _role) = deployment.aws_as(R, "fanout-snapshot", &[("create-worker", "create-snapshot")]).await;
    let summary = fanout_snapshot(&aws, &env, invocation(&deployment, "fanout", json!({})))
        .await
        .expect("a fanout that invoked workers succeeds");
    assert_eq!(summary["failed"], 2, "{summary:#}");
    assert_eq!(summary["regions"], json!([R]), "the deployment's own account: {summary:#}");
    let mut expected = vec![json!({"region": R}), json!({"account": good.id, "region": R})];
    expected.sort_by_key(|p| p.to_string());
    assert_eq!(invoked(&deployment), expected);
    let errors = summary["errors"].to_string();
    assert!(errors.contains(&bare.id) && errors.contains(&elsewhere.id), "{errors}");

    // The worker for an unreachable member: one clear error, nothing done.
    let (aws, _role) = deployment.aws_as(R, "clean-snapshot", &[]).await;
    let event = json!({"account": bare.id, "region": R});
    let err = clean_snapshot(&aws, &env, invocation(&deployment, "clean", event)).await.unwrap_err();
    assert_eq!(err.kind(), "EbsSnapper.AwsError");
    assert!(err.to_string().starts_with(&format!("account {} could not be reached", bare.id)), "{err}");

    // configure -c names each member that cannot be reached, and checks the others.
    let out = deployment.cli().args(["configure", "-c"]).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for acct in [&bare, &elsewhere] {
        assert!(stdout.contains(&format!("{0}: account {0} could not be reached", acct.id)), "{stdout}");
    }
    assert!(!stdout.contains(&format!("{0}: account {0} could not", good.id)), "{stdout}");
    assert!(!stdout.contains(&format!("{0}: account {0} could not", deployment.id)), "{stdout}");
}

#[tokio::test]
async fn operators_reach_a_member_only_when_the_member_trusts_their_role() {
    let deployment = Account::deployment().await;
    deployment.create_table(R).await;
    let operator = deployment.other_role("operator").await;
    let member = Account::new().await;
    member.install_member_role(&deployment.id, &[]);
    member.launch(R, &[("backup", "yes")]).await;
    deployment.put_raw_for(R, &member.id, "cfg", &backup_config("1 day", "")).await;

    let out = operator.cli().args(["status", "--account", &member.id, "-r", R]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("could not be reached"), "{}", text(&out.stderr));

    let operators = format!("OperatorRoleArns={}", deployment.role_arn("operator"));
    member.install_member_role(&deployment.id, &[&operators]);
    let out = operator.cli().args(["snapshot", "--account", &member.id, "-r", R]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(member.snapshots(R).await.len(), 1);
}

#[tokio::test]
async fn bad_accounts_are_refused_before_any_call() {
    let deployment = Account::deployment().await;
    deployment.create_table(R).await;
    deployment.launch(R, &[("backup", "yes")]).await;
    deployment.put_raw(R, "cfg", &backup_config("1 day", "")).await;
    let before = deployment.recorded().len();
    for (args, expected) in [
        (vec!["snapshot", "--account", "1234"], "--account \"1234\" is not an AWS account id (12 digits)"),
        (vec!["clean", "-a", "12345678901x"], "--account \"12345678901x\" is not an AWS account id (12 digits)"),
        (vec!["status", "--account", "1234567890123"], "is not an AWS account id (12 digits)"),
        (vec!["snapshot", "--account", "123456789012", "--all-accounts"], "cannot be used with"),
        (
            vec!["replication", "--all-accounts", "--member-role", "no spaces"],
            "--member-role \"no spaces\" is not an IAM role name",
        ),
    ] {
        let out = deployment.cli().args(&args).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let (aws, _role) = deployment.aws_as(R, "create-snapshot", &[]).await;
    for event in [json!({"account": "1234", "region": R}), json!({"account": 123456789012u64, "region": R})] {
        let err = create_snapshot(&aws, &Environment::default(), invocation(&deployment, "create", event.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "EbsSnapper.InvalidEvent", "{event}: {err}");
        assert!(err.to_string().contains("\"account\""), "{err}");
    }
    assert_eq!(deployment.recorded().len(), before, "bad input makes no AWS call");
    assert!(deployment.snapshots(R).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_snapshots_and_clean_up_keep_the_invariants_under_twenty_percent_faults() {
    let (deployment, member) = deployment_and_member().await;
    let f = fleet(&member, &deployment, 5, "1 day").await;
    let proxy = FaultProxy::start(FaultPlan::every_call(17, 0.2)).await;
    proxy.set_strict(Strict::on());

    for _ in 0..2 {
        let (code, doc, err) = run(&deployment, &proxy, "snapshot", &["--account", &member.id, "--region", R]);
        let report = &doc["accounts"][0];
        assert_eq!(report["account"], member.id.as_str(), "{doc:#}");
        let failed = actions(report, R, "failed");
        assert_eq!(code, if failed.is_empty() { 0 } else { 1 }, "{err}");
        check_snapshot_state(&f, &member.snapshots(R).await, &failed);
    }
    assert!(proxy.faulted() > 0, "the proxy injected nothing");
    assert!(deployment.snapshots(R).await.is_empty());

    // The clean job in another member, its configuration in the same deployment table.
    let other = Account::new().await;
    other.install_member_role(&deployment.id, &[]);
    let scene = clean_scene(&other, &deployment).await;
    for _ in 0..2 {
        let (code, doc, err) = run(&deployment, &proxy, "clean", &["--account", &other.id, "--region", R]);
        let failed = actions(&doc["accounts"][0], R, "failed");
        assert_eq!(code, if failed.is_empty() { 0 } else { 1 }, "{err}");
        let remaining: BTreeSet<String> = other.snapshots(R).await.into_iter().map(|s| s.id).collect();
        check_clean_state(&scene, &remaining, &failed);
    }
    assert_eq!(deployment.count("DeleteSnapshot", None), 0, "nothing is deleted with the deployment's credentials");
}

/// `configure -c` without `-a` checks every member the table names; when the table's accounts
/// cannot be listed (a refused `Scan`), it says so instead of quietly checking the caller alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_check_says_when_the_member_accounts_cannot_be_listed() {
    let (deployment, member) = deployment_and_member().await;
    deployment.put_raw(R, "cfg", &backup_config("1 day", "")).await;
    deployment.put_raw_for(R, &member.id, "cfg", &backup_config("1 day", "")).await;
    let proxy = FaultProxy::start(FaultPlan::every_call(1, 1.0).only_operations(&["Scan"])).await;

    let out = deployment.cli().env("AWS_ENDPOINT_URL", proxy.endpoint()).args(["configure", "-c"]).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("{0}: could not list the member accounts in the table (Scan", deployment.id))
            && stdout.contains(&format!("only account {} was checked", deployment.id)),
        "{stdout}"
    );
    assert!(!stdout.contains(&member.id), "the member was not listed, so not checked: {stdout}");
}

/// A member's worker run, as Lambda runs it, reports its metrics under the member's account id
/// (the EMF `account` dimension), so that a member's failures are a series of their own.
#[tokio::test]
async fn a_member_worker_reports_its_metrics_under_the_member_account() {
    let (deployment, member) = deployment_and_member().await;
    member.launch(R, &[("backup", "yes")]).await;
    deployment.put_raw_for(R, &member.id, "cfg", &backup_config("1 day", "")).await;
    let mut lambda = support::lambda::LambdaHarness::new(&deployment).await;
    lambda.start(&deployment, "create", "create-snapshot", &[]).await;
    let summary = lambda.call("create", json!({"account": member.id, "region": R})).await.expect("the member's run");
    assert_eq!((summary["account"].as_str(), summary["created"].as_u64()), (Some(member.id.as_str()), Some(1)));
    let metrics: Vec<Value> = lambda
        .logs("create")
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("SnapshotsCreated").is_some())
        .collect();
    assert_eq!(metrics.len(), 1, "{:#?}", lambda.logs("create"));
    assert_eq!(metrics[0]["account"], member.id.as_str(), "{:#?}", metrics[0]);
    assert_ne!(metrics[0]["account"], deployment.id.as_str());
    assert_eq!(member.snapshots(R).await.len(), 1);
}

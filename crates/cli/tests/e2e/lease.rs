//! The region lease (SPEC §10.7): where it is kept, and what a run does while another holds it.
//! Concurrent and killed runs under faults are in `faults.rs`.

use crate::support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use ebs_snapper_lambda::handlers::{create_snapshot, Environment, Invocation};
use serde_json::json;
use support::{backup_config, text, Account, TABLE};

const R: &str = "us-east-1";

fn epoch(offset: i64) -> String {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 + offset).to_string()
}

/// Plants a lease on `job/region` held by someone else until `expires_in` seconds from now.
async fn plant_lease(acct: &Account, job_region: &str, expires_in: i64) {
    acct.dynamodb(R)
        .await
        .put_item()
        .table_name(TABLE)
        .item("aws_account_id", AttributeValue::S(format!("lease#{}", acct.id)))
        .item("id", AttributeValue::S(job_region.to_string()))
        .item("owner", AttributeValue::S("someone-else".into()))
        .item("holder", AttributeValue::S("the other run".into()))
        .item("expires_at", AttributeValue::N(epoch(expires_in)))
        .send()
        .await
        .unwrap();
}

async fn lease_items(acct: &Account) -> usize {
    let out = acct
        .dynamodb(R)
        .await
        .query()
        .table_name(TABLE)
        .key_condition_expression("aws_account_id = :a")
        .expression_attribute_values(":a", AttributeValue::S(format!("lease#{}", acct.id)))
        .send()
        .await
        .unwrap();
    out.count() as usize
}

/// An account with the table, a daily configuration and one instance it matches.
async fn deployed_with_an_instance() -> Account {
    let acct = Account::new().await;
    acct.create_table(R).await;
    acct.put_raw(R, "daily", &backup_config("1 day", "")).await;
    acct.launch(R, &[("backup", "yes")]).await;
    acct
}

#[tokio::test]
async fn a_run_takes_and_gives_back_its_lease_which_configure_never_lists() {
    let acct = deployed_with_an_instance().await;
    let (puts, deletes) = (acct.count("PutItem", None), acct.count("DeleteItem", None));
    let out = acct.cli().args(["snapshot", "--region", R]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(acct.count("PutItem", None) - puts, 1, "the lease was taken once");
    assert_eq!(acct.count("DeleteItem", None) - deletes, 1, "and given back");
    assert_eq!(lease_items(&acct).await, 0);

    // A lease item (here a stale one) is not a configuration.
    plant_lease(&acct, "snapshot/us-west-2", -5).await;
    let out = acct.cli().args(["configure", "-l"]).output().unwrap();
    assert_eq!(text(&out.stdout), format!("aws_account_id,id\n{},daily\n", acct.id));

    // Dry runs take no lease.
    let before = acct.count("PutItem", None);
    let out = acct.cli().args(["snapshot", "--region", R, "--dry-run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(acct.count("PutItem", None), before);
}

#[tokio::test]
async fn a_worker_whose_region_stays_held_does_nothing_and_says_so() {
    let acct = deployed_with_an_instance().await;
    plant_lease(&acct, "snapshot/us-east-1", 600).await;
    let (aws, _role) = acct.aws_as(R, "create-snapshot", &[]).await;
    // A deadline 62 s away leaves a budget of 2 s: the wait for the lease.
    let inv = Invocation {
        payload: json!({"region": R}),
        function_arn: acct.function_arn("create"),
        deadline: Some(SystemTime::now() + Duration::from_secs(62)),
    };
    let summary = create_snapshot(&aws, &Environment::default(), inv).await.expect("not a failure");
    assert_eq!(summary["created"], 0);
    let warnings = summary["warnings"].to_string();
    assert!(warnings.contains("another snapshot run (the other run) held region us-east-1"), "{warnings}");
    assert!(acct.snapshots(R).await.is_empty());
    assert_eq!(acct.count("DescribeInstances", Some(R)), 0, "nothing was even listed");
}

#[tokio::test]
async fn a_lease_left_by_a_run_that_died_is_taken_over_after_one_period() {
    let acct = deployed_with_an_instance().await;
    // An item as an earlier version wrote it (no version, no hold): held for one period.
    plant_lease(&acct, "snapshot/us-east-1", -1).await;
    let started = Instant::now();
    // Fifteen seconds: the run renews its own lease every third of the period and stops its
    // mutations when a renewal is late; with the end-to-end tests running six at once, one
    // emulator call can take seconds, and periods of 3 s and 6 s were seen missed.
    let out = acct.cli().env("EBS_SNAPPER_LEASE_SECONDS", "15").args(["snapshot", "--region", R]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(started.elapsed() >= Duration::from_secs(15), "waited one period: {:?}", started.elapsed());
    assert_eq!(acct.snapshots(R).await.len(), 1);
    assert_eq!(lease_items(&acct).await, 0);
}

#[tokio::test]
async fn a_lease_is_taken_over_by_the_takers_own_clock_never_by_the_holders_expiry() {
    let acct = deployed_with_an_instance().await;
    // A holder whose clock runs 90 s behind ours writes an expiry that is already past by
    // ours. Only the version standing unchanged for its hold (4 s, by our clock) frees it.
    acct.dynamodb(R)
        .await
        .put_item()
        .table_name(TABLE)
        .item("aws_account_id", AttributeValue::S(format!("lease#{}", acct.id)))
        .item("id", AttributeValue::S("snapshot/us-east-1".into()))
        .item("owner", AttributeValue::S("someone-else".into()))
        .item("holder", AttributeValue::S("the other run".into()))
        .item("version", AttributeValue::S("v1".into()))
        .item("hold_ms", AttributeValue::N("4000".into()))
        .item("expires_at", AttributeValue::N(epoch(-90)))
        .send()
        .await
        .unwrap();
    let started = Instant::now();
    let out = acct.cli().args(["snapshot", "--region", R]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(started.elapsed() >= Duration::from_secs(4), "took it after {:?}", started.elapsed());
    assert_eq!(acct.snapshots(R).await.len(), 1);
}

#[tokio::test]
async fn no_attempt_of_a_mutation_is_sent_once_the_lease_ran_out() {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    use ebs_snapper_aws::executor::delete_snapshot;
    use ebs_snapper_aws::TimeBudget;
    use ebs_snapper_core::Executed;

    let acct = Account::new().await;
    let i = acct.launch(R, &[]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    let snap = acct.make_snapshot(R, &vol, &[("DeleteOn", "2000-01-01")]).await;
    let ec2 = acct.ec2(R).await;
    // A lease safe until a second ago, and no grace.
    let past = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64 - 1000;
    let budget = TimeBudget::unlimited().with_lease(Arc::new(AtomicU64::new(past)), Duration::ZERO);
    let outcome = delete_snapshot(&ec2, R, &snap, &budget).await;
    assert!(matches!(outcome, Executed::Deferred), "{outcome:?}");
    assert_eq!(acct.count("DeleteSnapshot", None), 0, "nothing reached AWS");
    assert_eq!(acct.snapshots(R).await.len(), 1);

    // Within the lease, the same call goes through.
    let future = past + 120_000;
    let budget = TimeBudget::unlimited().with_lease(Arc::new(AtomicU64::new(future)), Duration::ZERO);
    assert!(matches!(delete_snapshot(&ec2, R, &snap, &budget).await, Executed::Done(_)));
    assert!(acct.snapshots(R).await.is_empty());
}

/// "Before every attempt, retries included": a retry the SDK holds back (here by throttling)
/// until after the lease's safe window is never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_held_back_past_the_lease_is_never_sent() {
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    use ebs_snapper_aws::executor::delete_snapshot;
    use ebs_snapper_aws::TimeBudget;
    use ebs_snapper_core::Executed;
    use support::fault_proxy::{Fault, FaultPlan, FaultProxy};

    let acct = Account::new().await;
    let i = acct.launch(R, &[]).await;
    let vol = acct.volumes_of(R, &i).await[0].clone();
    let snap = acct.make_snapshot(R, &vol, &[("DeleteOn", "2000-01-01")]).await;
    // Every attempt is throttled, so the SDK keeps retrying with growing, jittered backoff.
    let proxy =
        FaultProxy::start(FaultPlan::every_call(1, 1.0).only_operations(&["DeleteSnapshot"]).kinds(&[Fault::Throttle]))
            .await;
    let proxy_started = Instant::now();
    let retry = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(12)
        .with_initial_backoff(Duration::from_millis(400))
        .with_max_backoff(Duration::from_secs(1));
    let ec2 = aws_sdk_ec2::Client::new(&acct.sdk_via(R, &proxy.endpoint(), retry).await);
    // The lease is safe for one more second, with no grace.
    let window = Duration::from_secs(1);
    let offset = proxy_started.elapsed();
    let until = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64 + window.as_millis() as u64;
    let budget = TimeBudget::unlimited().with_lease(Arc::new(AtomicU64::new(until)), Duration::ZERO);

    let outcome = delete_snapshot(&ec2, R, &snap, &budget).await;
    assert!(matches!(outcome, Executed::Deferred), "{outcome:?}");
    let attempts: Vec<Duration> =
        proxy.seen().iter().filter(|s| s.operation == "DeleteSnapshot").map(|s| s.at).collect();
    assert!(attempts.len() >= 2, "the first attempt and a retry went out within the lease: {attempts:?}");
    // (times from the proxy's start; 100 ms for the gap between its start and ours)
    let end = offset + window + Duration::from_millis(100);
    assert!(attempts.iter().all(|at| *at < end), "an attempt was sent after the lease: {attempts:?}");
    assert_eq!(acct.snapshots(R).await.len(), 1, "the snapshot is still there");
}

/// A lease whose holder let it stand for its hold, then released it (deleted the item) just
/// before the taker's conditional write on that version: the taker takes the now free lease.
/// (It used to retry the write on the vanished version at once, forever, never sleeping and
/// never reaching its give-up time: a run that hung until Lambda killed it.)
#[tokio::test]
async fn a_lease_released_after_its_hold_stood_is_taken_not_waited_on_forever() {
    use ebs_snapper_aws::lease::{Lease, Taken};
    let acct = Account::new().await;
    acct.create_table(R).await;
    let ddb = acct.dynamodb(R).await;
    let key = |put: aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder| {
        put.table_name(TABLE)
            .item("aws_account_id", AttributeValue::S(format!("lease#{}", acct.id)))
            .item("id", AttributeValue::S(format!("snapshot/{R}")))
    };
    key(ddb.put_item())
        .item("owner", AttributeValue::S("someone-else".into()))
        .item("holder", AttributeValue::S("the other run".into()))
        .item("version", AttributeValue::S("v1".into()))
        .item("hold_ms", AttributeValue::N("100".into()))
        .item("expires_at", AttributeValue::N(epoch(60)))
        .send()
        .await
        .unwrap();
    let scope = ebs_snapper_aws::LeaseScope {
        table: acct.aws(R).await,
        table_region: R.to_string(),
        account: acct.id.clone(),
        holder: "test".to_string(),
    };
    let taking =
        tokio::spawn(
            async move { Lease::take(&scope, ebs_snapper_core::Job::Snapshot, R, Duration::from_secs(20)).await },
        );
    // The taker found it held (its conditional PutItem refused: the emulator recorded it after
    // the one that planted the lease) and now waits a poll (2 s at the default period); the
    // holder releases it meanwhile, after its hold of 100 ms stood. Waiting for the refused write
    // rather than a fixed time: on a loaded machine the release could land first and the test
    // would pass without reaching the case it guards.
    let refused_write = tokio::time::Instant::now() + Duration::from_secs(20);
    while acct.count("PutItem", None) < 2 {
        assert!(tokio::time::Instant::now() < refused_write, "the taker never tried to write the lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ddb.delete_item()
        .table_name(TABLE)
        .key("aws_account_id", AttributeValue::S(format!("lease#{}", acct.id)))
        .key("id", AttributeValue::S(format!("snapshot/{R}")))
        .send()
        .await
        .unwrap();
    // A liveness bound, far above the few seconds taking a free lease needs.
    let taken = tokio::time::timeout(Duration::from_secs(60), taking).await;
    let taken = taken.expect("the taker never came back: it spun on the vanished version").unwrap();
    assert!(matches!(taken, Taken::Held(_)), "{taken:?}");
}

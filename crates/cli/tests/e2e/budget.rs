//! AWS call budget: seeds N instances with two volumes each and a few snapshots per volume, runs
//! `snapshot` then `clean` for one region, and prints the calls per operation beside the minimum:
//! ceil(instances/1000) instance pages per configuration + ceil(volumes/200) volume batches +
//! snapshot pages + one call per mutation the scene needs. Fails if the mutations are not
//! exactly those, or EC2 calls exceed 1.1 x the minimum. CI runs it at 10 instances;
//! scripts/bench.sh at 10, 50 and 200 (`BUDGET_SIZES`). The other tests here are benchmarks that
//! only scripts/bench.sh runs.

use crate::support;

use support::{date, text, Account};

const R: &str = "us-east-1";

#[tokio::test]
async fn call_budget() {
    println!("| job | instances | volumes | DescribeInstances | DescribeVolumes | DescribeSnapshots | mutations | EC2 calls | minimum | ratio | fixed (STS, Query, DescribeRegions) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let sizes: Vec<usize> = std::env::var("BUDGET_SIZES")
        .map(|s| s.split(',').map(|n| n.trim().parse().expect("BUDGET_SIZES: numbers")).collect())
        .unwrap_or_else(|_| vec![10]);
    for n in sizes {
        let acct = Account::new().await;
        acct.create_table(R).await;
        acct.put_raw(R, "cfg", r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "7 days", "minimum": 1, "frequency": "1 day"}}"#).await;
        for _ in 0..n {
            let i = acct.launch(R, &[("backup", "yes")]).await;
            let data = acct.attach_volume(R, &i, "/dev/xvdf", &[]).await;
            // Two expired snapshots on the data volume: clean deletes one, keeps the minimum.
            acct.make_snapshot(R, &data, &[("DeleteOn", &date(-3))]).await;
            acct.make_snapshot(R, &data, &[("DeleteOn", &date(-2))]).await;
        }
        let volumes = 2 * n;
        for job in ["snapshot", "clean"] {
            let before = acct.recorded().len();
            let out = acct.cli().args([job, "--region", R, "--json"]).output().unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            let calls: Vec<String> = acct.recorded().into_iter().skip(before).map(|r| r.action).collect();
            let count = |a: &str| calls.iter().filter(|c| c.as_str() == a).count();
            let mutations = count("CreateSnapshot") + count("DeleteSnapshot");
            let (di, dv, ds) = (count("DescribeInstances"), count("DescribeVolumes"), count("DescribeSnapshots"));
            let ec2 = di + dv + ds + mutations;
            let instance_pages = n.div_ceil(1000);
            // What the scene needs, not what the run did (duplicates must not raise the bar):
            // the snapshot job snapshots each root volume (the data volumes' planted snapshots
            // are a minute old, so not due); the clean job deletes one of each data volume's two
            // expired snapshots (minimum 1).
            let needed = n;
            assert_eq!(mutations, needed, "{job} with {n} instances: {calls:?}\n{}", text(&out.stdout));
            let minimum = if job == "snapshot" {
                // volumes, their snapshots, the check that the new ones are listed, the creates
                instance_pages + volumes.div_ceil(200) + volumes.div_ceil(200) + needed.div_ceil(200) + needed
            } else {
                // instances + DeleteOn snapshot pages (2 planted per instance, 1 new) + deletions
                instance_pages + (3 * n).div_ceil(1000) + needed
            };
            let fixed = format!("{}, {}, {}", count("GetCallerIdentity"), count("Query"), count("DescribeRegions"));
            let ratio = ec2 as f64 / minimum as f64;
            println!("| {job} | {n} | {volumes} | {di} | {dv} | {ds} | {mutations} | {ec2} | {minimum} | {ratio:.2} | {fixed} |");
            assert!(ratio <= 1.1, "{job} with {n} instances made {ec2} EC2 calls, minimum {minimum}: {calls:?}");
        }
    }
}

/// The fanout over many accounts (SPEC §13, a benchmark run by scripts/bench.sh): `ACCOUNTS`
/// member accounts (default 50), each with an instance in four regions, reached through a member
/// role whose trust is member.json's; one snapshot fanout, in-process. Prints the wall time and
/// the calls per account and per (account, region), and fails if one worker per (account,
/// region) was not invoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench.sh runs it"]
async fn fanout_over_many_accounts() {
    use ebs_snapper_lambda::handlers::{fanout_snapshot, Environment, Invocation};
    use futures::stream::{self, StreamExt};

    const REGIONS: [&str; 4] = ["us-east-1", "us-west-2", "eu-west-1", "ap-southeast-2"];
    let accounts: usize = std::env::var("ACCOUNTS").ok().and_then(|n| n.parse().ok()).unwrap_or(50);
    let deployment = Account::deployment().await;
    deployment.create_table(R).await;
    deployment.create_function(R, "create-worker").await;
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{}:root", deployment.id)},
            "Action": "sts:AssumeRole",
            "Condition": {
                "StringEquals": {"sts:ExternalId": deployment.id},
                "ArnLike": {"aws:PrincipalArn": format!("arn:aws:iam::{0}:role/ebs-snapper-{0}/*", deployment.id)}
            }
        }]
    })
    .to_string();
    let trust = &trust;
    let deployment_ref = &deployment;
    let _members: Vec<Account> = stream::iter(0..accounts)
        .map(|_| async move {
            let member = Account::new().await;
            member.create_role("ebs-snapper-member", trust).await;
            for region in REGIONS {
                member.launch(region, &[("backup", "yes")]).await;
            }
            deployment_ref.put_raw_for(R, &member.id, "cfg", &support::backup_config("1 day", "")).await;
            member
        })
        .buffer_unordered(8)
        .collect()
        .await;

    let env = Environment { create_snapshot_function: Some("create-worker".into()), ..Default::default() };
    let (aws, _role) = deployment.aws_as(R, "fanout-snapshot", &[("create-worker", "create-snapshot")]).await;
    let before = support::all_recorded().len();
    let started = std::time::Instant::now();
    let invocation =
        Invocation { payload: serde_json::json!({}), function_arn: deployment.function_arn("fanout"), deadline: None };
    let summary = fanout_snapshot(&aws, &env, invocation).await.expect("the fanout succeeds");
    let wall = started.elapsed();
    let calls: Vec<String> = support::all_recorded().into_iter().skip(before).map(|r| r.action).collect();
    let count = |a: &str| calls.iter().filter(|c| c.as_str() == a).count();
    let worked: usize =
        summary["accounts"].as_array().unwrap().iter().map(|a| a["regions"].as_array().unwrap().len()).sum();
    assert_eq!(worked, accounts * REGIONS.len(), "{summary:#}");
    assert_eq!(count("Invoke"), accounts * REGIONS.len());
    let pairs = (accounts * REGIONS.len()) as f64;
    println!("| accounts | regions each | wall (s) | Scan | Query | AssumeRole | DescribeRegions | DescribeInstances | Invoke | all calls | per account | per (account, region) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {accounts} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} |",
        REGIONS.len(),
        wall.as_secs_f64(),
        count("Scan"),
        count("Query"),
        count("AssumeRole"),
        count("DescribeRegions"),
        count("DescribeInstances"),
        count("Invoke"),
        calls.len(),
        calls.len() as f64 / accounts as f64,
        calls.len() as f64 / pairs,
    );
}

/// A region behind EC2's token bucket (the "performance at real scale" issue; a benchmark run by
/// scripts/bench.sh), worked as Lambda works it: each worker binary runs under the Lambda
/// harness with a 900 s deadline, defers what it cannot start in time and invokes its own
/// continuation, so the hops are counted, not estimated. Scenarios (SCENARIOS, default all
/// three, run side by side, each in an account and behind buckets of its own):
/// - `snapshot`: VOLUMES due volumes (default 1,000; one per instance) behind a `CreateSnapshot`
///   bucket of BUCKET tokens (100) refilled at REFILL per second (5);
/// - `sets`: the same number of volumes as crash-consistent sets (`consistency: "instance"`, two
///   volumes per instance, one `CreateSnapshots` token each);
/// - `clean`: VOLUMES volumes with EXPIRED_PER_VOLUME (3) expired snapshots each, all deleted
///   (minimum 0) behind the same `DeleteSnapshot` bucket.
///
/// Prints the wall time against the bucket's bound ((calls - bucket) / refill), the calls
/// refused by the empty bucket per 1,000, the failed actions and the continuation hops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench.sh runs it"]
async fn paced_by_the_token_bucket() {
    use support::fault_proxy::{Buckets, FaultPlan, FaultProxy, Strict};
    let env = |name: &str, default: f64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (volumes, size, refill) = (env("VOLUMES", 1000.0) as usize, env("BUCKET", 100.0), env("REFILL", 5.0));
    let expired_each = env("EXPIRED_PER_VOLUME", 3.0) as usize;
    let scenarios: Vec<String> = std::env::var("SCENARIOS")
        .unwrap_or_else(|_| "snapshot,sets,clean".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let buckets = || {
        Buckets::aws().with("CreateSnapshot", size, refill).with("CreateSnapshots", size, refill).with(
            "DeleteSnapshot",
            size,
            refill,
        )
    };
    // The fleets are made one after the other, then the workers run side by side.
    let mut fleets = Vec::new();
    for name in &scenarios {
        let acct = Account::new().await;
        acct.create_table(R).await;
        let (label, needed, snapshots, operation, function) = match name.as_str() {
            "snapshot" => {
                acct.put_raw(R, "cfg", r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "7 days", "minimum": 0, "frequency": "1 day"}}"#).await;
                launch_many(&acct, volumes, false).await;
                ("snapshot, one volume each", volumes, volumes, "CreateSnapshot", "create-snapshot")
            }
            "sets" => {
                acct.put_raw(R, "cfg", r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "7 days", "minimum": 0, "frequency": "1 day"}, "consistency": "instance"}"#).await;
                launch_many(&acct, volumes / 2, true).await;
                (
                    "snapshot, consistency instance (2 volumes each)",
                    volumes / 2,
                    volumes / 2 * 2,
                    "CreateSnapshots",
                    "create-snapshot",
                )
            }
            "clean" => {
                acct.put_raw(R, "cfg", r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "1 day", "minimum": 0, "frequency": "1 day"}}"#).await;
                launch_many(&acct, volumes, false).await;
                let planted = plant_expired(&acct, expired_each).await;
                ("clean, expired snapshots", planted, planted, "DeleteSnapshot", "clean-snapshot")
            }
            other => panic!("SCENARIOS: unknown scenario {other:?} (snapshot, sets, clean)"),
        };
        eprintln!("{name}: fleet ready, {needed} {operation} to make");
        fleets.push((name.clone(), acct, label, needed, snapshots, operation, function));
    }
    type Fleet = (String, Account, &'static str, usize, usize, &'static str, &'static str);
    let scenario = |(name, acct, label, needed, snapshots, operation, function): Fleet| async move {
        let proxy = FaultProxy::start(FaultPlan::none()).await;
        proxy.set_strict(Strict { buckets: Some(buckets()), ..Strict::default() });
        let run = run_worker(&acct, &proxy, function).await;
        let calls = proxy.seen().iter().filter(|s| s.operation == operation).count();
        let refused = proxy.bucket_refusals(operation);
        let bound = ((needed as f64 - size) / refill).max(0.0);
        assert_eq!(run.done as usize, snapshots, "{name}: every snapshot made or deleted: {:?}", run.summaries);
        let row = format!(
            "| {label} | {needed} | {size} | {refill} | {:.0} | {bound:.0} | {:.2} | {:.0} | {} | {} |",
            run.secs,
            run.secs / bound.max(1.0),
            refused as f64 * 1000.0 / calls.max(1) as f64,
            run.failed,
            run.invocations - 1,
        );
        eprintln!("{row}");
        row
    };
    let rows = futures::future::join_all(fleets.into_iter().map(scenario)).await;
    println!("| job | calls needed | bucket | refill/s | wall (s) | bound (s) | wall / bound | refused per 1,000 calls | failed | continuation hops |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
}

/// What a worker did over all its invocations.
struct WorkerRun {
    secs: f64,
    invocations: usize,
    /// Snapshots created or deleted, summed over the invocations.
    done: u64,
    failed: u64,
    summaries: Vec<serde_json::Value>,
}

/// Runs `binary` as a Lambda function (900 s deadlines unless DEADLINE, its own continuations) on the region,
/// its AWS calls through `proxy`, until an invocation ends without continuing.
async fn run_worker(acct: &Account, proxy: &support::fault_proxy::FaultProxy, binary: &str) -> WorkerRun {
    let mut lambda = support::lambda::LambdaHarness::new(acct).await;
    lambda.start(acct, binary, binary, &[("AWS_ENDPOINT_URL", &proxy.endpoint())]).await;
    // Lambda's limit, 900 s; DEADLINE (seconds) shortens it to see hops on a small fleet.
    let deadline =
        std::time::Duration::from_secs(std::env::var("DEADLINE").ok().and_then(|v| v.parse().ok()).unwrap_or(900));
    lambda.set_invoke_timeout(deadline);
    let started = std::time::Instant::now();
    lambda.invoke(binary, serde_json::json!({ "region": R }), deadline);
    let mut summaries = Vec::new();
    loop {
        let done =
            lambda.wait_finished(binary, summaries.len() + 1, deadline + std::time::Duration::from_secs(100)).await;
        let last = done.last().unwrap();
        let summary = last.result.clone().unwrap_or_else(|e| panic!("{binary} failed: {e}"));
        eprintln!(
            "{binary}: invocation {} after {:.0} s: {summary}",
            summaries.len() + 1,
            started.elapsed().as_secs_f64()
        );
        let continued = summary["continued"] == true;
        summaries.push(summary);
        if !continued {
            break;
        }
    }
    let sum = |key: &str| summaries.iter().map(|s| s[key].as_u64().unwrap_or(0)).sum::<u64>();
    WorkerRun {
        secs: started.elapsed().as_secs_f64(),
        invocations: summaries.len(),
        done: sum("created") + sum("deleted"),
        failed: sum("failed"),
        summaries,
    }
}

/// Plants `each` expired snapshots (DeleteOn yesterday) of every volume in the region, straight
/// into the emulator, 16 at a time; how many it holds then.
async fn plant_expired(acct: &Account, each: usize) -> usize {
    use futures::StreamExt;
    let ec2 = acct.ec2(R).await;
    let mut volumes = Vec::new();
    let mut pages = ec2.describe_volumes().into_paginator().items().send();
    while let Some(v) = pages.next().await {
        volumes.push(v.expect("describe volumes").volume_id().unwrap().to_string());
    }
    let yesterday = date(-1);
    let tags = [("DeleteOn", yesterday.as_str())];
    let tags = &tags;
    futures::stream::iter(volumes.iter().flat_map(|v| std::iter::repeat_n(v, each)))
        .map(|v| acct.make_snapshot(R, v, tags))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    acct.snapshots(R).await.len()
}

/// `n` instances tagged backup=yes, launched 100 to a call and 8 calls at a time; with a data
/// volume each when `data`, attached 16 at a time.
async fn launch_many(acct: &Account, n: usize, data: bool) {
    use futures::StreamExt;
    let batches = (0..n).step_by(100).map(|from| (n - from).min(100) as i32);
    let instances: Vec<String> = futures::stream::iter(batches)
        .map(|count| acct.launch_count(R, count, &[("backup", "yes")]))
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .concat();
    if data {
        futures::stream::iter(&instances)
            .map(|i| acct.attach_volume(R, i, "/dev/xvdf", &[]))
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
    }
}

/// Side by side with an earlier build (a benchmark run by scripts/bench.sh when PREVIOUS_BIN
/// names that build's `ebs-snapper`): for SIZES instances (default 4, 20, 100, 1000), each with
/// one expired snapshot of its volume, `snapshot` then `clean` in one region, by each binary in
/// an account of its own with the same fleet; prints the AWS calls and the wall time of each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: scripts/bench.sh runs it"]
async fn side_by_side_with_an_earlier_build() {
    let previous = std::env::var("PREVIOUS_BIN").expect("PREVIOUS_BIN: the earlier build's ebs-snapper");
    let sizes: Vec<usize> = std::env::var("SIZES")
        .unwrap_or_else(|_| "4,20,100,1000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("SIZES: numbers"))
        .collect();
    let current = assert_cmd::cargo::cargo_bin("ebs-snapper");
    println!("| job | instances | calls, earlier | calls, now | wall (s), earlier | wall (s), now |");
    println!("|---|---:|---:|---:|---:|---:|");
    for n in sizes {
        let mut rows: Vec<(String, Vec<(usize, f64)>)> =
            vec![("snapshot".into(), Vec::new()), ("clean".into(), Vec::new())];
        for bin in [std::path::PathBuf::from(&previous), current.clone()] {
            let acct = Account::new().await;
            acct.create_table(R).await;
            acct.put_raw(R, "cfg", r#"{"match": {"tag:backup": "yes"}, "snapshot": {"retention": "7 days", "minimum": 1, "frequency": "1 day"}}"#).await;
            launch_many(&acct, n, false).await;
            let volumes: Vec<String> = {
                let ec2 = acct.ec2(R).await;
                let out = ec2.describe_volumes().send().await.unwrap();
                out.volumes().iter().filter_map(|v| v.volume_id().map(str::to_string)).collect()
            };
            // Made two days ago (the stricter AWS backdates it): the volume is due, and the
            // snapshot expired, so each job has one mutation per instance.
            let two_days_ago = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
            for v in &volumes {
                acct.make_snapshot(R, v, &[("DeleteOn", &date(-2)), ("test-bed:start-time", &two_days_ago)]).await;
            }
            for row in rows.iter_mut() {
                let before = acct.recorded().len();
                let started = std::time::Instant::now();
                let out = acct
                    .cli_env(std::process::Command::new(&bin))
                    .args([row.0.as_str(), "--region", R])
                    .output()
                    .unwrap();
                let secs = started.elapsed().as_secs_f64();
                assert!(out.status.success(), "{}: {}", bin.display(), text(&out.stderr));
                let calls = acct.recorded().len() - before;
                row.1.push((calls, secs));
            }
        }
        for (job, r) in rows {
            println!("| {job} | {n} | {} | {} | {:.1} | {:.1} |", r[0].0, r[1].0, r[0].1, r[1].1);
        }
    }
}

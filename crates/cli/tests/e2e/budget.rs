//! AWS call budget (a benchmark, run by scripts/bench.sh, not in CI): seeds N instances with two
//! volumes each and a few snapshots per volume, runs `snapshot` then `clean` for one region, and
//! prints the calls per operation beside the minimum:
//! ceil(instances/1000) instance pages per configuration + ceil(volumes/200) volume batches +
//! snapshot pages + one call per mutation. Fails if EC2 calls exceed 1.1 x the minimum.

use crate::support;

use support::{date, text, Account};

const R: &str = "us-east-1";

#[tokio::test]
#[ignore = "benchmark: scripts/bench.sh runs it"]
async fn call_budget() {
    println!("| job | instances | volumes | DescribeInstances | DescribeVolumes | DescribeSnapshots | mutations | EC2 calls | minimum | ratio | fixed (STS, Query, DescribeRegions) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for n in [10usize, 50, 200] {
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
            let out = acct.cli().args([job, "--region", R]).output().unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
            let calls: Vec<String> = acct.recorded().into_iter().skip(before).map(|r| r.action).collect();
            let count = |a: &str| calls.iter().filter(|c| c.as_str() == a).count();
            let mutations = count("CreateSnapshot") + count("DeleteSnapshot");
            let (di, dv, ds) = (count("DescribeInstances"), count("DescribeVolumes"), count("DescribeSnapshots"));
            let ec2 = di + dv + ds + mutations;
            let instance_pages = n.div_ceil(1000);
            let minimum = if job == "snapshot" {
                // instances + volume batches + snapshot pages (by volume batches) + creations
                // volumes, their snapshots, the check that the new ones are listed, the creates
                instance_pages + volumes.div_ceil(200) + volumes.div_ceil(200) + mutations.div_ceil(200) + mutations
            } else {
                // instances + DeleteOn snapshot pages + deletions
                instance_pages + (2 * n + volumes).div_ceil(1000) + mutations
            };
            let fixed = format!("{}, {}, {}", count("GetCallerIdentity"), count("Query"), count("DescribeRegions"));
            let ratio = ec2 as f64 / minimum as f64;
            println!("| {job} | {n} | {volumes} | {di} | {dv} | {ds} | {mutations} | {ec2} | {minimum} | {ratio:.2} | {fixed} |");
            assert!(ratio <= 1.1, "{job} with {n} instances made {ec2} EC2 calls, minimum {minimum}: {calls:?}");
        }
    }
}

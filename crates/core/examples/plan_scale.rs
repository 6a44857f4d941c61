//! Scaling table and peak memory of the planners on synthetic regions (run in release:
//! `cargo run --release -p ebs-snapper-core --features testing --example plan_scale`). Prints one Markdown row per
//! size: volumes, snapshots, plan_snapshots ms, plan_retention ms (median of 5), and the process's
//! peak RSS after that size (VmHWM; sizes run smallest first, so each row is that size's peak).

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::Utc;
use ebs_snapper_core::{plan_retention, plan_snapshots};

use ebs_snapper_core::testing::synthetic;

fn median_ms(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    times[2]
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("tiered") {
        return tiered();
    }
    let now = Utc::now();
    let configs = synthetic::configurations();
    println!("| volumes | snapshots | plan_snapshots (ms) | plan_retention (ms) | peak RSS (MB) |");
    println!("|---:|---:|---:|---:|---:|");
    for volumes in [1_000usize, 10_000, 20_000] {
        let inventory = synthetic::inventory(volumes, 10, now);
        let snap = median_ms(|| {
            std::hint::black_box(plan_snapshots(&configs, &inventory, now, "bench"));
        });
        let ret = median_ms(|| {
            std::hint::black_box(plan_retention(&configs, &inventory, &BTreeSet::new(), now.date_naive()));
        });
        println!("| {volumes} | {} | {snap:.1} | {ret:.1} | {:.0} |", inventory.snapshots.len(), peak_rss_mb());
    }
    // Four tiers (SPEC §11) on the large case, in a process of its own so that its peak is its own:
    // `cargo run --release -p ebs-snapper-core --features testing --example plan_scale -- tiered`.
}

fn tiered() {
    let now = Utc::now();
    let configs = synthetic::tiered_configurations();
    println!("| volumes | snapshots | tiers | plan_snapshots (ms) | plan_retention (ms) | peak RSS (MB) |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let volumes = 10_000usize;
    let inventory = synthetic::tiered_inventory(volumes, 10, now);
    let snap = median_ms(|| {
        std::hint::black_box(plan_snapshots(&configs, &inventory, now, "bench"));
    });
    let ret = median_ms(|| {
        std::hint::black_box(plan_retention(&configs, &inventory, &BTreeSet::new(), now.date_naive()));
    });
    println!("| {volumes} | {} | 4 | {snap:.1} | {ret:.1} | {:.0} |", inventory.snapshots.len(), peak_rss_mb());
}

//! Planner benchmarks: `cargo bench -p ebs-snapper-core --features testing`. Targets: the large case (10,000 volumes,
//! 100,000 snapshots) under 100 ms per plan, growing linearly.

use std::collections::BTreeSet;
use std::hint::black_box;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ebs_snapper_core::{plan_retention, plan_snapshots};

use ebs_snapper_core::testing::synthetic;

fn planners(c: &mut Criterion) {
    let now = Utc::now();
    let configs = synthetic::configurations();
    let mut group = c.benchmark_group("planners");
    group.sample_size(10);
    for volumes in [1_000usize, 10_000] {
        let inventory = synthetic::inventory(volumes, 10, now);
        let label = format!("{volumes} volumes, {} snapshots", inventory.snapshots.len());
        group.bench_with_input(BenchmarkId::new("plan_snapshots", &label), &inventory, |b, inv| {
            b.iter(|| black_box(plan_snapshots(&configs, inv, now, "bench")))
        });
        group.bench_with_input(BenchmarkId::new("plan_retention", &label), &inventory, |b, inv| {
            b.iter(|| black_box(plan_retention(&configs, inv, &BTreeSet::new(), now.date_naive())))
        });
    }
    // Four tiers on the large case (SPEC §11; target: the same 100 ms).
    let configs = synthetic::tiered_configurations();
    let inventory = synthetic::tiered_inventory(10_000, 10, now);
    let label = format!("10000 volumes, {} snapshots, 4 tiers", inventory.snapshots.len());
    group.bench_with_input(BenchmarkId::new("plan_snapshots", &label), &inventory, |b, inv| {
        b.iter(|| black_box(plan_snapshots(&configs, inv, now, "bench")))
    });
    group.bench_with_input(BenchmarkId::new("plan_retention", &label), &inventory, |b, inv| {
        b.iter(|| black_box(plan_retention(&configs, inv, &BTreeSet::new(), now.date_naive())))
    });
    group.finish();
}

criterion_group!(benches, planners);
criterion_main!(benches);

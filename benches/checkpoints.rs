//! Checkpoint writes: the store against plain rusqlite with the same SQL, in one run.
//!
//! - `sequential/*`: one writer, one update at a time (latency; targets 2).
//! - `concurrent_32/*`: 32 writers, one partition each (throughput; target 1, group commit).
//!   The baseline is one connection doing the same updates one transaction each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use eventhubs_checkpointstore_sqlite::{CheckpointStore, Durability};

fn sequential(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    for durability in [Durability::Full, Durability::Normal] {
        let label = format!("{durability:?}").to_lowercase();
        let mut group = c.benchmark_group(format!("sequential_update_{label}"));
        group.throughput(Throughput::Elements(1));
        let store = store(dir.path(), &format!("seq-{label}.db"), durability);
        let mut seq = 0;
        group.bench_function("store_async", |b| {
            b.to_async(&rt).iter(|| {
                seq += 1;
                store.update_checkpoint(checkpoint(0, seq))
            })
        });
        group.bench_function("store_blocking", |b| {
            b.iter(|| {
                seq += 1;
                store
                    .blocking_update_checkpoint(&checkpoint(0, seq))
                    .unwrap()
            })
        });
        let mut conn = plain(dir.path(), &format!("seq-plain-{label}.db"), durability);
        group.bench_function("plain_rusqlite", |b| {
            b.iter(|| {
                seq += 1;
                plain_update(&mut conn, 0, seq)
            })
        });
        group.finish();
    }
    // What one hop between threads costs on this machine, with no work in it: a task of
    // tokio's blocking pool and the wake-up of its caller. The floor under any async store
    // that does its blocking work on another thread.
    let mut group = c.benchmark_group("thread_hop");
    group.bench_function("spawn_blocking_round_trip", |b| {
        b.to_async(&rt)
            .iter(|| async { tokio::task::spawn_blocking(|| ()).await.unwrap() })
    });
    group.finish();
}

fn concurrent(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    const WRITERS: usize = 32;
    for durability in [Durability::Full, Durability::Normal] {
        let label = format!("{durability:?}").to_lowercase();
        let mut group = c.benchmark_group(format!("concurrent_32_{label}"));
        group.throughput(Throughput::Elements(1));
        let store = store(dir.path(), &format!("conc-{label}.db"), durability);
        group.bench_function("store_group_commit", |b| {
            b.iter_custom(|iters| {
                let per_writer = (iters as usize).div_ceil(WRITERS).max(1);
                rt.block_on(async {
                    let start = Instant::now();
                    let mut tasks = tokio::task::JoinSet::new();
                    for p in 0..WRITERS {
                        let store = store.clone();
                        tasks.spawn(async move {
                            for seq in 0..per_writer {
                                store
                                    .update_checkpoint(checkpoint(p, seq as i64))
                                    .await
                                    .unwrap();
                            }
                        });
                    }
                    while let Some(r) = tasks.join_next().await {
                        r.unwrap();
                    }
                    // Scale to the requested count: `per_writer * WRITERS` updates were done.
                    let done = (per_writer * WRITERS) as f64;
                    Duration::from_secs_f64(start.elapsed().as_secs_f64() * iters as f64 / done)
                })
            })
        });
        let stats = store.commit_stats();
        eprintln!(
            "concurrent_32_{label}: {} writes in {} commits (average batch {:.1})",
            stats.writes,
            stats.commits,
            stats.writes as f64 / stats.commits.max(1) as f64
        );
        let mut conn = plain(dir.path(), &format!("conc-plain-{label}.db"), durability);
        let mut n = 0usize;
        group.bench_function("plain_rusqlite", |b| {
            b.iter(|| {
                n += 1;
                plain_update(&mut conn, n % WRITERS, n as i64)
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = sequential, concurrent
}
criterion_main!(benches);

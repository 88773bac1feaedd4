//! Scale (target 4): 100k ownership and 100k checkpoint rows over many hubs and groups; listing
//! one 32-partition group must use the key index, not a scan. Prints file size and open time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use criterion::{criterion_group, criterion_main, Criterion};
use eventhubs_checkpointstore_sqlite::{
    Checkpoint, CheckpointStore, Durability, SqliteCheckpointStore,
};

const GROUPS: usize = 3125; // x 32 partitions = 100,000 rows per table

fn scale(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let path = dir.path().join("scale.db");
    {
        let store = store(dir.path(), "scale.db", Durability::Normal);
        for g in 0..GROUPS {
            let (hub, group) = (format!("hub-{}", g % 50), format!("group-{g}"));
            let claims: Vec<_> = (0..32)
                .map(|p| {
                    let mut o = ownership(p, "owner", None);
                    o.event_hub_name.clone_from(&hub);
                    o.consumer_group.clone_from(&group);
                    o
                })
                .collect();
            store.blocking_claim_ownership(&claims).unwrap();
            for p in 0..32 {
                store
                    .blocking_update_checkpoint(&Checkpoint {
                        event_hub_name: hub.clone(),
                        consumer_group: group.clone(),
                        ..checkpoint(p, g as i64)
                    })
                    .unwrap();
            }
        }
    }
    let size = std::fs::metadata(&path).unwrap().len()
        + std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
    let started = Instant::now();
    let store = SqliteCheckpointStore::open(&path).unwrap();
    let open = started.elapsed();
    eprintln!(
        "scale: {} ownership + {} checkpoint rows, file {:.1} MiB, open {:.2} ms",
        GROUPS * 32,
        GROUPS * 32,
        size as f64 / (1024.0 * 1024.0),
        open.as_secs_f64() * 1e3
    );
    let (hub, group) = ("hub-17", "group-1717");
    let mut bench = c.benchmark_group("scale_100k_list_32");
    bench.bench_function("ownerships", |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(
                store.list_ownerships(NS, hub, group).await.unwrap().len(),
                32
            )
        })
    });
    bench.bench_function("checkpoints", |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(
                store.list_checkpoints(NS, hub, group).await.unwrap().len(),
                32
            )
        })
    });
    bench.bench_function("ownerships_blocking", |b| {
        b.iter(|| {
            assert_eq!(
                store
                    .blocking_list_ownerships(NS, hub, group)
                    .unwrap()
                    .len(),
                32
            )
        })
    });
    bench.bench_function("open", |b| {
        b.iter(|| drop(SqliteCheckpointStore::open(&path).unwrap()))
    });
    bench.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = scale
}
criterion_main!(benches);

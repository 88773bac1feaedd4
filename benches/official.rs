//! Through the official `azure_messaging_eventhubs::CheckpointStore` trait (feature `azure`):
//! this store against plain rusqlite behind the same trait (`common/plain_store.rs`: one
//! connection, a mutex, the same SQL) and the official `InMemoryCheckpointStore`, in one run.
//! The in-memory store keeps nothing on disk; it is the floor of what the trait itself costs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/plain_store.rs"]
mod plain_store;

use std::time::{Duration, Instant};

use azure_messaging_eventhubs::models::{Checkpoint, Ownership};
use azure_messaging_eventhubs::{CheckpointStore, InMemoryCheckpointStore};
use common::{runtime, GROUP, HUB, NS};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use eventhubs_checkpointstore_sqlite::Durability;

fn checkpoint(partition: usize, seq: i64) -> Checkpoint {
    Checkpoint {
        fully_qualified_namespace: NS.into(),
        event_hub_name: HUB.into(),
        consumer_group: GROUP.into(),
        partition_id: partition.to_string(),
        offset: Some((seq * 128).to_string()),
        sequence_number: Some(seq),
    }
}

fn creates(group: &str) -> Vec<Ownership> {
    creates_n(group, 1024)
}

fn creates_n(group: &str, n: usize) -> Vec<Ownership> {
    (0..n)
        .map(|p| Ownership {
            fully_qualified_namespace: NS.into(),
            event_hub_name: HUB.into(),
            consumer_group: group.into(),
            partition_id: p.to_string(),
            owner_id: Some("me".into()),
            ..Ownership::default()
        })
        .collect()
}

/// The same workloads for any store behind the official trait.
fn workloads(c: &mut Criterion, name: &str, store: &dyn CheckpointStore) {
    let rt = runtime();
    let mut group = c.benchmark_group("official_trait_sequential_update");
    group.throughput(Throughput::Elements(1));
    let mut seq = 0;
    group.bench_function(name, |b| {
        b.to_async(&rt).iter(|| {
            seq += 1;
            store.update_checkpoint(checkpoint(0, seq))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("official_trait_concurrent_32");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let per_writer = (iters as usize).div_ceil(32).max(1);
            rt.block_on(async {
                let start = Instant::now();
                let writers = (0..32).map(|p| async move {
                    for seq in 0..per_writer {
                        store
                            .update_checkpoint(checkpoint(p, seq as i64))
                            .await
                            .unwrap();
                    }
                });
                futures::future::join_all(writers).await;
                let done = (per_writer * 32) as f64;
                Duration::from_secs_f64(start.elapsed().as_secs_f64() * iters as f64 / done)
            })
        })
    });
    group.finish();

    for n in [32, 1024] {
        let mut group = c.benchmark_group(format!("official_trait_claim_{n}"));
        let mut i = 0;
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || {
                    i += 1;
                    creates_n(&format!("c{n}-{i}"), n)
                },
                |batch| async move { assert_eq!(store.claim_ownership(&batch).await.unwrap().len(), n) },
                BatchSize::PerIteration,
            )
        });
        group.finish();
        // Renewing n held partitions with the etags of the previous claim, as a processor
        // does; preparing the requests is not timed.
        let held = std::cell::RefCell::new(
            rt.block_on(store.claim_ownership(&creates_n(&format!("r{n}"), n)))
                .unwrap(),
        );
        let mut group = c.benchmark_group(format!("official_trait_renew_{n}"));
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || held.borrow().clone(),
                |batch| {
                    let held = &held;
                    async move {
                        let renewed = store.claim_ownership(&batch).await.unwrap();
                        assert_eq!(renewed.len(), n);
                        std::mem::replace(&mut *held.borrow_mut(), renewed)
                    }
                },
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
}

/// Listing 1024 ownerships and 1024 checkpoints of a store that holds just those.
fn list(c: &mut Criterion, name: &str, store: &dyn CheckpointStore) {
    let rt = runtime();
    rt.block_on(async {
        store.claim_ownership(&creates(GROUP)).await.unwrap();
        for p in 0..1024 {
            store
                .update_checkpoint(checkpoint(p, p as i64))
                .await
                .unwrap();
        }
    });
    let mut group = c.benchmark_group("official_trait_list_1024_ownerships");
    group.bench_function(name, |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(
                store.list_ownerships(NS, HUB, GROUP).await.unwrap().len(),
                1024
            )
        })
    });
    group.finish();
    let mut group = c.benchmark_group("official_trait_list_1024_checkpoints");
    group.bench_function(name, |b| {
        b.to_async(&rt).iter(|| async {
            assert_eq!(
                store.list_checkpoints(NS, HUB, GROUP).await.unwrap().len(),
                1024
            )
        })
    });
    group.finish();
}

fn official(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let plain = |name: &str, durability| {
        plain_store::PlainStore::open(&dir.path().join(name), durability, true).unwrap()
    };
    let full = common::store(dir.path(), "full.db", Durability::Full);
    workloads(c, "sqlite_full", &full);
    workloads(
        c,
        "plain_rusqlite_full",
        &plain("plain-full.db", Durability::Full),
    );
    let normal = common::store(dir.path(), "normal.db", Durability::Normal);
    workloads(c, "sqlite_normal", &normal);
    workloads(
        c,
        "plain_rusqlite_normal",
        &plain("plain-normal.db", Durability::Normal),
    );
    workloads(c, "official_in_memory", &InMemoryCheckpointStore::new());
    list(
        c,
        "sqlite_full",
        &common::store(dir.path(), "list.db", Durability::Full),
    );
    list(
        c,
        "plain_rusqlite_full",
        &plain("plain-list.db", Durability::Full),
    );
    list(c, "official_in_memory", &InMemoryCheckpointStore::new());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = official
}
criterion_main!(benches);

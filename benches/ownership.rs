//! Ownership at the scale of a big hub: claim, renew and list 1024 partitions in one call,
//! against plain rusqlite doing the same in one transaction (target 3); claim and renew of 32
//! (one processor's share) the same way. Both go through the crate's own `CheckpointStore`
//! trait: the baseline is `common/plain_store.rs` (one connection behind a mutex, the same SQL,
//! the claimed ownerships and the lists built as the trait returns them, on the caller's
//! thread).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/plain_store.rs"]
mod plain_store;

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use common::*;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use eventhubs_checkpointstore_sqlite::{CheckpointStore, Durability, Ownership};
use plain_store::PlainStore;

const N: usize = 1024;

fn creates(n: usize) -> Vec<Ownership> {
    (0..n).map(|p| ownership(p, "me", None)).collect()
}

/// 1024 create-only claims in a consumer group no one has used: each iteration inserts into
/// the same growing table, for the store and the baseline alike.
fn creates_in_new_group(i: &mut usize, n: usize) -> Vec<Ownership> {
    *i += 1;
    let group = format!("g{n}-{i}");
    creates(n)
        .into_iter()
        .map(|mut o| {
            o.consumer_group.clone_from(&group);
            o
        })
        .collect()
}

fn plain_store(dir: &Path, name: &str) -> PlainStore {
    PlainStore::open(&dir.join(name), Durability::Full, true).unwrap()
}

/// Claims `batch` through the trait and checks that all of it was won.
async fn claim_all(store: &dyn CheckpointStore, batch: &[Ownership]) -> Vec<Ownership> {
    let won = store.claim_ownership(batch).await.unwrap();
    assert_eq!(won.len(), batch.len());
    won
}

fn ownership_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    for n in [32, N] {
        let mut group = c.benchmark_group(format!("claim_{n}"));
        // Each iteration claims n new partitions in a fresh group of the same file.
        let ours = store(dir.path(), &format!("claim-{n}.db"), Durability::Full);
        let plain = plain_store(dir.path(), &format!("claim-plain-{n}.db"));
        let stores: [(&str, &dyn CheckpointStore); 2] =
            [("store", &ours), ("plain_rusqlite", &plain)];
        for (name, store) in stores {
            let mut i = 0;
            group.bench_function(format!("{name}_create"), |b| {
                b.to_async(&rt).iter_batched(
                    || creates_in_new_group(&mut i, n),
                    |batch| async move { claim_all(store, &batch).await },
                    BatchSize::PerIteration,
                )
            });
        }
        // Renewing n held partitions with the etags of the last answer, as a processor does.
        let ours = store(dir.path(), &format!("renew-{n}.db"), Durability::Full);
        let plain = plain_store(dir.path(), &format!("renew-plain-{n}.db"));
        let stores: [(&str, &dyn CheckpointStore); 2] =
            [("store", &ours), ("plain_rusqlite", &plain)];
        for (name, store) in stores {
            let held = RefCell::new(rt.block_on(claim_all(store, &creates(n))));
            group.bench_function(format!("{name}_renew"), |b| {
                // Preparing the requests is not timed; the previous answer is returned so that
                // criterion drops it after the timing.
                b.to_async(&rt).iter_batched(
                    || held.borrow().clone(),
                    |batch| {
                        let held = &held;
                        async move {
                            let renewed = claim_all(store, &batch).await;
                            std::mem::replace(&mut *held.borrow_mut(), renewed)
                        }
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        group.finish();
        if n == N {
            list(c, &rt, [("store", &ours), ("plain_rusqlite", &plain)]);
        }
    }
}

/// Lists of the 1024 ownerships held and of 1024 checkpoints, through the trait.
fn list(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    stores: [(&str, &dyn CheckpointStore); 2],
) {
    let mut group = c.benchmark_group("list_1024");
    for (name, store) in stores {
        for p in 0..N {
            rt.block_on(store.update_checkpoint(checkpoint(p, p as i64)))
                .unwrap();
        }
        group.bench_function(format!("{name}_ownerships"), |b| {
            b.to_async(rt).iter(|| async {
                assert_eq!(
                    store.list_ownerships(NS, HUB, GROUP).await.unwrap().len(),
                    N
                )
            })
        });
        group.bench_function(format!("{name}_checkpoints"), |b| {
            b.to_async(rt).iter(|| async {
                assert_eq!(
                    store.list_checkpoints(NS, HUB, GROUP).await.unwrap().len(),
                    N
                )
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = ownership_benches
}
criterion_main!(benches);

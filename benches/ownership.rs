//! Ownership at the scale of a big hub: claim, renew and list 1024 partitions in one call,
//! against plain rusqlite doing the same in one transaction (target 3); claim and renew of 32
//! (one processor's share) the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::cell::RefCell;
use std::time::Duration;

use common::*;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use eventhubs_checkpointstore_sqlite::{CheckpointStore, Durability, Ownership};

const N: usize = 1024;

const INSERT: &str = "INSERT INTO ownership \
    (namespace, event_hub, consumer_group, partition_id, owner_id, etag, last_modified, epoch) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?5 IS NOT NULL) ON CONFLICT DO NOTHING";
const UPDATE: &str = "UPDATE ownership SET owner_id = ?5, etag = ?6, last_modified = ?7, \
    epoch = epoch + (?5 IS NOT NULL AND owner_id IS NOT ?5) \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4 \
      AND etag = ?8";

/// The baseline claim: the same statements, one transaction, a fresh UUID etag per row.
fn plain_claim(conn: &mut rusqlite::Connection, requests: &[Ownership]) -> usize {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64;
    let mut won = 0;
    {
        let mut insert = tx.prepare_cached(INSERT).unwrap();
        let mut update = tx.prepare_cached(UPDATE).unwrap();
        for r in requests {
            let etag = uuid::Uuid::new_v4().to_string();
            let group = r.consumer_group.to_ascii_lowercase();
            let p = rusqlite::params![NS, HUB, group, r.partition_id, r.owner_id, etag, now];
            won += match &r.etag {
                None => insert.execute(p).unwrap(),
                Some(e) => update
                    .execute(rusqlite::params![
                        NS,
                        HUB,
                        group,
                        r.partition_id,
                        r.owner_id,
                        etag,
                        now,
                        e
                    ])
                    .unwrap(),
            };
        }
    }
    tx.commit().unwrap();
    won
}

fn plain_list(conn: &rusqlite::Connection) -> usize {
    let mut stmt = conn
        .prepare_cached(
            "SELECT partition_id, owner_id, etag, last_modified FROM ownership \
             WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3",
        )
        .unwrap();
    let rows = stmt
        .query_map([NS, HUB, GROUP], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .unwrap();
    rows.count()
}

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

fn ownership_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    for n in [32, N] {
        let mut group = c.benchmark_group(format!("claim_{n}"));
        let mut i = 0;
        // Each iteration claims n new partitions in a fresh group of the same file.
        let create_store = store(dir.path(), &format!("claim-{n}.db"), Durability::Full);
        group.bench_function("store_create", |b| {
            let store = &create_store;
            b.to_async(&rt).iter_batched(
                || creates_in_new_group(&mut i, n),
                |batch| {
                    let store = store.clone();
                    async move { assert_eq!(store.claim_ownership(&batch).await.unwrap().len(), n) }
                },
                BatchSize::PerIteration,
            )
        });
        let create_conn = RefCell::new(plain(
            dir.path(),
            &format!("claim-plain-{n}.db"),
            Durability::Full,
        ));
        let mut j = 0;
        group.bench_function("plain_rusqlite_create", |b| {
            let conn = &create_conn;
            b.iter_batched(
                || creates_in_new_group(&mut j, n),
                |batch| assert_eq!(plain_claim(&mut conn.borrow_mut(), &batch), n),
                BatchSize::PerIteration,
            )
        });
        // Renewing 1024 held partitions with their current etags.
        let store = store(dir.path(), &format!("renew-{n}.db"), Durability::Full);
        let held = RefCell::new(store.blocking_claim_ownership(&creates(n)).unwrap());
        group.bench_function("store_renew", |b| {
            // As for the baseline, preparing the requests is not timed; the previous answer is
            // returned so that criterion drops it after the timing.
            b.to_async(&rt).iter_batched(
                || held.borrow().clone(),
                |batch| {
                    let (store, held) = (store.clone(), &held);
                    async move {
                        let renewed = store.claim_ownership(&batch).await.unwrap();
                        assert_eq!(renewed.len(), n);
                        std::mem::replace(&mut *held.borrow_mut(), renewed)
                    }
                },
                BatchSize::PerIteration,
            )
        });
        let conn = RefCell::new(plain(
            dir.path(),
            &format!("renew-plain-{n}.db"),
            Durability::Full,
        ));
        plain_claim(&mut conn.borrow_mut(), &creates(n));
        group.bench_function("plain_rusqlite_renew", |b| {
            b.iter_batched(
                || {
                    // The etags as listed, like a processor renewing from its last list.
                    let conn = conn.borrow();
                    let mut stmt = conn
                        .prepare("SELECT partition_id, etag FROM ownership")
                        .unwrap();
                    let listed: Vec<Ownership> = stmt
                        .query_map([], |r| {
                            Ok(ownership(
                                r.get::<_, String>(0)?.parse().unwrap(),
                                "me",
                                Some(r.get(1)?),
                            ))
                        })
                        .unwrap()
                        .map(Result::unwrap)
                        .collect();
                    listed
                },
                |batch| assert_eq!(plain_claim(&mut conn.borrow_mut(), &batch), n),
                BatchSize::PerIteration,
            )
        });
        group.finish();
        if n == N {
            list(c, &rt, &store, &conn.borrow());
        }
    }
}

fn list(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    store: &eventhubs_checkpointstore_sqlite::SqliteCheckpointStore,
    conn: &rusqlite::Connection,
) {
    let mut group = c.benchmark_group("list_1024");
    for p in 0..N {
        store
            .blocking_update_checkpoint(&checkpoint(p, p as i64))
            .unwrap();
    }
    group.bench_function("store_ownerships", |b| {
        b.to_async(rt).iter(|| async {
            assert_eq!(
                store.list_ownerships(NS, HUB, GROUP).await.unwrap().len(),
                N
            )
        })
    });
    group.bench_function("store_checkpoints", |b| {
        b.to_async(rt).iter(|| async {
            assert_eq!(
                store.list_checkpoints(NS, HUB, GROUP).await.unwrap().len(),
                N
            )
        })
    });
    group.bench_function("plain_rusqlite_ownerships", |b| {
        b.iter(|| assert_eq!(plain_list(conn), N))
    });
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

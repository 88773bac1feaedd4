//! Writers of one store queue in process and never wait on each other's SQLite locks: claims,
//! releases, checkpoint batches (async and blocking), legacy lease writes and admin writes, all
//! at once, leave `CommitStats::busy_waits` at zero. The counter does count: a lock held by
//! another connection makes it move. Counts only; no timing is asserted.
use std::time::Duration;

use crate::common::*;
use eventhubs_checkpointstore_sqlite::legacy::{
    HostContext, LeaseManager, SqliteCheckpointLeaseManager,
};
use eventhubs_checkpointstore_sqlite::{
    CheckpointStore, Error, SqliteCheckpointStore, StoreOptions,
};

const PARTITIONS: usize = 32;
const ROUNDS: usize = 20;

/// 8 tasks steal each other's partitions with the etags of their last list, one claim call per
/// partition; every fourth call releases instead. Returns the claims won, or what failed.
async fn steal(store: SqliteCheckpointStore, task: usize) -> Result<usize, String> {
    let owner = format!("task-{task}");
    let mut won = 0;
    for round in 0..ROUNDS {
        let listed = store
            .list_ownerships(NS, HUB, GROUP)
            .await
            .map_err(|e| format!("task {task} round {round}: list: {e}"))?;
        for i in 0..4 {
            let p = (task * 3 + i + round * 7) % PARTITIONS;
            let etag = listed
                .iter()
                .find(|o| o.partition_id == p.to_string())
                .and_then(|o| o.etag.clone());
            let release = (round + i) % 4 == 3;
            let request = claim(
                &p.to_string(),
                (!release).then_some(owner.as_str()),
                etag.as_deref(),
            );
            won += store
                .claim_ownership(&[request])
                .await
                .map_err(|e| format!("task {task} round {round}: claim of {p}: {e}"))?
                .len();
        }
    }
    Ok(won)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_process_writers_of_every_kind_never_wait_on_sqlite_locks() {
    let (_dir, _path, store) = file_store_with(StoreOptions::new().with_pool_size(8));
    let all: Vec<_> = (0..PARTITIONS)
        .map(|p| claim(&p.to_string(), Some("seed"), None))
        .collect();
    assert_eq!(store.claim_ownership(&all).await.unwrap().len(), PARTITIONS);

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8 {
        tasks.spawn(steal(store.clone(), task));
    }
    // Async checkpoint writers.
    for w in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            for seq in 0..100 {
                let p = (w * 4 + seq as usize) % PARTITIONS;
                store
                    .update_checkpoint(checkpoint(&p.to_string(), Some("1"), Some(seq)))
                    .await
                    .map_err(|e| format!("writer {w}: checkpoint {seq} of {p}: {e}"))?;
            }
            Ok(0)
        });
    }
    // Legacy hosts acquiring, renewing and releasing leases in another group of the same file.
    for h in 0..2 {
        let store = store.clone();
        tasks.spawn(async move {
            let host = HostContext::new(NS, HUB, "legacy", format!("host-{h}"));
            let manager = SqliteCheckpointLeaseManager::new(&store, host)
                .map_err(|e| format!("host {h}: manager: {e}"))?;
            for round in 0..20 {
                let p = ((round + h) % 8).to_string();
                let mut lease = manager
                    .create_lease_if_not_exists(&p)
                    .await
                    .map_err(|e| format!("host {h} round {round}: create lease {p}: {e}"))?;
                match manager.acquire_lease(&mut lease).await {
                    Ok(()) => {}
                    Err(Error::OwnershipLost { .. }) => continue,
                    Err(e) => return Err(format!("host {h} round {round}: acquire {p}: {e}")),
                }
                for step in [LeaseStep::Renew, LeaseStep::Release] {
                    let result = match step {
                        LeaseStep::Renew => manager.renew_lease(&mut lease).await,
                        LeaseStep::Release => manager.release_lease(&mut lease).await,
                    };
                    match result {
                        Ok(()) | Err(Error::OwnershipLost { .. }) => {}
                        Err(e) => return Err(format!("host {h} round {round}: lease {p}: {e}")),
                    }
                }
            }
            Ok(0)
        });
    }
    // Blocking writers on their own threads: checkpoints, claims and admin deletes.
    let mut threads = Vec::new();
    for t in 0..3 {
        let store = store.clone();
        threads.push(std::thread::spawn(move || -> Result<(), String> {
            for i in 0..60 {
                let p = format!("blocking-{t}-{}", i % 5);
                let result = match i % 3 {
                    0 => store.blocking_update_checkpoint(&checkpoint(&p, Some("7"), Some(7))),
                    1 => store
                        .blocking_claim_ownership(&[claim(&p, Some("b"), None)])
                        .map(drop),
                    _ => store
                        .blocking_delete_checkpoint(NS, HUB, GROUP, &p)
                        .map(drop),
                };
                result.map_err(|e| format!("thread {t} step {i} on {p}: {e}"))?;
            }
            Ok(())
        }));
    }
    // Every writer runs to its end; what failed is listed together, before the counts.
    let (mut won, mut failed) = (0, Vec::new());
    while let Some(r) = tokio::time::timeout(Duration::from_secs(120), tasks.join_next())
        .await
        .expect("the writers must not hang")
    {
        match r {
            Ok(Ok(n)) => won += n,
            Ok(Err(e)) => failed.push(e),
            Err(e) => failed.push(format!("a task panicked: {e}")),
        }
    }
    for t in threads {
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed.push(e),
            Err(_) => failed.push("a blocking writer panicked".to_owned()),
        }
    }
    let stats = store.commit_stats();
    assert!(failed.is_empty(), "{failed:#?}\n{stats:?}");
    assert!(won > 0, "some steals must win");

    assert!(stats.claims > 8 * ROUNDS as u64, "{stats:?}");
    assert!(stats.writes >= 800, "{stats:?}");
    // With the writer lock taken out, writers meet on SQLite's lock thousands of times here
    // (3,316 and 5,779 in two runs).
    assert_eq!(
        stats.busy_waits, 0,
        "writers of one store must queue in process, not on SQLite's lock: {stats:?}"
    );
    // Every partition has one row; the blocking claims added theirs.
    let listed = store.list_ownerships(NS, HUB, GROUP).await.unwrap();
    assert_eq!(listed.len(), PARTITIONS + 3 * 5);
}

enum LeaseStep {
    Renew,
    Release,
}

/// Another connection takes the file's write lock (`BEGIN IMMEDIATE`, still open in the
/// returned connection), and a claim of `partition` by `store` starts on a thread of its own;
/// returns once the claim waits for that lock in its busy handler (holding the store's writer
/// lock meanwhile).
fn claim_behind_another_lock(
    store: &SqliteCheckpointStore,
    path: &std::path::Path,
    partition: &'static str,
) -> (
    rusqlite::Connection,
    std::thread::JoinHandle<Vec<eventhubs_checkpointstore_sqlite::Ownership>>,
) {
    let other = rusqlite::Connection::open(path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            store
                .blocking_claim_ownership(&[claim(partition, Some("a"), None)])
                .unwrap()
        })
    };
    while store.commit_stats().busy_waits < 3 {
        std::thread::yield_now();
    }
    (other, writer)
}

#[test]
fn a_lock_held_by_another_connection_is_waited_for_and_counted() {
    let (_dir, path, store) =
        file_store_with(StoreOptions::new().with_busy_timeout(Duration::from_secs(10)));
    // The claim is now waiting for `other`'s lock: its busy handler is counting.
    let (other, writer) = claim_behind_another_lock(&store, &path, "0");
    other.execute_batch("COMMIT").unwrap();
    assert_eq!(writer.join().unwrap().len(), 1);
    assert!(store.commit_stats().busy_waits >= 3);
}

#[test]
fn the_busy_timeout_is_the_total_wait_and_then_busy_is_an_error() {
    let (_dir, path, store) =
        file_store_with(StoreOptions::new().with_busy_timeout(Duration::from_millis(200)));
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let err = store
        .blocking_claim_ownership(&[claim("0", Some("a"), None)])
        .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    assert!(store.commit_stats().busy_waits > 0);
    tx.rollback().unwrap();
    // Nothing was written, and the store works once the lock is gone.
    assert!(store
        .blocking_list_ownerships(NS, HUB, GROUP)
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .blocking_claim_ownership(&[claim("0", Some("a"), None)])
            .unwrap()
            .len(),
        1
    );
}

/// Operations that only read (export, import plans, the group summary, legacy lease and
/// checkpoint reads) do not queue behind the store's writers: while a claim holds the writer
/// lock, waiting on another connection's SQLite lock, they all answer, and no lock wait is
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_do_not_queue_behind_a_writer_of_the_same_store() {
    use eventhubs_checkpointstore_sqlite::legacy::CheckpointManager;
    use eventhubs_checkpointstore_sqlite::migrate::{eph::EphLease, OnConflict};

    let (_dir, path, store) =
        file_store_with(StoreOptions::new().with_busy_timeout(Duration::from_secs(20)));
    store
        .blocking_claim_ownership(&[claim("0", Some("a"), None)])
        .unwrap();
    let host = HostContext::new(NS, HUB, GROUP, "host-1");
    let manager = SqliteCheckpointLeaseManager::new(&store, host).unwrap();
    manager.create_lease_if_not_exists("1").await.unwrap();

    // The claim holds the writer lock and waits for `other` in the busy handler.
    let (other, writer) = claim_behind_another_lock(&store, &path, "2");
    let export = store.blocking_export().unwrap();
    assert_eq!(export.ownerships.len(), 2);
    assert_eq!(
        store.blocking_plan_import(&export).unwrap().same_ownerships,
        2
    );
    assert_eq!(store.blocking_groups().unwrap().len(), 1);
    let leases: Vec<EphLease> = Vec::new();
    store
        .blocking_plan_import_eph(NS, HUB, GROUP, &leases, OnConflict::Refuse)
        .unwrap();
    assert!(manager.get_lease("1").await.unwrap().is_some());
    assert_eq!(manager.get_all_leases().await.unwrap().len(), 2);
    assert!(manager.get_checkpoint("0").await.unwrap().is_none());
    manager
        .create_checkpoint_store_if_not_exists()
        .await
        .unwrap();
    assert!(
        !writer.is_finished(),
        "the claim must still be waiting for the other lock"
    );
    let stats = store.commit_stats();
    assert_eq!(
        stats.lock_waits, 0,
        "reads queued behind the writer: {stats:?}"
    );

    other.execute_batch("COMMIT").unwrap();
    assert_eq!(writer.join().unwrap().len(), 1);
}

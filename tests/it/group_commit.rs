//! Group commit: concurrent checkpoint writes share transactions, each writer hears `Ok` only
//! once its write is committed, a failed fence fails alone, and a failed batch fails everyone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::time::Duration;

use common::*;
use eventhubs_checkpointstore_sqlite::{CheckpointStore, Error, StoreOptions};

/// Bounds a test that could only hang through a bug in the committer.
async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("the group commit must not hang")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_transactions_and_see_their_own_writes() {
    let (_dir, _path, store) = file_store();
    let per_task = 50;
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..32 {
        let store = store.clone();
        tasks.spawn(async move {
            let partition = p.to_string();
            for seq in 1..=per_task {
                store
                    .update_checkpoint(checkpoint(&partition, Some(&seq.to_string()), Some(seq)))
                    .await
                    .unwrap();
                // Ok means committed: this reader (another pooled connection) sees it.
                let stored = store.list_checkpoints(NS, HUB, GROUP).await.unwrap();
                let mine = stored.iter().find(|c| c.partition_id == partition).unwrap();
                assert_eq!(mine.sequence_number, Some(seq));
            }
        });
    }
    within(async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await;
    let stats = store.commit_stats();
    assert_eq!(stats.writes, 32 * per_task as u64);
    assert!(
        stats.commits < stats.writes,
        "concurrent writes must share transactions: {stats:?}"
    );
    let stored = store.list_checkpoints(NS, HUB, GROUP).await.unwrap();
    assert_eq!(stored.len(), 32);
    assert!(stored.iter().all(|c| c.sequence_number == Some(per_task)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_fence_fails_alone_and_does_not_poison_the_batch() {
    let (_dir, _path, store) = file_store();
    let batch: Vec<_> = (0..16)
        .map(|p| claim(&p.to_string(), Some("a"), None))
        .collect();
    let held = store.claim_ownership(&batch).await.unwrap();
    // A stale view of every partition: the etags before a renewal.
    let stale = held.clone();
    let renewed = store.claim_ownership(&held).await.unwrap();
    assert_eq!(renewed.len(), 16);

    let mut tasks = tokio::task::JoinSet::new();
    for (i, (good, bad)) in renewed.into_iter().zip(stale).enumerate() {
        let store = store.clone();
        tasks.spawn(async move {
            let p = i.to_string();
            let ok = store.update_checkpoint_fenced(checkpoint(&p, Some("good"), Some(1)), &good);
            let lost = store.update_checkpoint_fenced(checkpoint(&p, Some("bad"), Some(2)), &bad);
            let (ok, lost) = tokio::join!(ok, lost);
            (ok, lost)
        });
    }
    within(async {
        while let Some(r) = tasks.join_next().await {
            let (ok, lost) = r.unwrap();
            ok.unwrap();
            assert!(matches!(lost, Err(Error::OwnershipLost { .. })), "{lost:?}");
        }
    })
    .await;
    let stored = store.list_checkpoints(NS, HUB, GROUP).await.unwrap();
    assert_eq!(stored.len(), 16);
    assert!(
        stored.iter().all(|c| c.offset.as_deref() == Some("good")),
        "{stored:?}"
    );
    assert_eq!(
        store.commit_stats().writes,
        16,
        "lost fences are not written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_batch_reports_the_error_to_every_writer_and_writes_nothing() {
    let options = StoreOptions::new().with_busy_timeout(Duration::from_millis(300));
    let (_dir, path, store) = file_store_with(options);
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .update_checkpoint(checkpoint(&p.to_string(), Some("1"), Some(1)))
                .await
        });
    }
    let mut errors = 0;
    within(async {
        while let Some(r) = tasks.join_next().await {
            let err = r.unwrap().unwrap_err();
            assert!(err.is_busy(), "{err:?}");
            errors += 1;
        }
    })
    .await;
    assert_eq!(errors, 16);
    lock.rollback().unwrap();
    assert!(store
        .list_checkpoints(NS, HUB, GROUP)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.commit_stats().writes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_and_async_writers_mix_without_deadlock() {
    let (_dir, _path, store) = file_store_with(StoreOptions::new().with_pool_size(4));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for seq in 1..=100 {
                    let p = format!("sync-{t}");
                    store
                        .blocking_update_checkpoint(&checkpoint(&p, Some("x"), Some(seq)))
                        .unwrap();
                }
            })
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.spawn(async move {
            for seq in 1..=100 {
                let p = format!("async-{t}");
                store
                    .update_checkpoint(checkpoint(&p, Some("y"), Some(seq)))
                    .await
                    .unwrap();
            }
        });
    }
    within(async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
        tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| t.join().unwrap()))
            .await
            .unwrap();
    })
    .await;
    let stored = store.list_checkpoints(NS, HUB, GROUP).await.unwrap();
    assert_eq!(stored.len(), 12);
    assert!(stored.iter().all(|c| c.sequence_number == Some(100)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_joined_in_one_task_share_one_commit() {
    // A lone async writer on a multi-thread runtime commits in place where spinning does not
    // pay (here: never spin); the writes joined with it in one task must still share its
    // commit, not follow it one fsync each.
    let (_dir, _path, store) =
        file_store_with(StoreOptions::default().with_spin_wait(Duration::ZERO));
    for round in 1..=5_i64 {
        let before = store.commit_stats();
        let writes = (0..32)
            .map(|p| store.update_checkpoint(checkpoint(&p.to_string(), Some("j"), Some(round))));
        for result in within(futures::future::join_all(writes)).await {
            result.unwrap();
        }
        let after = store.commit_stats();
        assert_eq!(after.writes - before.writes, 32);
        assert!(
            after.commits - before.commits <= 2,
            "32 joined writes took {} commits",
            after.commits - before.commits
        );
    }
    let stored = store.list_checkpoints(NS, HUB, GROUP).await.unwrap();
    assert!(stored.iter().all(|c| c.sequence_number == Some(5)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_writers_do_not_stall_the_committer() {
    let (_dir, _path, store) = file_store();
    for round in 0..20 {
        // Start writes and drop them at once, before they can be answered: after one poll
        // (a lone writer leading in place has queued its write and yielded), and after a
        // timeout.
        for p in 0..8 {
            let fut = store.update_checkpoint(checkpoint(&p.to_string(), Some("d"), Some(round)));
            if p % 2 == 0 {
                assert!(futures::FutureExt::now_or_never(fut).is_none());
            } else {
                drop(tokio::time::timeout(Duration::ZERO, fut).await);
            }
        }
        within(store.update_checkpoint(checkpoint("kept", Some("k"), Some(round))))
            .await
            .unwrap();
    }
    let stored = store.list_checkpoints(NS, HUB, GROUP).await.unwrap();
    let kept = stored.iter().find(|c| c.partition_id == "kept").unwrap();
    assert_eq!(kept.sequence_number, Some(19));
}

#[test]
fn the_latest_write_to_a_partition_wins() {
    let (_dir, _path, store) = file_store();
    std::thread::scope(|s| {
        for t in 0..8 {
            let store = store.clone();
            s.spawn(move || {
                for i in 0..50 {
                    let seq = t * 1000 + i;
                    store
                        .blocking_update_checkpoint(&checkpoint("0", Some("v"), Some(seq)))
                        .unwrap();
                }
            });
        }
    });
    // After every writer returned, the stored value is the last write of one of them.
    let last: Vec<i64> = (0..8).map(|t| t * 1000 + 49).collect();
    let stored = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
    assert!(
        last.contains(&stored[0].sequence_number.unwrap()),
        "{stored:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn legacy_lease_checked_writes_batch_with_the_rest_and_a_lost_lease_fails_alone() {
    use eventhubs_checkpointstore_sqlite::legacy::{
        Checkpoint as LegacyCheckpoint, CheckpointManager, HostContext, LeaseManager,
        SqliteCheckpointLeaseManager,
    };
    let (_dir, _path, store) = file_store();
    let host = |name: &str| {
        SqliteCheckpointLeaseManager::new(&store, HostContext::new(NS, HUB, GROUP, name)).unwrap()
    };
    let (a, b) = (host("a"), host("b"));
    let mut leases = Vec::new();
    for p in 0..8 {
        let mut lease = a.create_lease_if_not_exists(&p.to_string()).await.unwrap();
        a.acquire_lease(&mut lease).await.unwrap();
        leases.push(lease);
    }
    // b steals partition 0: a's copy of that lease is now stale.
    let mut stolen = b.get_lease("0").await.unwrap().unwrap();
    b.acquire_lease(&mut stolen).await.unwrap();

    let a = std::sync::Arc::new(a);
    let mut tasks = tokio::task::JoinSet::new();
    for lease in leases {
        let a = a.clone();
        tasks.spawn(async move {
            let cp = LegacyCheckpoint::at(&lease.partition_id, "4096", 7);
            (
                lease.partition_id.clone(),
                a.update_checkpoint(&lease, &cp).await,
            )
        });
    }
    within(async {
        while let Some(r) = tasks.join_next().await {
            let (partition, result) = r.unwrap();
            if partition == "0" {
                assert!(
                    matches!(result, Err(Error::OwnershipLost { .. })),
                    "{result:?}"
                );
            } else {
                result.unwrap();
            }
        }
    })
    .await;
    let stored = store.list_checkpoints(NS, HUB, GROUP).await.unwrap();
    let written: Vec<&str> = stored.iter().map(|c| c.partition_id.as_str()).collect();
    assert_eq!(written, ["1", "2", "3", "4", "5", "6", "7"]);
    assert_eq!(store.commit_stats().writes, 7);
}

/// With no spin wait the committer thread sleeps after every batch and every writer sleeps
/// until its answer, so each write depends on the wake-ups a spinning store mostly skips: a
/// lost one hangs this test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_that_never_spin_are_always_woken() {
    let options = StoreOptions::new().with_spin_wait(Duration::ZERO);
    assert_eq!(options.spin_wait(), Duration::ZERO);
    let (_dir, _path, store) = file_store_with(options);
    within(async {
        for seq in 1..=300 {
            store
                .update_checkpoint(checkpoint("alone", Some("a"), Some(seq)))
                .await
                .unwrap();
        }
        let mut tasks = tokio::task::JoinSet::new();
        for p in 0..8 {
            let store = store.clone();
            tasks.spawn(async move {
                for seq in 1..=100 {
                    let partition = p.to_string();
                    let write = checkpoint(&partition, Some("c"), Some(seq));
                    store.update_checkpoint(write).await.unwrap();
                    // Pauses let the committer fall asleep between writes.
                    if seq % 10 == 0 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await;
    let stored = store.list_checkpoints(NS, HUB, GROUP).await.unwrap();
    assert_eq!(stored.len(), 9);
    for c in &stored {
        let expected = if c.partition_id == "alone" { 300 } else { 100 };
        assert_eq!(c.sequence_number, Some(expected), "{c:?}");
    }
    assert_eq!(store.commit_stats().writes, 300 + 8 * 100);
}

/// `blocking_update_checkpoints`: the writes of one call share one commit; an invalid write
/// and a write whose fence is lost fail alone, in their places; the others are written.
#[test]
fn many_writes_in_one_call_share_one_commit_and_fail_alone() {
    let (_dir, _path, store) = file_store();
    let held = store
        .blocking_claim_ownership(&[claim("0", Some("a"), None), claim("1", Some("a"), None)])
        .unwrap();
    let stale = held[1].clone();
    store.blocking_claim_ownership(&held[1..]).unwrap(); // partition 1 renewed: `stale` lost
    let before = store.commit_stats();
    let mut writes: Vec<_> = (2..34)
        .map(|p| (checkpoint(&p.to_string(), Some("7"), Some(7)), None))
        .collect();
    writes.insert(3, (checkpoint("", Some("1"), Some(1)), None)); // invalid: empty partition
    writes.insert(
        5,
        (checkpoint("0", Some("9"), Some(9)), Some(held[0].clone())),
    );
    writes.insert(6, (checkpoint("1", Some("9"), Some(9)), Some(stale)));
    let answers = store.blocking_update_checkpoints(&writes);
    assert_eq!(answers.len(), writes.len());
    for (i, answer) in answers.iter().enumerate() {
        match i {
            3 => assert!(
                matches!(answer, Err(Error::InvalidArgument { .. })),
                "{answer:?}"
            ),
            6 => assert!(
                matches!(answer, Err(Error::OwnershipLost { .. })),
                "{answer:?}"
            ),
            _ => assert!(answer.is_ok(), "{i}: {answer:?}"),
        }
    }
    let after = store.commit_stats();
    assert_eq!(after.writes - before.writes, 33, "{after:?}");
    assert_eq!(
        after.commits - before.commits,
        1,
        "one commit for the call: {after:?}"
    );
    let stored = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
    assert_eq!(stored.len(), 33);
    assert!(stored.iter().all(|c| c.partition_id != "1"), "{stored:?}");
    assert!(store.blocking_update_checkpoints(&[]).is_empty());
}

//! A dropped store leaves nothing running: opening and dropping stores again and again (as a
//! CLI or a test suite does) must not pile up threads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use eventhubs_checkpointstore_sqlite::{CheckpointStore, SqliteCheckpointStore, StoreOptions};

#[cfg(target_os = "linux")]
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// This process's threads named as a store names its committer thread
/// ("eh-checkpoint-committer"; Linux keeps the first 15 bytes).
#[cfg(target_os = "linux")]
fn committers() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|name| name.starts_with("eh-checkpoint-c"))
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn dropped_stores_leave_no_threads_behind() {
    let dir = tempfile::tempdir().unwrap();
    // On a multi-thread runtime a lone async write commits in place, on the caller's thread,
    // where spinning does not pay (commits that wait for an fsync; here: never spin): no
    // committer thread starts for it.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    {
        let store = SqliteCheckpointStore::open_with(
            dir.path().join("lone.db"),
            StoreOptions::default().with_spin_wait(Duration::ZERO),
        )
        .unwrap();
        for i in 0..10 {
            multi
                .block_on(store.update_checkpoint(checkpoint("1", Some("2"), Some(i))))
                .unwrap();
        }
        assert_eq!(committers(), 0, "a lone async write needs no committer");
    }
    drop(multi);
    // On a current-thread runtime async writes start each store's committer thread; the
    // runtime's own threads are counted in `before`.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {});
    let before = threads();
    for i in 0..100 {
        let store = if i % 2 == 0 {
            SqliteCheckpointStore::open_in_memory().unwrap()
        } else {
            SqliteCheckpointStore::open(dir.path().join("store.db")).unwrap()
        };
        store
            .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(i)))
            .unwrap();
        runtime
            .block_on(store.update_checkpoint(checkpoint("1", Some("2"), Some(i))))
            .unwrap();
        assert!(
            committers() >= 1,
            "an async write runs on the store's committer thread"
        );
    }
    // Worker and committer threads finish shortly after their store is dropped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while (threads() > before + 3 || committers() > 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        committers(),
        0,
        "every committer thread ends with its store"
    );
    assert!(
        threads() <= before + 3,
        "{} threads before, {} after dropping 100 stores",
        before,
        threads()
    );
}

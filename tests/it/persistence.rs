//! Persistence: everything reads back identical after a reopen, a store file is in WAL mode
//! and marked as ours, private to its owner, an in-memory store is one database for all its
//! clones, and dropping the last handle closes the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::*;
use eventhubs_checkpointstore_sqlite::{SqliteCheckpointStore, StoreOptions, APPLICATION_ID};

#[test]
fn everything_reads_back_identical_after_reopen() {
    let (_dir, path, store) = file_store();
    store
        .blocking_claim_ownership(&[
            claim("0", Some("a"), None),
            claim("1", Some("b"), None),
            claim("2", None, None),
        ])
        .unwrap();
    store
        .blocking_update_checkpoint(&checkpoint("0", Some("4096"), Some(64)))
        .unwrap();
    store
        .blocking_update_checkpoint(&checkpoint("1", None, Some(i64::MAX)))
        .unwrap();
    let ownerships = store.blocking_list_ownerships(NS, HUB, GROUP).unwrap();
    let checkpoints = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
    drop(store);

    let reopened = SqliteCheckpointStore::open(&path).unwrap();
    assert_eq!(
        reopened.blocking_list_ownerships(NS, HUB, GROUP).unwrap(),
        ownerships
    );
    assert_eq!(
        reopened.blocking_list_checkpoints(NS, HUB, GROUP).unwrap(),
        checkpoints
    );
    assert_eq!(ownerships.len(), 3);
    assert_eq!(checkpoints.len(), 2);
}

#[test]
fn a_store_file_is_in_wal_mode_and_marked_as_ours() {
    let (_dir, path, store) = file_store();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let app: i32 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(app, APPLICATION_ID);
    assert_eq!(version, SqliteCheckpointStore::supported_schema_version());
}

#[cfg(unix)]
#[test]
fn a_new_store_file_is_private_to_its_owner_unless_asked() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, path, store) = file_store();
    store
        .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap();
    for file in [
        path.clone(),
        path.with_extension("db-wal"),
        path.with_extension("db-shm"),
    ] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    let wider = dir.path().join("shared.db");
    SqliteCheckpointStore::open_with(&wider, StoreOptions::new().with_file_mode(0o640)).unwrap();
    let mode = std::fs::metadata(&wider).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

#[test]
fn an_in_memory_store_is_one_database_for_all_clones_and_connections() {
    let store =
        SqliteCheckpointStore::open_in_memory_with(StoreOptions::new().with_pool_size(4)).unwrap();
    // Hold several pooled connections at once by running blocking calls on many threads.
    std::thread::scope(|s| {
        for i in 0..8 {
            let store = store.clone();
            s.spawn(move || {
                store
                    .blocking_claim_ownership(&[claim(&i.to_string(), Some("a"), None)])
                    .unwrap();
            });
        }
    });
    assert_eq!(owners(&store).len(), 8);
    // Another in-memory store is another database.
    let other = SqliteCheckpointStore::open_in_memory().unwrap();
    assert!(owners(&other).is_empty());
}

#[test]
fn dropping_the_last_handle_closes_the_file_promptly() {
    for _ in 0..20 {
        let (_dir, path, store) = file_store();
        let clone = store.clone();
        clone
            .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
            .unwrap();
        assert!(path.with_extension("db-wal").exists());
        drop(store);
        drop(clone);
        // The last connection checkpoints the WAL into the file and removes it: within a
        // bounded time (r2d2's worker thread may hold the pool for a moment after `open`).
        wait_closed(&path);
    }
}

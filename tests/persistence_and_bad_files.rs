//! Persistence across reopen, and the files a store refuses without touching them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use eventhubs_checkpointstore_sqlite::{
    Error, SqliteCheckpointStore, StoreOptions, APPLICATION_ID,
};

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
fn a_file_that_is_not_sqlite_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    let text = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, text).unwrap();
    let err = refused_untouched(&path, |e| matches!(e, Error::NotADatabase { .. }));
    let message = err.to_string();
    assert!(
        message.contains("notes.db"),
        "the message names the file: {message}"
    );
}

#[test]
fn another_applications_sqlite_database_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let err = refused_untouched(&path, |e| matches!(e, Error::NotADatabase { .. }));
    assert!(err.to_string().contains("another application"), "{err}");
}

#[test]
fn a_store_from_a_newer_schema_version_is_refused_and_untouched() {
    let (_dir, path, store) = file_store();
    store
        .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap();
    drop(store);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let err = refused_untouched(&path, |e| {
        matches!(e, Error::SchemaTooNew { found: 99, .. })
    });
    assert_eq!(
        err.to_string(),
        format!(
            "`{}` has schema version 99, newer than the supported {}",
            path.display(),
            SqliteCheckpointStore::supported_schema_version()
        )
    );
}

#[test]
fn a_directory_is_refused_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteCheckpointStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let shown = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(shown.contains("is a directory"), "{shown}");
    assert!(shown.contains(&dir.path().display().to_string()), "{shown}");
}

#[test]
fn a_missing_parent_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteCheckpointStore::open(dir.path().join("no/such/dir/store.db")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

/// Makes a file unwritable: `chmod 0444`, and where that is not enough (root ignores
/// permission bits) `chattr +i`. Returns a guard that undoes both.
#[cfg(unix)]
fn make_read_only(path: &Path) -> impl Drop + '_ {
    use std::os::unix::fs::PermissionsExt;
    struct Undo<'a>(&'a Path);
    impl Drop for Undo<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(self.0)
                .status();
            let _ = std::fs::set_permissions(self.0, std::fs::Permissions::from_mode(0o600));
        }
    }
    let writable = || std::fs::OpenOptions::new().write(true).open(path).is_ok();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let guard = Undo(path);
    if writable() {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .expect("chattr must be installed to test read-only files as root");
        assert!(status.success(), "chattr +i failed on {}", path.display());
    }
    assert!(
        !writable(),
        "the file must really be unwritable for this test to mean anything"
    );
    guard
}

#[cfg(unix)]
#[test]
fn a_read_only_file_is_refused_with_a_read_only_error() {
    let (_dir, path, store) = file_store();
    store
        .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap();
    drop(store);
    wait_closed(&path);
    let before = read_bytes(&path);
    let _guard = make_read_only(&path);
    let err = SqliteCheckpointStore::open(&path).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(err.to_string().ends_with("is read-only"), "{err}");
    assert!(
        read_bytes(&path) == before,
        "the file must stay byte-identical"
    );
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

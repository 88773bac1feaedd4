//! File modes: a new store is private (0600, see `persistence.rs`) unless the
//! caller asks for a wider mode; then the database, its `-wal` and its `-shm` all get that mode
//! (less the umask, as for any file a process creates). An existing file keeps its mode.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;
use eventhubs_checkpointstore_sqlite::{SqliteCheckpointStore, StoreOptions};

/// The process umask, as the shell (which inherits it) prints it.
fn umask() -> u32 {
    let out = std::process::Command::new("sh")
        .args(["-c", "umask"])
        .output()
        .unwrap();
    u32::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 8).unwrap()
}

/// The database and the two files SQLite keeps beside it while it is open.
fn files(db: &Path) -> [PathBuf; 3] {
    [
        db.to_owned(),
        db.with_extension("db-wal"),
        db.with_extension("db-shm"),
    ]
}

fn mode(file: &Path) -> u32 {
    std::fs::metadata(file).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_requested_wider_mode_applies_to_the_database_its_wal_and_its_shm() {
    let dir = tempfile::tempdir().unwrap();
    for requested in [0o640, 0o660, 0o644, 0o664] {
        let path = dir.path().join(format!("{requested:o}.db"));
        let store =
            SqliteCheckpointStore::open_with(&path, StoreOptions::new().with_file_mode(requested))
                .unwrap();
        store
            .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
            .unwrap();
        let expected = requested & !umask();
        for file in files(&path) {
            assert_eq!(
                mode(&file),
                expected,
                "{}: asked for {requested:o}",
                file.display()
            );
        }
    }
}

#[test]
fn an_existing_file_keeps_its_mode_and_so_do_its_new_wal_and_shm() {
    let (_dir, path, store) = file_store();
    drop(store);
    wait_closed(&path);
    let reopened =
        SqliteCheckpointStore::open_with(&path, StoreOptions::new().with_file_mode(0o666)).unwrap();
    reopened
        .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap();
    for file in files(&path) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
}

//! The cross-process writer queue (`store/gate.rs`): writers of this crate in several
//! processes (or several stores of one process on one file) take turns at a lock on one byte
//! of the database file before SQLite's write lock, so they never poll SQLite's lock for each other;
//! the busy timeout still bounds the wait, and a writer that gave up leaves no lock behind.
//! Linux only, where the gate is used (on local file systems; the temp dir is one).
#![cfg(target_os = "linux")]

use std::fs::File;
use std::time::{Duration, Instant};

use crate::common::*;
use eventhubs_checkpointstore_sqlite::{Error, SqliteCheckpointStore, StoreOptions};
use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;

/// The byte the gate locks (`GATE_BYTE` in store/gate.rs).
const GATE_BYTE: i64 = 0x4000_1000;

/// Takes the gate's lock through a descriptor of its own, as another process's writer would
/// (a lock of another open file description conflicts like another process's); false if it is
/// held.
fn try_gate(file: &File) -> bool {
    fcntl(file, FcntlArg::F_OFD_SETLK(&gate_range())).is_ok()
}

fn gate_range() -> libc::flock {
    libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: GATE_BYTE,
        l_len: 1,
        l_pid: 0,
    }
}

/// Whether nobody holds the gate's lock (asked without taking it).
fn gate_is_free(file: &File) -> bool {
    let mut probe = gate_range();
    fcntl(file, FcntlArg::F_OFD_GETLK(&mut probe)).unwrap();
    probe.l_type == libc::F_UNLCK as libc::c_short
}

fn open_rw(path: &std::path::Path) -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

fn hold_the_gate(path: &std::path::Path) -> File {
    let file = open_rw(path);
    assert!(try_gate(&file), "the gate is free");
    file
}

/// Waits (up to 10 s) until `done`.
fn wait_for(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "waited 10 s for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn two_stores_of_one_process_on_one_file_take_turns_at_the_gate() {
    let (_dir, path, a) =
        file_store_with(StoreOptions::new().with_busy_timeout(Duration::from_secs(10)));
    let b = SqliteCheckpointStore::open_with(
        &path,
        StoreOptions::new().with_busy_timeout(Duration::from_secs(10)),
    )
    .unwrap();
    // A claim of `a` holds a's writer lock and the gate while it waits for a plain
    // connection's SQLite lock (which takes no gate).
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let claim_a = {
        let a = a.clone();
        std::thread::spawn(move || a.blocking_claim_ownership(&[claim("0", Some("a"), None)]))
    };
    wait_for(
        || a.commit_stats().busy_waits > 0,
        "a's claim to wait for SQLite's lock",
    );
    // A write of `b` now waits at the gate, not on SQLite's lock.
    let write_b = {
        let b = b.clone();
        std::thread::spawn(move || {
            b.blocking_update_checkpoint(&checkpoint("1", Some("5"), Some(5)))
        })
    };
    wait_for(
        || b.commit_stats().gate_waits > 0,
        "b's write to wait at the gate",
    );
    other.execute_batch("COMMIT").unwrap();
    assert_eq!(claim_a.join().unwrap().unwrap().len(), 1);
    write_b.join().unwrap().unwrap();
    let stats = b.commit_stats();
    assert_eq!(stats.busy_waits, 0, "b queued at the gate: {stats:?}");
    assert_eq!(stats.gate_waits, 1, "{stats:?}");
    assert_eq!(a.commit_stats().gate_waits, 0, "a came first");
    // Both writes are there, for either store.
    assert_eq!(b.blocking_list_ownerships(NS, HUB, GROUP).unwrap().len(), 1);
    assert_eq!(
        a.blocking_list_checkpoints(NS, HUB, GROUP).unwrap().len(),
        1
    );
}

#[test]
fn a_gate_held_elsewhere_is_waited_for_and_the_busy_timeout_is_the_total_wait() {
    let timeout = Duration::from_millis(300);
    let (_dir, path, store) = file_store_with(StoreOptions::new().with_busy_timeout(timeout));
    let held = hold_the_gate(&path);
    let started = Instant::now();
    let err = store
        .blocking_claim_ownership(&[claim("0", Some("a"), None)])
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    let why = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        why.as_deref()
            .is_some_and(|w| w.contains("another process")),
        "{err}: {why:?}"
    );
    assert!(waited >= timeout, "gave up after {waited:?}");
    let stats = store.commit_stats();
    assert_eq!((stats.gate_waits, stats.busy_waits), (1, 0), "{stats:?}");
    // Nothing was written; a read does not take the gate.
    assert!(store
        .blocking_list_ownerships(NS, HUB, GROUP)
        .unwrap()
        .is_empty());

    // The writer that gave up left a helper waiting for the lock: once the holder lets go, the
    // helper takes the gate and, with nobody waiting for it any more, lets go too. (Looked at
    // without taking it, so that nobody competes with the helper.)
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let probe = open_rw(&path);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gate_is_free(&probe) {
        assert!(
            Instant::now() < deadline,
            "the gate stayed locked after its writer gave up"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(try_gate(&probe));

    // Released by its holder a little later, the gate goes to the writer that waits for it.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        drop(probe);
    });
    let claimed = store
        .blocking_claim_ownership(&[claim("0", Some("a"), None)])
        .unwrap();
    assert_eq!(claimed.len(), 1);
    release.join().unwrap();
    let stats = store.commit_stats();
    assert_eq!((stats.gate_waits, stats.busy_waits), (2, 0), "{stats:?}");
    // And the store let go of it after its write.
    assert!(try_gate(&open_rw(&path)));
}

#[test]
fn the_committer_waits_for_the_gate_itself_and_its_queued_writers_still_time_out() {
    let timeout = Duration::from_millis(300);
    let (_dir, path, store) = file_store_with(StoreOptions::new().with_busy_timeout(timeout));
    let held = hold_the_gate(&path);
    // Async writers on a current-thread runtime are committed by the committer thread.
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            for i in 0..2 {
                let started = Instant::now();
                let result = rt.block_on(
                    eventhubs_checkpointstore_sqlite::CheckpointStore::claim_ownership(
                        &store,
                        &[claim(&i.to_string(), Some("a"), None)],
                    ),
                );
                tx.send((result.map(|c| c.len()), started.elapsed()))
                    .unwrap();
            }
        })
    };
    wait_for(
        || store.commit_stats().gate_waits > 0,
        "the committer to wait at the gate",
    );
    // It blocks in the kernel's queue itself, with a watch over its queue. (Whether a gate
    // helper runs cannot be asked here: other tests of this binary start theirs.)
    // (A new thread names itself once it runs.)
    wait_for(
        || thread_names().iter().any(|n| n == "eh-checkpoint-w"),
        "a watch thread",
    );
    // Both writes (the second queued while the committer is still blocked) give up at their
    // busy timeout, with nothing written.
    for i in 0..2 {
        let (result, waited) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("a queued writer must get its answer while the committer waits");
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Busy { .. }), "write {i}: {err}");
        assert!(waited >= timeout, "write {i} gave up after {waited:?}");
    }
    writer.join().unwrap();
    assert!(store
        .blocking_list_ownerships(NS, HUB, GROUP)
        .unwrap()
        .is_empty());
    // Once the holder lets go, the committer gets the gate, finds nothing to commit, and lets
    // go too; the next write goes through and leaves the gate free.
    drop(held);
    let probe = open_rw(&path);
    wait_for(
        || gate_is_free(&probe),
        "the committer to let go of the gate",
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let won = rt
        .block_on(
            eventhubs_checkpointstore_sqlite::CheckpointStore::claim_ownership(
                &store,
                &[claim("0", Some("a"), None)],
            ),
        )
        .unwrap();
    assert_eq!(won.len(), 1);
    assert!(
        try_gate(&probe),
        "the store let go of the gate after its write"
    );
}

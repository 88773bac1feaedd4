//! `Durability::Full`: when a write returns `Ok`, none of the `-wal`'s pages is still dirty in
//! the kernel's page cache: they are on disk. Each kind of write is checked: async and blocking
//! checkpoints, claims, a legacy lease write, an admin delete and an import. At
//! `Durability::Normal` the same write leaves them dirty, which shows the check can fail.
//!
//! The kernel says what is dirty: Linux's `cachestat` (6.5 and later), called through
//! python3's ctypes, since this crate forbids `unsafe`. The store's own count of its `-wal`
//! syncs (`CommitStats::wal_syncs`) is checked beside it.
#![cfg(target_os = "linux")]

use std::path::Path;
use std::process::Command;

use crate::common::*;
use eventhubs_checkpointstore_sqlite::legacy::{
    HostContext, LeaseManager, SqliteCheckpointLeaseManager,
};
use eventhubs_checkpointstore_sqlite::migrate::OnConflict;
use eventhubs_checkpointstore_sqlite::{
    CheckpointStore, Durability, SqliteCheckpointStore, StoreOptions,
};

/// Prints the number of dirty page-cache pages of the file `argv[1]` (`cachestat`, syscall
/// 451 on x86-64 and on the generic table of arm64 alike).
const CACHESTAT: &str = r#"
import ctypes, os, sys
class Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]
class Stat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in
                ("cache", "dirty", "writeback", "evicted", "recently_evicted")]
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(sys.argv[1], os.O_RDONLY)
stat, whole = Stat(), Range(0, 0)
if libc.syscall(451, fd, ctypes.byref(whole), ctypes.byref(stat), 0) != 0:
    sys.exit("cachestat: " + os.strerror(ctypes.get_errno()))
print(stat.dirty + stat.writeback)
"#;

/// Dirty (or still being written) pages of the file at `path`.
fn dirty_pages(path: &Path) -> u64 {
    let out = Command::new("python3")
        .args(["-c", CACHESTAT])
        .arg(path)
        .output()
        .expect("python3 runs (it is needed for the Python tests too)");
    assert!(
        out.status.success(),
        "cachestat failed (Linux 6.5 or later is needed): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn wal(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

fn open(durability: Durability) -> (tempfile::TempDir, std::path::PathBuf, SqliteCheckpointStore) {
    file_store_with(StoreOptions::new().with_durability(durability))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_full_every_kind_of_write_is_on_disk_when_it_returns() {
    let (_dir, path, store) = open(Durability::Full);
    let wal = wal(&path);
    let host = HostContext::new(NS, HUB, "legacy", "host-0");
    let manager = SqliteCheckpointLeaseManager::new(&store, host).unwrap();
    let other = SqliteCheckpointStore::open_in_memory().unwrap();
    other
        .blocking_update_checkpoint(&checkpoint("9", Some("19"), Some(19)))
        .unwrap();
    let export = other.blocking_export().unwrap();

    let mut syncs = store.commit_stats().wal_syncs;
    let mut sync_time = store.commit_stats().wal_sync_time;
    for step in 0..7 {
        let what = match step {
            0 => {
                store
                    .update_checkpoint(checkpoint("0", Some("10"), Some(10)))
                    .await
                    .unwrap();
                "an async checkpoint"
            }
            1 => {
                store
                    .blocking_update_checkpoint(&checkpoint("1", Some("11"), Some(11)))
                    .unwrap();
                "a blocking checkpoint"
            }
            2 => {
                let won = store
                    .claim_ownership(&[claim("2", Some("me"), None)])
                    .await
                    .unwrap();
                assert_eq!(won.len(), 1);
                "a claim"
            }
            3 => {
                let mut lease = manager.create_lease_if_not_exists("3").await.unwrap();
                manager.acquire_lease(&mut lease).await.unwrap();
                "a legacy lease"
            }
            4 => {
                store
                    .blocking_update_checkpoints(&[
                        (checkpoint("4", Some("14"), Some(14)), None),
                        (checkpoint("5", Some("15"), Some(15)), None),
                    ])
                    .into_iter()
                    .for_each(|r| r.unwrap());
                "a batch of checkpoints"
            }
            5 => {
                store
                    .blocking_delete_checkpoint(NS, HUB, GROUP, "0")
                    .unwrap();
                "an admin delete"
            }
            _ => {
                store.blocking_import(&export, OnConflict::Refuse).unwrap();
                "an import"
            }
        };
        assert_eq!(dirty_pages(&wal), 0, "{what}: the -wal has dirty pages");
        let now = store.commit_stats();
        assert!(
            now.wal_syncs > syncs,
            "{what}: the store did not sync the -wal"
        );
        assert!(
            now.wal_sync_time > sync_time,
            "{what}: the sync's time was not counted: {now:?}"
        );
        syncs = now.wal_syncs;
        sync_time = now.wal_sync_time;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_normal_a_write_returns_before_it_is_on_disk() {
    let (_dir, path, store) = open(Durability::Normal);
    let wal = wal(&path);
    // The kernel may write a page back on its own (memory pressure, another job's writes);
    // one of a few fresh writes stays dirty unless the check cannot see dirty pages at all.
    let mut seen = Vec::new();
    for seq in 0..5 {
        store
            .update_checkpoint(checkpoint("0", Some("1"), Some(seq)))
            .await
            .unwrap();
        seen.push(dirty_pages(&wal));
        if seen.last() > Some(&0) {
            break;
        }
    }
    assert!(
        seen.iter().any(|&n| n > 0),
        "no write left a dirty page: {seen:?}"
    );
    let stats = store.commit_stats();
    assert_eq!(stats.wal_syncs, 0);
    assert_eq!(stats.wal_sync_time, std::time::Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_full_concurrent_writers_share_fsyncs_and_each_returns_after_one() {
    let (_dir, path, store) = open(Durability::Full);
    // Whether a batch had writes queued behind it depends on timing: on a loaded machine a
    // round of 16 × 50 writes may run one at a time, so up to five rounds are run.
    for round in 0..5i64 {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..16 {
            let store = store.clone();
            tasks.spawn(async move {
                for seq in 0..50 {
                    let before = store.commit_stats().wal_syncs;
                    store
                        .update_checkpoint(checkpoint(
                            &w.to_string(),
                            Some("1"),
                            Some(round * 50 + seq),
                        ))
                        .await
                        .unwrap();
                    let after = store.commit_stats().wal_syncs;
                    assert!(after > before, "writer {w}: write {seq} returned unsynced");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        assert_eq!(dirty_pages(&wal(&path)), 0, "the -wal has dirty pages");
        let stats = store.commit_stats();
        assert!(stats.wal_syncs <= stats.commits, "{stats:?}");
        if syncer_running() {
            return;
        }
    }
    // Batches with writes queued behind them were synced by the store's syncer thread.
    panic!("no syncer thread after 5 rounds: {:?}", thread_names());
}

/// Whether a store's syncer thread runs in this process.
fn syncer_running() -> bool {
    thread_names().iter().any(|n| n == "eh-checkpoint-s")
}

fn wal_len(path: &Path) -> u64 {
    std::fs::metadata(wal(path)).map_or(0, |m| m.len())
}

#[test]
fn at_full_a_new_wal_is_extended_on_disk_and_filled_without_growing() {
    let (_dir, path, store) = open(Durability::Full);
    assert_eq!(wal_len(&path), EXTENDED_WAL);
    assert_eq!(dirty_pages(&wal(&path)), 0, "the zeros are on disk");
    // 150 writes (a few hundred frames) go into the zeros: the -wal does not grow.
    for i in 0..150 {
        store
            .blocking_update_checkpoint(&checkpoint(&i.to_string(), Some("1"), Some(i)))
            .unwrap();
    }
    assert_eq!(wal_len(&path), EXTENDED_WAL);
    drop(store);
    let store = SqliteCheckpointStore::open(&path).unwrap();
    assert_eq!(
        store
            .blocking_list_checkpoints(NS, HUB, GROUP)
            .unwrap()
            .len(),
        150
    );
    drop(store);
    assert_eq!(integrity_check(&path), "ok");

    // At `Normal` no fsync waits for a -wal's growth, and none is extended; nor where it is
    // turned off.
    let (_dir, path, _store) = open(Durability::Normal);
    assert!(wal_len(&path) < EXTENDED_WAL / 4, "{}", wal_len(&path));
    let off = StoreOptions::new().with_wal_preallocation(false);
    let (_dir, path, _store) = file_store_with(off);
    assert!(wal_len(&path) < EXTENDED_WAL / 4, "{}", wal_len(&path));
}

/// The first 32 bytes of the `-wal` (its header), or fewer where it is shorter.
fn wal_header(path: &Path) -> Vec<u8> {
    let mut bytes = std::fs::read(wal(path)).unwrap_or_default();
    bytes.truncate(32);
    bytes
}

#[test]
fn at_full_an_open_that_finds_no_wal_starts_one_and_no_write_rewrites_its_header() {
    let (_dir, path, store) = open(Durability::Full);
    store
        .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap();
    drop(store);
    wait_closed(&path);
    // The last connection's close checkpointed the file and deleted its -wal.
    assert!(!wal(&path).exists());
    let store = SqliteCheckpointStore::open(&path).unwrap();
    let header = wal_header(&path);
    // SQLite's magic number (big-endian, its last bit the checksums' byte order), then the
    // format version 3007000.
    assert!(
        header.len() == 32 && matches!(header[..4], [0x37, 0x7f, 0x06, 0x82 | 0x83]),
        "the open left no -wal header: {header:?}"
    );
    assert_eq!(header[4..8], 3_007_000u32.to_be_bytes());
    assert_eq!(dirty_pages(&wal(&path)), 0, "the header is on disk");
    assert_eq!(wal_len(&path), EXTENDED_WAL);
    for i in 0..20 {
        store
            .blocking_update_checkpoint(&checkpoint(&i.to_string(), Some("2"), Some(i)))
            .unwrap();
    }
    assert_eq!(wal_header(&path), header, "a write started the -wal again");
    let listed = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
    assert_eq!(listed.len(), 20);
    drop(store);
    wait_closed(&path);
    assert_eq!(integrity_check(&path), "ok");

    // Turned off, the open leaves the new -wal to the first write, as SQLite does.
    let off = StoreOptions::new().with_wal_preallocation(false);
    let store = SqliteCheckpointStore::open_with(&path, off).unwrap();
    assert!(
        wal_header(&path).iter().all(|&b| b == 0),
        "{:?}",
        wal_header(&path)
    );
    drop(store);
}

#[test]
fn a_wal_a_crash_left_keeps_every_byte_and_is_recovered_when_extended() {
    // Writes in a short -wal (at `Normal`), copied while the writer has them open: a crash.
    let (_dir, live, store) = open(Durability::Normal);
    for i in 0..200 {
        store
            .blocking_update_checkpoint(&checkpoint(&i.to_string(), Some("7"), Some(i)))
            .unwrap();
    }
    let copy = tempfile::tempdir().unwrap();
    let crashed = copy.path().join("crashed.db");
    std::fs::copy(&live, &crashed).unwrap();
    std::fs::copy(wal(&live), wal(&crashed)).unwrap();
    drop(store);
    let left = std::fs::read(wal(&crashed)).unwrap();
    assert!(!left.is_empty() && (left.len() as u64) < EXTENDED_WAL);

    let options = StoreOptions::new().with_durability(Durability::Full);
    let recovered = SqliteCheckpointStore::open_with(&crashed, options).unwrap();
    let now = std::fs::read(wal(&crashed)).unwrap();
    assert_eq!(now.len() as u64, EXTENDED_WAL);
    assert!(
        now[..left.len()] == left[..],
        "a byte the crash left was changed"
    );
    assert!(
        now[left.len()..].iter().all(|&b| b == 0),
        "only zeros after it"
    );
    let listed = recovered.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
    assert_eq!(listed.len(), 200);
    assert!(listed.iter().all(|c| c.offset.as_deref() == Some("7")));
    drop(recovered);
    assert_eq!(integrity_check(&crashed), "ok");
}

#[test]
fn a_wal_is_extended_only_while_no_writer_holds_it_and_the_open_never_waits_for_one() {
    let (_dir, path, store) = open(Durability::Normal);
    store
        .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap();
    drop(store);
    wait_closed(&path);
    // Another program's writer holds SQLite's write lock, with its -wal short.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let short = wal_len(&path);
    assert!(short < EXTENDED_WAL);
    // An hour of busy timeout: an open that waited for the lock would not return before the
    // writer (this thread) lets it go.
    let options = StoreOptions::new()
        .with_durability(Durability::Full)
        .with_busy_timeout(std::time::Duration::from_secs(3600));
    let (tx, rx) = std::sync::mpsc::channel();
    let opener = {
        let path = path.clone();
        std::thread::spawn(move || {
            let store = SqliteCheckpointStore::open_with(&path, options).unwrap();
            tx.send(()).unwrap();
            store
        })
    };
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the open waited for the other writer's lock");
    let store = opener.join().unwrap();
    assert_eq!(
        wal_len(&path),
        short,
        "extended under another writer's lock"
    );
    other.execute_batch("ROLLBACK").unwrap();
    // With the lock free, the next opener extends it.
    let second = SqliteCheckpointStore::open(&path).unwrap();
    assert_eq!(wal_len(&path), EXTENDED_WAL);
    drop((store, second, other));
    assert_eq!(integrity_check(&path), "ok");
}

//! [`Durability::Full`](crate::Durability::Full) without an fsync under the write lock.
//!
//! A store at `Full` opens its pooled connections with `synchronous=NORMAL`: a commit writes its
//! frames to the `-wal` and returns without syncing it. The store then fsyncs the `-wal` itself
//! ([`WalSync::sync`]), after its writer lock, the cross-process gate and SQLite's lock are
//! released, and only then answers `Ok`. Writers of this process and of others commit while this
//! fsync runs, instead of waiting for it; fsyncs that run together share the disk's flush.
//!
//! Why this is as durable as `synchronous=FULL`: in WAL mode the two settings differ in one
//! fsync, of the `-wal` after each commit (SQLite's pager, `walSyncFlags`). `NORMAL` still syncs
//! the `-wal` before each checkpoint, the database after it, and the `-wal`'s header when it
//! starts over. When `COMMIT` returns, the transaction's frames are in the `-wal` (in the page
//! cache), and an fsync of the file through any descriptor puts them on disk: the fsync `FULL`
//! would have made, a moment later. The store's is an `fdatasync` (`File::sync_data`): the
//! frames and the length and blocks that reach them, without the file's times, which an
//! `fsync` journals too whenever they have changed (the bundled SQLite calls `fsync`, having
//! no `HAVE_FDATASYNC`). What differs is what readers see: a write is visible from
//! its commit on, a moment before it is on disk (as at `NORMAL`); a power loss in that moment
//! loses it, together with every process on the host that could have read it.
//!
//! The `-wal` is opened at the first sync and kept, and its directory synced then, as SQLite
//! does at a new `-wal`'s first sync. SQLite deletes a `-wal` only when the last connection to
//! the file closes, and this store's connections stay open as long as it does, so the kept
//! descriptor names the `-wal` SQLite writes. (Checking the path's identity before each sync
//! cost a fifth of a lone writer's throughput in `load --writers 1`: a `stat` per write.)
//!
//! A new `-wal` grows with every commit until SQLite's first checkpoint starts it over (at
//! 1000 frames, 4 MiB), and each sync of a file that grew also journals its new size and
//! blocks: with 4 processes claiming on a new file, 472–604 µs a sync against 305–333 µs with
//! the `-wal` already that long (`steal --processes 4 --rounds 50`, BENCHMARKS.md, tenth
//! pass). So the opener of a store gives a short `-wal` that length at once, in zeros
//! ([`extend_new_wal`], `StoreOptions::with_wal_preallocation`):
//! - holding SQLite's write lock, taken without waiting (or not at all): no SQLite writer
//!   writes the `-wal` meanwhile;
//! - only past its end, and zeros are no frame to SQLite: its recovery stops at the first
//!   frame whose salts and checksum do not match, as in a `-wal` it has started over;
//! - synced before the open returns, so that no writer's sync waits for them;
//! - and a `-wal` SQLite has just made (empty) gets its header then too, by a write that changes
//!   nothing: SQLite writes and fsyncs the header at the first commit into the `-wal`, under
//!   its write lock, which held every other process's first write back by 2 ms;
//! - best effort: where the disk is full, the `-wal` is cut back to the length it had.
//!
//! At open and not later: extending in 512 KiB steps from a store's 64th write (the steps
//! synced by the writes' own syncs) gave claim p99 2.20–2.65 ms against 1.73–1.86 at open. The
//! price is paid by an open that finds the `-wal` short (no other connection had the file
//! open): 4 MiB written and synced, which doubled a one-shot `eh-checkpoints checkpoints set`
//! (12.5–15.4 ms against 7.2–7.8), so the commands turn it off.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::{files, schema};

/// The longest `-wal` [`extend_new_wal`] makes (SQLite's 1000 frames of 4 KiB pages are 4 MiB).
const MAX_EXTENDED_WAL: u64 = 8 << 20;

/// The `-wal` of one store's file, synced after each of its writes.
#[derive(Debug)]
pub(crate) struct WalSync {
    wal: PathBuf,
    open: Mutex<Option<Arc<File>>>,
    syncs: AtomicU64,
    /// The time its successful syncs took, in ns.
    sync_ns: AtomicU64,
}

impl WalSync {
    /// The `-wal` beside the database file `real` (the path SQLite opened).
    pub(crate) fn new(real: &Path) -> WalSync {
        WalSync {
            wal: schema::side_file(real, "-wal"),
            open: Mutex::new(None),
            syncs: AtomicU64::new(0),
            sync_ns: AtomicU64::new(0),
        }
    }

    /// Puts every write committed so far on disk. Call it holding no lock.
    ///
    /// # Errors
    /// [`Error::Io`] if the `-wal` cannot be opened or synced: the writes are committed but may
    /// not be on disk.
    pub(crate) fn sync(&self) -> Result<()> {
        let file = self.file().map_err(|e| self.error(e))?;
        let started = Instant::now();
        // `fdatasync`: the frames, and the length and blocks that reach them, without the
        // `-wal`'s times, which an `fsync` also journals once they change (every few ms).
        file.sync_data().map_err(|e| self.error(e))?;
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.sync_ns.fetch_add(took, Ordering::Relaxed);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// How many times [`sync`](Self::sync) succeeded.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// The time the successful syncs took (their fsyncs), in all.
    pub(crate) fn sync_time(&self) -> Duration {
        Duration::from_nanos(self.sync_ns.load(Ordering::Relaxed))
    }

    fn file(&self) -> std::io::Result<Arc<File>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = &*open {
            return Ok(Arc::clone(file));
        }
        let file = Arc::new(File::open(&self.wal)?);
        // The -wal may be new: its name goes to disk too, as SQLite does at a new -wal's
        // first sync.
        sync_directory(&self.wal)?;
        *open = Some(Arc::clone(&file));
        Ok(file)
    }

    fn error(&self, e: std::io::Error) -> Error {
        Error::Io {
            path: Some(self.wal.clone()),
            source: crate::error::message(&format!(
                "the write was committed but may not be on disk: cannot sync the -wal: {e}"
            )),
        }
    }
}

/// Gives the `-wal` of the file at `real`, if it is shorter, the length SQLite's first
/// checkpoint would leave it at (`wal_autocheckpoint` frames of a page and its 24-byte header,
/// after the 32-byte file header), in zeros, and syncs it: the fsyncs of the frames SQLite
/// then writes there journal no new size and no new blocks (see the module's docs). Call it
/// on a connection of its own that has read the file (its `-wal` exists) and is dropped after,
/// while other connections keep the file open (the last one to close deletes the `-wal`): it
/// sets the connection's busy timeout to zero, so as to take SQLite's write lock only if it is
/// free now. A `-wal` with no header yet is started too ([`start_wal`]). Never fails: where it
/// cannot, the `-wal` stays as it was.
pub(crate) fn extend_new_wal(conn: &Connection, real: &Path) {
    let wal = schema::side_file(real, "-wal");
    let Some(target) = extended_wal_len(conn) else {
        return;
    };
    // Long enough already (every open but the first of the -wal's life): no lock is taken.
    if std::fs::symlink_metadata(&wal).map_or(true, |m| m.len() >= target) {
        return;
    }
    if conn.busy_timeout(Duration::ZERO).is_err() || conn.execute_batch("BEGIN IMMEDIATE").is_err()
    {
        return;
    }
    // A -wal without a header (SQLite made it empty at this open) is started here too.
    if append_zeros(&wal, target).is_ok_and(|found| found < WAL_HEADER) && start_wal(conn).is_ok() {
        return;
    }
    // Nothing more was written through SQLite.
    let _ = conn.execute_batch("ROLLBACK");
}

/// The length of a `-wal`'s own header, before its first frame.
const WAL_HEADER: u64 = 32;

/// Makes SQLite write a new `-wal`'s header now, in the write transaction `conn` holds, and
/// commits it: a write of page 1 that changes nothing in it (`user_version` set to its own
/// value; SQLite still counts it in the database header's change counter, so a store opened
/// and closed leaves those 8 bytes changed). SQLite writes the header at the first commit into
/// the `-wal` and fsyncs it there, holding its write lock: that commit took 1.9 ms where the
/// next took 0.02 ms, and other processes' first writes waited for it (`steal --processes 4
/// --rounds 50`, BENCHMARKS.md, eleventh pass).
fn start_wal(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    conn.pragma_update(None, "user_version", version)?;
    conn.execute_batch("COMMIT")
}

/// The length SQLite's first checkpoint leaves a `-wal` at, at most [`MAX_EXTENDED_WAL`];
/// `None` where SQLite does not checkpoint on its own (`wal_autocheckpoint` ≤ 0).
fn extended_wal_len(conn: &Connection) -> Option<u64> {
    let frames: i64 = conn
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .ok()?;
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).ok()?;
    let (frames, page) = (u64::try_from(frames).ok()?, u64::try_from(page).ok()?);
    if frames == 0 || page == 0 {
        return None;
    }
    Some(32 + frames.min(MAX_EXTENDED_WAL / page) * (page + 24))
}

/// Appends zeros to the `-wal` up to `target` bytes and syncs it, and returns the length it
/// found; on failure (a full disk, a file size limit) cuts it back to that length. Call it
/// holding SQLite's write lock.
fn append_zeros(wal: &Path, target: u64) -> std::io::Result<u64> {
    let mut file = files::open_for_append(wal)?;
    let len = file.metadata()?.len();
    if len >= target {
        return Ok(len);
    }
    let appended = std::io::copy(&mut std::io::repeat(0).take(target - len), &mut file)
        .and_then(|_| file.sync_all());
    if appended.is_err() {
        let _ = file.set_len(len);
    }
    appended.map(|()| len)
}

/// Syncs the directory that holds `path`, so that a new file's name is on disk too.
fn sync_directory(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

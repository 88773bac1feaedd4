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
//! would have made, a moment later. What differs is what readers see: a write is visible from
//! its commit on, a moment before it is on disk (as at `NORMAL`); a power loss in that moment
//! loses it, together with every process on the host that could have read it.
//!
//! The `-wal` is opened at the first sync and kept, and its directory synced then, as SQLite
//! does at a new `-wal`'s first sync. SQLite deletes a `-wal` only when the last connection to
//! the file closes, and this store's connections stay open as long as it does, so the kept
//! descriptor names the `-wal` SQLite writes. (Checking the path's identity before each sync
//! cost a fifth of a lone writer's throughput in `load --writers 1`: a `stat` per write.)

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::schema;

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
        file.sync_all().map_err(|e| self.error(e))?;
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

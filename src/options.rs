//! How a store is opened: durability, waiting, pool size and the clock.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

/// When a successful write is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every `Ok` from a write is on disk (fsynced) before it is returned, so it survives power
    /// loss as far as SQLite guarantees with `synchronous=FULL`. The default.
    ///
    /// The store's connections commit at `synchronous=NORMAL`, and the store fsyncs the `-wal`
    /// itself after each commit, once its locks are released: other writers, of this process
    /// and of others, commit while that fsync runs instead of waiting for it. A write is
    /// visible to readers from its commit, a moment before it is on disk. If that fsync fails,
    /// the write's caller gets [`Error::Io`](crate::Error::Io): the write is committed but may
    /// not be on disk.
    #[default]
    Full,
    /// `synchronous=NORMAL` in WAL mode: every `Ok` survives a crash of the process, but the
    /// last writes may be lost on power loss or an OS crash. Much faster on slow disks.
    Normal,
}

impl Durability {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

/// The store's source of "now", used for `last_modified_time` and (legacy) lease expiry.
///
/// The store stamps the time itself at each write, so processes on one host share one clock.
/// Tests inject their own to move time without sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current UTC time.
    fn now_utc(&self) -> OffsetDateTime;
}

/// The system's wall clock in UTC. The default [`Clock`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_utc(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// Options for [`SqliteCheckpointStore::open_with`](crate::SqliteCheckpointStore::open_with).
///
/// ```
/// use std::time::Duration;
/// use eventhubs_checkpointstore_sqlite::{Durability, StoreOptions};
///
/// let options = StoreOptions::new()
///     .with_durability(Durability::Normal)
///     .with_busy_timeout(Duration::from_secs(2))
///     .with_pool_size(4);
/// assert_eq!(options.durability(), Durability::Normal);
/// ```
#[derive(Debug, Clone)]
pub struct StoreOptions {
    durability: Durability,
    busy_timeout: Duration,
    pool_size: u32,
    clock: Arc<dyn Clock>,
    file_mode: u32,
    check_on_open: bool,
    spin_wait: Duration,
    wal_preallocation: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(5),
            pool_size: 8,
            clock: Arc::new(SystemClock),
            file_mode: 0o600,
            check_on_open: true,
            spin_wait: Duration::from_micros(250),
            wal_preallocation: true,
        }
    }
}

impl StoreOptions {
    /// The defaults: [`Durability::Full`], a 5 s busy timeout, 8 pooled connections, the
    /// [`SystemClock`], file mode `0o600`, the integrity check on open, a 250 µs spin wait and
    /// the `-wal` preallocated.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets when a write counts as done. Default: [`Durability::Full`].
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets how long one operation may wait in all before it fails with
    /// [`Error::Busy`](crate::Error::Busy): queued behind the store's other writers in this
    /// process, for a free pooled connection, and for a lock held by another process. Writers
    /// of one store queue in process and never wait on each other's SQLite locks; another
    /// process's lock is polled with short sleeps that grow from 20 µs to 0.5 ms (SQLite's own
    /// handler sleeps 1 to 100 ms at a time). Default: 5 seconds.
    pub fn with_busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Sets how many connections the store opens (all at `open`) and keeps (at least 1).
    /// Default: 8.
    pub fn with_pool_size(mut self, size: u32) -> Self {
        self.pool_size = size.max(1);
        self
    }

    /// Sets the clock that stamps `last_modified_time`. Default: [`SystemClock`].
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the Unix permission bits of a database file this store creates (its `-wal` and
    /// `-shm` files inherit them). As for any file a process creates, the process umask is
    /// taken off (`0o660` under umask `022` gives `0o640`). An existing file keeps its mode.
    /// Default: `0o600`, readable and writable by the owner only.
    pub fn with_file_mode(mut self, mode: u32) -> Self {
        self.file_mode = mode;
        self
    }

    /// Sets whether opening a file runs SQLite's `PRAGMA quick_check`, so that a damaged file
    /// is refused with [`Error::NotADatabase`](crate::Error::NotADatabase) instead of being
    /// read as a store with rows missing. It reads every page once (about 5 ms for a store of
    /// 10,000 partitions) and writes nothing. Turn it off only to open a damaged file anyway,
    /// as `eh-checkpoints check` does to report the damage. Default: `true`.
    pub fn with_check_on_open(mut self, check: bool) -> Self {
        self.check_on_open = check;
        self
    }

    /// Sets how long the store's async calls stay awake waiting, before they let a thread
    /// sleep: the store's committer thread waiting for the next checkpoint write (spinning),
    /// and a caller's task waiting for its answer (yielding to the runtime, never blocking
    /// it). Waking a sleeping thread costs tens of microseconds on a virtual machine, as much
    /// as a whole write with [`Durability::Normal`], so a writer in a loop is about 4× faster
    /// with the default; it pays with CPU time, at most this long per call. Nothing waits
    /// awake while the store's recent commits took more than half of it (a durable commit
    /// waiting for an fsync gains nothing, and the spinning takes a core from the threads
    /// doing the work), or while another process holds the file's lock. `Duration::ZERO`
    /// always sleeps. The blocking API does not use it. Default: 250 µs.
    pub fn with_spin_wait(mut self, spin_wait: Duration) -> Self {
        self.spin_wait = spin_wait;
        self
    }

    /// Sets whether opening a store at [`Durability::Full`] gives a `-wal` shorter than
    /// SQLite's first checkpoint leaves it (4 MiB at the default page size) that length at
    /// once, in zeros, so that the syncs of the writes that follow need not journal its
    /// growth: a third less time per sync while a new file's first thousand pages are
    /// written (the start-up claims of a fleet). It writes only past the `-wal`'s end, while
    /// holding SQLite's write lock, and never waits for that lock (if another writer holds it,
    /// nothing is done). A `-wal` is short when no other connection had the file open (SQLite
    /// deletes it when the last one closes), so an open that finds it short writes and syncs
    /// those 4 MiB: about 4 ms on a local SSD, more on an SD card. Such an open also makes
    /// SQLite write the new `-wal`'s header, with a write that changes nothing, so that its
    /// fsync is not paid by the first write under SQLite's lock. Turn it off for a store
    /// opened for a few writes, as the `eh-checkpoints` commands do (but `simulate`).
    /// Default: `true`.
    pub fn with_wal_preallocation(mut self, preallocate: bool) -> Self {
        self.wal_preallocation = preallocate;
        self
    }

    /// The durability set. Default: [`Durability::Full`].
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The busy timeout set. Default: 5 seconds.
    pub fn busy_timeout(&self) -> Duration {
        self.busy_timeout
    }

    /// The pool size set. Default: 8.
    pub fn pool_size(&self) -> u32 {
        self.pool_size
    }

    /// The clock set. Default: [`SystemClock`].
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The file mode for new files. Default: `0o600`.
    pub fn file_mode(&self) -> u32 {
        self.file_mode
    }

    /// Whether opening runs `PRAGMA quick_check`. Default: `true`.
    pub fn check_on_open(&self) -> bool {
        self.check_on_open
    }

    /// The spin wait set. Default: 250 µs.
    pub fn spin_wait(&self) -> Duration {
        self.spin_wait
    }

    /// Whether opening preallocates a short `-wal`. Default: `true`.
    pub fn wal_preallocation(&self) -> bool {
        self.wal_preallocation
    }
}

//! `SqliteCheckpointStore`: an r2d2 pool over one SQLite file, the sync core (`ops`) and the
//! async shell around it.

pub(crate) mod group_commit;

pub use group_commit::CommitStats;
pub(crate) mod durable;
pub(crate) mod gate;
pub(crate) mod ops;
pub(crate) mod wait;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

use crate::checkpoint_store::CheckpointStore;
use crate::error::{Error, Result};
use crate::files;
use crate::model::{Checkpoint, Ownership};
use crate::options::{Durability, StoreOptions};
use crate::schema;

/// How long `open` may take to open the pool's connections, at least.
const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A checkpoint store in one SQLite file (or in memory), shared by every clone.
///
/// Cloning is cheap: clones share one connection pool. Many processes may open the same file
/// at once; SQLite's locks and `BEGIN IMMEDIATE` transactions keep their writes apart.
///
/// The async methods (the [`CheckpointStore`] trait and [`update_checkpoint_fenced`]) need a
/// tokio runtime; every method whose name starts with `blocking_` does its work on the calling
/// thread, and no other method blocks (the administration in [`admin`](crate::admin) and the
/// imports and exports in [`migrate`](crate::migrate) are `blocking_*` methods only).
///
/// **Cancellation:** an async call runs on another thread (tokio's blocking pool, or the store's
/// committer thread for checkpoint writes and claims), where it cannot be aborted. Dropping the
/// future does not stop it: the write may still commit. On a multi-thread runtime a short call
/// may instead run in place ([`tokio::task::block_in_place`]: the worker's other tasks move to
/// another thread): a list with a connection free, and a checkpoint write or claim alone in an
/// uncontended queue whose commits take too long to spin for (an fsync each). Until it
/// returns, the other futures of the caller's task (a `select!` branch, a timeout) wait with it.
///
/// [`update_checkpoint_fenced`]: SqliteCheckpointStore::update_checkpoint_fenced
#[derive(Clone, Debug)]
pub struct SqliteCheckpointStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pool: Pool<SqliteConnectionManager>,
    path: Option<PathBuf>,
    options: StoreOptions,
    group: group_commit::GroupCommit,
    /// Writers of this store queue here, in process, before they begin a transaction.
    writer: wait::WriterLock,
    /// Busy waits and lock waits of this store's connections.
    counters: Arc<wait::Counters>,
    /// At [`Durability::Full`] on a file: the `-wal` this store fsyncs after each write, outside
    /// its locks; its connections commit at `synchronous=NORMAL` (`durable.rs`).
    pub(crate) wal_sync: Option<Arc<durable::WalSync>>,
    /// An in-memory database lives as long as one connection to it: this one.
    _keeper: Option<Mutex<Connection>>,
    /// What the open found of the file (`None` in memory). Last, so dropped last: after every
    /// connection of this store.
    file: Option<FileInfo>,
}

/// What the open of a file found and decided.
#[derive(Debug)]
struct FileInfo {
    /// The file with every symlink resolved: what SQLite opened.
    real: PathBuf,
    /// The size of its `-wal` before SQLite read it.
    wal_at_open: Option<u64>,
    /// Opened with `open_read_only`.
    read_only: bool,
    /// The descriptor its header is read through; dropped after the pool, so never closed
    /// beside this store's own connections.
    _held: files::Held,
}

/// The size of the `-wal` beside `real` (`Some(0)` if there is none).
fn wal_size(real: &Path) -> Option<u64> {
    match std::fs::metadata(schema::side_file(real, "-wal")) {
        Ok(m) => Some(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(0),
        Err(_) => None,
    }
}

/// Refuses to go on when the path no longer names the file the gate let through: it was
/// replaced (by a FIFO, a device, another file) between the gate and SQLite's open.
fn refuse_if_replaced(real: &Path, identity: files::Identity) -> Result<()> {
    if files::Identity::now(real) == Some(identity) {
        return Ok(());
    }
    Err(Error::Io {
        path: None,
        source: crate::error::message("the file was replaced while it was being opened"),
    })
}

impl SqliteCheckpointStore {
    /// Opens the store in the file at `path`, creating it (mode `0o600`) if it does not exist,
    /// with the default [`StoreOptions`].
    ///
    /// # Errors
    /// [`Error::NotADatabase`] if the file is not a SQLite database or belongs to another
    /// application, [`Error::SchemaTooNew`] if a newer version of this crate wrote it (the file
    /// is left untouched in both cases), [`Error::ReadOnly`] if it cannot be written,
    /// [`Error::Io`] if it cannot be opened or created (a directory, a missing parent), and
    /// [`Error::Busy`] if another process holds it locked past the busy timeout.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens the store in the file at `path` with the given options.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let path = path.as_ref();
        let busy = options.busy_timeout();
        Self::open_file(path, options).map_err(|e| e.at(Some(path)).waited(busy))
    }

    /// Opens a new, empty store in memory, shared by all clones (and all pooled connections)
    /// and gone when the last clone is dropped. For tests and examples.
    ///
    /// ```
    /// let store = eventhubs_checkpointstore_sqlite::SqliteCheckpointStore::open_in_memory()?;
    /// assert!(store.path().is_none());
    /// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
    /// ```
    ///
    /// # Errors
    /// Only if SQLite cannot allocate the database.
    pub fn open_in_memory() -> Result<Self> {
        Self::open_in_memory_with(StoreOptions::default())
    }

    /// Opens a new, empty in-memory store with the given options (durability does not apply).
    ///
    /// # Errors
    /// As [`open_in_memory`](Self::open_in_memory).
    pub fn open_in_memory_with(options: StoreOptions) -> Result<Self> {
        // SQLite's `memdb` VFS shares one database between connections that name it with a
        // leading `/`, with ordinary locking (busy waits work, unlike shared cache).
        let uri = format!("file:/eh-checkpoints-{}?vfs=memdb", uuid::Uuid::new_v4());
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut keeper = Connection::open_with_flags(&uri, flags)?;
        schema::configure(&keeper, options.durability(), options.busy_timeout())?;
        schema::initialize(&mut keeper, false, options.check_on_open())?;
        let pool = Self::pool(&uri, flags, &options, false)?;
        Ok(SqliteCheckpointStore {
            inner: Arc::new(Inner {
                pool,
                path: None,
                file: None,
                options,
                group: Default::default(),
                writer: Default::default(),
                counters: Default::default(),
                wal_sync: None,
                _keeper: Some(Mutex::new(keeper)),
            }),
        })
    }

    fn open_file(path: &Path, options: StoreOptions) -> Result<Self> {
        let gated = files::gate(path, Some(options.file_mode()))?;
        let real = gated.real;
        let held = files::hold(&real, gated.identity, true)?;
        files::refuse_odd_side_files(&real)?;
        let wal_at_open = wal_size(&real);
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        // Openers that start together on a new file meet SQLite locks that do not wait for the
        // busy handler (switching to WAL takes its lock once, and so does WAL recovery): the
        // setup is tried again until the busy timeout has run out in full.
        let deadline = Instant::now() + options.busy_timeout();
        let mut pause = Duration::from_millis(1);
        let setup = loop {
            match Self::set_up(&real, gated.identity, flags, &options) {
                Err(e) if e.is_busy() && Instant::now() < deadline => {
                    std::thread::sleep(
                        pause.min(deadline.saturating_duration_since(Instant::now())),
                    );
                    pause = (pause * 2).min(Duration::from_millis(25));
                }
                other => break other?,
            }
        };
        let self_sync = options.durability() == Durability::Full;
        let pool = Self::pool(&real, flags, &options, self_sync)?;
        if self_sync && options.wal_preallocation() {
            durable::extend_new_wal(&setup, &real);
        }
        // Closed only once the pool is open: as the last connection, it would delete the -wal.
        drop(setup);
        let gate = gate::Gate::of(&held);
        let wal_sync = self_sync.then(|| Arc::new(durable::WalSync::new(&real)));
        Ok(SqliteCheckpointStore {
            inner: Arc::new(Inner {
                pool,
                path: Some(path.to_owned()),
                file: Some(FileInfo {
                    real,
                    wal_at_open,
                    read_only: false,
                    _held: held,
                }),
                options,
                group: Default::default(),
                writer: wait::WriterLock::with_gate(gate),
                counters: Default::default(),
                wal_sync,
                _keeper: None,
            }),
        })
    }

    /// One try at checking and initializing the file at `real`, on a connection of its own,
    /// which it returns.
    fn set_up(
        real: &Path,
        identity: files::Identity,
        flags: OpenFlags,
        options: &StoreOptions,
    ) -> Result<Connection> {
        schema::check_header(real)?;
        let mut setup = Connection::open_with_flags(real, flags)?;
        schema::configure(&setup, options.durability(), options.busy_timeout())?;
        refuse_if_replaced(real, identity)?;
        schema::initialize(&mut setup, true, options.check_on_open())?;
        Ok(setup)
    }

    /// Opens the store in the file at `path` for reading only, with the default
    /// [`StoreOptions`]: for inspecting a store that cannot (or must not) be written, such as a
    /// read-only file, a file in a read-only directory, or one on read-only media. Nothing is
    /// ever written, the file is not created or migrated, and no `-wal` or `-shm` file is left
    /// behind that was not there. Every write fails with [`Error::ReadOnly`].
    ///
    /// How it reads, by what it finds:
    /// - a file and directory this process can write: a read-write connection that refuses
    ///   every write (`PRAGMA query_only`), so that SQLite removes its `-wal` and `-shm` on
    ///   close as usual, and writers elsewhere are seen;
    /// - otherwise, no `-wal` (or an empty one): SQLite's `immutable` read, which needs no
    ///   `-shm` (nobody can write this file through SQLite: a writer needs the file, and for a
    ///   new `-wal`, the directory writable);
    /// - otherwise (a `-wal` with content, left by a crash): SQLite's read-only mode, which
    ///   reads the `-wal` and needs its `-shm` to exist or be creatable.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("store.db");
    /// use eventhubs_checkpointstore_sqlite::SqliteCheckpointStore;
    /// drop(SqliteCheckpointStore::open(&path)?);
    /// let store = SqliteCheckpointStore::open_read_only(&path)?;
    /// assert!(store.is_read_only());
    /// assert!(store.blocking_list_checkpoints("ns", "hub", "$default")?.is_empty());
    /// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`open`](Self::open), and [`Error::Io`] (not found) for a missing file;
    /// [`Error::NotADatabase`] for an empty database (it holds no store yet).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_read_only_with(path, StoreOptions::default())
    }

    /// [`open_read_only`](Self::open_read_only) with the given options (of which the busy
    /// timeout, the pool size and the check on open apply).
    ///
    /// # Errors
    /// As [`open_read_only`](Self::open_read_only).
    pub fn open_read_only_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self> {
        let path = path.as_ref();
        let busy = options.busy_timeout();
        Self::open_file_read_only(path, options).map_err(|e| e.at(Some(path)).waited(busy))
    }

    fn open_file_read_only(path: &Path, options: StoreOptions) -> Result<Self> {
        let gated = files::gate(path, None)?;
        let real = gated.real;
        let held = files::hold(&real, gated.identity, false)?;
        files::refuse_odd_side_files(&real)?;
        let wal_at_open = wal_size(&real);
        schema::check_header(&real)?;
        let dir = real.parent().unwrap_or(Path::new("/"));
        let (target, flags, query_only) = if files::writable(&real) && files::writable(dir) {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            (real.as_os_str().to_owned(), flags, true)
        } else if wal_at_open.unwrap_or(0) > 0 {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            (real.as_os_str().to_owned(), flags, false)
        } else {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            (
                files::uri(&real, "mode=ro&immutable=1").into(),
                flags,
                false,
            )
        };
        let busy = options.busy_timeout();
        let setup = Connection::open_with_flags(&target, flags)?;
        schema::configure_read_only(&setup, busy, query_only)?;
        refuse_if_replaced(&real, gated.identity)?;
        schema::inspect_read_only(&setup, options.check_on_open())?;
        drop(setup);
        let manager = SqliteConnectionManager::file(&target)
            .with_flags(flags)
            .with_init(move |c| schema::configure_read_only(c, busy, query_only));
        let pool = Self::build_pool(manager, &options)?;
        Ok(SqliteCheckpointStore {
            inner: Arc::new(Inner {
                pool,
                path: Some(path.to_owned()),
                file: Some(FileInfo {
                    real,
                    wal_at_open,
                    read_only: true,
                    _held: held,
                }),
                options,
                group: Default::default(),
                writer: Default::default(),
                counters: Default::default(),
                wal_sync: None,
                _keeper: None,
            }),
        })
    }

    /// The pool of a store that writes. With `self_sync` its connections commit at
    /// `synchronous=NORMAL` and the store syncs the `-wal` after each write (`durable.rs`).
    fn pool(
        target: impl AsRef<Path>,
        flags: OpenFlags,
        options: &StoreOptions,
        self_sync: bool,
    ) -> Result<Pool<SqliteConnectionManager>> {
        let durability = if self_sync {
            Durability::Normal
        } else {
            options.durability()
        };
        let busy = options.busy_timeout();
        let manager = SqliteConnectionManager::file(target)
            .with_flags(flags)
            .with_init(move |c| {
                schema::configure(c, durability, busy)?;
                c.busy_handler(Some(wait::on_busy))
            });
        Self::build_pool(manager, options)
    }

    fn build_pool(
        manager: SqliteConnectionManager,
        options: &StoreOptions,
    ) -> Result<Pool<SqliteConnectionManager>> {
        let busy = options.busy_timeout();
        // Every connection is opened here, and none is ever reaped (no idle timeout, no
        // maximum lifetime) or replaced (SQLite connections never report broken). So no r2d2
        // background work is scheduled after `open`, and dropping the last store handle closes
        // the file at once. r2d2 opens the connections on its worker thread, and each job holds
        // the pool until it returns, a moment after `build` has seen its connection: a store
        // dropped in that moment closed its file late, after its caller had gone on to read or
        // change the file (seen on tmpfs). So the pool gets one worker, and a last job queued
        // behind the others tells when they have all returned.
        let workers = Arc::new(
            scheduled_thread_pool::ScheduledThreadPool::builder()
                .num_threads(1)
                .thread_name_pattern("eh-checkpoint-open-{}")
                .build(),
        );
        let pool = Pool::builder()
            .thread_pool(Arc::clone(&workers))
            .max_size(options.pool_size())
            .min_idle(Some(options.pool_size()))
            .idle_timeout(None)
            .max_lifetime(None)
            // Opening the connections is this process's own work, not a wait for another's
            // lock: it gets at least OPEN_TIMEOUT, however short the busy timeout (a 20 ms busy
            // timeout made `open` fail on a loaded machine). Check-outs wait the busy timeout
            // (`Inner::checkout`).
            .connection_timeout(busy.max(OPEN_TIMEOUT))
            .test_on_check_out(false)
            .build(manager)?;
        let (done, opened) = std::sync::mpsc::channel();
        workers.execute(move || {
            let _ = done.send(());
        });
        // A worker that cannot run it drops the job, and so the sender: `recv` returns then too.
        let _ = opened.recv();
        Ok(pool)
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// True for a store opened with [`open_read_only`](Self::open_read_only).
    pub fn is_read_only(&self) -> bool {
        self.inner.file.as_ref().is_some_and(|f| f.read_only)
    }

    /// The size of the `-wal` file when the store was opened, before SQLite read it (and
    /// recovered it, if a crash left it): `Some(0)` when there was none, `None` in memory.
    pub(crate) fn wal_size_at_open(&self) -> Option<u64> {
        self.inner.file.as_ref().and_then(|f| f.wal_at_open)
    }

    /// The database file with every symlink resolved: the name its `-wal` is named after.
    pub(crate) fn real_path(&self) -> Option<&Path> {
        self.inner.file.as_ref().map(|f| f.real.as_path())
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// How many checkpoint writes and claims this store (this value and its clones, in this
    /// process) has committed, in how many transactions (concurrent writes share one: group
    /// commit), and how often its connections waited for a lock.
    pub fn commit_stats(&self) -> CommitStats {
        self.inner
            .group
            .stats(&self.inner.counters, self.inner.wal_sync.as_deref())
    }

    /// The newest schema version this build reads and writes (`PRAGMA user_version` of the
    /// files it creates). The version of an open file is in
    /// [`CheckReport::schema_version`](crate::admin::CheckReport::schema_version).
    pub fn supported_schema_version() -> i64 {
        schema::supported_version()
    }

    /// Runs `f` with a pooled connection on the calling thread, holding the store's writer
    /// lock: use it for anything that may write.
    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(&Inner, &mut Connection) -> Result<T>,
    ) -> Result<T> {
        self.inner.run(true, f)
    }

    /// Like [`with_conn`](Self::with_conn) for an operation that only reads: it does not queue
    /// behind writers (WAL readers never wait for them).
    pub(crate) fn with_read_conn<T>(
        &self,
        f: impl FnOnce(&Inner, &mut Connection) -> Result<T>,
    ) -> Result<T> {
        self.inner.run(false, f)
    }

    /// The one async hop: runs `f` with a pooled connection on tokio's blocking pool (a read on
    /// a multi-thread runtime: in place, on the caller's thread), holding the store's writer
    /// lock (see [`interact_read`](Self::interact_read)), and waits for it awake at first
    /// (`wait_awake`), so a quick answer costs no wake-up. The connection is taken inside the
    /// blocking task, the caller's tracing span is entered there, and a panic comes back as
    /// [`Error::Internal`].
    pub(crate) async fn interact<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &mut Connection) -> Result<T> + Send + 'static,
    {
        self.hop(true, f).await
    }

    /// [`interact`](Self::interact) for an operation that only reads: no writer lock.
    pub(crate) async fn interact_read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &mut Connection) -> Result<T> + Send + 'static,
    {
        self.hop(false, f).await
    }

    async fn hop<T, F>(&self, write: bool, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &mut Connection) -> Result<T> + Send + 'static,
    {
        if !write && in_place() && self.inner.pool.state().idle_connections > 0 {
            // A read on a multi-thread runtime, with a connection free, runs on the caller's
            // thread: tokio hands the worker's other tasks to another thread, and the rows are
            // read and built into the model on one core, as plain rusqlite on the caller's
            // thread does (a list of 1024 checkpoints cost 1.3-1.8× plain rusqlite's through
            // the blocking pool). A WAL reader waits for no writer, so it runs as long as its
            // SQL does; one that would wait for a connection hops, and waits off this thread.
            return tokio::task::block_in_place(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.inner.run(false, f)))
                    .unwrap_or_else(|_| {
                        Err(Error::Internal {
                            message: "a store task panicked".to_owned(),
                            source: None,
                        })
                    })
            });
        }
        let inner = Arc::clone(&self.inner);
        let span = tracing::Span::current();
        let task = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            inner.run(write, f)
        });
        // A read (a list) usually takes longer than the spin wait: spinning for it would only
        // take a core from the thread doing it (perf: 16% of a list of 1024 went to polling).
        // So does waiting awake while another process holds the lock (wait.rs).
        let spin = if write {
            self.inner.counters.spin(self.inner.options.spin_wait())
        } else {
            std::time::Duration::ZERO
        };
        match group_commit::wait_awake(task, spin).await {
            Ok(result) => result,
            Err(e) => Err(Error::Internal {
                message: if e.is_panic() {
                    "a store task panicked".to_owned()
                } else {
                    "a store task was cancelled".to_owned()
                },
                source: Some(Arc::new(e)),
            }),
        }
    }

    /// A `claim_ownership` call of our model or the official one: validated and answered on
    /// the caller's thread, the transaction in the group commit.
    pub(crate) async fn claim<R: ops::ClaimRequest + Sync>(
        &self,
        requests: &[R],
    ) -> Result<Vec<R>> {
        let batch = ops::ClaimBatch::validate(requests)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let outcome = group_commit::submit_claims(&self.inner, batch.pack()).await?;
        Ok(batch.results(outcome))
    }

    /// Commits a validated checkpoint write in the next group commit.
    pub(crate) async fn submit(&self, write: group_commit::Write) -> Result<()> {
        group_commit::submit(&self.inner, write).await
    }

    /// [`CheckpointStore::claim_ownership`] on the calling thread.
    ///
    /// # Errors
    /// As [`CheckpointStore::claim_ownership`].
    pub fn blocking_claim_ownership(&self, ownerships: &[Ownership]) -> Result<Vec<Ownership>> {
        let batch = ops::ClaimBatch::validate(ownerships)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let outcome = group_commit::submit_claims_blocking(&self.inner, batch.pack())?;
        Ok(batch.results(outcome))
    }

    /// [`CheckpointStore::list_ownerships`] on the calling thread.
    ///
    /// # Errors
    /// As [`CheckpointStore::list_ownerships`].
    pub fn blocking_list_ownerships(
        &self,
        fully_qualified_namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> Result<Vec<Ownership>> {
        let names = (fully_qualified_namespace, event_hub_name, consumer_group);
        self.with_read_conn(|_, c| ops::list_ownerships(c, names, ops::ownership_model(names)))
    }

    /// [`CheckpointStore::list_checkpoints`] on the calling thread.
    ///
    /// # Errors
    /// As [`CheckpointStore::list_checkpoints`].
    pub fn blocking_list_checkpoints(
        &self,
        fully_qualified_namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> Result<Vec<Checkpoint>> {
        let names = (fully_qualified_namespace, event_hub_name, consumer_group);
        self.with_read_conn(|_, c| ops::list_checkpoints(c, names, ops::checkpoint_model(names)))
    }

    /// [`CheckpointStore::update_checkpoint`] on the calling thread.
    ///
    /// # Errors
    /// As [`CheckpointStore::update_checkpoint`].
    pub fn blocking_update_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        group_commit::submit_blocking(&self.inner, checkpoint_write(checkpoint, None)?)
    }

    /// Writes `checkpoint` only while `ownership` — its `owner_id` and `etag`, as returned by
    /// the claim that won it — is still the partition's stored ownership. The check and the
    /// write are one transaction, so a processor that lost its partition cannot move the
    /// position of the new owner.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> eventhubs_checkpointstore_sqlite::Result<()> {
    /// use eventhubs_checkpointstore_sqlite::*;
    ///
    /// let store = SqliteCheckpointStore::open_in_memory()?;
    /// let claim = Ownership {
    ///     fully_qualified_namespace: "ns".into(),
    ///     event_hub_name: "hub".into(),
    ///     consumer_group: "$Default".into(),
    ///     partition_id: "0".into(),
    ///     owner_id: Some("a".into()),
    ///     ..Ownership::default()
    /// };
    /// let mine = store.claim_ownership(&[claim]).await?.remove(0);
    /// let checkpoint = Checkpoint {
    ///     fully_qualified_namespace: "ns".into(),
    ///     event_hub_name: "hub".into(),
    ///     consumer_group: "$Default".into(),
    ///     partition_id: "0".into(),
    ///     offset: Some("4096".into()),
    ///     sequence_number: Some(42),
    /// };
    /// store.update_checkpoint_fenced(checkpoint.clone(), &mine).await?;
    ///
    /// // Another processor takes the partition over: the old owner can no longer write.
    /// let stolen = Ownership { owner_id: Some("b".into()), ..mine.clone() };
    /// store.claim_ownership(&[stolen]).await?;
    /// let err = store.update_checkpoint_fenced(checkpoint, &mine).await.unwrap_err();
    /// assert!(matches!(err, Error::OwnershipLost { .. }));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::OwnershipLost`] if the partition has another owner or etag now (nothing is
    /// written); [`Error::InvalidArgument`] if the checkpoint is invalid, the ownership names
    /// another partition, or lacks an owner or etag; storage errors as for
    /// [`CheckpointStore::update_checkpoint`].
    pub async fn update_checkpoint_fenced(
        &self,
        checkpoint: Checkpoint,
        ownership: &Ownership,
    ) -> Result<()> {
        let write = checkpoint_write(&checkpoint, Some(ownership))?;
        group_commit::submit(&self.inner, write).await
    }

    /// [`update_checkpoint_fenced`](Self::update_checkpoint_fenced) on the calling thread.
    ///
    /// # Errors
    /// As [`update_checkpoint_fenced`](Self::update_checkpoint_fenced).
    pub fn blocking_update_checkpoint_fenced(
        &self,
        checkpoint: &Checkpoint,
        ownership: &Ownership,
    ) -> Result<()> {
        group_commit::submit_blocking(&self.inner, checkpoint_write(checkpoint, Some(ownership))?)
    }

    /// Writes several checkpoints together, each fenced on its ownership if one is given: all
    /// are queued at once, so they share one transaction and one fsync (group commit), and
    /// each is answered on its own, in order, as
    /// [`blocking_update_checkpoint`](Self::blocking_update_checkpoint) or
    /// [`blocking_update_checkpoint_fenced`](Self::blocking_update_checkpoint_fenced) would
    /// answer it. For a caller that gathers its positions (the Python package's async store
    /// sends its tasks' checkpoints this way), or a processor checkpointing every partition at
    /// shutdown.
    ///
    /// ```
    /// use eventhubs_checkpointstore_sqlite::{Checkpoint, SqliteCheckpointStore};
    ///
    /// let store = SqliteCheckpointStore::open_in_memory()?;
    /// let at = |p: &str, seq: i64| Checkpoint {
    ///     fully_qualified_namespace: "ns".into(),
    ///     event_hub_name: "hub".into(),
    ///     consumer_group: "$Default".into(),
    ///     partition_id: p.into(),
    ///     offset: Some(seq.to_string()),
    ///     sequence_number: Some(seq),
    /// };
    /// let answers = store.blocking_update_checkpoints(&[(at("0", 7), None), (at("", 1), None)]);
    /// assert!(answers[0].is_ok());
    /// assert!(answers[1].is_err()); // an empty partition id: invalid, and alone in failing
    /// assert_eq!(store.blocking_list_checkpoints("ns", "hub", "$Default")?.len(), 1);
    /// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
    /// ```
    ///
    /// # Errors
    /// Per write, as for the single calls: an invalid write fails alone before anything is
    /// queued; a failed fence fails alone; a storage error fails every write of its commit.
    pub fn blocking_update_checkpoints(
        &self,
        writes: &[(Checkpoint, Option<Ownership>)],
    ) -> Vec<Result<()>> {
        let mut answers: Vec<Option<Result<()>>> = Vec::with_capacity(writes.len());
        let mut valid = Vec::with_capacity(writes.len());
        for (checkpoint, fence) in writes {
            match checkpoint_write(checkpoint, fence.as_ref()) {
                Ok(w) => {
                    valid.push(w);
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        let mut committed = group_commit::submit_all_blocking(&self.inner, valid).into_iter();
        answers
            .into_iter()
            .map(|a| {
                a.unwrap_or_else(|| {
                    committed
                        .next()
                        .unwrap_or_else(|| Err(Error::internal("a write has no answer")))
                })
            })
            .collect()
    }
}

impl Inner {
    /// Runs `f` with a pooled connection as one operation whose waits together stay within
    /// the busy timeout: queued in process for the writer lock first if it may `write`, then
    /// for a free connection, then (in SQLite's busy handler) for other processes' locks.
    pub(crate) fn run<T>(
        &self,
        write: bool,
        f: impl FnOnce(&Inner, &mut Connection) -> Result<T>,
    ) -> Result<T> {
        let lock = write.then_some(&self.writer);
        let result = wait::scope(&self.counters, lock, self.options.busy_timeout(), |left| {
            let mut conn = self
                .pool
                .get_timeout(left.max(std::time::Duration::from_millis(1)))?;
            f(self, &mut conn)
        });
        let result = result.map_err(|e| {
            e.at(self.path.as_deref())
                .waited(self.options.busy_timeout())
        });
        // What `f` committed goes to disk before its caller hears of it, even if it failed
        // after a commit; its own error comes first.
        match result {
            Ok(value) if write => self.sync_wal().map(|()| value),
            Err(e) if write => {
                let _ = self.sync_wal();
                Err(e)
            }
            other => other,
        }
    }

    /// At [`Durability::Full`]: puts every write committed so far on disk (`durable.rs`). Call
    /// it outside the writer lock, before answering a writer.
    pub(crate) fn sync_wal(&self) -> Result<()> {
        self.wal_sync
            .as_deref()
            .map_or(Ok(()), durable::WalSync::sync)
    }

    pub(crate) fn clock(&self) -> &dyn crate::options::Clock {
        self.options.clock().as_ref()
    }
}

#[async_trait]
impl CheckpointStore for SqliteCheckpointStore {
    async fn claim_ownership(&self, ownerships: &[Ownership]) -> Result<Vec<Ownership>> {
        // Validated here, and the answers built here from the caller's requests: only the
        // little the transaction needs goes to the group commit.
        self.claim(ownerships).await
    }

    async fn list_ownerships(
        &self,
        fully_qualified_namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> Result<Vec<Ownership>> {
        let (ns, hub, group) = owned(fully_qualified_namespace, event_hub_name, consumer_group);
        self.interact_read(move |_, c| {
            let names = (ns.as_str(), hub.as_str(), group.as_str());
            ops::list_ownerships(c, names, ops::ownership_model(names))
        })
        .await
    }

    async fn list_checkpoints(
        &self,
        fully_qualified_namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> Result<Vec<Checkpoint>> {
        let (ns, hub, group) = owned(fully_qualified_namespace, event_hub_name, consumer_group);
        self.interact_read(move |_, c| {
            let names = (ns.as_str(), hub.as_str(), group.as_str());
            ops::list_checkpoints(c, names, ops::checkpoint_model(names))
        })
        .await
    }

    async fn update_checkpoint(&self, checkpoint: Checkpoint) -> Result<()> {
        group_commit::submit(&self.inner, checkpoint_write(&checkpoint, None)?).await
    }
}

/// Whether a blocking call may run in place ([`tokio::task::block_in_place`]): on a
/// multi-thread runtime only (it panics on a current-thread one).
fn in_place() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Validates a checkpoint (and the ownership fencing it) into a write for the group commit.
fn checkpoint_write(
    checkpoint: &Checkpoint,
    fence: Option<&Ownership>,
) -> Result<group_commit::Write> {
    let key = checkpoint.validate()?;
    let fence = fence
        .map(|o| ops::validate_fence(&key, o))
        .transpose()?
        .map(|(owner_id, etag)| group_commit::Fence {
            owner_id,
            etag,
            context: None,
        });
    Ok(group_commit::Write {
        key,
        offset: checkpoint.offset.clone(),
        sequence_number: checkpoint.sequence_number,
        fence,
    })
}

fn owned(ns: &str, hub: &str, group: &str) -> (String, String, String) {
    (ns.to_owned(), hub.to_owned(), group.to_owned())
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::thread::{self, ThreadId};

    use super::*;

    type Outcome = std::result::Result<(), Box<dyn std::error::Error>>;

    fn read_thread(store: &SqliteCheckpointStore) -> impl Future<Output = Result<ThreadId>> + '_ {
        store.interact_read(|_, _| Ok(thread::current().id()))
    }

    /// The spin wait is judged by how long commits take, at either durability.
    #[test]
    fn every_group_commit_feeds_the_commit_average() -> Outcome {
        let dir = tempfile::tempdir()?;
        for (i, durability) in [Durability::Full, Durability::Normal]
            .into_iter()
            .enumerate()
        {
            let path = dir.path().join(format!("{i}.db"));
            let options = StoreOptions::new().with_durability(durability);
            let store = SqliteCheckpointStore::open_with(&path, options)?;
            assert_eq!(store.inner.counters.recent_commit(), Duration::ZERO);
            store.blocking_update_checkpoint(&Checkpoint {
                fully_qualified_namespace: "ns".into(),
                event_hub_name: "hub".into(),
                consumer_group: "$default".into(),
                partition_id: "0".into(),
                offset: Some("1".into()),
                sequence_number: Some(1),
            })?;
            let recent = store.inner.counters.recent_commit();
            assert!(recent > Duration::ZERO, "{durability:?}: {recent:?}");
        }
        Ok(())
    }

    #[test]
    fn a_read_runs_on_the_callers_thread_on_a_multi_thread_runtime_only() -> Outcome {
        let store = SqliteCheckpointStore::open_in_memory()?;
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()?;
        // On a worker, and in `block_on` itself.
        let (worker, read) = multi.block_on(async {
            let store = store.clone();
            tokio::spawn(async move { (thread::current().id(), read_thread(&store).await) }).await
        })?;
        assert_eq!(worker, read?);
        assert_eq!(thread::current().id(), multi.block_on(read_thread(&store))?);
        // block_in_place would panic here: the read hops to the blocking pool.
        let current = tokio::runtime::Builder::new_current_thread().build()?;
        assert_ne!(
            thread::current().id(),
            current.block_on(read_thread(&store))?
        );
        Ok(())
    }

    #[test]
    fn a_read_that_panics_is_an_internal_error_on_either_runtime() -> Outcome {
        let store = SqliteCheckpointStore::open_in_memory()?;
        let multi = tokio::runtime::Builder::new_multi_thread().build()?;
        let current = tokio::runtime::Builder::new_current_thread().build()?;
        for rt in [&multi, &current] {
            let result: Result<()> =
                rt.block_on(store.interact_read(|_, _| panic!("a read that panics")));
            assert!(matches!(result, Err(Error::Internal { .. })), "{result:?}");
            // The store still answers.
            rt.block_on(read_thread(&store))?;
        }
        Ok(())
    }
}

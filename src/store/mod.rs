//! `SqliteCheckpointStore`: an r2d2 pool over one SQLite file, the sync core (`ops`) and the
//! async shell around it.

pub(crate) mod group_commit;

pub use group_commit::CommitStats;
pub(crate) mod ops;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

use crate::checkpoint_store::CheckpointStore;
use crate::error::{Error, Result};
use crate::model::{Checkpoint, Ownership};
use crate::options::StoreOptions;
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
/// committer thread for checkpoint writes), where it cannot be aborted. Dropping the future does
/// not stop it: the write may still commit.
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
    /// An in-memory database lives as long as one connection to it: this one.
    _keeper: Option<Mutex<Connection>>,
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
        Self::open_file(path, options).map_err(|e| e.at(Some(path)))
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
        let pool = Self::pool(&uri, flags, &options)?;
        Ok(SqliteCheckpointStore {
            inner: Arc::new(Inner {
                pool,
                path: None,
                options,
                group: Default::default(),
                _keeper: Some(Mutex::new(keeper)),
            }),
        })
    }

    fn open_file(path: &Path, options: StoreOptions) -> Result<Self> {
        if path.is_dir() {
            return Err(Error::Io {
                path: None,
                source: crate::error::message("the path is a directory, not a database file"),
            });
        }
        create_private(path, options.file_mode())?;
        schema::check_header(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut setup = Connection::open_with_flags(path, flags)?;
        schema::configure(&setup, options.durability(), options.busy_timeout())?;
        schema::initialize(&mut setup, true, options.check_on_open())?;
        drop(setup);
        let pool = Self::pool(path, flags, &options)?;
        Ok(SqliteCheckpointStore {
            inner: Arc::new(Inner {
                pool,
                path: Some(path.to_owned()),
                options,
                group: Default::default(),
                _keeper: None,
            }),
        })
    }

    fn pool(
        target: impl AsRef<Path>,
        flags: OpenFlags,
        options: &StoreOptions,
    ) -> Result<Pool<SqliteConnectionManager>> {
        let (durability, busy) = (options.durability(), options.busy_timeout());
        let manager = SqliteConnectionManager::file(target)
            .with_flags(flags)
            .with_init(move |c| schema::configure(c, durability, busy));
        // Every connection is opened here, and none is ever reaped (no idle timeout, no
        // maximum lifetime) or replaced (SQLite connections never report broken). So no r2d2
        // background work is scheduled after `open`, and dropping the last store handle closes
        // the file promptly. (r2d2 opens connections on its worker threads; the last of those
        // jobs may still hold the pool for a moment after `open` returns, so a store dropped
        // at once may close its file a moment later.)
        Ok(Pool::builder()
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
            .build(manager)?)
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// How many checkpoint writes this store (this value and its clones, in this process) has
    /// committed, and in how many transactions: concurrent writes share one (group commit).
    pub fn commit_stats(&self) -> CommitStats {
        self.inner.group.stats()
    }

    /// The newest schema version this build reads and writes (`PRAGMA user_version` of the
    /// files it creates). The version of an open file is in
    /// [`CheckReport::schema_version`](crate::admin::CheckReport::schema_version).
    pub fn supported_schema_version() -> i64 {
        schema::supported_version()
    }

    /// Runs `f` with a pooled connection on the calling thread.
    pub(crate) fn with_conn<T>(
        &self,
        f: impl FnOnce(&Inner, &mut Connection) -> Result<T>,
    ) -> Result<T> {
        self.inner.run(f)
    }

    /// The one async hop: runs `f` with a pooled connection on tokio's blocking pool, and waits
    /// for it awake at first (`wait_awake`), so a quick answer costs no wake-up. The
    /// connection is taken inside the blocking task, the caller's tracing span is entered
    /// there, and a panic comes back as [`Error::Internal`].
    pub(crate) async fn interact<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, &mut Connection) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let span = tracing::Span::current();
        let task = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            inner.run(f)
        });
        match group_commit::wait_awake(task, self.inner.options.spin_wait()).await {
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

    /// Commits a validated checkpoint write in the next group commit.
    pub(crate) async fn submit(&self, write: group_commit::Write) -> Result<()> {
        group_commit::submit(&self.inner, write).await
    }

    /// [`CheckpointStore::claim_ownership`] on the calling thread.
    ///
    /// # Errors
    /// As [`CheckpointStore::claim_ownership`].
    pub fn blocking_claim_ownership(&self, ownerships: &[Ownership]) -> Result<Vec<Ownership>> {
        self.with_conn(|inner, c| ops::claim_ownership(c, inner.clock(), ownerships))
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
        self.with_conn(|_, c| {
            ops::list_ownerships(c, fully_qualified_namespace, event_hub_name, consumer_group)
        })
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
        self.with_conn(|_, c| {
            ops::list_checkpoints(c, fully_qualified_namespace, event_hub_name, consumer_group)
        })
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
}

impl Inner {
    fn run<T>(&self, f: impl FnOnce(&Inner, &mut Connection) -> Result<T>) -> Result<T> {
        let result = match self.checkout() {
            Ok(mut conn) => f(self, &mut conn),
            Err(e) => Err(e.into()),
        };
        result.map_err(|e| e.at(self.path.as_deref()))
    }

    /// A pooled connection, waiting at most the busy timeout for one to come free.
    pub(crate) fn checkout(
        &self,
    ) -> std::result::Result<r2d2::PooledConnection<SqliteConnectionManager>, r2d2::Error> {
        let busy = self.options.busy_timeout();
        self.pool
            .get_timeout(busy.max(std::time::Duration::from_millis(1)))
    }

    pub(crate) fn clock(&self) -> &dyn crate::options::Clock {
        self.options.clock().as_ref()
    }
}

/// Creates a missing database file with `mode`, so that neither it nor the `-wal` and `-shm`
/// files SQLite derives from it are readable by others. An existing file is not touched.
pub(crate) fn create_private(path: &Path, mode: u32) -> Result<()> {
    let mut open = OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, mode);
    #[cfg(not(unix))]
    let _ = mode;
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Io {
            path: None,
            source: Arc::new(e),
        }),
    }
}

#[async_trait]
impl CheckpointStore for SqliteCheckpointStore {
    async fn claim_ownership(&self, ownerships: &[Ownership]) -> Result<Vec<Ownership>> {
        // Validated here, and the answers built here from the caller's requests: only the
        // transaction and the little it needs go to the blocking pool.
        let batch = ops::ClaimBatch::validate(ownerships)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let packed = batch.pack();
        let outcome = self
            .interact(move |inner, c| packed.write(c, inner.clock()))
            .await?;
        Ok(batch.results(outcome))
    }

    async fn list_ownerships(
        &self,
        fully_qualified_namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> Result<Vec<Ownership>> {
        let (ns, hub, group) = owned(fully_qualified_namespace, event_hub_name, consumer_group);
        self.interact(move |_, c| ops::list_ownerships(c, &ns, &hub, &group))
            .await
    }

    async fn list_checkpoints(
        &self,
        fully_qualified_namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> Result<Vec<Checkpoint>> {
        let (ns, hub, group) = owned(fully_qualified_namespace, event_hub_name, consumer_group);
        self.interact(move |_, c| ops::list_checkpoints(c, &ns, &hub, &group))
            .await
    }

    async fn update_checkpoint(&self, checkpoint: Checkpoint) -> Result<()> {
        group_commit::submit(&self.inner, checkpoint_write(&checkpoint, None)?).await
    }
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

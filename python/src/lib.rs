//! `eventhubs_checkpointstore_sqlite._native`: the Rust store for Python, as plain values.
//!
//! The pure-Python package around it (`python-src/`) builds the dicts and classes the Azure
//! SDKs expect; this module only moves tuples in and out. Every call that touches SQLite runs
//! with the GIL released (`py.detach`), so the sync processor's two threads never stall each
//! other. A store or manager refuses to work in a process other than the one that opened it
//! (after `os.fork()`): its connections and threads belong to the parent. An inherited store is
//! leaked on drop, never closed, so the child cannot disturb the parent's file.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use eventhubs_checkpointstore_sqlite::legacy::{
    Checkpoint as LegacyCheckpoint, CheckpointManager, HostContext, Lease, LeaseManager as _,
    LeaseOptions, SqliteCheckpointLeaseManager,
};
use eventhubs_checkpointstore_sqlite::{
    Checkpoint, Durability, Error, Ownership, SqliteCheckpointStore, StoreOptions,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyOSError, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use time::OffsetDateTime;

create_exception!(
    _native,
    StoreError,
    PyOSError,
    "The store failed: an I/O error, a full disk, a read-only file or an internal error."
);
create_exception!(
    _native,
    NotAStoreError,
    StoreError,
    "The file is not a checkpoint store (not SQLite, another application's database, or corrupt); it was left untouched."
);
create_exception!(
    _native,
    SchemaTooNewError,
    StoreError,
    "The file was written by a newer version; it was left untouched."
);
create_exception!(
    _native,
    StoreBusyError,
    PyTimeoutError,
    "The database stayed locked longer than the busy timeout; nothing was written."
);
create_exception!(
    _native,
    OwnershipLost,
    PyException,
    "A fenced write found that the ownership it relied on is gone; nothing was written."
);
create_exception!(
    _native,
    StoreClosedError,
    PyRuntimeError,
    "The store was closed."
);
create_exception!(
    _native,
    ForkedError,
    PyRuntimeError,
    "The store was opened in another process (before os.fork()): reopen it in this one."
);

/// The Python exception for a store error.
fn to_py(e: Error) -> PyErr {
    let message = e.to_string();
    match e {
        Error::InvalidArgument { .. } => PyValueError::new_err(message),
        Error::OwnershipLost { .. } => OwnershipLost::new_err(message),
        Error::Busy { .. } => StoreBusyError::new_err(message),
        Error::NotADatabase { .. } => NotAStoreError::new_err(message),
        Error::SchemaTooNew { .. } => SchemaTooNewError::new_err(message),
        _ => StoreError::new_err(message),
    }
}

fn seconds(t: OffsetDateTime) -> f64 {
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// Refuses to work in a process other than the opener's.
fn same_process(pid: u32, what: &str) -> PyResult<()> {
    if std::process::id() == pid {
        return Ok(());
    }
    Err(ForkedError::new_err(format!(
        "this {what} was opened in process {pid}, before a fork; this is process {}: \
         reopen after fork (open a new store in the child)",
        std::process::id()
    )))
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while the lock was held cannot leave the Option half-written.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A claim request: (namespace, hub, group, partition, owner id, etag).
type ClaimRequest = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);
/// A won claim: (etag, last modified time in epoch seconds, owner id or "").
type Won = (String, f64, String);
/// A listed ownership: (partition, owner id or "", etag, last modified time).
type Listed = (String, String, String, f64);

/// One open store file.
#[pyclass(frozen, module = "eventhubs_checkpointstore_sqlite._native")]
struct Store {
    inner: Mutex<Option<SqliteCheckpointStore>>,
    pid: u32,
}

impl Store {
    fn get(&self) -> PyResult<SqliteCheckpointStore> {
        same_process(self.pid, "store")?;
        locked(&self.inner)
            .clone()
            .ok_or_else(|| StoreClosedError::new_err("the store is closed"))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            // The parent's connections and committer thread: never close them from a child.
            std::mem::forget(locked(&self.inner).take());
        }
    }
}

fn options(durability: &str, busy_timeout: f64) -> PyResult<StoreOptions> {
    let durability = match durability.to_ascii_lowercase().as_str() {
        "full" => Durability::Full,
        "normal" => Durability::Normal,
        other => {
            return Err(PyValueError::new_err(format!(
                "durability must be \"full\" or \"normal\", not {other:?}"
            )))
        }
    };
    if !(busy_timeout.is_finite() && busy_timeout >= 0.0) {
        return Err(PyValueError::new_err(format!(
            "busy_timeout must be a number of seconds >= 0, not {busy_timeout}"
        )));
    }
    Ok(StoreOptions::new()
        .with_durability(durability)
        .with_busy_timeout(Duration::from_secs_f64(busy_timeout)))
}

#[pymethods]
impl Store {
    /// Opens (or creates) the store file at `path`; `":memory:"` opens a private in-memory one.
    #[new]
    #[pyo3(signature = (path, durability = "full", busy_timeout = 5.0))]
    fn new(py: Python<'_>, path: PathBuf, durability: &str, busy_timeout: f64) -> PyResult<Self> {
        let options = options(durability, busy_timeout)?;
        let store = py
            .detach(move || {
                if path.as_os_str() == ":memory:" {
                    SqliteCheckpointStore::open_in_memory_with(options)
                } else {
                    SqliteCheckpointStore::open_with(&path, options)
                }
            })
            .map_err(to_py)?;
        Ok(Store {
            inner: Mutex::new(Some(store)),
            pid: std::process::id(),
        })
    }

    /// Claims each request on its own; one transaction. The answer has one entry per request,
    /// in order: `None` for a lost claim.
    fn claim(&self, py: Python<'_>, requests: Vec<ClaimRequest>) -> PyResult<Vec<Option<Won>>> {
        let store = self.get()?;
        let asked: Vec<Ownership> = requests
            .into_iter()
            .map(|(ns, hub, cg, pid, owner, etag)| Ownership {
                fully_qualified_namespace: ns,
                event_hub_name: hub,
                consumer_group: cg,
                partition_id: pid,
                owner_id: owner,
                etag,
                last_modified_time: None,
            })
            .collect();
        py.detach(move || {
            let won = store.blocking_claim_ownership(&asked)?;
            // The store answers the won claims in request order: match them up.
            let mut won = won.into_iter().peekable();
            let mut out = Vec::with_capacity(asked.len());
            for a in &asked {
                let is_this = won.peek().is_some_and(|w| {
                    w.partition_id == a.partition_id
                        && w.consumer_group.eq_ignore_ascii_case(&a.consumer_group)
                        && w.event_hub_name.eq_ignore_ascii_case(&a.event_hub_name)
                        && w.fully_qualified_namespace
                            .eq_ignore_ascii_case(&a.fully_qualified_namespace)
                });
                out.push(match is_this {
                    true => won.next().map(|w| {
                        (
                            w.etag.unwrap_or_default(),
                            w.last_modified_time.map(seconds).unwrap_or_default(),
                            w.owner_id.unwrap_or_default(),
                        )
                    }),
                    false => None,
                });
            }
            Ok(out)
        })
        .map_err(to_py)
    }

    /// The group's ownerships: (partition, owner or "", etag, time), in partition order.
    fn list_ownership(
        &self,
        py: Python<'_>,
        namespace: String,
        hub: String,
        group: String,
    ) -> PyResult<Vec<Listed>> {
        let store = self.get()?;
        py.detach(move || {
            let listed = store.blocking_list_ownerships(&namespace, &hub, &group)?;
            Ok(listed
                .into_iter()
                .map(|o| {
                    (
                        o.partition_id,
                        o.owner_id.unwrap_or_default(),
                        o.etag.unwrap_or_default(),
                        o.last_modified_time.map(seconds).unwrap_or_default(),
                    )
                })
                .collect())
        })
        .map_err(to_py)
    }

    /// The group's positions: (partition, offset, sequence number), in partition order.
    #[allow(clippy::type_complexity)]
    fn list_checkpoints(
        &self,
        py: Python<'_>,
        namespace: String,
        hub: String,
        group: String,
    ) -> PyResult<Vec<(String, Option<String>, Option<i64>)>> {
        let store = self.get()?;
        py.detach(move || {
            let listed = store.blocking_list_checkpoints(&namespace, &hub, &group)?;
            Ok(listed
                .into_iter()
                .map(|c| (c.partition_id, c.offset, c.sequence_number))
                .collect())
        })
        .map_err(to_py)
    }

    /// Writes a position; with `owner` and `etag`, only while that ownership is current.
    #[pyo3(signature = (namespace, hub, group, partition, offset, sequence_number, owner=None, etag=None))]
    #[allow(clippy::too_many_arguments)]
    fn update_checkpoint(
        &self,
        py: Python<'_>,
        namespace: String,
        hub: String,
        group: String,
        partition: String,
        offset: Option<String>,
        sequence_number: Option<i64>,
        owner: Option<String>,
        etag: Option<String>,
    ) -> PyResult<()> {
        let store = self.get()?;
        let (checkpoint, fence) = checkpoint_and_fence((
            namespace,
            hub,
            group,
            partition,
            offset,
            sequence_number,
            owner,
            etag,
        ));
        py.detach(move || match &fence {
            None => store.blocking_update_checkpoint(&checkpoint),
            Some(fence) => store.blocking_update_checkpoint_fenced(&checkpoint, fence),
        })
        .map_err(to_py)
    }

    /// Writes many positions at once, each as `update_checkpoint` would (fenced when it has an
    /// owner or etag), all joining the group commit together, so they share transactions and
    /// fsyncs. One answer per write, in order: `None`, or the exception it failed with.
    fn update_many(
        &self,
        py: Python<'_>,
        writes: Vec<WriteArgs>,
    ) -> PyResult<Vec<Option<Py<pyo3::exceptions::PyBaseException>>>> {
        let store = self.get()?;
        let writes: Vec<(Checkpoint, Option<Ownership>)> =
            writes.into_iter().map(checkpoint_and_fence).collect();
        // All queued at once on this thread, which leads their commit: they share one
        // transaction, with no hop to a runtime or the committer thread.
        let results = py.detach(|| store.blocking_update_checkpoints(&writes));
        Ok(results
            .into_iter()
            .map(|r| r.err().map(|e| to_py(e).into_value(py)))
            .collect())
    }

    /// (writes committed, transactions) since open: how well group commit batched.
    fn commit_stats(&self) -> PyResult<(u64, u64)> {
        let s = self.get()?.commit_stats();
        Ok((s.writes, s.commits))
    }

    /// The schema version this build writes.
    #[staticmethod]
    fn schema_version() -> i64 {
        SqliteCheckpointStore::supported_schema_version()
    }

    /// True until `close()`.
    fn is_open(&self) -> bool {
        locked(&self.inner).is_some()
    }

    /// Closes the store (idempotent); later calls raise `StoreClosedError`.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        same_process(self.pid, "store")?;
        let store = locked(&self.inner).take();
        // Dropping the last handle waits for the committer thread and closes the file.
        py.detach(move || drop(store));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy (EventProcessorHost)

/// A lease as Python sees it: (partition, owner, token, etag, epoch, context, time).
type LeaseTuple = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    Option<f64>,
);

fn lease_to_tuple(l: Lease) -> LeaseTuple {
    (
        l.partition_id,
        l.owner,
        l.token,
        l.etag,
        l.epoch,
        l.event_processor_context,
        l.last_modified_time.map(seconds),
    )
}

fn lease_from_tuple(t: LeaseTuple) -> Lease {
    let (partition_id, owner, token, etag, epoch, event_processor_context, time) = t;
    Lease {
        partition_id,
        owner,
        token,
        etag,
        epoch,
        event_processor_context,
        last_modified_time: time.and_then(|s| {
            OffsetDateTime::from_unix_timestamp_nanos((s * 1e9).round() as i128).ok()
        }),
    }
}

/// The runtime that drives the legacy manager's async methods (its blocking hops run on this
/// runtime's pool); built on first use.
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("ehcs-python-legacy")
                .build()
        })
        .as_ref()
        .map_err(|e| StoreError::new_err(format!("cannot start the legacy runtime: {e}")))
}

/// Lost leases are `None`/`False` for Python (EventProcessorHost's contract); other errors
/// raise.
fn lost_as_none<T>(r: Result<T, Error>) -> PyResult<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_ownership_lost() => Ok(None),
        Err(e) => Err(to_py(e)),
    }
}

/// EventProcessorHost's checkpoint and lease manager for one host context over a [`Store`].
#[pyclass(frozen, module = "eventhubs_checkpointstore_sqlite._native")]
struct LeaseManager {
    inner: Mutex<Option<SqliteCheckpointLeaseManager>>,
    pid: u32,
}

impl LeaseManager {
    fn get(&self) -> PyResult<SqliteCheckpointLeaseManager> {
        same_process(self.pid, "lease manager")?;
        locked(&self.inner)
            .clone()
            .ok_or_else(|| StoreClosedError::new_err("the lease manager is closed"))
    }

    /// Runs one async call of the manager with the GIL released.
    fn run<T, F, Fut>(&self, py: Python<'_>, f: F) -> PyResult<T>
    where
        T: Send,
        F: FnOnce(SqliteCheckpointLeaseManager) -> Fut + Send,
        Fut: std::future::Future<Output = PyResult<T>> + Send,
    {
        let manager = self.get()?;
        let rt = runtime()?;
        py.detach(move || rt.block_on(f(manager)))
    }
}

impl Drop for LeaseManager {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            std::mem::forget(locked(&self.inner).take());
        }
    }
}

#[pymethods]
impl LeaseManager {
    #[new]
    #[pyo3(signature = (store, namespace, hub, group, host_name, lease_duration, lease_renew_interval))]
    fn new(
        store: &Store,
        namespace: String,
        hub: String,
        group: String,
        host_name: String,
        lease_duration: f64,
        lease_renew_interval: f64,
    ) -> PyResult<Self> {
        let secs = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(PyValueError::new_err(format!(
                    "{name} must be a positive number of seconds, not {v}"
                )))
            }
        };
        let options = LeaseOptions::new()
            .with_lease_duration(secs("lease_duration", lease_duration)?)
            .with_lease_renew_interval(secs("lease_renew_interval", lease_renew_interval)?);
        let host = HostContext::new(namespace, hub, group, host_name);
        let manager = SqliteCheckpointLeaseManager::with_options(&store.get()?, host, options)
            .map_err(to_py)?;
        Ok(LeaseManager {
            inner: Mutex::new(Some(manager)),
            pid: std::process::id(),
        })
    }

    fn ping(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |m| async move {
            m.create_checkpoint_store_if_not_exists()
                .await
                .map_err(to_py)
        })
    }

    fn get_checkpoint(&self, py: Python<'_>, partition: String) -> PyResult<Option<(String, i64)>> {
        self.run(py, |m| async move {
            let c = m.get_checkpoint(&partition).await.map_err(to_py)?;
            Ok(c.map(|c| (c.offset, c.sequence_number)))
        })
    }

    fn create_checkpoint_if_not_exists(
        &self,
        py: Python<'_>,
        partition: String,
    ) -> PyResult<(String, i64)> {
        self.run(py, |m| async move {
            let c = m
                .create_checkpoint_if_not_exists(&partition)
                .await
                .map_err(to_py)?;
            Ok((c.offset, c.sequence_number))
        })
    }

    /// Writes the position while the lease is held; `False` if it was lost.
    fn update_checkpoint(
        &self,
        py: Python<'_>,
        lease: LeaseTuple,
        offset: String,
        sequence_number: i64,
    ) -> PyResult<bool> {
        let lease = lease_from_tuple(lease);
        self.run(py, |m| async move {
            let checkpoint =
                LegacyCheckpoint::at(lease.partition_id.clone(), offset, sequence_number);
            lost_as_none(m.update_checkpoint(&lease, &checkpoint).await).map(|r| r.is_some())
        })
    }

    fn delete_checkpoint(&self, py: Python<'_>, partition: String) -> PyResult<()> {
        self.run(py, |m| async move {
            m.delete_checkpoint(&partition).await.map_err(to_py)
        })
    }

    fn delete_lease_store(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |m| async move {
            m.delete_lease_store().await.map_err(to_py)
        })
    }

    fn get_lease(&self, py: Python<'_>, partition: String) -> PyResult<Option<LeaseTuple>> {
        self.run(py, |m| async move {
            let l = m.get_lease(&partition).await.map_err(to_py)?;
            Ok(l.map(lease_to_tuple))
        })
    }

    fn get_all_leases(&self, py: Python<'_>) -> PyResult<Vec<LeaseTuple>> {
        self.run(py, |m| async move {
            let all = m.get_all_leases().await.map_err(to_py)?;
            Ok(all.into_iter().map(lease_to_tuple).collect())
        })
    }

    fn create_lease_if_not_exists(
        &self,
        py: Python<'_>,
        partition: String,
    ) -> PyResult<LeaseTuple> {
        self.run(py, |m| async move {
            let l = m
                .create_lease_if_not_exists(&partition)
                .await
                .map_err(to_py)?;
            Ok(lease_to_tuple(l))
        })
    }

    /// Deletes the lease if nobody wrote it since it was read; `False` if someone did.
    fn delete_lease(&self, py: Python<'_>, lease: LeaseTuple) -> PyResult<bool> {
        let lease = lease_from_tuple(lease);
        self.run(py, |m| async move {
            lost_as_none(m.delete_lease(&lease).await).map(|r| r.is_some())
        })
    }

    /// The lease after the write, or `None` if it was lost.
    fn acquire(&self, py: Python<'_>, lease: LeaseTuple) -> PyResult<Option<LeaseTuple>> {
        let mut lease = lease_from_tuple(lease);
        self.run(py, |m| async move {
            Ok(lost_as_none(m.acquire_lease(&mut lease).await)?.map(|()| lease_to_tuple(lease)))
        })
    }

    fn renew(&self, py: Python<'_>, lease: LeaseTuple) -> PyResult<Option<LeaseTuple>> {
        let mut lease = lease_from_tuple(lease);
        self.run(py, |m| async move {
            Ok(lost_as_none(m.renew_lease(&mut lease).await)?.map(|()| lease_to_tuple(lease)))
        })
    }

    fn release(&self, py: Python<'_>, lease: LeaseTuple) -> PyResult<Option<LeaseTuple>> {
        let mut lease = lease_from_tuple(lease);
        self.run(py, |m| async move {
            Ok(lost_as_none(m.release_lease(&mut lease).await)?.map(|()| lease_to_tuple(lease)))
        })
    }

    fn update(&self, py: Python<'_>, lease: LeaseTuple) -> PyResult<Option<LeaseTuple>> {
        let mut lease = lease_from_tuple(lease);
        self.run(py, |m| async move {
            Ok(lost_as_none(m.update_lease(&mut lease).await)?.map(|()| lease_to_tuple(lease)))
        })
    }

    /// Whether this copy of the lease is expired now, by the store's clock.
    fn is_expired(&self, lease: LeaseTuple) -> PyResult<bool> {
        Ok(self.get()?.is_expired(&lease_from_tuple(lease)))
    }

    fn close(&self) -> PyResult<()> {
        same_process(self.pid, "lease manager")?;
        locked(&self.inner).take();
        Ok(())
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Store>()?;
    m.add_class::<LeaseManager>()?;
    let py = m.py();
    m.add("StoreError", py.get_type::<StoreError>())?;
    m.add("NotAStoreError", py.get_type::<NotAStoreError>())?;
    m.add("SchemaTooNewError", py.get_type::<SchemaTooNewError>())?;
    m.add("StoreBusyError", py.get_type::<StoreBusyError>())?;
    m.add("OwnershipLost", py.get_type::<OwnershipLost>())?;
    m.add("StoreClosedError", py.get_type::<StoreClosedError>())?;
    m.add("ForkedError", py.get_type::<ForkedError>())?;
    Ok(())
}

/// One write as `update_many` receives it: the checkpoint, and the ownership it is fenced on
/// (none when neither owner nor etag is given).
type WriteArgs = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn checkpoint_and_fence(
    (ns, hub, cg, pid, offset, seq, owner, etag): WriteArgs,
) -> (Checkpoint, Option<Ownership>) {
    let checkpoint = Checkpoint {
        fully_qualified_namespace: ns,
        event_hub_name: hub,
        consumer_group: cg,
        partition_id: pid,
        offset,
        sequence_number: seq,
    };
    let fence = (owner.is_some() || etag.is_some()).then(|| Ownership {
        fully_qualified_namespace: checkpoint.fully_qualified_namespace.clone(),
        event_hub_name: checkpoint.event_hub_name.clone(),
        consumer_group: checkpoint.consumer_group.clone(),
        partition_id: checkpoint.partition_id.clone(),
        owner_id: owner,
        etag,
        last_modified_time: None,
    });
    (checkpoint, fence)
}

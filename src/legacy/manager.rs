//! `SqliteCheckpointLeaseManager`: both legacy traits over a [`SqliteCheckpointStore`], bound to
//! one host context. Every async method is one call of the store's blocking hop.

use std::time::Duration;

use async_trait::async_trait;

use super::lease::{Checkpoint, Lease};
use super::ops::{self, HeldWrite};
use super::traits::{CheckpointManager, LeaseManager};
use crate::error::{Error, Result};
use crate::model::{self, GroupKey, PartitionKey};
use crate::store::SqliteCheckpointStore;

/// Who a legacy manager works for: the (namespace, event hub, consumer group) whose partitions
/// it leases, and the host name it writes as the lease owner (EventProcessorHost's
/// `host_name`, the modern `owner_id`).
///
/// ```
/// use eventhubs_checkpointstore_sqlite::legacy::HostContext;
///
/// let host = HostContext::new("myns.servicebus.windows.net", "telemetry", "$Default", "host-1");
/// assert_eq!(host.host_name, "host-1");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostContext {
    /// The fully qualified namespace (case-insensitive, as in the modern API).
    pub fully_qualified_namespace: String,
    /// The event hub name (case-insensitive).
    pub event_hub_name: String,
    /// The consumer group (case-insensitive).
    pub consumer_group: String,
    /// This host's name: the owner written into the leases it acquires.
    pub host_name: String,
}

impl HostContext {
    /// A host context from its four names.
    pub fn new(
        fully_qualified_namespace: impl Into<String>,
        event_hub_name: impl Into<String>,
        consumer_group: impl Into<String>,
        host_name: impl Into<String>,
    ) -> Self {
        HostContext {
            fully_qualified_namespace: fully_qualified_namespace.into(),
            event_hub_name: event_hub_name.into(),
            consumer_group: consumer_group.into(),
            host_name: host_name.into(),
        }
    }
}

/// Lease timing for [`SqliteCheckpointLeaseManager::with_options`], with EventProcessorHost's
/// defaults.
///
/// ```
/// use std::time::Duration;
/// use eventhubs_checkpointstore_sqlite::legacy::LeaseOptions;
///
/// let options = LeaseOptions::new()
///     .with_lease_duration(Duration::from_secs(60))
///     .with_lease_renew_interval(Duration::from_secs(20));
/// assert_eq!(options.lease_duration(), Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseOptions {
    lease_duration: Duration,
    lease_renew_interval: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        LeaseOptions {
            lease_duration: Duration::from_secs(30),
            lease_renew_interval: Duration::from_secs(10),
        }
    }
}

impl LeaseOptions {
    /// The defaults: a 30 s lease duration and a 10 s renew interval.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how long a lease lasts after it was last written. Default: 30 seconds.
    pub fn with_lease_duration(mut self, duration: Duration) -> Self {
        self.lease_duration = duration;
        self
    }

    /// Sets how often a host should renew its leases; it must be shorter than the lease
    /// duration (EventProcessorHost advises less than half). Default: 10 seconds.
    pub fn with_lease_renew_interval(mut self, interval: Duration) -> Self {
        self.lease_renew_interval = interval;
        self
    }

    /// The lease duration set. Default: 30 seconds.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// The renew interval set. Default: 10 seconds.
    pub fn lease_renew_interval(&self) -> Duration {
        self.lease_renew_interval
    }

    fn validate(&self) -> Result<()> {
        if self.lease_renew_interval.is_zero() {
            return Err(Error::invalid("lease_renew_interval", "must not be zero"));
        }
        if self.lease_renew_interval >= self.lease_duration {
            return Err(Error::invalid(
                "lease_renew_interval",
                format!(
                    "is {:?} but must be shorter than the lease duration ({:?})",
                    self.lease_renew_interval, self.lease_duration
                ),
            ));
        }
        Ok(())
    }
}

/// EventProcessorHost's checkpoint and lease managers over the tables of a
/// [`SqliteCheckpointStore`], for one [`HostContext`]: the counterpart of
/// `AzureStorageCheckpointLeaseManager`.
///
/// It shares the store's connection pool (and clock), so a legacy host and a modern processor
/// can run on one store. Cloning is cheap. Expiry is measured with the store's
/// [`Clock`](crate::Clock), so tests can move time without sleeping.
///
/// Beyond the traits' contract, the writes that need a held lease (renew, release, update and
/// `update_checkpoint`) refuse with [`Error::OwnershipLost`] a lease whose owner is not this
/// manager's host name, even with the current token.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eventhubs_checkpointstore_sqlite::Result<()> {
/// use eventhubs_checkpointstore_sqlite::SqliteCheckpointStore;
/// use eventhubs_checkpointstore_sqlite::legacy::*;
///
/// let store = SqliteCheckpointStore::open_in_memory()?;
/// let host = HostContext::new("myns.servicebus.windows.net", "telemetry", "$Default", "host-1");
/// let manager = SqliteCheckpointLeaseManager::new(&store, host)?;
///
/// let mut lease = manager.create_lease_if_not_exists("0").await?;
/// manager.acquire_lease(&mut lease).await?;
/// assert_eq!((lease.owner.as_deref(), lease.epoch), (Some("host-1"), 1));
///
/// manager.create_checkpoint_if_not_exists("0").await?;
/// manager.update_checkpoint(&lease, &Checkpoint::at("0", "4096", 42)).await?;
/// assert_eq!(manager.get_checkpoint("0").await?, Some(Checkpoint::at("0", "4096", 42)));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteCheckpointLeaseManager {
    store: SqliteCheckpointStore,
    host: HostContext,
    group: GroupKey,
    options: LeaseOptions,
}

impl SqliteCheckpointLeaseManager {
    /// A manager for `host` over `store`'s tables, with the default [`LeaseOptions`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a name in `host` is empty or too long.
    pub fn new(store: &SqliteCheckpointStore, host: HostContext) -> Result<Self> {
        Self::with_options(store, host, LeaseOptions::default())
    }

    /// A manager for `host` over `store`'s tables with the given lease timing.
    ///
    /// ```
    /// use std::time::Duration;
    /// use eventhubs_checkpointstore_sqlite::{Error, SqliteCheckpointStore};
    /// use eventhubs_checkpointstore_sqlite::legacy::*;
    ///
    /// let store = SqliteCheckpointStore::open_in_memory()?;
    /// let host = HostContext::new("ns", "hub", "$Default", "host-1");
    /// let slow = LeaseOptions::new().with_lease_renew_interval(Duration::from_secs(30));
    /// let err = SqliteCheckpointLeaseManager::with_options(&store, host, slow).unwrap_err();
    /// assert!(matches!(err, Error::InvalidArgument { field: "lease_renew_interval", .. }));
    /// # Ok::<(), Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if a name in `host` is empty or too long, or the renew
    /// interval is zero or not shorter than the lease duration.
    pub fn with_options(
        store: &SqliteCheckpointStore,
        host: HostContext,
        options: LeaseOptions,
    ) -> Result<Self> {
        options.validate()?;
        let group = GroupKey::new(
            &host.fully_qualified_namespace,
            &host.event_hub_name,
            &host.consumer_group,
        )?;
        model::name("host_name", &host.host_name)?;
        Ok(SqliteCheckpointLeaseManager {
            store: store.clone(),
            host,
            group,
            options,
        })
    }

    /// The host context this manager works for.
    pub fn host(&self) -> &HostContext {
        &self.host
    }

    /// The lease timing.
    pub fn options(&self) -> &LeaseOptions {
        &self.options
    }

    /// The store whose tables (and pool) this manager uses.
    pub fn store(&self) -> &SqliteCheckpointStore {
        &self.store
    }

    fn key(&self, partition_id: &str) -> Result<PartitionKey> {
        self.group.clone().partition(partition_id)
    }

    /// The token of a lease this host holds (by the copy's account). A copy naming another
    /// owner is refused even with the current token: a host that lost a partition and read
    /// the lease again must not write with the new owner's token.
    fn token_held<'a>(&self, lease: &'a Lease) -> Result<&'a str> {
        let (owner, token) = lease.held()?;
        if owner != self.host.host_name {
            return Err(Error::OwnershipLost {
                partition_id: lease.partition_id.clone(),
                reason: format!(
                    "the lease is held by `{owner}`, not by this host `{}`",
                    self.host.host_name
                ),
            });
        }
        Ok(token)
    }

    /// Renew, release or update: validated here, one fenced write in the blocking hop.
    async fn write_held(&self, lease: &Lease, write: HeldWrite) -> Result<Lease> {
        let key = self.key(&lease.partition_id)?;
        let token = self.token_held(lease)?.to_owned();
        let owner = self.host.host_name.clone();
        self.store
            .interact(move |inner, c| {
                ops::write_held(c, inner.clock(), &key, &owner, &token, write)
            })
            .await
    }
}

#[async_trait]
impl CheckpointManager for SqliteCheckpointLeaseManager {
    async fn create_checkpoint_store_if_not_exists(&self) -> Result<()> {
        self.store.interact_read(|_, c| ops::ping(c)).await
    }

    async fn create_checkpoint_if_not_exists(&self, partition_id: &str) -> Result<Checkpoint> {
        let key = self.key(partition_id)?;
        self.store
            .interact(move |_, c| ops::create_checkpoint_if_not_exists(c, &key))
            .await
    }

    async fn get_checkpoint(&self, partition_id: &str) -> Result<Option<Checkpoint>> {
        let key = self.key(partition_id)?;
        self.store
            .interact_read(move |_, c| ops::get_checkpoint(c, &key))
            .await
    }

    async fn update_checkpoint(&self, lease: &Lease, checkpoint: &Checkpoint) -> Result<()> {
        let key = self.key(&lease.partition_id)?;
        let token = self.token_held(lease)?.to_owned();
        // Validate everything before the first read.
        ops::checkpoint_write(&self.group, lease, "", checkpoint)?;
        // The group commit fences on (owner, etag). The etag rotates on every write of the row
        // (this host's own renewals too) while the token stays, so resolve the token to the
        // etag first: an etag unchanged at commit means no write since, so the tenure the
        // token names was current when the checkpoint was written. If a write got in between,
        // decide it in one transaction of its own (tenure check and write together), so a
        // renewal never fails a checkpoint.
        let owner = self.host.host_name.clone();
        let (k, o, t) = (key.clone(), owner.clone(), token.clone());
        let etag = self
            .store
            .interact_read(move |_, c| ops::current_etag(c, &k, &o, &t))
            .await?;
        let write = ops::checkpoint_write(&self.group, lease, &etag, checkpoint)?;
        match self.store.submit(write).await {
            Err(e) if e.is_ownership_lost() => {}
            other => return other,
        }
        let write = ops::checkpoint_write(&self.group, lease, &etag, checkpoint)?;
        self.store
            .interact(move |_, c| ops::checkpoint_alone(c, &owner, &token, &write))
            .await
    }

    async fn delete_checkpoint(&self, partition_id: &str) -> Result<()> {
        let key = self.key(partition_id)?;
        self.store
            .interact(move |_, c| ops::delete_checkpoint(c, &key))
            .await
    }
}

#[async_trait]
impl LeaseManager for SqliteCheckpointLeaseManager {
    fn lease_renew_interval(&self) -> Duration {
        self.options.lease_renew_interval
    }

    fn lease_duration(&self) -> Duration {
        self.options.lease_duration
    }

    fn is_expired(&self, lease: &Lease) -> bool {
        let now = self.store.options().clock().now_utc();
        lease.is_expired_at(now, self.options.lease_duration)
    }

    async fn create_lease_store_if_not_exists(&self) -> Result<()> {
        self.store.interact_read(|_, c| ops::ping(c)).await
    }

    async fn delete_lease_store(&self) -> Result<()> {
        let group = self.group.clone();
        self.store
            .interact(move |_, c| ops::delete_leases(c, &group))
            .await
    }

    async fn get_lease(&self, partition_id: &str) -> Result<Option<Lease>> {
        let key = self.key(partition_id)?;
        self.store
            .interact_read(move |_, c| ops::get_lease(c, &key))
            .await
    }

    async fn get_all_leases(&self) -> Result<Vec<Lease>> {
        let group = self.group.clone();
        self.store
            .interact_read(move |_, c| ops::list_leases(c, &group))
            .await
    }

    async fn create_lease_if_not_exists(&self, partition_id: &str) -> Result<Lease> {
        let key = self.key(partition_id)?;
        self.store
            .interact(move |inner, c| ops::create_lease_if_not_exists(c, inner.clock(), &key))
            .await
    }

    async fn delete_lease(&self, lease: &Lease) -> Result<()> {
        let key = self.key(&lease.partition_id)?;
        let etag = lease
            .etag()?
            .ok_or_else(|| Error::invalid("lease.etag", "the lease has no etag: get it"))?
            .to_owned();
        self.store
            .interact(move |_, c| ops::delete_lease(c, &key, &etag))
            .await
    }

    async fn acquire_lease(&self, lease: &mut Lease) -> Result<()> {
        let key = self.key(&lease.partition_id)?;
        let etag = lease.etag()?.map(ToOwned::to_owned);
        let host = self.host.host_name.clone();
        *lease = self
            .store
            .interact(move |inner, c| ops::acquire(c, inner.clock(), &key, &host, etag.as_deref()))
            .await?;
        Ok(())
    }

    async fn renew_lease(&self, lease: &mut Lease) -> Result<()> {
        *lease = self.write_held(lease, HeldWrite::Renew).await?;
        Ok(())
    }

    async fn release_lease(&self, lease: &mut Lease) -> Result<()> {
        *lease = self.write_held(lease, HeldWrite::Release).await?;
        Ok(())
    }

    async fn update_lease(&self, lease: &mut Lease) -> Result<()> {
        let context = lease.context()?.map(ToOwned::to_owned);
        *lease = self.write_held(lease, HeldWrite::Update(context)).await?;
        Ok(())
    }
}

//! The two legacy interfaces, shaped like EventProcessorHost's `AbstractCheckpointManager` and
//! `AbstractLeaseManager`. Both are async and dyn-compatible.

use std::time::Duration;

use async_trait::async_trait;

use super::lease::{Checkpoint, Lease};
use crate::error::Result;

/// Per-partition checkpoints for one host context, as EventProcessorHost's
/// `AbstractCheckpointManager` (Python) or `ICheckpointManager` (.NET, Java) has them.
///
/// Every method reports failure as an [`Err`](crate::Error), never as `false`; see the
/// [module docs](super) for how each Python method maps here.
#[async_trait]
pub trait CheckpointManager: Send + Sync {
    /// Makes sure the checkpoint store exists. The tables exist as soon as the store is open,
    /// so this only checks that the store answers.
    ///
    /// # Errors
    /// Storage errors, such as [`Error::Busy`](crate::Error::Busy).
    async fn create_checkpoint_store_if_not_exists(&self) -> Result<()>;

    /// Returns the partition's checkpoint, creating it at StartOfStream (offset `"-1"`,
    /// sequence number 0) if there is none. The new checkpoint is a placeholder that the
    /// modern API does not list.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an empty or oversized
    /// partition id, and storage errors.
    async fn create_checkpoint_if_not_exists(&self, partition_id: &str) -> Result<Checkpoint>;

    /// Returns the partition's checkpoint, or `None` if none was created or written. A
    /// StartOfStream placeholder reads as offset `"-1"`, sequence number 0.
    ///
    /// # Errors
    /// As [`create_checkpoint_if_not_exists`](Self::create_checkpoint_if_not_exists).
    async fn get_checkpoint(&self, partition_id: &str) -> Result<Option<Checkpoint>>;

    /// Writes `checkpoint` (and the lease's `event_processor_context`, as EventProcessorHost
    /// keeps both in the lease) only while `lease`'s owner still holds the lease under its
    /// token: the tenure `lease` was taken in. The check and the write are one transaction.
    /// Renewals in between (through any copy) do not matter; nothing is rotated.
    ///
    /// A StartOfStream checkpoint (offset `"-1"`) is stored as the placeholder, not as a
    /// position.
    ///
    /// # Errors
    /// [`Error::OwnershipLost`](crate::Error::OwnershipLost) if the lease was taken, released,
    /// acquired again or deleted (nothing is written);
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if the lease has no owner or
    /// token, names another partition than the checkpoint, or the checkpoint has an empty
    /// offset (or offset `"-1"` with a positive sequence number); storage errors.
    async fn update_checkpoint(&self, lease: &Lease, checkpoint: &Checkpoint) -> Result<()>;

    /// Deletes the partition's checkpoint. A missing checkpoint counts as success; the lease
    /// (ownership) is not touched.
    ///
    /// # Errors
    /// As [`create_checkpoint_if_not_exists`](Self::create_checkpoint_if_not_exists).
    async fn delete_checkpoint(&self, partition_id: &str) -> Result<()>;
}

/// Per-partition leases for one host context, as EventProcessorHost's `AbstractLeaseManager`
/// (Python) or `ILeaseManager` (.NET, Java) has them.
///
/// Acquire and delete are a compare-and-swap on the lease's etag, the same one the modern
/// API's claims use, so a legacy host and a modern processor never hold a partition at once;
/// renew, release, update and checkpoints present the owner and the token of the tenure. Every method reports failure as an [`Err`](crate::Error), never as
/// `false`; see the [module docs](super) for how each Python method maps here.
#[async_trait]
pub trait LeaseManager: Send + Sync {
    /// How often a host should renew the leases it holds. Shorter than
    /// [`lease_duration`](Self::lease_duration).
    fn lease_renew_interval(&self) -> Duration;

    /// How long a lease lasts after it was last written.
    fn lease_duration(&self) -> Duration;

    /// True when nobody holds this copy of the lease now, by the store's clock: it is
    /// released, or it was last written [`lease_duration`](Self::lease_duration) or longer ago.
    /// It judges the copy as it was read; it does not read the store.
    fn is_expired(&self, lease: &Lease) -> bool;

    /// Makes sure the lease store exists. The tables exist as soon as the store is open, so
    /// this only checks that the store answers.
    ///
    /// # Errors
    /// Storage errors, such as [`Error::Busy`](crate::Error::Busy).
    async fn create_lease_store_if_not_exists(&self) -> Result<()>;

    /// Deletes every lease of this host context's (namespace, event hub, consumer group),
    /// whoever holds it. Checkpoints stay. For tests and tear-down, as in EventProcessorHost;
    /// a processor still holding one of them loses it at its next renewal.
    ///
    /// # Errors
    /// Storage errors.
    async fn delete_lease_store(&self) -> Result<()>;

    /// Returns the partition's lease as stored, or `None` if there is none.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an empty or oversized
    /// partition id, and storage errors.
    async fn get_lease(&self, partition_id: &str) -> Result<Option<Lease>>;

    /// Returns every lease of this host context's group, in partition order (numeric ids by
    /// value). Partitions a modern processor claimed are leases too.
    ///
    /// # Errors
    /// Storage errors.
    async fn get_all_leases(&self) -> Result<Vec<Lease>>;

    /// Returns the partition's lease, creating it released (no owner, no token, epoch 0, a
    /// fresh etag) if there is none.
    ///
    /// # Errors
    /// As [`get_lease`](Self::get_lease).
    async fn create_lease_if_not_exists(&self, partition_id: &str) -> Result<Lease>;

    /// Deletes the partition's lease if its etag is still `lease.etag` (nobody wrote it since
    /// it was read). A missing lease counts as success; the checkpoint is not touched.
    ///
    /// # Errors
    /// [`Error::OwnershipLost`](crate::Error::OwnershipLost) if the stored etag is another
    /// (nothing is deleted); [`Error::InvalidArgument`](crate::Error::InvalidArgument) if the
    /// lease has no etag; storage errors.
    async fn delete_lease(&self, lease: &Lease) -> Result<()>;

    /// Takes the lease for this host, whoever holds it now: stealing is allowed, as in
    /// EventProcessorHost. It wins only if the stored etag is still `lease.etag` (or, for a
    /// lease without an etag, if the partition has no lease yet). On success the epoch goes up
    /// by 1, a new token is issued, and `lease` learns the new owner, token, etag, epoch,
    /// context and time.
    ///
    /// # Errors
    /// [`Error::OwnershipLost`](crate::Error::OwnershipLost) if the lease changed since `lease`
    /// was read (renewed, taken or released by someone else), or `lease` has no etag and the
    /// partition has a lease already: get it again before retrying. Storage errors.
    async fn acquire_lease(&self, lease: &mut Lease) -> Result<()>;

    /// Extends the lease: it wins only while `lease`'s owner holds it under `lease.token`,
    /// even past its duration if nobody took it meanwhile (any copy of this tenure renews).
    /// The token and the epoch stay; the etag rotates and the time is refreshed, and `lease`
    /// learns both.
    ///
    /// # Errors
    /// [`Error::OwnershipLost`](crate::Error::OwnershipLost) if the lease was taken, released
    /// or deleted (get and acquire it again); [`Error::InvalidArgument`](crate::Error::InvalidArgument)
    /// if `lease` has no owner or token; storage errors.
    async fn renew_lease(&self, lease: &mut Lease) -> Result<()>;

    /// Gives the lease up: the owner and the token are cleared, the etag rotated, the epoch
    /// kept. Wins only while `lease`'s owner holds it under `lease.token`; `lease` learns the
    /// new state.
    ///
    /// # Errors
    /// As [`renew_lease`](Self::renew_lease): releasing a lease that was taken fails.
    async fn release_lease(&self, lease: &mut Lease) -> Result<()>;

    /// Stores `lease.event_processor_context`, renewing the lease in the same write (the token
    /// stays, the etag rotates and `lease` learns it). Wins only while `lease`'s owner holds the
    /// lease under `lease.token`.
    ///
    /// # Errors
    /// As [`renew_lease`](Self::renew_lease), and
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an oversized context.
    async fn update_lease(&self, lease: &mut Lease) -> Result<()>;
}

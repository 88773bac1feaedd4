//! The legacy API: EventProcessorHost's checkpoint and lease managers over the same tables as
//! the modern [`CheckpointStore`](crate::CheckpointStore).
//!
//! For code written against EventProcessorHost (EPH): [`CheckpointManager`] mirrors
//! `AbstractCheckpointManager`, [`LeaseManager`] mirrors `AbstractLeaseManager`, and
//! [`SqliteCheckpointLeaseManager`] implements both for one [`HostContext`] (namespace, event
//! hub, consumer group, host name), sharing a [`SqliteCheckpointStore`](crate::SqliteCheckpointStore)'s
//! pool.
//!
//! # How a lease maps onto ownership
//!
//! A [`Lease`] *is* the partition's ownership row, so a legacy host and a modern processor in
//! one consumer group see one owner per partition:
//!
//! | lease | ownership row | notes |
//! |---|---|---|
//! | `owner` | `owner_id` | the host name; `None` when released |
//! | `token` | `etag` | rotated by acquire, renew, release, update and by every modern claim |
//! | `epoch` | `epoch` column | +1 on every legacy acquire and every modern change of owner; never decreases |
//! | `event_processor_context` | `event_processor_context` column | untouched by the modern API |
//! | `last_modified_time` | `last_modified_time` | expiry counts from here, by the store's clock |
//!
//! Every lease write is a compare-and-swap on the token, the same one a modern claim makes on
//! the etag. Stealing is allowed (a host may acquire a lease another host or a modern processor
//! holds), but only from the token it read: whoever wins rotates the token, and the loser's next
//! renewal, fenced checkpoint or claim fails. A lease expires [`LeaseManager::lease_duration`]
//! after it was last written; expiry only informs [`LeaseManager::is_expired`], and renewing an
//! expired lease nobody took still works, as in EPH.
//!
//! A legacy [`Checkpoint`] is the partition's checkpoint row. StartOfStream (offset `"-1"`,
//! sequence number 0) is stored as a placeholder with no position, which the modern
//! `list_checkpoints` leaves out, so it can never make a modern processor skip an event.
//!
//! # From the Python seed methods
//!
//! Every failure is an [`Err`](crate::Error); nothing returns `false`. A lost or stolen lease is
//! [`Error::OwnershipLost`](crate::Error::OwnershipLost) (.NET's `LeaseLostException`); check
//! with [`Error::is_ownership_lost`](crate::Error::is_ownership_lost).
//!
//! | Python `azure.eventprocessorhost` | returned | here | returns |
//! |---|---|---|---|
//! | `create_checkpoint_store_if_not_exists_async()` | `True` / `False` | [`create_checkpoint_store_if_not_exists`](CheckpointManager::create_checkpoint_store_if_not_exists) | `Ok(())` / `Err` |
//! | `get_checkpoint_async(pid)` | `Checkpoint` or `None` | [`get_checkpoint`](CheckpointManager::get_checkpoint) | `Ok(Some(_))` (a placeholder reads as `"-1"`/0) or `Ok(None)` |
//! | `create_checkpoint_if_not_exists_async(pid)` | `Checkpoint` | [`create_checkpoint_if_not_exists`](CheckpointManager::create_checkpoint_if_not_exists) | `Ok(Checkpoint)`, the existing one or StartOfStream |
//! | `update_checkpoint_async(lease, checkpoint)` | `True`; `False` when the lease is lost | [`update_checkpoint`](CheckpointManager::update_checkpoint)`(&lease, &checkpoint)` | `Ok(())`; `Err(OwnershipLost)`, nothing written |
//! | `delete_checkpoint_async(pid)` | nothing (a no-op) | [`delete_checkpoint`](CheckpointManager::delete_checkpoint) | `Ok(())`, also when missing; really deletes; the lease stays |
//! | `create_lease_store_if_not_exists_async()` | `True` / `False` | [`create_lease_store_if_not_exists`](LeaseManager::create_lease_store_if_not_exists) | `Ok(())` / `Err` |
//! | `delete_lease_store_async()` | `"Not Supported in Python"` | [`delete_lease_store`](LeaseManager::delete_lease_store) | `Ok(())`: every lease of the group is deleted, checkpoints stay |
//! | `get_lease_async(pid)` | `Lease` or `None` (also on error) | [`get_lease`](LeaseManager::get_lease) | `Ok(Some(_))` / `Ok(None)`; errors are `Err` |
//! | `get_all_leases()` | a list of coroutines | [`get_all_leases`](LeaseManager::get_all_leases)`.await` | `Ok(Vec<Lease>)` in partition order |
//! | `create_lease_if_not_exists_async(pid)` | `Lease` | [`create_lease_if_not_exists`](LeaseManager::create_lease_if_not_exists) | `Ok(Lease)`, the existing one or a released one |
//! | `delete_lease_async(lease)` | nothing | [`delete_lease`](LeaseManager::delete_lease)`(&lease)` | `Ok(())`, also when missing; `Err(OwnershipLost)` if its token changed |
//! | `acquire_lease_async(lease)` | `True` / `False` | [`acquire_lease`](LeaseManager::acquire_lease)`(&mut lease)` | `Ok(())` and `lease` updated / `Err(OwnershipLost)` |
//! | `renew_lease_async(lease)` | `True` / `False` | [`renew_lease`](LeaseManager::renew_lease)`(&mut lease)` | `Ok(())` and a new token / `Err(OwnershipLost)` |
//! | `release_lease_async(lease)` | `True` / `False` | [`release_lease`](LeaseManager::release_lease)`(&mut lease)` | `Ok(())` / `Err(OwnershipLost)` |
//! | `update_lease_async(lease)` | `True` / `False` | [`update_lease`](LeaseManager::update_lease)`(&mut lease)` | `Ok(())` and a new token / `Err(OwnershipLost)` |
//! | `lease.is_expired()` | `bool` | [`is_expired`](LeaseManager::is_expired)`(&lease)` | `bool` |
//! | `lease_renew_interval`, `lease_duration` (seconds) | | [`lease_renew_interval`](LeaseManager::lease_renew_interval)`()`, [`lease_duration`](LeaseManager::lease_duration)`()` | `Duration`, set with [`LeaseOptions`] |
//!
//! Differences worth knowing when porting:
//! - Renew, release and update rotate the token, and the `&mut Lease` you pass learns the new
//!   one; an older copy of the lease is stale from then on, as after a steal.
//! - `update_checkpoint` does not renew (it leaves the token alone, so `&Lease` stays valid) and
//!   stores the lease's `event_processor_context` with the position, as EPH's lease blob did.
//! - Renew, release, update and `update_checkpoint` also require the lease's owner to be this
//!   manager's host name. A host that lost a partition and read the lease again gets the new
//!   owner's token, and must not be able to write with it (azure-event-hubs-dotnet#115).
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> eventhubs_checkpointstore_sqlite::Result<()> {
//! use eventhubs_checkpointstore_sqlite::SqliteCheckpointStore;
//! use eventhubs_checkpointstore_sqlite::legacy::*;
//!
//! let store = SqliteCheckpointStore::open_in_memory()?;
//! let a = SqliteCheckpointLeaseManager::new(&store, HostContext::new("ns", "hub", "$Default", "a"))?;
//! let b = SqliteCheckpointLeaseManager::new(&store, HostContext::new("ns", "hub", "$Default", "b"))?;
//!
//! let mut held_by_a = a.create_lease_if_not_exists("0").await?;
//! a.acquire_lease(&mut held_by_a).await?;
//!
//! // Host b steals the lease from the copy it read; host a finds out at its next write.
//! let mut held_by_b = b.get_lease("0").await?.expect("created above");
//! b.acquire_lease(&mut held_by_b).await?;
//! assert_eq!(held_by_b.epoch, 2);
//! let err = a.update_checkpoint(&held_by_a, &Checkpoint::at("0", "10", 1)).await.unwrap_err();
//! assert!(err.is_ownership_lost());
//! assert!(a.renew_lease(&mut held_by_a).await.unwrap_err().is_ownership_lost());
//! # Ok(())
//! # }
//! ```

mod lease;
mod manager;
mod ops;
mod traits;

pub use lease::{Checkpoint, Lease, START_OF_STREAM};
pub use manager::{HostContext, LeaseOptions, SqliteCheckpointLeaseManager};
pub use traits::{CheckpointManager, LeaseManager};

//! The modern checkpoint-store API, shaped like `azure_messaging_eventhubs::CheckpointStore`.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Checkpoint, Ownership};

/// Stores partition ownership and checkpoints for Event Hubs processors.
///
/// Dyn-compatible: processors hold it as `Arc<dyn CheckpointStore>`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> eventhubs_checkpointstore_sqlite::Result<()> {
/// use std::sync::Arc;
/// use eventhubs_checkpointstore_sqlite::{CheckpointStore, Ownership, SqliteCheckpointStore};
///
/// let store: Arc<dyn CheckpointStore> = Arc::new(SqliteCheckpointStore::open_in_memory()?);
/// let won = store
///     .claim_ownership(&[Ownership {
///         fully_qualified_namespace: "ns.servicebus.windows.net".into(),
///         event_hub_name: "hub".into(),
///         consumer_group: "$Default".into(),
///         partition_id: "0".into(),
///         owner_id: Some("processor-a".into()),
///         ..Ownership::default()
///     }])
///     .await?;
/// assert_eq!(won.len(), 1);
/// assert!(won[0].etag.is_some());
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// Claims (or, with no owner, releases) each requested ownership on its own and returns the
    /// claims that won, each with a new etag and `last_modified_time`.
    ///
    /// A request without an etag (or with `""`) only creates: it wins if the partition has no
    /// ownership yet. A request with an etag wins only if it equals the stored one. A claim that
    /// loses is left out of the result; losing is never an error. The whole call is one
    /// transaction.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) if any request has an empty
    /// name or id (nothing is written), [`Error::Busy`](crate::Error::Busy) on a lock timeout,
    /// and storage errors.
    async fn claim_ownership(&self, ownerships: &[Ownership]) -> Result<Vec<Ownership>>;

    /// Lists the ownerships of one (namespace, event hub, consumer group), with the names as
    /// given, in partition order (numeric ids by value).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an empty name, and storage
    /// errors.
    async fn list_ownerships(
        &self,
        fully_qualified_namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> Result<Vec<Ownership>>;

    /// Lists the checkpoints of one (namespace, event hub, consumer group), with the names as
    /// given, in partition order.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an empty name, and storage
    /// errors.
    async fn list_checkpoints(
        &self,
        fully_qualified_namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> Result<Vec<Checkpoint>>;

    /// Creates or replaces the partition's position with the given offset and sequence number.
    /// Not fenced by ownership, as in every official SDK; see
    /// [`SqliteCheckpointStore::update_checkpoint_fenced`](crate::SqliteCheckpointStore::update_checkpoint_fenced).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an empty name or a
    /// checkpoint with neither offset nor sequence number, and storage errors.
    async fn update_checkpoint(&self, checkpoint: Checkpoint) -> Result<()>;
}

#![doc = include_str!("../README.md")]

#[cfg(feature = "azure")]
mod azure;
mod checkpoint_store;
mod error;
mod model;
mod options;
mod schema;
mod store;

pub use checkpoint_store::CheckpointStore;
pub use error::{Error, Result, Source};
pub use model::{Checkpoint, Ownership, MAX_NAME_LEN, MAX_OFFSET_LEN};
pub use options::{Clock, Durability, StoreOptions, SystemClock};
pub use schema::APPLICATION_ID;
pub use store::{CommitStats, SqliteCheckpointStore};

#![doc = include_str!("../docs/crate.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod admin;
#[cfg(feature = "azure")]
mod azure;
mod checkpoint_store;
mod error;
mod files;
pub mod legacy;
pub mod migrate;
mod model;
mod options;
mod schema;
mod store;

pub use checkpoint_store::CheckpointStore;
pub use error::{Error, Result, Source};
pub use files::create_new_file;
pub use model::{Checkpoint, Ownership, MAX_CONTEXT_LEN, MAX_NAME_LEN, MAX_OFFSET_LEN};
pub use options::{Clock, Durability, StoreOptions, SystemClock};
pub use schema::APPLICATION_ID;
pub use store::{CommitStats, SqliteCheckpointStore};

// The README's examples run as doctests too, so the page a newcomer reads first stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#![doc = include_str!("../README.md")]

mod admin;
#[cfg(feature = "azure")]
mod azure;
mod checkpoint_store;
mod eph;
mod error;
pub mod export;
pub mod legacy;
// Until src/migrate/mod.rs exists (LAYOUT.md, tag structure-lib), `migrate::blob` is declared
// here; it moves under `migrate` then.
#[cfg(feature = "blob")]
pub mod migrate {
    //! Moving positions in and out of the store.
    pub mod blob;
}
mod model;
mod options;
mod schema;
mod store;

pub use admin::{BackupReport, CheckReport, GroupSummary, RowCounts};
pub use checkpoint_store::CheckpointStore;
pub use eph::{
    read_eph_leases, EphAction, EphDialect, EphImportItem, EphLease, EphLeaseFile,
    MAX_LEASE_FILE_LEN,
};
pub use error::{Error, Result, Source};
pub use export::{
    ExportedCheckpoint, ExportedOwnership, ImportPlan, StoreExport, EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
};
pub use model::{Checkpoint, Ownership, MAX_NAME_LEN, MAX_OFFSET_LEN};
pub use options::{Clock, Durability, StoreOptions, SystemClock};
pub use schema::APPLICATION_ID;
pub use store::{CommitStats, SqliteCheckpointStore};

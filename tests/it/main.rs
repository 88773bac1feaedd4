//! The integration tests, one module per guarantee, in one test binary: linking one binary
//! instead of two dozen is most of what a change costs to test on a small machine. Tests that
//! change or count process-wide state (threads) stay binaries of their own
//! (`tests/no_leaked_threads.rs`).
//!
//! Tests that re-execute this binary as a worker process name themselves with their module
//! path (`crash_consistency::killed_writers_…`), as libtest lists them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/mod.rs"]
mod common;

#[cfg(feature = "azure")]
#[path = "../conformance/cases.rs"]
mod cases;

mod admin;
#[cfg(feature = "azure")]
mod azure_conformance;
#[cfg(feature = "azure")]
mod azure_differential;
mod backward_compatibility;
mod bad_files;
#[cfg(feature = "blob")]
mod blob_move;
mod busy_waits;
mod checkpoints_and_lists;
mod claims;
#[cfg(feature = "cli")]
mod cli;
mod concurrent_creation;
mod contention;
mod crash_consistency;
mod disk_full;
mod durability;
mod eph_import;
mod eph_scan;
mod export_import;
mod gate;
mod group_commit;
mod hostile_input;
mod hostile_paths;
mod import_progress;
mod legacy;
mod model_based;
mod multiprocess_soak;
#[cfg(unix)]
mod permissions;
mod persistence;
#[cfg(feature = "cli")]
mod simulate;

//! Shared helpers for the integration tests: names, builders and a controllable clock.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use eventhubs_checkpointstore_sqlite::{
    Checkpoint, Clock, Ownership, SqliteCheckpointStore, StoreOptions,
};
use time::OffsetDateTime;

pub const NS: &str = "myns.servicebus.windows.net";
pub const HUB: &str = "hub";
pub const GROUP: &str = "$Default";

/// A claim request in the default group.
pub fn claim(partition: &str, owner: Option<&str>, etag: Option<&str>) -> Ownership {
    claim_in(NS, HUB, GROUP, partition, owner, etag)
}

pub fn claim_in(
    ns: &str,
    hub: &str,
    group: &str,
    partition: &str,
    owner: Option<&str>,
    etag: Option<&str>,
) -> Ownership {
    Ownership {
        fully_qualified_namespace: ns.into(),
        event_hub_name: hub.into(),
        consumer_group: group.into(),
        partition_id: partition.into(),
        owner_id: owner.map(Into::into),
        etag: etag.map(Into::into),
        last_modified_time: None,
    }
}

/// A checkpoint in the default group.
pub fn checkpoint(partition: &str, offset: Option<&str>, seq: Option<i64>) -> Checkpoint {
    Checkpoint {
        fully_qualified_namespace: NS.into(),
        event_hub_name: HUB.into(),
        consumer_group: GROUP.into(),
        partition_id: partition.into(),
        offset: offset.map(Into::into),
        sequence_number: seq,
    }
}

/// A clock that only moves when told to; starts at 2026-01-01T00:00:00Z.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(1_767_225_600)))
    }
    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    pub fn now(&self) -> OffsetDateTime {
        self.now_utc()
    }
}

impl Clock for ManualClock {
    fn now_utc(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.0.load(Ordering::SeqCst))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// A store in a fresh file under a temp dir that lives as long as the returned guard.
pub fn file_store() -> (tempfile::TempDir, PathBuf, SqliteCheckpointStore) {
    file_store_with(StoreOptions::default())
}

pub fn file_store_with(
    options: StoreOptions,
) -> (tempfile::TempDir, PathBuf, SqliteCheckpointStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let store = SqliteCheckpointStore::open_with(&path, options).expect("open store");
    (dir, path, store)
}

/// (partition, owner, etag) of each listed ownership, for comparing whole states.
pub fn owners(store: &SqliteCheckpointStore) -> Vec<(String, Option<String>, Option<String>)> {
    store
        .blocking_list_ownerships(NS, HUB, GROUP)
        .expect("list ownerships")
        .into_iter()
        .map(|o| (o.partition_id, o.owner_id, o.etag))
        .collect()
}

pub fn read_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read file")
}

//! CONTRACT §6: a file written by an older version opens, and is upgraded in place with its data
//! intact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::Path;

use common::*;
use eventhubs_checkpointstore_sqlite::legacy::{
    Checkpoint, CheckpointManager, HostContext, LeaseManager, SqliteCheckpointLeaseManager,
};
use eventhubs_checkpointstore_sqlite::{SqliteCheckpointStore, APPLICATION_ID};

/// Version 1 of `schema.sql`, frozen as it shipped: the test builds an old file from it, not
/// from the current schema.
const SCHEMA_V1: &str = "
CREATE TABLE ownership (
    namespace       TEXT    NOT NULL CHECK (length(namespace) > 0),
    event_hub       TEXT    NOT NULL CHECK (length(event_hub) > 0),
    consumer_group  TEXT    NOT NULL CHECK (length(consumer_group) > 0),
    partition_id    TEXT    NOT NULL CHECK (length(partition_id) > 0),
    owner_id        TEXT    CHECK (owner_id IS NULL OR length(owner_id) > 0),
    etag            TEXT    NOT NULL,
    last_modified   INTEGER NOT NULL,
    epoch           INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, event_hub, consumer_group, partition_id)
) WITHOUT ROWID;

CREATE TABLE checkpoint (
    namespace       TEXT    NOT NULL CHECK (length(namespace) > 0),
    event_hub       TEXT    NOT NULL CHECK (length(event_hub) > 0),
    consumer_group  TEXT    NOT NULL CHECK (length(consumer_group) > 0),
    partition_id    TEXT    NOT NULL CHECK (length(partition_id) > 0),
    event_offset    TEXT,
    sequence_number INTEGER,
    PRIMARY KEY (namespace, event_hub, consumer_group, partition_id)
) WITHOUT ROWID;
";

/// 2026-01-01T00:00:00Z in Unix nanoseconds.
const T0: i64 = 1_767_225_600_000_000_000;

/// Writes a version-1 store by hand: partition 0 owned (epoch 3) with a position, partition 1
/// released with a legacy placeholder checkpoint.
fn write_v1(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(SCHEMA_V1).unwrap();
    conn.execute_batch(&format!(
        "INSERT INTO ownership VALUES
             ('{ns}', '{hub}', '$default', '0', 'host-a', 'etag-0', {T0}, 3),
             ('{ns}', '{hub}', '$default', '1', NULL, 'etag-1', {T0}, 1);
         INSERT INTO checkpoint VALUES
             ('{ns}', '{hub}', '$default', '0', '8591964920', 960180),
             ('{ns}', '{hub}', '$default', '1', NULL, NULL);",
        ns = NS,
        hub = HUB,
    ))
    .unwrap();
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
}

fn pragma(path: &Path, name: &str) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .pragma_query_value(None, name, |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_version_1_file_is_upgraded_in_place_with_its_data_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    write_v1(&path);
    assert_eq!(pragma(&path, "user_version"), 1);

    let store = SqliteCheckpointStore::open(&path).unwrap();
    assert_eq!(
        pragma(&path, "user_version"),
        SqliteCheckpointStore::supported_schema_version()
    );
    assert!(SqliteCheckpointStore::supported_schema_version() >= 2);
    assert_eq!(pragma(&path, "application_id"), i64::from(APPLICATION_ID));

    // The modern API reads the old rows unchanged.
    assert_eq!(
        owners(&store),
        [
            ("0".into(), Some("host-a".into()), Some("etag-0".into())),
            ("1".into(), None, Some("etag-1".into())),
        ]
    );
    let listed = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
    assert_eq!(listed, [checkpoint("0", Some("8591964920"), Some(960180))]);

    // The legacy API reads them as leases, with the epochs kept and no context yet.
    let host =
        SqliteCheckpointLeaseManager::new(&store, HostContext::new(NS, HUB, GROUP, "host-b"))
            .unwrap();
    let leases = host.get_all_leases().await.unwrap();
    assert_eq!(leases.len(), 2);
    assert_eq!(
        (
            leases[0].owner.as_deref(),
            leases[0].token.as_deref(),
            leases[0].epoch
        ),
        (Some("host-a"), Some("etag-0"), 3)
    );
    assert_eq!(leases[0].event_processor_context, None);
    assert_eq!(
        host.get_checkpoint("1").await.unwrap(),
        Some(Checkpoint::new("1"))
    );

    // The new column works on an upgraded file.
    let mut lease = leases[0].clone();
    host.acquire_lease(&mut lease).await.unwrap();
    assert_eq!(lease.epoch, 4);
    lease.event_processor_context = Some("ctx".into());
    host.update_lease(&mut lease).await.unwrap();
    drop(store);

    // Opening again is a no-op upgrade: everything is still there.
    let store = SqliteCheckpointStore::open(&path).unwrap();
    let host =
        SqliteCheckpointLeaseManager::new(&store, HostContext::new(NS, HUB, GROUP, "host-b"))
            .unwrap();
    let again = host.get_lease("0").await.unwrap().unwrap();
    assert_eq!(again, lease);
    assert_eq!(
        host.get_checkpoint("0").await.unwrap(),
        Some(Checkpoint::at("0", "8591964920", 960180))
    );
}

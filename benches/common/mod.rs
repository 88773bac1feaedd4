//! Shared setup for the benchmarks: the store and its plain-rusqlite baseline on the same
//! schema and SQL, in a temp dir.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use eventhubs_checkpointstore_sqlite::{
    Checkpoint, Durability, Ownership, SqliteCheckpointStore, StoreOptions,
};

pub const NS: &str = "bench.servicebus.windows.net";
pub const HUB: &str = "hub";
pub const GROUP: &str = "$default";

pub fn checkpoint(partition: usize, seq: i64) -> Checkpoint {
    Checkpoint {
        fully_qualified_namespace: NS.into(),
        event_hub_name: HUB.into(),
        consumer_group: GROUP.into(),
        partition_id: partition.to_string(),
        offset: Some((seq * 128).to_string()),
        sequence_number: Some(seq),
    }
}

pub fn ownership(partition: usize, owner: &str, etag: Option<String>) -> Ownership {
    Ownership {
        fully_qualified_namespace: NS.into(),
        event_hub_name: HUB.into(),
        consumer_group: GROUP.into(),
        partition_id: partition.to_string(),
        owner_id: Some(owner.into()),
        etag,
        last_modified_time: None,
    }
}

pub fn store(dir: &Path, name: &str, durability: Durability) -> SqliteCheckpointStore {
    SqliteCheckpointStore::open_with(
        dir.join(name),
        StoreOptions::new().with_durability(durability),
    )
    .unwrap()
}

/// The baseline: one plain rusqlite connection, WAL, the given `synchronous`, the store's own
/// schema.sql, and the same SQL the store runs.
pub fn plain(dir: &Path, name: &str, durability: Durability) -> rusqlite::Connection {
    let path: PathBuf = dir.join(name);
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    let sync = match durability {
        Durability::Full => "FULL",
        _ => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync).unwrap();
    let schema = include_str!("../../schema.sql");
    conn.execute_batch(schema).unwrap();
    conn
}

pub const UPSERT: &str = "\
    INSERT INTO checkpoint \
        (namespace, event_hub, consumer_group, partition_id, event_offset, sequence_number) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
    ON CONFLICT (namespace, event_hub, consumer_group, partition_id) DO UPDATE \
    SET event_offset = excluded.event_offset, sequence_number = excluded.sequence_number";

/// One checkpoint write by the baseline: BEGIN IMMEDIATE, upsert, COMMIT.
pub fn plain_update(conn: &mut rusqlite::Connection, partition: usize, seq: i64) {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    tx.prepare_cached(UPSERT)
        .unwrap()
        .execute(rusqlite::params![
            NS,
            HUB,
            GROUP,
            partition.to_string(),
            (seq * 128).to_string(),
            seq
        ])
        .unwrap();
    tx.commit().unwrap();
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

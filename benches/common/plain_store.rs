//! The plain-rusqlite baseline behind a checkpoint-store trait: the crate's own
//! `CheckpointStore` and (feature `azure`) the official
//! `azure_messaging_eventhubs::CheckpointStore`, by one body of code. One connection behind a
//! mutex, WAL, the store's own schema.sql and SQL, one `BEGIN IMMEDIATE` transaction per call,
//! rows mapped straight into the trait's models, the claimed ownerships returned with their new
//! etags, no sorting, SQLite's own busy handler, all on the caller's thread. Used by
//! benches/official.rs, benches/ownership.rs and examples/steal.rs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Mutex;

use eventhubs_checkpointstore_sqlite::Durability;
use rusqlite::{params, Connection, TransactionBehavior};

/// One plain connection, shared by every caller through a mutex.
pub struct PlainStore {
    conn: Mutex<Connection>,
}

const INSERT: &str = "INSERT INTO ownership \
    (namespace, event_hub, consumer_group, partition_id, owner_id, etag, last_modified, epoch) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?5 IS NOT NULL) ON CONFLICT DO NOTHING";
const UPDATE: &str = "UPDATE ownership SET owner_id = ?5, etag = ?6, last_modified = ?7, \
    epoch = epoch + (?5 IS NOT NULL AND owner_id IS NOT ?5) \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4 \
      AND etag = ?8";
const LIST_OWNERSHIPS: &str = "SELECT partition_id, owner_id, etag, last_modified FROM ownership \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3";
const LIST_CHECKPOINTS: &str =
    "SELECT partition_id, event_offset, sequence_number FROM checkpoint \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 \
      AND (event_offset IS NOT NULL OR sequence_number IS NOT NULL)";
const UPSERT: &str = "INSERT INTO checkpoint \
        (namespace, event_hub, consumer_group, partition_id, event_offset, sequence_number) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
    ON CONFLICT (namespace, event_hub, consumer_group, partition_id) DO UPDATE \
    SET event_offset = excluded.event_offset, sequence_number = excluded.sequence_number";

impl PlainStore {
    /// Opens `path` (WAL, the given `synchronous`); with `create`, applies schema.sql first.
    pub fn open(path: &Path, durability: Durability, create: bool) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match durability {
            Durability::Full => "FULL",
            _ => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        if create {
            conn.execute_batch(include_str!("../../schema.sql"))?;
        }
        Ok(PlainStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The trait's methods, for a trait whose models are `$models::{Ownership, Checkpoint}` and
/// whose errors (`$error`) `$err` makes from a rusqlite error (both models have the same fields).
macro_rules! plain_store {
    ($trait:path, $models:ident, $error:ty, $err:path) => {
        #[async_trait::async_trait]
        impl $trait for PlainStore {
            async fn claim_ownership(
                &self,
                ownerships: &[$models::Ownership],
            ) -> std::result::Result<Vec<$models::Ownership>, $error> {
                let mut conn = self.conn();
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err($err)?;
                let now = time::OffsetDateTime::now_utc();
                let stamp = now.unix_timestamp_nanos() as i64;
                let mut won = Vec::new();
                {
                    let mut insert = tx.prepare_cached(INSERT).map_err($err)?;
                    let mut update = tx.prepare_cached(UPDATE).map_err($err)?;
                    for o in ownerships {
                        let etag = uuid::Uuid::new_v4().to_string();
                        let (ns, hub, group) = (
                            o.fully_qualified_namespace.to_ascii_lowercase(),
                            o.event_hub_name.to_ascii_lowercase(),
                            o.consumer_group.to_ascii_lowercase(),
                        );
                        let changed = match &o.etag {
                            None => insert.execute(params![
                                ns,
                                hub,
                                group,
                                o.partition_id,
                                o.owner_id,
                                etag,
                                stamp
                            ]),
                            Some(e) => update.execute(params![
                                ns,
                                hub,
                                group,
                                o.partition_id,
                                o.owner_id,
                                etag,
                                stamp,
                                AsRef::<str>::as_ref(e)
                            ]),
                        }
                        .map_err($err)?;
                        if changed == 1 {
                            won.push($models::Ownership {
                                etag: Some(etag.into()),
                                last_modified_time: Some(now),
                                ..o.clone()
                            });
                        }
                    }
                }
                tx.commit().map_err($err)?;
                Ok(won)
            }

            async fn list_checkpoints(
                &self,
                namespace: &str,
                event_hub_name: &str,
                consumer_group: &str,
            ) -> std::result::Result<Vec<$models::Checkpoint>, $error> {
                let conn = self.conn();
                let mut stmt = conn.prepare_cached(LIST_CHECKPOINTS).map_err($err)?;
                let rows = stmt
                    .query_map(
                        params![
                            namespace.to_ascii_lowercase(),
                            event_hub_name.to_ascii_lowercase(),
                            consumer_group.to_ascii_lowercase()
                        ],
                        |r| {
                            Ok($models::Checkpoint {
                                fully_qualified_namespace: namespace.to_owned(),
                                event_hub_name: event_hub_name.to_owned(),
                                consumer_group: consumer_group.to_owned(),
                                partition_id: r.get(0)?,
                                offset: r.get(1)?,
                                sequence_number: r.get(2)?,
                            })
                        },
                    )
                    .map_err($err)?;
                rows.collect::<rusqlite::Result<_>>().map_err($err)
            }

            async fn list_ownerships(
                &self,
                namespace: &str,
                event_hub_name: &str,
                consumer_group: &str,
            ) -> std::result::Result<Vec<$models::Ownership>, $error> {
                let conn = self.conn();
                let mut stmt = conn.prepare_cached(LIST_OWNERSHIPS).map_err($err)?;
                let rows = stmt
                    .query_map(
                        params![
                            namespace.to_ascii_lowercase(),
                            event_hub_name.to_ascii_lowercase(),
                            consumer_group.to_ascii_lowercase()
                        ],
                        |r| {
                            let nanos: i64 = r.get(3)?;
                            Ok($models::Ownership {
                                fully_qualified_namespace: namespace.to_owned(),
                                event_hub_name: event_hub_name.to_owned(),
                                consumer_group: consumer_group.to_owned(),
                                partition_id: r.get(0)?,
                                owner_id: r.get(1)?,
                                etag: Some(r.get::<_, String>(2)?.into()),
                                last_modified_time:
                                    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(
                                        nanos,
                                    ))
                                    .ok(),
                            })
                        },
                    )
                    .map_err($err)?;
                rows.collect::<rusqlite::Result<_>>().map_err($err)
            }

            async fn update_checkpoint(
                &self,
                checkpoint: $models::Checkpoint,
            ) -> std::result::Result<(), $error> {
                let mut conn = self.conn();
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err($err)?;
                tx.prepare_cached(UPSERT)
                    .map_err($err)?
                    .execute(params![
                        checkpoint.fully_qualified_namespace.to_ascii_lowercase(),
                        checkpoint.event_hub_name.to_ascii_lowercase(),
                        checkpoint.consumer_group.to_ascii_lowercase(),
                        checkpoint.partition_id,
                        checkpoint.offset,
                        checkpoint.sequence_number
                    ])
                    .map_err($err)?;
                tx.commit().map_err($err)
            }
        }
    };
}

#[cfg(feature = "azure")]
mod official {
    use super::*;
    use azure_messaging_eventhubs::models;

    fn err(e: rusqlite::Error) -> azure_core::Error {
        azure_core::Error::new(azure_core::error::ErrorKind::Io, e)
    }

    plain_store!(
        azure_messaging_eventhubs::CheckpointStore,
        models,
        azure_core::Error,
        err
    );
}

mod own {
    use super::*;
    use eventhubs_checkpointstore_sqlite as models;

    fn err(e: rusqlite::Error) -> eventhubs_checkpointstore_sqlite::Error {
        e.into()
    }

    plain_store!(
        eventhubs_checkpointstore_sqlite::CheckpointStore,
        models,
        eventhubs_checkpointstore_sqlite::Error,
        err
    );
}

//! Export and import of a whole store as JSON, in a stable format.
//!
//! # The format (version 1)
//!
//! ```json
//! {
//!   "format": "eh-checkpoints-export",
//!   "format_version": 1,
//!   "schema_version": 1,
//!   "ownerships": [
//!     {
//!       "namespace": "myns.servicebus.windows.net",
//!       "event_hub": "telemetry",
//!       "consumer_group": "$default",
//!       "partition_id": "0",
//!       "owner_id": "processor-1",
//!       "etag": "0b9f6c0e-4c1e-4b8a-9a57-3d1f0e2c8a11",
//!       "last_modified": "2026-01-01T00:00:00.123456789Z",
//!       "epoch": 1
//!     }
//!   ],
//!   "checkpoints": [
//!     {
//!       "namespace": "myns.servicebus.windows.net",
//!       "event_hub": "telemetry",
//!       "consumer_group": "$default",
//!       "partition_id": "0",
//!       "offset": "8591964920",
//!       "sequence_number": 960180
//!     }
//!   ]
//! }
//! ```
//!
//! - Every row of both tables, every column: an export imported into an empty store exports
//!   again byte for byte.
//! - Names are the stored ones, folded to ASCII lowercase; an import folds them again, so
//!   hand-written files may use any case.
//! - `owner_id` is `null` for a released partition. `last_modified` is RFC 3339 in UTC with
//!   the stored nanoseconds. `epoch` is the ownership generation (+1 whenever a different
//!   owner takes the partition; the legacy EventProcessorHost epoch).
//! - A checkpoint with `offset` and `sequence_number` both `null` is a legacy StartOfStream
//!   placeholder (it names no position).
//! - `event_processor_context` (an ownership's legacy EventProcessorHost lease context) is
//!   present only when one is stored.
//! - Rows are sorted by namespace, event hub, consumer group, then partition (numeric ids by
//!   value). Every other field is always present; unknown fields are rejected.
//! - `format_version` changes only when a reader of version 1 could misread a file; an import
//!   refuses a version it does not know. `schema_version` is informational.

use std::cell::RefCell;
use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::migrate::{self, OnConflict, Plan, Run};
use crate::model::{self, PartitionKey, MAX_OFFSET_LEN};
use crate::schema;
use crate::store::ops::{self, from_nanos, to_nanos};
use crate::store::SqliteCheckpointStore;

/// The value of [`StoreExport::format`].
pub const EXPORT_FORMAT: &str = "eh-checkpoints-export";

/// The format version this build writes and reads.
pub const EXPORT_FORMAT_VERSION: u32 = 1;

/// A whole store: what [`SqliteCheckpointStore::blocking_export`] returns and
/// [`SqliteCheckpointStore::blocking_import`] takes. See the [module docs](self) for the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreExport {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// [`EXPORT_FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// The schema version of the exported store (informational).
    pub schema_version: i64,
    /// Every ownership row.
    pub ownerships: Vec<ExportedOwnership>,
    /// Every checkpoint row, legacy placeholders included.
    pub checkpoints: Vec<ExportedCheckpoint>,
}

/// One ownership row of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedOwnership {
    /// The namespace (stored lowercase).
    pub namespace: String,
    /// The event hub (stored lowercase).
    pub event_hub: String,
    /// The consumer group (stored lowercase).
    pub consumer_group: String,
    /// The partition id, verbatim.
    pub partition_id: String,
    /// The owner, `None` when released.
    pub owner_id: Option<String>,
    /// The stored etag.
    pub etag: String,
    /// When the store last wrote the row (UTC, nanoseconds kept).
    #[serde(with = "time::serde::rfc3339")]
    pub last_modified: OffsetDateTime,
    /// The ownership generation.
    pub epoch: i64,
    /// The legacy EventProcessorHost lease's `event_processor_context`, if one was stored.
    /// Omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_processor_context: Option<String>,
}

/// One checkpoint row of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedCheckpoint {
    /// The namespace (stored lowercase).
    pub namespace: String,
    /// The event hub (stored lowercase).
    pub event_hub: String,
    /// The consumer group (stored lowercase).
    pub consumer_group: String,
    /// The partition id, verbatim.
    pub partition_id: String,
    /// The offset, verbatim; `None` with `sequence_number` for a legacy placeholder.
    pub offset: Option<String>,
    /// The sequence number.
    pub sequence_number: Option<i64>,
}

/// What an import did (or, from [`SqliteCheckpointStore::blocking_plan_import`], would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportPlan {
    /// Ownership rows the store lacks.
    pub new_ownerships: usize,
    /// Ownership rows the store holds identically (left as they are).
    pub same_ownerships: usize,
    /// Checkpoint rows the store lacks.
    pub new_checkpoints: usize,
    /// Checkpoint rows the store holds identically (left as they are).
    pub same_checkpoints: usize,
    /// Rows the store holds with other contents, described; replaced only with overwrite.
    pub conflicts: Vec<String>,
}

impl StoreExport {
    /// Parses an export from JSON and checks its format and version (the rows are validated
    /// by the import).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] (`export`) for JSON that is not an export of a known
    /// version, naming the line and column of the problem.
    pub fn from_json(json: &str) -> Result<Self> {
        let export: StoreExport = serde_json::from_str(json)
            .map_err(|e| Error::invalid("export", format!("not a store export: {e}")))?;
        export.checked()
    }

    /// [`from_json`](Self::from_json) from a reader, parsed as it is read: a large export is
    /// never held in memory as text beside its rows. Pass a buffered reader (a
    /// [`BufReader`](std::io::BufReader) around a file); serde reads it byte by byte.
    ///
    /// ```
    /// use eventhubs_checkpointstore_sqlite::migrate::export::StoreExport;
    /// use eventhubs_checkpointstore_sqlite::SqliteCheckpointStore;
    ///
    /// let json = SqliteCheckpointStore::open_in_memory()?.blocking_export()?.to_json()?;
    /// let export = StoreExport::from_reader(std::io::BufReader::new(json.as_bytes()))?;
    /// assert!(export.checkpoints.is_empty());
    /// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`from_json`](Self::from_json); an I/O error of the reader is
    /// [`Error::Io`].
    pub fn from_reader(reader: impl std::io::Read) -> Result<Self> {
        let export: StoreExport = serde_json::from_reader(reader).map_err(|e| {
            if e.is_io() {
                Error::Io {
                    path: None,
                    source: std::sync::Arc::new(std::io::Error::from(e)),
                }
            } else {
                Error::invalid("export", format!("not a store export: {e}"))
            }
        })?;
        export.checked()
    }

    /// Reads an export as it is parsed straight into the rows an import writes: every entry
    /// is validated (as [`SqliteCheckpointStore::blocking_import`] does) the moment it is
    /// read, so neither the text nor the entries are ever held, only the rows. This is how a
    /// large export is imported: pass the result to
    /// [`SqliteCheckpointStore::blocking_import_validated`]. Pass a buffered reader.
    ///
    /// # Errors
    /// As [`from_json`](Self::from_json), and the validation errors of
    /// [`SqliteCheckpointStore::blocking_import`] (`ownerships` or `checkpoints`, naming the
    /// entry).
    pub fn read_validated(reader: impl std::io::Read) -> Result<ValidatedExport> {
        STREAM_ERROR.with(|s| s.borrow_mut().take());
        let streamed: Streamed = match serde_json::from_reader(reader) {
            Ok(streamed) => streamed,
            Err(e) => {
                if let Some(err) = STREAM_ERROR.with(|s| s.borrow_mut().take()) {
                    return Err(err);
                }
                return Err(if e.is_io() {
                    Error::Io {
                        path: None,
                        source: std::sync::Arc::new(std::io::Error::from(e)),
                    }
                } else {
                    Error::invalid("export", format!("not a store export: {e}"))
                });
            }
        };
        StoreExport {
            format: streamed.format,
            format_version: streamed.format_version,
            schema_version: 0,
            ownerships: Vec::new(),
            checkpoints: Vec::new(),
        }
        .checked()?;
        Ok(ValidatedExport {
            ownerships: streamed.rows.ownerships,
            checkpoints: streamed.rows.checkpoints,
        })
    }

    /// Refuses an export of another format or version.
    fn checked(self) -> Result<Self> {
        let export = self;
        if export.format != EXPORT_FORMAT {
            return Err(Error::invalid(
                "export",
                format!(
                    "`format` is {:?}, expected {EXPORT_FORMAT:?}",
                    export.format
                ),
            ));
        }
        if export.format_version != EXPORT_FORMAT_VERSION {
            return Err(Error::invalid(
                "export",
                format!(
                    "format version {} is not supported (this build reads {EXPORT_FORMAT_VERSION})",
                    export.format_version
                ),
            ));
        }
        Ok(export)
    }

    /// The export as pretty-printed JSON, ending in a newline.
    ///
    /// # Errors
    /// [`Error::Internal`] only if serialization fails, which these types cannot cause.
    pub fn to_json(&self) -> Result<String> {
        let mut json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::internal(format!("cannot serialize the export: {e}")))?;
        json.push('\n');
        Ok(json)
    }
}

const ALL_OWNERSHIPS: &str = "\
    SELECT namespace, event_hub, consumer_group, partition_id, owner_id, etag, last_modified, \
           epoch, event_processor_context \
    FROM ownership";

const ALL_CHECKPOINTS: &str = "\
    SELECT namespace, event_hub, consumer_group, partition_id, event_offset, sequence_number \
    FROM checkpoint";

fn export(conn: &mut Connection) -> Result<StoreExport> {
    // One read transaction: both tables from the same snapshot.
    let tx = conn.transaction()?;
    let mut ownerships = Vec::new();
    {
        let mut stmt = tx.prepare_cached(ALL_OWNERSHIPS)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            ownerships.push(ExportedOwnership {
                namespace: r.get(0)?,
                event_hub: r.get(1)?,
                consumer_group: r.get(2)?,
                partition_id: r.get(3)?,
                owner_id: r.get(4)?,
                etag: r.get(5)?,
                last_modified: from_nanos(r.get(6)?)?,
                epoch: r.get(7)?,
                event_processor_context: r.get(8)?,
            });
        }
    }
    let checkpoints = {
        let mut stmt = tx.prepare_cached(ALL_CHECKPOINTS)?;
        let rows = stmt.query_map([], |r| {
            Ok(ExportedCheckpoint {
                namespace: r.get(0)?,
                event_hub: r.get(1)?,
                consumer_group: r.get(2)?,
                partition_id: r.get(3)?,
                offset: r.get(4)?,
                sequence_number: r.get(5)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    tx.commit()?;
    let mut export = StoreExport {
        format: EXPORT_FORMAT.to_owned(),
        format_version: EXPORT_FORMAT_VERSION,
        schema_version: schema::supported_version(),
        ownerships,
        checkpoints,
    };
    export
        .ownerships
        .sort_by(|a, b| order(&a.key_parts(), &b.key_parts()));
    export
        .checkpoints
        .sort_by(|a, b| order(&a.key_parts(), &b.key_parts()));
    Ok(export)
}

type KeyParts<'a> = (&'a str, &'a str, &'a str, &'a str);

fn order(a: &KeyParts<'_>, b: &KeyParts<'_>) -> std::cmp::Ordering {
    (a.0, a.1, a.2)
        .cmp(&(b.0, b.1, b.2))
        .then_with(|| model::partition_order(a.3, b.3))
}

impl ExportedOwnership {
    fn key_parts(&self) -> KeyParts<'_> {
        (
            &self.namespace,
            &self.event_hub,
            &self.consumer_group,
            &self.partition_id,
        )
    }
}

impl ExportedCheckpoint {
    fn key_parts(&self) -> KeyParts<'_> {
        (
            &self.namespace,
            &self.event_hub,
            &self.consumer_group,
            &self.partition_id,
        )
    }
}

/// An ownership row ready to write.
struct OwnershipRow {
    key: PartitionKey,
    owner_id: Option<String>,
    etag: String,
    last_modified: i64,
    epoch: i64,
    context: Option<String>,
}

/// A checkpoint row ready to write.
struct CheckpointRow {
    key: PartitionKey,
    offset: Option<String>,
    sequence_number: Option<i64>,
}

fn describe(key: &PartitionKey) -> String {
    format!(
        "{}/{}/{}/{}",
        key.namespace, key.event_hub, key.consumer_group, key.partition_id
    )
}

/// Rewrites a validation error to name the entry it came from.
fn entry_error(table: &'static str, index: usize, err: Error) -> Error {
    match err {
        Error::InvalidArgument { field, reason } => {
            Error::invalid(table, format!("entry {index}: `{field}` {reason}"))
        }
        other => other,
    }
}

/// Validates every row and folds the names, before anything is read or written.
fn validate(export: &StoreExport) -> Result<(Vec<OwnershipRow>, Vec<CheckpointRow>)> {
    let mut rows = Rows::default();
    for (i, o) in export.ownerships.iter().enumerate() {
        rows.ownership(i, o)?;
    }
    for (i, c) in export.checkpoints.iter().enumerate() {
        rows.checkpoint(i, c)?;
    }
    Ok((rows.ownerships, rows.checkpoints))
}

/// Rows validated so far, and the keys seen (to refuse a partition twice).
#[derive(Default)]
struct Rows {
    ownerships: Vec<OwnershipRow>,
    checkpoints: Vec<CheckpointRow>,
    seen_ownerships: HashSet<PartitionKey>,
    seen_checkpoints: HashSet<PartitionKey>,
}

impl Rows {
    /// Validates entry `i` of the ownerships and adds its row.
    fn ownership(&mut self, i: usize, o: &ExportedOwnership) -> Result<()> {
        let row = (|| {
            let key = PartitionKey::new(
                &o.namespace,
                &o.event_hub,
                &o.consumer_group,
                &o.partition_id,
            )?;
            let owner_id = model::owner(o.owner_id.as_deref())?.map(ToOwned::to_owned);
            let etag = model::name("etag", &o.etag)?.to_owned();
            let last_modified = to_nanos(o.last_modified)
                .map_err(|_| Error::invalid("last_modified", "is outside 1677..2262"))?;
            if o.epoch < 0 {
                return Err(Error::invalid("epoch", "must not be negative"));
            }
            if let Some(context) = &o.event_processor_context {
                model::bounded("event_processor_context", context, model::MAX_CONTEXT_LEN)?;
            }
            Ok(OwnershipRow {
                key,
                owner_id,
                etag,
                last_modified,
                epoch: o.epoch,
                context: o.event_processor_context.clone(),
            })
        })()
        .map_err(|e| entry_error("ownerships", i, e))?;
        if !self.seen_ownerships.insert(row.key.clone()) {
            return Err(Error::invalid(
                "ownerships",
                format!(
                    "entry {i}: partition {} appears twice (names match case-insensitively)",
                    describe(&row.key)
                ),
            ));
        }
        self.ownerships.push(row);
        Ok(())
    }

    /// Validates entry `i` of the checkpoints and adds its row.
    fn checkpoint(&mut self, i: usize, c: &ExportedCheckpoint) -> Result<()> {
        let row = (|| {
            let key = PartitionKey::new(
                &c.namespace,
                &c.event_hub,
                &c.consumer_group,
                &c.partition_id,
            )?;
            if let Some(offset) = &c.offset {
                model::bounded("offset", offset, MAX_OFFSET_LEN)?;
            }
            Ok(CheckpointRow {
                key,
                offset: c.offset.clone(),
                sequence_number: c.sequence_number,
            })
        })()
        .map_err(|e| entry_error("checkpoints", i, e))?;
        if !self.seen_checkpoints.insert(row.key.clone()) {
            return Err(Error::invalid(
                "checkpoints",
                format!(
                    "entry {i}: partition {} appears twice (names match case-insensitively)",
                    describe(&row.key)
                ),
            ));
        }
        self.checkpoints.push(row);
        Ok(())
    }
}

/// An export read and validated into the rows an import writes, and nothing more: see
/// [`StoreExport::read_validated`]. Import it with
/// [`SqliteCheckpointStore::blocking_import_validated`].
pub struct ValidatedExport {
    ownerships: Vec<OwnershipRow>,
    checkpoints: Vec<CheckpointRow>,
}

impl std::fmt::Debug for ValidatedExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ValidatedExport")
            .field("ownerships", &self.ownerships.len())
            .field("checkpoints", &self.checkpoints.len())
            .finish()
    }
}

impl ValidatedExport {
    /// Ownership rows.
    pub fn ownerships(&self) -> usize {
        self.ownerships.len()
    }

    /// Checkpoint rows.
    pub fn checkpoints(&self) -> usize {
        self.checkpoints.len()
    }

    /// When each ownership row was last modified, as the export says.
    pub fn ownership_times(&self) -> impl Iterator<Item = OffsetDateTime> + '_ {
        self.ownerships
            .iter()
            .filter_map(|o| ops::from_nanos(o.last_modified).ok())
    }
}

thread_local! {
    /// The validation error that stopped a streaming read, kept with its own variant (serde
    /// carries only a message).
    static STREAM_ERROR: RefCell<Option<Error>> = const { RefCell::new(None) };
}

/// The rows of an export as it is parsed: each entry is validated into its row the moment it
/// is read, so the entries are never held.
struct Streamed {
    format: String,
    format_version: u32,
    rows: Rows,
}

impl<'de> Deserialize<'de> for Streamed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{Error as _, MapAccess, Visitor};
        struct Top;
        impl<'de> Visitor<'de> for Top {
            type Value = Streamed;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a store export object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Streamed, A::Error> {
                let (mut format, mut version, mut rows) = (None, None, Rows::default());
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "format" => format = Some(map.next_value::<String>()?),
                        "format_version" => version = Some(map.next_value::<u32>()?),
                        "schema_version" => {
                            map.next_value::<i64>()?;
                        }
                        "ownerships" => {
                            rows = map.next_value_seed(Entries {
                                rows,
                                ownerships: true,
                            })?;
                        }
                        "checkpoints" => {
                            rows = map.next_value_seed(Entries {
                                rows,
                                ownerships: false,
                            })?;
                        }
                        other => return Err(A::Error::unknown_field(other, FIELDS)),
                    }
                }
                Ok(Streamed {
                    format: format.ok_or_else(|| A::Error::missing_field("format"))?,
                    format_version: version
                        .ok_or_else(|| A::Error::missing_field("format_version"))?,
                    rows,
                })
            }
        }
        const FIELDS: &[&str] = &[
            "format",
            "format_version",
            "schema_version",
            "ownerships",
            "checkpoints",
        ];
        d.deserialize_map(Top)
    }
}

/// One of the two arrays, validated entry by entry into `rows`.
struct Entries {
    rows: Rows,
    ownerships: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Entries {
    type Value = Rows;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<Rows, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Entries {
    type Value = Rows;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of rows")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        mut self,
        mut seq: A,
    ) -> std::result::Result<Rows, A::Error> {
        use serde::de::Error as _;
        let mut i = 0;
        loop {
            let added = if self.ownerships {
                match seq.next_element::<ExportedOwnership>()? {
                    Some(o) => self.rows.ownership(i, &o),
                    None => break,
                }
            } else {
                match seq.next_element::<ExportedCheckpoint>()? {
                    Some(c) => self.rows.checkpoint(i, &c),
                    None => break,
                }
            };
            if let Err(e) = added {
                let text = e.to_string();
                STREAM_ERROR.with(|s| *s.borrow_mut() = Some(e));
                return Err(A::Error::custom(text));
            }
            i += 1;
        }
        Ok(self.rows)
    }
}

const GET_OWNERSHIP: &str = "\
    SELECT owner_id, etag, last_modified, epoch, event_processor_context FROM ownership \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4";

const PUT_OWNERSHIP: &str = "\
    INSERT INTO ownership \
        (namespace, event_hub, consumer_group, partition_id, owner_id, etag, last_modified, epoch, \
         event_processor_context) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
    ON CONFLICT (namespace, event_hub, consumer_group, partition_id) DO UPDATE \
    SET owner_id = excluded.owner_id, etag = excluded.etag, \
        last_modified = excluded.last_modified, epoch = excluded.epoch, \
        event_processor_context = excluded.event_processor_context";

/// What the store holds for each row: new, the same, or in conflict.
enum Found {
    New,
    Same,
    Conflict(String),
}

fn compare_ownership(tx: &Transaction<'_>, row: &OwnershipRow) -> Result<Found> {
    let k = &row.key;
    type Stored = (Option<String>, String, i64, i64, Option<String>);
    let stored: Option<Stored> = tx
        .prepare_cached(GET_OWNERSHIP)?
        .query_row(
            params![k.namespace, k.event_hub, k.consumer_group, k.partition_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    Ok(match stored {
        None => Found::New,
        Some((owner, etag, modified, epoch, context))
            if owner == row.owner_id
                && etag == row.etag
                && modified == row.last_modified
                && epoch == row.epoch
                && context == row.context =>
        {
            Found::Same
        }
        Some((owner, etag, _, epoch, _)) => Found::Conflict(format!(
            "ownership {}: the store has owner {}, etag {etag}, epoch {epoch}",
            describe(k),
            owner.as_deref().unwrap_or("(released)"),
        )),
    })
}

fn compare_checkpoint(tx: &Transaction<'_>, row: &CheckpointRow) -> Result<Found> {
    let stored = ops::stored_checkpoint(tx, &row.key)?;
    Ok(match stored {
        None => Found::New,
        Some((offset, seq)) if offset == row.offset && seq == row.sequence_number => Found::Same,
        Some((offset, seq)) => Found::Conflict(format!(
            "checkpoint {}: the store has offset {}, sequence number {}",
            describe(&row.key),
            offset.as_deref().unwrap_or("null"),
            seq.map_or("null".to_owned(), |s| s.to_string()),
        )),
    })
}

/// What an import found, with the rows it writes when applied.
struct Planned<'a> {
    plan: ImportPlan,
    ownerships: Vec<&'a OwnershipRow>,
    checkpoints: Vec<&'a CheckpointRow>,
}

impl Plan for Planned<'_> {
    fn conflicts(&self) -> Option<(usize, String)> {
        let first = self.plan.conflicts.first()?;
        Some((self.plan.conflicts.len(), first.clone()))
    }
}

/// Compares every row with the store inside `tx`: the new and the conflicting ones are the
/// rows an apply writes (the conflicting ones only with [`OnConflict::Overwrite`]).
fn plan<'a>(
    tx: &Transaction<'_>,
    ownerships: &'a [OwnershipRow],
    checkpoints: &'a [CheckpointRow],
) -> Result<Planned<'a>> {
    plan_with(tx, ownerships, checkpoints, &mut Progress(None))
}

fn plan_with<'a>(
    tx: &Transaction<'_>,
    ownerships: &'a [OwnershipRow],
    checkpoints: &'a [CheckpointRow],
    progress: &mut Progress<'_>,
) -> Result<Planned<'a>> {
    let total = ownerships.len() + checkpoints.len();
    let mut done = 0;
    let mut planned = Planned {
        plan: ImportPlan::default(),
        ownerships: Vec::new(),
        checkpoints: Vec::new(),
    };
    let plan = &mut planned.plan;
    for row in ownerships {
        done += 1;
        progress.at("comparing", done, total);
        match compare_ownership(tx, row)? {
            Found::New => {
                plan.new_ownerships += 1;
                planned.ownerships.push(row);
            }
            Found::Same => plan.same_ownerships += 1,
            Found::Conflict(what) => {
                plan.conflicts.push(what);
                planned.ownerships.push(row);
            }
        }
    }
    for row in checkpoints {
        done += 1;
        progress.at("comparing", done, total);
        match compare_checkpoint(tx, row)? {
            Found::New => {
                plan.new_checkpoints += 1;
                planned.checkpoints.push(row);
            }
            Found::Same => plan.same_checkpoints += 1,
            Found::Conflict(what) => {
                plan.conflicts.push(what);
                planned.checkpoints.push(row);
            }
        }
    }
    Ok(planned)
}

/// How far an import is, for [`SqliteCheckpointStore::blocking_import_validated`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportProgress {
    /// What is being done: `"comparing"` or `"writing"`.
    pub phase: &'static str,
    /// Rows done in this phase.
    pub done: usize,
    /// Rows this phase has in all.
    pub total: usize,
}

/// How many rows pass between two calls of the progress callback.
const PROGRESS_EVERY: usize = 4096;

/// The progress callback, called every [`PROGRESS_EVERY`] rows and at the end of a phase.
struct Progress<'p>(Option<&'p mut dyn FnMut(ImportProgress)>);

impl Progress<'_> {
    fn at(&mut self, phase: &'static str, done: usize, total: usize) {
        if let Some(f) = self.0.as_mut() {
            if done.is_multiple_of(PROGRESS_EVERY) || done == total {
                f(ImportProgress { phase, done, total });
            }
        }
    }
}

/// Writes what [`plan`] found to write.
fn apply(tx: &Transaction<'_>, planned: &Planned<'_>) -> Result<()> {
    apply_with(tx, planned, &mut Progress(None))
}

fn apply_with(
    tx: &Transaction<'_>,
    planned: &Planned<'_>,
    progress: &mut Progress<'_>,
) -> Result<()> {
    let total = planned.ownerships.len() + planned.checkpoints.len();
    let mut done = 0;
    let mut put = tx.prepare_cached(PUT_OWNERSHIP)?;
    for row in &planned.ownerships {
        let k = &row.key;
        put.execute(params![
            k.namespace,
            k.event_hub,
            k.consumer_group,
            k.partition_id,
            row.owner_id,
            row.etag,
            row.last_modified,
            row.epoch,
            row.context
        ])?;
        done += 1;
        progress.at("writing", done, total);
    }
    for row in &planned.checkpoints {
        ops::write_checkpoint(tx, &row.key, row.offset.as_deref(), row.sequence_number)?;
        done += 1;
        progress.at("writing", done, total);
    }
    progress.at("writing", total, total);
    Ok(())
}

/// Validates `export`, then plans or applies it through the shared import skeleton.
fn import(
    conn: &mut Connection,
    export: &StoreExport,
    run: Run,
    on_conflict: OnConflict,
) -> Result<ImportPlan> {
    let (ownerships, checkpoints) = validate(export)?;
    let planned = migrate::run(
        conn,
        run,
        on_conflict,
        |tx| plan(tx, &ownerships, &checkpoints),
        apply,
    )?;
    Ok(planned.plan)
}

/// [`import`] of validated rows, reporting progress.
fn import_validated(
    conn: &mut Connection,
    rows: &ValidatedExport,
    run: Run,
    on_conflict: OnConflict,
    progress: &mut dyn FnMut(ImportProgress),
) -> Result<ImportPlan> {
    let progress = RefCell::new(Progress(Some(progress)));
    let planned = migrate::run(
        conn,
        run,
        on_conflict,
        |tx| {
            plan_with(
                tx,
                &rows.ownerships,
                &rows.checkpoints,
                &mut progress.borrow_mut(),
            )
        },
        |tx, planned| apply_with(tx, planned, &mut progress.borrow_mut()),
    )?;
    Ok(planned.plan)
}

impl SqliteCheckpointStore {
    /// Every row of both tables, read in one transaction (a consistent snapshot), in the
    /// stable order of the [format](crate::migrate::export).
    ///
    /// ```
    /// use eventhubs_checkpointstore_sqlite::migrate::OnConflict;
    /// use eventhubs_checkpointstore_sqlite::{Ownership, SqliteCheckpointStore};
    ///
    /// let store = SqliteCheckpointStore::open_in_memory()?;
    /// store.blocking_claim_ownership(&[Ownership {
    ///     fully_qualified_namespace: "ns".into(),
    ///     event_hub_name: "hub".into(),
    ///     consumer_group: "$Default".into(),
    ///     partition_id: "0".into(),
    ///     owner_id: Some("a".into()),
    ///     ..Ownership::default()
    /// }])?;
    /// let export = store.blocking_export()?;
    /// let copy = SqliteCheckpointStore::open_in_memory()?;
    /// copy.blocking_import(&export, OnConflict::Refuse)?;
    /// assert_eq!(copy.blocking_export()?, export);
    /// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
    /// ```
    ///
    /// # Errors
    /// Storage errors: [`Error::Busy`], [`Error::NotADatabase`] for a corrupt file.
    pub fn blocking_export(&self) -> Result<StoreExport> {
        self.with_read_conn(|_, c| export(c))
    }

    /// What [`blocking_import`](Self::blocking_import) would do, without writing: validates
    /// every row and compares it with the store. Conflicts are listed in
    /// [`ImportPlan::conflicts`].
    ///
    /// # Errors
    /// As [`blocking_import`](Self::blocking_import), except that conflicts are reported in
    /// the plan rather than as [`Error::Conflict`].
    pub fn blocking_plan_import(&self, export: &StoreExport) -> Result<ImportPlan> {
        self.with_read_conn(|_, c| import(c, export, Run::Plan, OnConflict::Overwrite))
    }

    /// Imports an export: every row is validated first, then all are written in one
    /// `BEGIN IMMEDIATE` transaction, exactly as they are in the export (etags, times and
    /// epochs included). Rows the store already holds identically are left alone. Rows of the
    /// store that the export lacks are kept.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] (`ownerships` or `checkpoints`, naming the entry) for an
    /// invalid or duplicated row; [`Error::Conflict`] if, with [`OnConflict::Refuse`], any row exists
    /// in the store with other contents. Nothing is written in either case. Storage errors as
    /// for [`update_checkpoint`](crate::CheckpointStore::update_checkpoint).
    pub fn blocking_import(
        &self,
        export: &StoreExport,
        on_conflict: OnConflict,
    ) -> Result<ImportPlan> {
        self.with_conn(|_, c| import(c, export, Run::Apply, on_conflict))
    }

    /// [`blocking_plan_import`](Self::blocking_plan_import) of an export read with
    /// [`StoreExport::read_validated`].
    ///
    /// # Errors
    /// As [`blocking_plan_import`](Self::blocking_plan_import).
    pub fn blocking_plan_import_validated(&self, rows: &ValidatedExport) -> Result<ImportPlan> {
        self.with_read_conn(|_, c| {
            import_validated(c, rows, Run::Plan, OnConflict::Overwrite, &mut |_| {})
        })
    }

    /// [`blocking_import`](Self::blocking_import) of an export read with
    /// [`StoreExport::read_validated`], calling `progress` as it goes (every few thousand
    /// rows, and at the end of each phase: comparing, writing), for a progress bar.
    ///
    /// ```
    /// use eventhubs_checkpointstore_sqlite::migrate::export::StoreExport;
    /// use eventhubs_checkpointstore_sqlite::migrate::OnConflict;
    /// use eventhubs_checkpointstore_sqlite::{Checkpoint, SqliteCheckpointStore};
    ///
    /// let store = SqliteCheckpointStore::open_in_memory()?;
    /// store.blocking_update_checkpoint(&Checkpoint {
    ///     fully_qualified_namespace: "ns".into(),
    ///     event_hub_name: "hub".into(),
    ///     consumer_group: "$Default".into(),
    ///     partition_id: "0".into(),
    ///     sequence_number: Some(1),
    ///     ..Checkpoint::default()
    /// })?;
    /// let json = store.blocking_export()?.to_json()?;
    /// let rows = StoreExport::read_validated(json.as_bytes())?;
    /// let mut phases = Vec::new();
    /// SqliteCheckpointStore::open_in_memory()?.blocking_import_validated(
    ///     &rows,
    ///     OnConflict::Refuse,
    ///     &mut |p| phases.push((p.phase, p.done, p.total)),
    /// )?;
    /// assert_eq!(phases.last(), Some(&("writing", 1, 1)));
    /// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`blocking_import`](Self::blocking_import).
    pub fn blocking_import_validated(
        &self,
        rows: &ValidatedExport,
        on_conflict: OnConflict,
        progress: &mut dyn FnMut(ImportProgress),
    ) -> Result<ImportPlan> {
        self.with_conn(|_, c| import_validated(c, rows, Run::Apply, on_conflict, progress))
    }
}

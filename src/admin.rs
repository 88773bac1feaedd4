//! Store-wide administration: the groups a store holds, deleting checkpoints, an integrity
//! report and an online backup. These are what `eh-checkpoints` is built on.
//!
//! Every method here blocks: it runs on the calling thread, hence the `blocking_` prefix. From
//! async code, call them inside `tokio::task::spawn_blocking`.
//!
//! This area depends on the core (model, schema, store) and on nothing else of the crate.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{create_new_file, sqlite_name, Identity};
use crate::model::{GroupKey, PartitionKey};
use crate::schema;
use crate::store::{ops, SqliteCheckpointStore};

/// One (namespace, event hub, consumer group) that has rows in the store, with its counts.
///
/// The names are the stored ones: folded to ASCII lowercase, as the store keys them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// The fully qualified namespace (lowercase).
    pub fully_qualified_namespace: String,
    /// The event hub name (lowercase).
    pub event_hub_name: String,
    /// The consumer group (lowercase).
    pub consumer_group: String,
    /// Ownership rows, owned or released.
    pub ownerships: u64,
    /// Ownership rows with an owner.
    pub owned: u64,
    /// Checkpoints that name a position.
    pub checkpoints: u64,
    /// Legacy StartOfStream placeholders: checkpoint rows without a position.
    pub placeholders: u64,
}

/// What [`SqliteCheckpointStore::blocking_check`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckReport {
    /// The database file, or `None` in memory.
    pub path: Option<PathBuf>,
    /// The lines of `PRAGMA integrity_check`: exactly `["ok"]` for a healthy file.
    pub integrity: Vec<String>,
    /// `PRAGMA user_version` of the file.
    pub schema_version: i64,
    /// The newest schema version this build understands.
    pub supported_schema_version: i64,
    /// `PRAGMA application_id` of the file ([`APPLICATION_ID`](crate::APPLICATION_ID) for a
    /// store).
    pub application_id: i32,
    /// `PRAGMA journal_mode`: `wal` for a store file, `memory` in memory.
    pub journal_mode: String,
    /// Bytes per database page.
    pub page_size: u64,
    /// Pages in the database (as of the last WAL checkpoint plus the WAL).
    pub page_count: u64,
    /// Unused pages.
    pub freelist_count: u64,
    /// The size of the database file in bytes (`None` in memory).
    pub file_size: Option<u64>,
    /// The size of the `-wal` file in bytes: `Some(0)` when there is none, `None` in memory.
    pub wal_size: Option<u64>,
    /// The size of the `-wal` file when the store was opened, before SQLite read it (and
    /// recovered it, if a crash left one): `Some(0)` when there was none, `None` in memory or
    /// when it could not be read.
    #[serde(default)]
    pub wal_size_at_open: Option<u64>,
    /// Row counts, or `None` when the tables could not be read (the integrity lines say why).
    pub rows: Option<RowCounts>,
}

impl CheckReport {
    /// True when the integrity check found nothing wrong.
    pub fn is_ok(&self) -> bool {
        self.integrity.len() == 1 && self.integrity[0] == "ok" && self.rows.is_some()
    }
}

/// Row counts over the whole store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    /// Distinct (namespace, event hub, consumer group) with any row.
    pub groups: u64,
    /// Ownership rows.
    pub ownerships: u64,
    /// Ownership rows with an owner.
    pub owned: u64,
    /// Checkpoints that name a position.
    pub checkpoints: u64,
    /// Legacy StartOfStream placeholders.
    pub placeholders: u64,
}

/// What [`SqliteCheckpointStore::blocking_backup_to`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReport {
    /// The new file.
    pub path: PathBuf,
    /// Pages copied.
    pub pages: u64,
    /// The size of the new file in bytes.
    pub bytes: u64,
}

/// Groups and their counts, from both tables.
const GROUPS: &str = "\
    SELECT namespace, event_hub, consumer_group, \
           sum(o), sum(owned), sum(c), sum(ph) \
    FROM ( \
        SELECT namespace, event_hub, consumer_group, \
               1 AS o, owner_id IS NOT NULL AS owned, 0 AS c, 0 AS ph \
        FROM ownership \
        UNION ALL \
        SELECT namespace, event_hub, consumer_group, 0, 0, \
               (event_offset IS NOT NULL OR sequence_number IS NOT NULL), \
               (event_offset IS NULL AND sequence_number IS NULL) \
        FROM checkpoint \
    ) \
    GROUP BY namespace, event_hub, consumer_group \
    ORDER BY namespace, event_hub, consumer_group";

const DELETE_GROUP_CHECKPOINTS: &str = "\
    DELETE FROM checkpoint WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3";

fn groups(conn: &Connection) -> Result<Vec<GroupSummary>> {
    let mut stmt = conn.prepare_cached(GROUPS)?;
    let rows = stmt.query_map([], |r| {
        Ok(GroupSummary {
            fully_qualified_namespace: r.get(0)?,
            event_hub_name: r.get(1)?,
            consumer_group: r.get(2)?,
            ownerships: count(r, 3)?,
            owned: count(r, 4)?,
            checkpoints: count(r, 5)?,
            placeholders: count(r, 6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn count(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<u64> {
    Ok(r.get::<_, i64>(i)?.max(0) as u64)
}

fn row_counts(conn: &Connection) -> Result<RowCounts> {
    let groups = groups(conn)?;
    let mut counts = RowCounts {
        groups: groups.len() as u64,
        ownerships: 0,
        owned: 0,
        checkpoints: 0,
        placeholders: 0,
    };
    for g in groups {
        counts.ownerships += g.ownerships;
        counts.owned += g.owned;
        counts.checkpoints += g.checkpoints;
        counts.placeholders += g.placeholders;
    }
    Ok(counts)
}

/// The size of a file, `Some(0)` if it does not exist.
fn file_size(path: &Path) -> Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Some(0)),
        Err(e) => Err(Error::Io {
            path: Some(path.to_owned()),
            source: std::sync::Arc::new(e),
        }),
    }
}

impl SqliteCheckpointStore {
    /// Every (namespace, event hub, consumer group) with a row in either table, sorted, with
    /// its counts. The names are the stored, lowercase ones; pass them to any list or claim.
    ///
    /// ```
    /// use eventhubs_checkpointstore_sqlite::{Checkpoint, SqliteCheckpointStore};
    ///
    /// let store = SqliteCheckpointStore::open_in_memory()?;
    /// store.blocking_update_checkpoint(&Checkpoint {
    ///     fully_qualified_namespace: "NS.example".into(),
    ///     event_hub_name: "hub".into(),
    ///     consumer_group: "$Default".into(),
    ///     partition_id: "0".into(),
    ///     sequence_number: Some(7),
    ///     ..Checkpoint::default()
    /// })?;
    /// let groups = store.blocking_groups()?;
    /// assert_eq!(groups.len(), 1);
    /// assert_eq!(groups[0].consumer_group, "$default");
    /// assert_eq!(groups[0].checkpoints, 1);
    /// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
    /// ```
    ///
    /// # Errors
    /// Storage errors: [`Error::Busy`] past the busy timeout, [`Error::NotADatabase`] if the
    /// file turns out to be corrupt.
    pub fn blocking_groups(&self) -> Result<Vec<GroupSummary>> {
        self.with_read_conn(|_, c| groups(c))
    }

    /// Deletes one partition's checkpoint (a position or a legacy placeholder) and returns
    /// whether there was one. Its ownership is not touched.
    ///
    /// ```
    /// use eventhubs_checkpointstore_sqlite::{Checkpoint, SqliteCheckpointStore};
    ///
    /// let store = SqliteCheckpointStore::open_in_memory()?;
    /// store.blocking_update_checkpoint(&Checkpoint {
    ///     fully_qualified_namespace: "ns".into(),
    ///     event_hub_name: "hub".into(),
    ///     consumer_group: "$Default".into(),
    ///     partition_id: "0".into(),
    ///     offset: Some("100".into()),
    ///     sequence_number: Some(7),
    /// })?;
    /// assert!(store.blocking_delete_checkpoint("ns", "hub", "$default", "0")?);
    /// assert!(!store.blocking_delete_checkpoint("ns", "hub", "$default", "0")?);
    /// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty or oversized name; storage errors as for
    /// [`update_checkpoint`](crate::CheckpointStore::update_checkpoint).
    pub fn blocking_delete_checkpoint(
        &self,
        fully_qualified_namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
        partition_id: &str,
    ) -> Result<bool> {
        let k = PartitionKey::new(
            fully_qualified_namespace,
            event_hub_name,
            consumer_group,
            partition_id,
        )?;
        self.with_conn(|_, c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let deleted = ops::delete_checkpoint(&tx, &k)?;
            tx.commit()?;
            Ok(deleted)
        })
    }

    /// Deletes every checkpoint (positions and legacy placeholders) of one (namespace, event
    /// hub, consumer group) in one transaction, and returns how many rows went. Ownership is
    /// not touched.
    ///
    /// # Errors
    /// As [`blocking_delete_checkpoint`](Self::blocking_delete_checkpoint).
    pub fn blocking_delete_checkpoints(
        &self,
        fully_qualified_namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> Result<u64> {
        let g = GroupKey::new(fully_qualified_namespace, event_hub_name, consumer_group)?;
        self.with_conn(|_, c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx
                .prepare_cached(DELETE_GROUP_CHECKPOINTS)?
                .execute(params![g.namespace, g.event_hub, g.consumer_group])?;
            tx.commit()?;
            Ok(n as u64)
        })
    }

    /// Deletes every row of one (namespace, event hub, consumer group), ownerships and
    /// checkpoints, in one transaction, and returns how many of each went. Meant for resetting
    /// a test or simulation group: processors still running in that group lose their
    /// partitions (their renewals fail) and start again from no checkpoint.
    ///
    /// ```
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
    /// assert_eq!(store.blocking_delete_group("ns", "hub", "$default")?, (1, 0));
    /// assert!(store.blocking_groups()?.is_empty());
    /// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`blocking_delete_checkpoint`](Self::blocking_delete_checkpoint).
    pub fn blocking_delete_group(
        &self,
        fully_qualified_namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> Result<(u64, u64)> {
        let g = GroupKey::new(fully_qualified_namespace, event_hub_name, consumer_group)?;
        self.with_conn(|_, c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let owners = ops::delete_group_ownerships(&tx, &g)?;
            let checkpoints = tx
                .prepare_cached(DELETE_GROUP_CHECKPOINTS)?
                .execute(params![g.namespace, g.event_hub, g.consumer_group])?;
            tx.commit()?;
            Ok((owners, checkpoints as u64))
        })
    }

    /// Runs SQLite's `PRAGMA integrity_check` and reports it with the schema version, the
    /// sizes of the file and its WAL, and the row counts. Reads only.
    ///
    /// A damaged file is reported in [`CheckReport::integrity`] (and
    /// [`CheckReport::is_ok`] is false) rather than as an error, as far as SQLite can read it.
    ///
    /// ```
    /// let store = eventhubs_checkpointstore_sqlite::SqliteCheckpointStore::open_in_memory()?;
    /// let report = store.blocking_check()?;
    /// assert!(report.is_ok());
    /// assert_eq!(report.schema_version, report.supported_schema_version);
    /// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Busy`] if no connection is free within the busy timeout, [`Error::Io`] if the
    /// file's size cannot be read, and [`Error::NotADatabase`] if SQLite cannot read even the
    /// header.
    pub fn blocking_check(&self) -> Result<CheckReport> {
        let path = self.path().map(ToOwned::to_owned);
        let mut report = self.with_read_conn(|_, c| {
            let integrity = match integrity_lines(c) {
                Ok(lines) => lines,
                Err(e) => vec![format!("the integrity check could not run: {e}")],
            };
            let pragma_i64 =
                |name: &str| -> Result<i64> { Ok(c.pragma_query_value(None, name, |r| r.get(0))?) };
            let rows = row_counts(c).ok();
            Ok(CheckReport {
                path: None,
                integrity,
                schema_version: pragma_i64("user_version")?,
                supported_schema_version: schema::supported_version(),
                application_id: c.pragma_query_value(None, "application_id", |r| r.get(0))?,
                journal_mode: c.pragma_query_value(None, "journal_mode", |r| r.get(0))?,
                page_size: pragma_i64("page_size")?.max(0) as u64,
                page_count: pragma_i64("page_count")?.max(0) as u64,
                freelist_count: pragma_i64("freelist_count")?.max(0) as u64,
                file_size: None,
                wal_size: None,
                wal_size_at_open: None,
                rows,
            })
        })?;
        if let Some(p) = self.real_path() {
            report.file_size = file_size(p)?;
            report.wal_size = file_size(&schema::side_file(p, "-wal"))?;
        }
        report.wal_size_at_open = self.wal_size_at_open();
        report.path = path;
        Ok(report)
    }

    /// Copies the whole store into a new file at `dest` with SQLite's online backup API, and
    /// returns what it wrote.
    ///
    /// The copy is one consistent snapshot: it is taken in a single backup step inside one
    /// read transaction, which in WAL mode does not block processors that keep writing. The
    /// new file gets the store's file mode (`0o600` by default), is in WAL mode like the
    /// original, and is checked with `PRAGMA quick_check` before this returns.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = eventhubs_checkpointstore_sqlite::SqliteCheckpointStore::open_in_memory()?;
    /// let report = store.blocking_backup_to(dir.path().join("backup.db"))?;
    /// assert!(report.bytes > 0);
    /// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] (`dest`) if `dest` already exists: a backup never
    /// overwrites a file. [`Error::Io`] if it cannot be created; [`Error::Busy`] if the copy
    /// could not start within the busy timeout. On any error after `dest` was created, the
    /// partial file is removed.
    pub fn blocking_backup_to(&self, dest: impl AsRef<Path>) -> Result<BackupReport> {
        let dest = dest.as_ref();
        // Created exclusively: whatever is at `dest` (a file, a symlink, one created a moment
        // ago by someone else) is refused and left as it is.
        let created = match create_new_file(dest, self.options().file_mode()) {
            Ok(file) => file,
            Err(Error::Io { source, .. })
                if source
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::AlreadyExists) =>
            {
                return Err(Error::invalid(
                    "dest",
                    format!(
                        "`{}` already exists; a backup never overwrites a file",
                        dest.display()
                    ),
                ))
            }
            Err(e) => return Err(e),
        };
        let ours = created.metadata().ok().map(|m| Identity::of(&m));
        let result = self.backup_into(dest, ours);
        // Closed only now, after SQLite's connection to it: closing a descriptor of a file
        // drops the process's locks on it.
        drop(created);
        if result.is_err() && ours.is_some() && Identity::now(dest) == ours {
            // Only the file this call created is removed (and its journal, named after it);
            // best effort, the error says the rest.
            let _ = std::fs::remove_file(dest);
            let _ = std::fs::remove_file(schema::side_file(dest, "-journal"));
        }
        result
    }

    fn backup_into(&self, dest: &Path, ours: Option<Identity>) -> Result<BackupReport> {
        let busy = self.options().busy_timeout();
        let mut target = Connection::open_with_flags(
            sqlite_name(dest),
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| Error::from(e).at(Some(dest)))?;
        target
            .busy_timeout(busy)
            .map_err(|e| Error::from(e).at(Some(dest)))?;
        let pages = self.with_read_conn(|_, source| {
            let backup = Backup::new(source, &mut target)?;
            let started = Instant::now();
            loop {
                // -1: all pages in one step, so the copy is one snapshot of the source.
                match backup.step(-1)? {
                    StepResult::Done => break,
                    StepResult::More => continue,
                    StepResult::Busy | StepResult::Locked => {
                        if started.elapsed() > busy {
                            return Err(Error::Busy {
                                path: None,
                                timeout: Some(busy),
                                source: crate::error::message(
                                    "the backup could not read the database in time",
                                ),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    // StepResult is non-exhaustive; a future variant is not expected.
                    _ => return Err(Error::internal("unexpected backup step result")),
                }
            }
            Ok(backup.progress().pagecount.max(0) as u64)
        })?;
        let check: String = target
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| Error::from(e).at(Some(dest)))?;
        if check != "ok" {
            return Err(Error::internal(format!(
                "the backup failed its quick check: {check}"
            )));
        }
        drop(target);
        if Identity::now(dest) != ours {
            return Err(Error::Io {
                path: Some(dest.to_owned()),
                source: crate::error::message(
                    "the backup file was replaced while it was being written",
                ),
            });
        }
        let bytes = file_size(dest)?.unwrap_or(0);
        Ok(BackupReport {
            path: dest.to_owned(),
            pages,
            bytes,
        })
    }
}

fn integrity_lines(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    rows.collect()
}

//! Connection pragmas, applying `schema.sql`, and migrations.
//!
//! A file is only ever written after it was recognised as ours (or as a new, empty database):
//! a file that is not a database, a foreign database, or one from a newer version is refused
//! before the first write.

use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};
use crate::options::Durability;

/// The DDL, split into versioned steps by its `-- version N` lines.
const SCHEMA: &str = include_str!("../schema.sql");

/// `PRAGMA application_id` of a checkpoint store: "EHCP" in ASCII. It tells our files from any
/// other SQLite database, so a foreign database is never migrated into a store.
pub const APPLICATION_ID: i32 = 0x4548_4350;

/// The versioned steps of `schema.sql`, in order: (version, SQL that reaches it).
fn steps() -> Vec<(i64, &'static str)> {
    let mut steps = Vec::new();
    let mut rest = SCHEMA;
    let marker = "\n-- version ";
    while let Some(at) = rest.find(marker) {
        let after = &rest[at + marker.len()..];
        let line_end = after.find('\n').unwrap_or(after.len());
        let version = after[..line_end].trim().parse::<i64>().unwrap_or(0);
        let body_end = after.find(marker).unwrap_or(after.len());
        steps.push((version, &after[line_end..body_end]));
        rest = &after[body_end..];
    }
    steps
}

/// The newest schema version this build understands.
pub fn supported_version() -> i64 {
    steps().last().map_or(0, |(v, _)| *v)
}

/// Per-connection settings, run on every pooled connection as it opens.
pub(crate) fn configure(
    conn: &Connection,
    durability: Durability,
    busy_timeout: Duration,
) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    conn.pragma_update(None, "synchronous", durability.pragma())?;
    Ok(())
}

/// What a file holds, judged from its header before anything is written.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// An empty database: no objects, no application id.
    Empty,
    /// One of ours at this version.
    Store(i64),
}

fn inspect(conn: &Connection) -> Result<Found> {
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if app_id == APPLICATION_ID {
        let supported = supported_version();
        if version > supported {
            return Err(Error::SchemaTooNew {
                path: None,
                found: version,
                supported,
            });
        }
        return Ok(Found::Store(version));
    }
    if app_id == 0 && version == 0 && objects == 0 {
        return Ok(Found::Empty);
    }
    Err(Error::NotADatabase {
        path: None,
        reason: format!(
            "it is a SQLite database of another application \
             (application_id {app_id:#x}, user_version {version}, {objects} schema objects)"
        ),
        source: None,
    })
}

/// Makes `conn`'s database a store at the supported version: checks what the file is, turns
/// on WAL (files only), and applies the missing schema steps in one `BEGIN IMMEDIATE`
/// transaction. Safe to run from many processes at once: the check is repeated under the lock.
pub(crate) fn initialize(conn: &mut Connection, wal: bool) -> Result<()> {
    // SQLite falls back to a read-only handle when the file cannot be opened for writing.
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(Error::ReadOnly {
            path: None,
            source: None,
        });
    }
    // Reads only: a file that is not a database fails here, before any write.
    let found = inspect(conn)?;
    if wal {
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(Error::internal(format!(
                    "could not switch the database to WAL mode (it is in {mode} mode)"
                )));
            }
        }
    }
    if found == Found::Store(supported_version()) {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let from = match inspect(&tx)? {
        Found::Empty => 0,
        Found::Store(v) => v,
    };
    let mut to = from;
    for (version, sql) in steps() {
        if version > from {
            tx.execute_batch(sql)?;
            to = version;
        }
    }
    if to != from {
        tx.pragma_update(None, "user_version", to)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_has_ordered_steps_from_one() {
        let versions: Vec<i64> = steps().iter().map(|(v, _)| *v).collect();
        let expected: Vec<i64> = (1..=versions.len() as i64).collect();
        assert_eq!(versions, expected);
        assert!(steps()
            .iter()
            .all(|(_, sql)| sql.contains("CREATE") || sql.contains("ALTER")));
    }
}

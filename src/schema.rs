//! Connection pragmas, applying `schema.sql`, and migrations.
//!
//! A file is only ever written after it was recognised as ours (or as a new, empty database):
//! a file that is not a database, a foreign database, or one from a newer version is refused
//! before the first write.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{ffi, Connection, ErrorCode, TransactionBehavior};

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
///
/// This is the first statement on a new connection, so it is where SQLite first reads the
/// file: its vaguer failures are made specific here (see [`explain`]).
pub(crate) fn configure(
    conn: &Connection,
    durability: Durability,
    busy_timeout: Duration,
) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    // SQLite falls back to a read-only handle when the file cannot be opened for writing (a
    // read-only file or file system). Say so now: the next statement would fail less clearly,
    // or not at all until the first write.
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(failure(
            ffi::SQLITE_READONLY,
            "the database file cannot be opened for writing".to_owned(),
        ));
    }
    conn.pragma_update(None, "synchronous", durability.pragma())
        .map_err(|e| explain(conn, e))
}

/// Per-connection settings of a read-only store: the busy timeout, and `PRAGMA query_only`
/// on a read-write connection (see `SqliteCheckpointStore::open_read_only`).
pub(crate) fn configure_read_only(
    conn: &Connection,
    busy_timeout: Duration,
    query_only: bool,
) -> rusqlite::Result<()> {
    conn.busy_timeout(busy_timeout)?;
    if query_only {
        conn.pragma_update(None, "query_only", true)
            .map_err(|e| explain(conn, e))?;
    } else {
        // The first read of the file, for its failures to be explained as in `configure`.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
            .map_err(|e| explain(conn, e))?;
    }
    Ok(())
}

/// An error with SQLite's result `code` and our own explanation.
fn failure(code: std::ffi::c_int, message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), Some(message))
}

/// The first 16 bytes of every SQLite database file.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Makes SQLite's vaguer open failures specific, from what can be read of the file without
/// writing anything: a truncated database (SQLite says "malformed" or "not a database"), and a
/// directory where the `-wal` and `-shm` files cannot be created (SQLite says "unable to open").
fn explain(conn: &Connection, err: rusqlite::Error) -> rusqlite::Error {
    // In-memory databases have no file to look at.
    let Some(path) = conn.path().map(Path::new).filter(|p| p.is_file()) else {
        return err;
    };
    match code(&err) {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => match truncation(path) {
            Some(detail) => failure(ffi::SQLITE_CORRUPT, detail),
            None => err,
        },
        // A generic error at the first read of a file is a header SQLite cannot use, such as
        // "unsupported file format" (a schema format number it does not know).
        Some(ErrorCode::Unknown) => {
            failure(ffi::SQLITE_CORRUPT, format!("sqlite cannot read it: {err}"))
        }
        // The database file itself opened for writing, so what SQLite could not open is its
        // `-wal` or `-shm`: they are missing and could not be created beside it.
        Some(ErrorCode::CannotOpen)
            if !side_file(path, "-wal").exists() || !side_file(path, "-shm").exists() =>
        {
            failure(
                ffi::SQLITE_READONLY_DIRECTORY,
                "cannot create the -wal and -shm files beside the database: \
                 its directory is read-only"
                    .to_owned(),
            )
        }
        _ => err,
    }
}

/// SQLite's result code of `err`, also for an error in a statement's text (which rusqlite
/// reports as a variant of its own, with the code as its source).
fn code(err: &rusqlite::Error) -> Option<ErrorCode> {
    err.sqlite_error_code().or_else(|| {
        std::error::Error::source(err)
            .and_then(|s| s.downcast_ref::<ffi::Error>())
            .map(|e| e.code)
    })
}

/// `path` with `suffix` appended to its file name, as SQLite names its `-wal`, `-shm` and
/// `-journal` files.
pub(crate) fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The first 100 bytes (fewer if the file is shorter) of a SQLite database file, and the
/// file's length; `None` if it cannot be read or is not a SQLite database.
fn header(path: &Path) -> Option<(Vec<u8>, u64)> {
    // Never a descriptor of its own beside a live connection of this process: closing it
    // would drop that connection's locks (see `files`).
    let (header, len) = crate::files::read_start(path, 100).ok()?;
    header.starts_with(SQLITE_MAGIC).then_some((header, len))
}

/// Refuses damage in the header of the file at `path` that SQLite reads without complaint at
/// first: a text encoding other than 1, 2 or 3 is taken for some encoding until a later read
/// fails with a generic error. Runs before the file is opened; a file that cannot be read or is
/// not (yet) a SQLite database passes, for the open to judge.
pub(crate) fn check_header(path: &Path) -> Result<()> {
    // SQLite's unix VFS reports a file of one byte as empty (a workaround for the msdos file
    // system of OS X, where SQLite starts a database by writing one 'S'), and so would write a
    // new database over it: a file of one byte is not one we created.
    if let Ok((_, 1)) = crate::files::read_start(path, 1) {
        return Err(Error::NotADatabase {
            path: None,
            reason: "it is not a SQLite database: it holds a single byte, which SQLite would \
                     take for an empty database and write over"
                .to_owned(),
            source: None,
        });
    }
    let Some((header, _)) = header(path) else {
        return Ok(());
    };
    let Some(field) = header.get(56..60) else {
        return Ok(());
    };
    let encoding = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
    if (1..=3).contains(&encoding) {
        return Ok(());
    }
    // A database that has never held a schema (`PRAGMA journal_mode=wal` on a new file, or a
    // store being created by another process right now) has no encoding yet: SQLite reads 0 as
    // UTF-8 and sets it with the first table. Its schema cookie and format number are 0 too.
    if encoding == 0
        && header
            .get(40..48)
            .is_some_and(|f| f.iter().all(|&b| b == 0))
    {
        return Ok(());
    }
    Err(corrupt(format!(
        "its header gives text encoding {encoding}; SQLite knows only 1 (UTF-8), \
         2 (UTF-16le) and 3 (UTF-16be)"
    )))
}

/// Reads the header of a file SQLite called malformed: if it is a SQLite database shorter than
/// its header says, describes the truncation.
fn truncation(path: &Path) -> Option<String> {
    let (header, len) = header(path)?;
    if header.len() < 100 {
        return Some(format!(
            "the file is truncated: it holds {len} bytes, less than a SQLite header"
        ));
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    // The page count in the header is only kept up to date when these two fields agree.
    let pages = be32(28);
    if be32(24) != be32(92) || pages == 0 {
        return None;
    }
    let expected = page_size * u64::from(pages);
    (len < expected).then(|| {
        format!(
            "the file is truncated: its header gives {pages} pages of {page_size} bytes \
             ({expected} bytes), but it holds {len}"
        )
    })
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

/// A file that SQLite can read but that is damaged.
fn corrupt(detail: String) -> Error {
    Error::NotADatabase {
        path: None,
        reason: "it is corrupt".to_owned(),
        source: Some(std::sync::Arc::new(failure(ffi::SQLITE_CORRUPT, detail))),
    }
}

/// A schema object: (type, name, table, its columns as "name type notnull default pk; ...").
/// Its shape, not its SQL text: a file written by an older build may spell the same DDL with
/// other comments or spacing.
type Object = (String, String, String, String);

/// The schema objects of `conn`'s database, in a fixed order.
fn objects(conn: &Connection) -> rusqlite::Result<Vec<Object>> {
    const OBJECTS: &str = "\
        SELECT m.type, m.name, m.tbl_name, c.name, c.type, c.\"notnull\", c.dflt_value, c.pk \
        FROM sqlite_master AS m LEFT JOIN pragma_table_info(m.name) AS c \
        ORDER BY m.name, c.cid";
    let mut stmt = conn.prepare(OBJECTS)?;
    let mut rows = stmt.query([])?;
    let mut objects: Vec<Object> = Vec::new();
    while let Some(r) = rows.next()? {
        let (kind, name, table): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let column = match r.get::<_, Option<String>>(3)? {
            Some(col) => format!(
                "{col} {} {} {} {};",
                r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                r.get::<_, Option<i64>>(5)?.unwrap_or_default(),
                r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                r.get::<_, Option<i64>>(7)?.unwrap_or_default(),
            ),
            None => String::new(),
        };
        match objects.last_mut() {
            Some(last) if last.1 == name => last.3.push_str(&column),
            _ => objects.push((kind, name, table, column)),
        }
    }
    Ok(objects)
}

/// The schema objects that the steps of `schema.sql` up to `version` make, built in memory.
fn expected_objects(version: i64) -> Result<Vec<Object>> {
    let conn = Connection::open_in_memory()?;
    for (step, sql) in steps() {
        if step <= version {
            conn.execute_batch(sql)?;
        }
    }
    Ok(objects(&conn)?)
}

/// Refuses a recognised file that is damaged where SQLite itself does not notice at once.
fn check_intact(conn: &Connection, found: &Found, quick_check: bool) -> Result<()> {
    // A damaged schema (say, a column name with a flipped bit) reads as a store whose every
    // statement fails: compare it with what this version's steps make. Objects of the file's
    // own (an index, or `sqlite_stat1` after an `ANALYZE`) are no damage.
    if let Found::Store(version) = *found {
        let present = objects(conn)?;
        let expected = expected_objects(version)?;
        if let Some(missing) = expected.iter().find(|o| !present.contains(o)) {
            return Err(corrupt(format!(
                "its {} `{}` is not the one schema version {version} makes",
                missing.0, missing.1
            )));
        }
        // Nor may it hold what only a later version makes (a damaged version number), or the
        // migration would fail halfway through its first step.
        let named = |list: &[Object], name: &str| list.iter().any(|o| o.1 == name);
        if let Some(later) = expected_objects(supported_version())?
            .iter()
            .find(|o| named(&present, &o.1) && !named(&expected, &o.1))
        {
            return Err(corrupt(format!(
                "it has the {} `{}` of a schema version after its own {version}",
                later.0, later.1
            )));
        }
    }
    // A damaged b-tree can read as a valid store that silently misses rows. The check reads
    // every page once (milliseconds for a checkpoint store) and writes nothing.
    if !quick_check {
        return Ok(());
    }
    let check: String = match conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0)) {
        Ok(check) => check,
        // A generic error here is a damaged schema SQLite only notices when it evaluates it,
        // such as a CHECK constraint that calls an unknown function.
        Err(e) if code(&e) == Some(ErrorCode::Unknown) => {
            return Err(corrupt(format!("sqlite cannot check it: {e}")))
        }
        Err(e) => return Err(e.into()),
    };
    if check != "ok" {
        return Err(corrupt(format!("sqlite's integrity check found: {check}")));
    }
    Ok(())
}

/// The checks of [`initialize`] for a store opened read-only, which writes nothing: the file
/// must already be a store (at this version or an older one) and intact.
pub(crate) fn inspect_read_only(conn: &Connection, quick_check: bool) -> Result<()> {
    let found = inspect(conn)?;
    if found == Found::Empty {
        return Err(Error::NotADatabase {
            path: None,
            reason: "it is an empty database: no store has been made in it yet".to_owned(),
            source: None,
        });
    }
    check_intact(conn, &found, quick_check)
}

/// Makes `conn`'s database a store at the supported version: checks what the file is and that
/// a recognised store is intact (its tables, and `PRAGMA quick_check` if `quick_check`), turns
/// on WAL (files only), and applies the missing schema steps in one `BEGIN IMMEDIATE`
/// transaction. Safe to run from many processes at once: the check is repeated under the lock.
pub(crate) fn initialize(conn: &mut Connection, wal: bool, quick_check: bool) -> Result<()> {
    // SQLite falls back to a read-only handle when the file cannot be opened for writing.
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(Error::ReadOnly {
            path: None,
            source: None,
        });
    }
    // Reads only, in one snapshot: a file that is not a store, or a damaged one, fails here,
    // before any write.
    let found = {
        let snapshot = conn.transaction()?;
        let found = inspect(&snapshot)?;
        check_intact(&snapshot, &found, quick_check)?;
        snapshot.commit()?;
        found
    };
    if wal {
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .map_err(|e| explain(conn, e))?;
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

//! The opening rules, in one place: commands that only read or remove never create a
//! database (and never turn an empty file into one); commands that write create it; a plan
//! (a dry run, or the validation before a write) against a missing database runs on an empty
//! store in memory, so that bad input creates no file.

use std::path::Path;

use eventhubs_checkpointstore_sqlite::{SqliteCheckpointStore, StoreOptions};

use crate::{CliError, Global};

/// Opens `--db`, which must already exist, with the global options.
pub(crate) fn existing(g: &Global) -> Result<SqliteCheckpointStore, CliError> {
    existing_with(&g.db, g.options())
}

/// [`existing`] with options.
pub(crate) fn existing_with(
    db: &Path,
    options: StoreOptions,
) -> Result<SqliteCheckpointStore, CliError> {
    must_exist(db)?;
    Ok(SqliteCheckpointStore::open_with(db, options)?)
}

/// Opens a store that must already exist, for reading only (the library's read-only open:
/// a file or directory that cannot be written can be inspected, and nothing is left beside it).
pub(crate) fn read_only(g: &Global) -> Result<SqliteCheckpointStore, CliError> {
    read_only_with(&g.db, g.options())
}

/// [`read_only`] with options.
pub(crate) fn read_only_with(
    db: &Path,
    options: StoreOptions,
) -> Result<SqliteCheckpointStore, CliError> {
    must_exist(db)?;
    Ok(SqliteCheckpointStore::open_read_only_with(db, options)?)
}

/// Refuses a missing database and an empty file, for the commands that never create one.
fn must_exist(db: &Path) -> Result<(), CliError> {
    match std::fs::metadata(db) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CliError::db(format!(
            "no database at `{}` (this command never creates one; `simulate`, `import`, \
             `import-eph --apply` and `checkpoints set` do)",
            db.display()
        ))),
        Err(e) => Err(CliError::db(format!("cannot open `{}`: {e}", db.display()))),
        Ok(m) if m.is_file() && m.len() == 0 => Err(CliError::db(format!(
            "`{}` is an empty file, not a checkpoint store",
            db.display()
        ))),
        // Anything else (a FIFO or device too) is judged by the library's open.
        Ok(_) => Ok(()),
    }
}

/// Opens `--db` with the global options, creating the file if it does not exist.
pub(crate) fn or_create(g: &Global) -> Result<SqliteCheckpointStore, CliError> {
    or_create_with(&g.db, g.options())
}

/// [`or_create`] with options.
pub(crate) fn or_create_with(
    db: &Path,
    options: StoreOptions,
) -> Result<SqliteCheckpointStore, CliError> {
    Ok(SqliteCheckpointStore::open_with(db, options)?)
}

/// The store to plan against without writing: the database if it exists, otherwise an
/// empty store in memory (so that planning creates no file).
pub(crate) fn for_planning(g: &Global) -> Result<SqliteCheckpointStore, CliError> {
    if g.db.exists() {
        existing(g)
    } else {
        Ok(SqliteCheckpointStore::open_in_memory()?)
    }
}

//! `eh-checkpoints`: watch the store work (`simulate`) and look inside one.
//!
//! This file holds the top-level clap type, the global options, the dispatch to the commands
//! (one file each in `commands/`) and the exit codes. The opening rules live in `open.rs`,
//! everything printed in `output.rs`. The only code of the crate that parses arguments or
//! prints; everything it does to a store goes through the library.

mod commands;
mod open;
mod output;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use eventhubs_checkpointstore_sqlite::Error;

/// Success.
const EXIT_OK: u8 = 0;
/// A runtime error: I/O, a busy database, a failed worker.
const EXIT_ERROR: u8 = 1;
/// Bad arguments or invalid input, or a destructive command without `--yes`.
const EXIT_USAGE: u8 = 2;
/// The database is missing, not a checkpoint store, corrupt, or from a newer version.
const EXIT_DB: u8 = 3;
/// An import that conflicts with the store (use `--overwrite`).
const EXIT_CONFLICT: u8 = 4;
/// A check failed: `check` found damage, or `simulate` found a violation.
pub(crate) const EXIT_CHECK_FAILED: u8 = 5;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  runtime error (I/O, database busy, a simulation worker failed)
  2  bad arguments or invalid input, or a destructive command without --yes
  3  the database is missing, not a checkpoint store, corrupt, or from a newer version
  4  an import conflicts with the store (nothing written; use --overwrite)
  5  a check failed: `check` found damage, or `simulate` found a violation

A dry run (import --dry-run, import-eph without --apply) writes nothing and exits with the
code the real run would have: 4 if it would be refused for conflicts.

Commands that only read (list, export, check, backup, dry runs) or only remove (release,
delete) never create the database: a missing --db file is an error (exit 3). `simulate`,
`import`, `import-eph --apply` and `checkpoints set` create it.";

/// Inspect and exercise an eventhubs-checkpointstore-sqlite database.
#[derive(Debug, Parser)]
#[command(name = "eh-checkpoints", version, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
struct Cli {
    /// The store file.
    #[arg(
        long,
        global = true,
        default_value = "eh-checkpoints.db",
        value_name = "PATH"
    )]
    db: PathBuf,
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start N processor processes that share P partitions in the db file, balance them,
    /// checkpoint, survive a SIGKILL, and verify the result.
    #[command(args_override_self = true)]
    Simulate(commands::simulate::SimulateArgs),
    /// List or release partition ownership.
    #[command(subcommand)]
    Ownership(commands::ownership::OwnershipCommand),
    /// List, set or delete checkpoints.
    #[command(subcommand)]
    Checkpoints(commands::checkpoints::CheckpointsCommand),
    /// Write the whole store as JSON (a stable, documented format) to stdout or a file.
    Export(commands::export::ExportArgs),
    /// Load an export into the store: all rows validated first, one transaction, conflicts
    /// refused unless --overwrite.
    Import(commands::import::ImportArgs),
    /// Load EventProcessorHost lease blobs (.NET, Python or Java JSON) as checkpoints.
    /// A dry run unless --apply.
    ImportEph(commands::import_eph::ImportEphArgs),
    /// Move positions to an Azure Blob Storage container (the official stores' layout) and back.
    #[cfg(feature = "blob")]
    #[command(subcommand)]
    Blob(commands::blob::BlobCommand),
    /// Integrity check, schema version, WAL size and row counts.
    Check,
    /// Copy the store to a new file with SQLite's online backup API, consistent while
    /// processors keep writing.
    Backup(commands::backup::BackupArgs),
    #[command(name = "__worker", hide = true)]
    Worker(simulate::worker::WorkerArgs),
}

/// What every command gets besides its own arguments.
pub(crate) struct Global {
    /// `--db`.
    pub db: PathBuf,
    /// `--json`.
    pub json: bool,
}

/// An error with the exit code it ends the program with.
#[derive(Debug)]
pub(crate) struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_ERROR,
            message: message.into(),
        }
    }

    pub(crate) fn check(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_CHECK_FAILED,
            message: message.into(),
        }
    }

    pub(crate) fn db(message: impl Into<String>) -> Self {
        CliError {
            code: EXIT_DB,
            message: message.into(),
        }
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::NotADatabase { .. } | Error::SchemaTooNew { .. } | Error::Io { .. } => EXIT_DB,
            Error::Conflict { .. } => EXIT_CONFLICT,
            Error::InvalidArgument { .. } => EXIT_USAGE,
            _ => EXIT_ERROR,
        };
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(&format!("\n  caused by: {s}"));
            source = s.source();
        }
        CliError { code, message }
    }
}

/// How a command ended when it did not fail: success, or a result that is not an error but
/// has its own exit code (a failed check, a refused import).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Exit 0.
    Ok,
    /// Exit 4: an import (or its dry run) conflicts with the store.
    Conflict,
    /// Exit 5: `check` found damage or `simulate` a violation.
    CheckFailed,
    /// Exit 1: a failure already reported where it belongs (a worker's report line).
    Reported,
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Outcome::Ok => EXIT_OK,
            Outcome::Conflict => EXIT_CONFLICT,
            Outcome::CheckFailed => EXIT_CHECK_FAILED,
            Outcome::Reported => EXIT_ERROR,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let global = Global {
        db: cli.db,
        json: cli.json,
    };
    match dispatch(&global, cli.command) {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

fn dispatch(g: &Global, command: Command) -> Result<Outcome, CliError> {
    match command {
        Command::Simulate(args) => commands::simulate::run(g, &args),
        Command::Ownership(c) => commands::ownership::run(g, &c),
        Command::Checkpoints(c) => commands::checkpoints::run(g, &c),
        Command::Export(args) => commands::export::run(g, &args),
        Command::Import(args) => commands::import::run(g, &args),
        Command::ImportEph(args) => commands::import_eph::run(g, &args),
        #[cfg(feature = "blob")]
        Command::Blob(c) => commands::blob::run(g, &c),
        Command::Check => commands::check::run(g),
        Command::Backup(args) => commands::backup::run(g, &args),
        // Its errors go to the parent as a report line (simulate/protocol.rs).
        Command::Worker(args) => Ok(simulate::worker::main(&g.db, args)),
    }
}

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

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use eventhubs_checkpointstore_sqlite::{Error, StoreOptions};
use serde::Serialize;

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
  0  success (also when stdout's reader went away: `| head -1` ends it quietly)
  1  runtime error: I/O on another path than the database (a backup destination, a full
     stdout), the database busy for the whole --busy-timeout, a simulation worker failed,
     a simulation that timed out, a second simulation on the same database
  2  bad arguments or invalid input (an unreadable input file or lease path included), or a
     destructive command without --yes
  3  the database is missing, not a checkpoint store, corrupt, or from a newer version
  4  an import conflicts with the store (nothing written; use --overwrite)
  5  a check failed: `check` found damage, or `simulate` found a violation

A dry run (import --dry-run, import-eph without --apply) writes nothing and exits with the
code the real run would have: 4 if it would be refused for conflicts. With --json, stdout
holds one JSON document: the result, or {\"error\": {\"exit_code\": N, \"message\": ...}}.

Commands that only read (list, export, check, backup, dry runs) or only remove (release,
delete) never create the database: a missing --db file is an error (exit 3). `simulate`,
`import`, `import-eph --apply` and `checkpoints set` create it. The manual: docs/CLI.md.";

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
    /// Print JSON instead of tables (for scripts); errors too, as {"error": ...}.
    #[arg(long, global = true)]
    json: bool,
    /// How long to wait for another process's lock on the database, in milliseconds.
    #[arg(long, global = true, default_value_t = 5000, value_name = "MS")]
    busy_timeout: u64,
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
    /// `--busy-timeout`.
    pub busy_timeout: Duration,
}

impl Global {
    /// The store options every command starts from. A command opens the store for a few
    /// writes: no 4 MiB `-wal` is preallocated for them (`simulate` turns it back on for its
    /// processors).
    pub(crate) fn options(&self) -> StoreOptions {
        StoreOptions::new()
            .with_busy_timeout(self.busy_timeout)
            .with_wal_preallocation(false)
    }
}

/// What an error is about, where the exit code or the message depends on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Nothing more to know.
    Plain,
    /// The database was busy for the whole busy timeout.
    Busy,
    /// An I/O error on this path: exit 3 if it is the database, 1 otherwise.
    Io(Option<PathBuf>),
    /// Stdout was closed by its reader: end quietly.
    StdoutClosed,
}

/// An error with the exit code it ends the program with.
#[derive(Debug)]
pub(crate) struct CliError {
    pub code: u8,
    pub message: String,
    pub kind: Kind,
}

impl CliError {
    fn with(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            kind: Kind::Plain,
        }
    }

    /// An error reading input named on the command line (a file, a directory): exit 2, as
    /// bad arguments are.
    pub(crate) fn input(e: Error) -> Self {
        CliError {
            code: EXIT_USAGE,
            kind: Kind::Plain,
            ..e.into()
        }
    }

    /// Stdout's reader is gone: nothing more to say, to anyone.
    pub(crate) fn stdout_closed() -> Self {
        CliError {
            code: EXIT_OK,
            message: String::new(),
            kind: Kind::StdoutClosed,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError::with(EXIT_USAGE, message)
    }

    pub(crate) fn runtime(message: impl Into<String>) -> Self {
        CliError::with(EXIT_ERROR, message)
    }

    pub(crate) fn db(message: impl Into<String>) -> Self {
        CliError::with(EXIT_DB, message)
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::NotADatabase { .. } | Error::SchemaTooNew { .. } => EXIT_DB,
            Error::Conflict { .. } => EXIT_CONFLICT,
            Error::InvalidArgument { .. } => EXIT_USAGE,
            _ => EXIT_ERROR,
        };
        let kind = match &e {
            Error::Busy { .. } => Kind::Busy,
            Error::Io { path, .. } => Kind::Io(path.clone()),
            _ => Kind::Plain,
        };
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(&format!("\n  caused by: {s}"));
            source = s.source();
        }
        CliError {
            code,
            message,
            kind,
        }
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
    let cli = match Cli::command()
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let global = Global {
        db: cli.db,
        json: cli.json,
        busy_timeout: Duration::from_millis(cli.busy_timeout),
    };
    match dispatch(&global, cli.command) {
        Ok(outcome) => ExitCode::from(outcome.code()),
        Err(e) => ExitCode::from(report(&global, e)),
    }
}

/// Bad arguments: clap's message (or help, or the version), and with `--json` the error as
/// JSON on stdout too.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if !informational && std::env::args_os().any(|a| a == "--json") {
        // The first line of clap's rendering says what was wrong.
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default();
        let message = first.trim_start_matches("error: ");
        print_error_json(EXIT_USAGE, message);
    }
    // Help and version to stdout with 0, errors to stderr with 2.
    let _ = e.print();
    ExitCode::from(if informational { EXIT_OK } else { EXIT_USAGE })
}

/// Prints a command's error (on stderr, and as JSON on stdout with `--json`) and returns its
/// exit code.
fn report(g: &Global, mut e: CliError) -> u8 {
    match &e.kind {
        Kind::StdoutClosed => return EXIT_OK,
        Kind::Io(path) => {
            e.code = if path.as_deref().is_some_and(|p| is_db(p, &g.db)) {
                EXIT_DB
            } else {
                EXIT_ERROR
            };
        }
        Kind::Busy => {
            e.message = format!(
                "`{}` is busy: another process held its lock for the whole busy timeout \
                 ({} ms; --busy-timeout changes it)\n  caused by: {}",
                g.db.display(),
                g.busy_timeout.as_millis(),
                e.message
            );
        }
        Kind::Plain => {}
    }
    if g.json {
        print_error_json(e.code, &e.message);
    }
    // Names quoted in the message reach the terminal escaped, line by line.
    let lines: Vec<_> = e.message.lines().map(output::clean).collect();
    output::warn(&format!("error: {}", lines.join("\n")));
    e.code
}

/// Whether an I/O error's path is the database or one of its side files.
fn is_db(path: &Path, db: &Path) -> bool {
    let (p, d) = (path.as_os_str(), db.as_os_str());
    p == d
        || p.as_encoded_bytes()
            .strip_prefix(d.as_encoded_bytes())
            .is_some_and(|rest| [&b"-wal"[..], b"-shm", b"-journal"].contains(&rest))
}

fn print_error_json(code: u8, message: &str) {
    #[derive(Serialize)]
    struct Body<'a> {
        exit_code: u8,
        message: &'a str,
    }
    #[derive(Serialize)]
    struct ErrorJson<'a> {
        error: Body<'a>,
    }
    // Best effort: the error itself also goes to stderr.
    let _ = output::print_json(&ErrorJson {
        error: Body {
            exit_code: code,
            message,
        },
    });
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
        Command::Worker(args) => Ok(simulate::worker::main(g, args)),
    }
}

//! `eh-checkpoints`: watch the store work (`simulate`) and look inside one.
//!
//! The only code of the crate that parses arguments or prints. Everything it does to a store
//! goes through the library (`SqliteCheckpointStore` and its admin, export and EPH import
//! functions).

mod balance;
mod protocol;
mod simulate;
mod table;
mod worker;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use eventhubs_checkpointstore_sqlite::admin::{self, GroupSummary};
use eventhubs_checkpointstore_sqlite::migrate::eph::{self, read_eph_leases, EphAction};
use eventhubs_checkpointstore_sqlite::migrate::export::StoreExport;
use eventhubs_checkpointstore_sqlite::migrate::OnConflict;
use eventhubs_checkpointstore_sqlite::{
    self as store, Checkpoint, Error, Ownership, SqliteCheckpointStore, StoreOptions,
};
use serde::Serialize;
use time::OffsetDateTime;

use table::Table;

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
    Simulate(simulate::SimulateArgs),
    /// List or release partition ownership.
    #[command(subcommand)]
    Ownership(OwnershipCommand),
    /// List, set or delete checkpoints.
    #[command(subcommand)]
    Checkpoints(CheckpointsCommand),
    /// Write the whole store as JSON (a stable, documented format) to stdout or a file.
    Export {
        /// Write to this file instead of stdout.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Load an export into the store: all rows validated first, one transaction, conflicts
    /// refused unless --overwrite.
    Import {
        /// The export file (`-` for stdin).
        file: PathBuf,
        /// Replace rows the store holds with other contents.
        #[arg(long)]
        overwrite: bool,
        /// Show what would be written, and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Load EventProcessorHost lease blobs (.NET, Python or Java JSON) as checkpoints.
    /// A dry run unless --apply.
    ImportEph {
        /// A lease file, or a directory of them (one consumer group's partition files).
        path: PathBuf,
        #[command(flatten)]
        scope: Scope,
        /// Write the checkpoints (default: only show what would be written).
        #[arg(long)]
        apply: bool,
        /// Replace positions the store already holds.
        #[arg(long)]
        overwrite: bool,
    },
    /// Integrity check, schema version, WAL size and row counts.
    Check,
    /// Copy the store to a new file with SQLite's online backup API, consistent while
    /// processors keep writing.
    Backup {
        /// The new file (must not exist).
        dest: PathBuf,
    },
    #[command(name = "__worker", hide = true)]
    Worker(worker::WorkerArgs),
}

/// Which (namespace, event hub, consumer group) to act on. Names match case-insensitively;
/// any left out matches all.
#[derive(Debug, Clone, Default, Args)]
struct Scope {
    /// The fully qualified namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// The event hub.
    #[arg(long)]
    hub: Option<String>,
    /// The consumer group.
    #[arg(long)]
    group: Option<String>,
}

#[derive(Debug, Subcommand)]
enum OwnershipCommand {
    /// One group's ownerships with a full scope; otherwise a summary per matching group.
    List {
        #[command(flatten)]
        scope: Scope,
    },
    /// Release owned partitions (owner cleared, claimable by anyone).
    Release {
        #[command(flatten)]
        scope: Scope,
        /// Only these partitions (repeatable).
        #[arg(long)]
        partition: Vec<String>,
        /// Only partitions held by this owner.
        #[arg(long)]
        owner: Option<String>,
        /// Really do it.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CheckpointsCommand {
    /// One group's checkpoints with a full scope; otherwise a summary per matching group.
    List {
        #[command(flatten)]
        scope: Scope,
    },
    /// Set one partition's checkpoint (needs the full scope).
    Set {
        #[command(flatten)]
        scope: Scope,
        /// The partition.
        #[arg(long)]
        partition: String,
        /// The offset (opaque text).
        #[arg(long)]
        offset: Option<String>,
        /// The sequence number.
        #[arg(long, allow_negative_numbers = true)]
        sequence_number: Option<i64>,
        /// Confirm replacing a different existing position.
        #[arg(long)]
        yes: bool,
    },
    /// Delete checkpoints (positions and legacy placeholders); ownership is untouched.
    Delete {
        #[command(flatten)]
        scope: Scope,
        /// Only these partitions (repeatable).
        #[arg(long)]
        partition: Vec<String>,
        /// Really do it.
        #[arg(long)]
        yes: bool,
    },
}

/// How durably the simulation writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Durability {
    /// Every acknowledged write is fsynced (the store's default).
    Full,
    /// Survives a process crash; faster.
    Normal,
}

impl From<Durability> for store::Durability {
    fn from(d: Durability) -> Self {
        match d {
            Durability::Full => store::Durability::Full,
            Durability::Normal => store::Durability::Normal,
        }
    }
}

/// An error with the exit code it ends the program with.
#[derive(Debug)]
pub(crate) struct CliError {
    code: u8,
    message: String,
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

    fn db(message: impl Into<String>) -> Self {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Worker(args) = cli.command {
        // Errors go to the parent as a report line; see protocol.rs.
        return match worker::run(cli.db, args) {
            Ok(()) => ExitCode::from(EXIT_OK),
            Err(e) => {
                println!("{}", protocol::Report::Error(e));
                ExitCode::from(EXIT_ERROR)
            }
        };
    }
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}

/// Opens a store that must already exist: commands that only read or remove never create
/// a database, and never turn an empty file into one.
fn open_existing(db: &Path) -> Result<SqliteCheckpointStore, CliError> {
    open_existing_with(db, StoreOptions::default())
}

/// [`open_existing`] with options.
fn open_existing_with(db: &Path, options: StoreOptions) -> Result<SqliteCheckpointStore, CliError> {
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
        Ok(_) => Ok(SqliteCheckpointStore::open_with(db, options)?),
    }
}

/// Opens the store, creating the file if it does not exist.
fn open_or_create(db: &Path) -> Result<SqliteCheckpointStore, CliError> {
    Ok(SqliteCheckpointStore::open(db)?)
}

fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::runtime(format!("cannot write JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

fn run(cli: &Cli) -> Result<u8, CliError> {
    let db = cli.db.as_path();
    match &cli.command {
        Command::Simulate(args) => {
            let report = simulate::run(db, args)?;
            if cli.json {
                print_json(&report)?;
            } else {
                simulate::print(&report);
            }
            Ok(if report.ok {
                EXIT_OK
            } else {
                EXIT_CHECK_FAILED
            })
        }
        Command::Ownership(OwnershipCommand::List { scope }) => {
            let store = open_existing(db)?;
            match scope.full() {
                Some((ns, hub, group)) => {
                    let list = store.blocking_list_ownerships(ns, hub, group)?;
                    if cli.json {
                        print_json(&list)?;
                    } else {
                        print_ownerships(&list);
                    }
                }
                None => summary(&store, scope, cli.json)?,
            }
            Ok(EXIT_OK)
        }
        Command::Ownership(OwnershipCommand::Release {
            scope,
            partition,
            owner,
            yes,
        }) => release(
            &open_existing(db)?,
            scope,
            partition,
            owner.as_deref(),
            *yes,
            cli.json,
        ),
        Command::Checkpoints(CheckpointsCommand::List { scope }) => {
            let store = open_existing(db)?;
            match scope.full() {
                Some((ns, hub, group)) => {
                    let list = store.blocking_list_checkpoints(ns, hub, group)?;
                    if cli.json {
                        print_json(&list)?;
                    } else {
                        print_checkpoints(&list);
                    }
                }
                None => summary(&store, scope, cli.json)?,
            }
            Ok(EXIT_OK)
        }
        Command::Checkpoints(CheckpointsCommand::Set {
            scope,
            partition,
            offset,
            sequence_number,
            yes,
        }) => {
            let (ns, hub, group) = scope.required()?;
            let checkpoint = Checkpoint {
                fully_qualified_namespace: ns.to_owned(),
                event_hub_name: hub.to_owned(),
                consumer_group: group.to_owned(),
                partition_id: partition.clone(),
                offset: offset.clone(),
                sequence_number: *sequence_number,
            };
            if offset.is_none() && sequence_number.is_none() {
                return Err(CliError::usage(
                    "give --offset, --sequence-number or both: a checkpoint names a position",
                ));
            }
            let store = open_or_create(db)?;
            let current = store
                .blocking_list_checkpoints(ns, hub, group)?
                .into_iter()
                .find(|c| &c.partition_id == partition);
            if let Some(c) = &current {
                let same = c.offset == checkpoint.offset
                    && c.sequence_number == checkpoint.sequence_number;
                if !same && !yes {
                    return Err(CliError::usage(format!(
                        "partition {partition} already has offset {}, sequence number {}; \
                         pass --yes to replace it",
                        c.offset.as_deref().unwrap_or("-"),
                        c.sequence_number.map_or("-".into(), |s| s.to_string())
                    )));
                }
            }
            store.blocking_update_checkpoint(&checkpoint)?;
            if cli.json {
                print_json(&checkpoint)?;
            } else {
                println!(
                    "set partition {partition}: offset {}, sequence number {}",
                    offset.as_deref().unwrap_or("-"),
                    sequence_number.map_or("-".into(), |s| s.to_string())
                );
            }
            Ok(EXIT_OK)
        }
        Command::Checkpoints(CheckpointsCommand::Delete {
            scope,
            partition,
            yes,
        }) => delete_checkpoints(&open_existing(db)?, scope, partition, *yes, cli.json),
        Command::Export { output } => {
            let store = open_existing(db)?;
            let json = store.blocking_export()?.to_json()?;
            match output {
                None => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(json.as_bytes())
                        .and_then(|()| out.flush())
                        .map_err(|e| CliError::runtime(format!("cannot write: {e}")))?;
                }
                Some(path) => {
                    std::fs::write(path, json).map_err(|e| {
                        CliError::runtime(format!("cannot write `{}`: {e}", path.display()))
                    })?;
                    eprintln!("exported to {}", path.display());
                }
            }
            Ok(EXIT_OK)
        }
        Command::Import {
            file,
            overwrite,
            dry_run,
        } => import(db, file, *overwrite, *dry_run, cli.json),
        Command::ImportEph {
            path,
            scope,
            apply,
            overwrite,
        } => import_eph(db, path, scope, *apply, *overwrite, cli.json),
        Command::Check => {
            // Open a damaged store anyway: reporting the damage is this command's job.
            let store = open_existing_with(db, StoreOptions::new().with_check_on_open(false))?;
            let report = store.blocking_check()?;
            if cli.json {
                print_json(&report)?;
            } else {
                print_check(&report);
            }
            Ok(if report.is_ok() {
                EXIT_OK
            } else {
                EXIT_CHECK_FAILED
            })
        }
        Command::Backup { dest } => {
            let store = open_existing(db)?;
            let report = store.blocking_backup_to(dest)?;
            if cli.json {
                print_json(&report)?;
            } else {
                println!(
                    "backed up {} to {} ({} pages, {} bytes, quick check ok)",
                    db.display(),
                    report.path.display(),
                    report.pages,
                    report.bytes
                );
            }
            Ok(EXIT_OK)
        }
        Command::Worker(_) => Err(CliError::usage("__worker is internal to simulate")),
    }
}

impl Scope {
    /// The three names, if all were given.
    fn full(&self) -> Option<(&str, &str, &str)> {
        Some((
            self.namespace.as_deref()?,
            self.hub.as_deref()?,
            self.group.as_deref()?,
        ))
    }

    fn required(&self) -> Result<(&str, &str, &str), CliError> {
        self.full()
            .ok_or_else(|| CliError::usage("this command needs --namespace, --hub and --group"))
    }

    fn matches(&self, g: &GroupSummary) -> bool {
        let eq = |want: &Option<String>, have: &str| {
            want.as_deref().is_none_or(|w| w.eq_ignore_ascii_case(have))
        };
        eq(&self.namespace, &g.fully_qualified_namespace)
            && eq(&self.hub, &g.event_hub_name)
            && eq(&self.group, &g.consumer_group)
    }
}

fn matching_groups(
    store: &SqliteCheckpointStore,
    scope: &Scope,
) -> Result<Vec<GroupSummary>, CliError> {
    Ok(store
        .blocking_groups()?
        .into_iter()
        .filter(|g| scope.matches(g))
        .collect())
}

fn summary(store: &SqliteCheckpointStore, scope: &Scope, json: bool) -> Result<(), CliError> {
    let groups = matching_groups(store, scope)?;
    if json {
        return print_json(&groups);
    }
    if groups.is_empty() {
        println!("no groups{}", scope_note(scope));
        return Ok(());
    }
    let mut t = Table::new([
        "namespace",
        "event hub",
        "consumer group",
        "ownerships",
        "owned",
        "checkpoints",
        "placeholders",
    ]);
    for g in &groups {
        t.row([
            g.fully_qualified_namespace.clone(),
            g.event_hub_name.clone(),
            g.consumer_group.clone(),
            g.ownerships.to_string(),
            g.owned.to_string(),
            g.checkpoints.to_string(),
            g.placeholders.to_string(),
        ]);
    }
    t.print();
    println!(
        "\n{} group(s); give --namespace, --hub and --group for one group's rows",
        groups.len()
    );
    Ok(())
}

fn scope_note(scope: &Scope) -> String {
    if scope.namespace.is_none() && scope.hub.is_none() && scope.group.is_none() {
        " in the store".to_owned()
    } else {
        " match the given --namespace/--hub/--group".to_owned()
    }
}

fn time_text(t: Option<OffsetDateTime>) -> (String, String) {
    match t {
        None => ("-".into(), "-".into()),
        Some(t) => {
            let shown = t
                .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
                .unwrap_or(t);
            let text = shown
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| t.to_string());
            let age = (OffsetDateTime::now_utc() - t).as_seconds_f64();
            (text, format!("{age:.1}s"))
        }
    }
}

fn print_ownerships(list: &[Ownership]) {
    if list.is_empty() {
        println!("no ownerships in this group");
        return;
    }
    let mut t = Table::new(["partition", "owner", "etag", "last modified (UTC)", "age"]);
    for o in list {
        let (modified, age) = time_text(o.last_modified_time);
        t.row([
            o.partition_id.clone(),
            o.owner_id.clone().unwrap_or_else(|| "(released)".into()),
            o.etag.clone().unwrap_or_default(),
            modified,
            age,
        ]);
    }
    t.print();
}

fn print_checkpoints(list: &[Checkpoint]) {
    if list.is_empty() {
        println!("no checkpoints in this group");
        return;
    }
    let mut t = Table::new(["partition", "offset", "sequence number"]);
    for c in list {
        t.row([
            c.partition_id.clone(),
            c.offset.clone().unwrap_or_else(|| "-".into()),
            c.sequence_number.map_or("-".into(), |s| s.to_string()),
        ]);
    }
    t.print();
}

#[derive(Serialize)]
struct Released {
    namespace: String,
    event_hub: String,
    consumer_group: String,
    partition_id: String,
    previous_owner: Option<String>,
    released: bool,
}

fn release(
    store: &SqliteCheckpointStore,
    scope: &Scope,
    partitions: &[String],
    owner: Option<&str>,
    yes: bool,
    json: bool,
) -> Result<u8, CliError> {
    let mut plan: Vec<(GroupSummary, Vec<Ownership>)> = Vec::new();
    for g in matching_groups(store, scope)? {
        let targets: Vec<Ownership> = store
            .blocking_list_ownerships(
                &g.fully_qualified_namespace,
                &g.event_hub_name,
                &g.consumer_group,
            )?
            .into_iter()
            .filter(|o| o.owner_id.is_some())
            .filter(|o| partitions.is_empty() || partitions.contains(&o.partition_id))
            .filter(|o| owner.is_none_or(|w| o.owner_id.as_deref() == Some(w)))
            .collect();
        if !targets.is_empty() {
            plan.push((g, targets));
        }
    }
    let count: usize = plan.iter().map(|(_, t)| t.len()).sum();
    if !yes {
        return Err(CliError::usage(format!(
            "would release {count} owned partition(s) in {} group(s); pass --yes to do it",
            plan.len()
        )));
    }
    let mut results = Vec::new();
    for (g, targets) in plan {
        let claims: Vec<Ownership> = targets
            .iter()
            .map(|o| Ownership {
                owner_id: None,
                last_modified_time: None,
                ..o.clone()
            })
            .collect();
        let won = store.blocking_claim_ownership(&claims)?;
        for o in targets {
            results.push(Released {
                namespace: g.fully_qualified_namespace.clone(),
                event_hub: g.event_hub_name.clone(),
                consumer_group: g.consumer_group.clone(),
                released: won.iter().any(|w| w.partition_id == o.partition_id),
                partition_id: o.partition_id,
                previous_owner: o.owner_id,
            });
        }
    }
    if json {
        print_json(&results)?;
    } else if results.is_empty() {
        println!("nothing to release");
    } else {
        let mut t = Table::new([
            "namespace",
            "event hub",
            "consumer group",
            "partition",
            "previous owner",
            "result",
        ]);
        for r in &results {
            t.row([
                r.namespace.clone(),
                r.event_hub.clone(),
                r.consumer_group.clone(),
                r.partition_id.clone(),
                r.previous_owner.clone().unwrap_or_default(),
                if r.released {
                    "released".into()
                } else {
                    "changed meanwhile: left as it is".into()
                },
            ]);
        }
        t.print();
    }
    Ok(EXIT_OK)
}

#[derive(Serialize)]
struct Deleted {
    namespace: String,
    event_hub: String,
    consumer_group: String,
    partition_id: Option<String>,
    deleted: u64,
}

fn delete_checkpoints(
    store: &SqliteCheckpointStore,
    scope: &Scope,
    partitions: &[String],
    yes: bool,
    json: bool,
) -> Result<u8, CliError> {
    let groups: Vec<GroupSummary> = matching_groups(store, scope)?
        .into_iter()
        .filter(|g| g.checkpoints + g.placeholders > 0)
        .collect();
    if !yes {
        let what = if partitions.is_empty() {
            let rows: u64 = groups.iter().map(|g| g.checkpoints + g.placeholders).sum();
            format!("{rows} checkpoint row(s)")
        } else {
            format!("the checkpoints of partition(s) {}", partitions.join(", "))
        };
        return Err(CliError::usage(format!(
            "would delete {what} in {} group(s); pass --yes to do it",
            groups.len()
        )));
    }
    let mut results = Vec::new();
    for g in &groups {
        let (ns, hub, cg) = (
            &g.fully_qualified_namespace,
            &g.event_hub_name,
            &g.consumer_group,
        );
        let row = |partition_id: Option<String>, deleted: u64| Deleted {
            namespace: ns.clone(),
            event_hub: hub.clone(),
            consumer_group: cg.clone(),
            partition_id,
            deleted,
        };
        if partitions.is_empty() {
            results.push(row(None, store.blocking_delete_checkpoints(ns, hub, cg)?));
        } else {
            for p in partitions {
                let gone = store.blocking_delete_checkpoint(ns, hub, cg, p)?;
                results.push(row(Some(p.clone()), u64::from(gone)));
            }
        }
    }
    if json {
        print_json(&results)?;
    } else {
        let total: u64 = results.iter().map(|r| r.deleted).sum();
        for r in results.iter().filter(|r| r.deleted > 0) {
            println!(
                "deleted {} checkpoint row(s) of {}/{}/{}{}",
                r.deleted,
                r.namespace,
                r.event_hub,
                r.consumer_group,
                r.partition_id
                    .as_deref()
                    .map_or(String::new(), |p| format!(" partition {p}"))
            );
        }
        println!("{total} checkpoint row(s) deleted");
    }
    Ok(EXIT_OK)
}

fn read_input(file: &Path) -> Result<String, CliError> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::runtime(format!("cannot read stdin: {e}")))?;
    } else {
        text = std::fs::read_to_string(file)
            .map_err(|e| CliError::usage(format!("cannot read `{}`: {e}", file.display())))?;
    }
    Ok(text)
}

fn import(
    db: &Path,
    file: &Path,
    overwrite: bool,
    dry_run: bool,
    json: bool,
) -> Result<u8, CliError> {
    let export = StoreExport::from_json(&read_input(file)?)?;
    // Against a missing database, validate in memory first so that bad input creates no file.
    let exists = db.exists();
    let plan = if exists {
        open_existing(db)?.blocking_plan_import(&export)?
    } else {
        SqliteCheckpointStore::open_in_memory()?.blocking_plan_import(&export)?
    };
    let conflicts = !plan.conflicts.is_empty() && !overwrite;
    if dry_run || conflicts {
        if json {
            print_json(&plan)?;
        } else {
            println!(
                "ownerships: {} new, {} unchanged; checkpoints: {} new, {} unchanged; {} conflict(s)",
                plan.new_ownerships,
                plan.same_ownerships,
                plan.new_checkpoints,
                plan.same_checkpoints,
                plan.conflicts.len()
            );
            for c in &plan.conflicts {
                println!("  conflict: {c}");
            }
        }
        if conflicts {
            eprintln!(
                "error: {} row(s) conflict with the store; nothing was written \
                 (use --overwrite to replace them)",
                plan.conflicts.len()
            );
            return Ok(EXIT_CONFLICT);
        }
        if !json {
            println!("dry run: nothing written");
        }
        return Ok(EXIT_OK);
    }
    let store = open_or_create(db)?;
    let done = store.blocking_import(&export, on_conflict(overwrite))?;
    if json {
        print_json(&done)?;
    } else {
        println!(
            "imported: ownerships {} new, {} unchanged; checkpoints {} new, {} unchanged; {} replaced",
            done.new_ownerships,
            done.same_ownerships,
            done.new_checkpoints,
            done.same_checkpoints,
            done.conflicts.len()
        );
    }
    Ok(EXIT_OK)
}

fn import_eph(
    db: &Path,
    path: &Path,
    scope: &Scope,
    apply: bool,
    overwrite: bool,
    json: bool,
) -> Result<u8, CliError> {
    let (ns, hub, group) = scope.required()?;
    let files = read_eph_leases(path)?;
    let leases: Vec<_> = files.iter().map(|f| f.lease.clone()).collect();
    let items = if apply {
        let exists = db.exists();
        if !exists {
            // Validate names in memory first, so that bad arguments create no file.
            SqliteCheckpointStore::open_in_memory()?.blocking_plan_import_eph(
                ns,
                hub,
                group,
                &leases,
                on_conflict(overwrite),
            )?;
        }
        open_or_create(db)?.blocking_import_eph(ns, hub, group, &leases, on_conflict(overwrite))?
    } else if db.exists() {
        open_existing(db)?.blocking_plan_import_eph(
            ns,
            hub,
            group,
            &leases,
            on_conflict(overwrite),
        )?
    } else {
        SqliteCheckpointStore::open_in_memory()?.blocking_plan_import_eph(
            ns,
            hub,
            group,
            &leases,
            on_conflict(overwrite),
        )?
    };
    if json {
        #[derive(Serialize)]
        struct Item<'a> {
            file: &'a Path,
            #[serde(flatten)]
            item: &'a eph::EphImportItem,
        }
        let out: Vec<Item<'_>> = files
            .iter()
            .zip(&items)
            .map(|(f, item)| Item {
                file: &f.path,
                item,
            })
            .collect();
        print_json(&out)?;
    } else {
        let mut t = Table::new([
            "file",
            "partition",
            "dialect",
            "offset",
            "sequence number",
            "action",
        ]);
        for (f, item) in files.iter().zip(&items) {
            let l = &item.lease;
            let action = match &item.action {
                EphAction::New => if apply { "written" } else { "would write" }.to_owned(),
                EphAction::Same => "already in the store".to_owned(),
                EphAction::Replace { current } => format!(
                    "{} (was sequence number {})",
                    if apply { "replaced" } else { "would replace" },
                    current
                        .sequence_number
                        .map_or("-".into(), |s| s.to_string())
                ),
                EphAction::Conflict { current } => format!(
                    "CONFLICT: the store has sequence number {} (use --overwrite)",
                    current
                        .sequence_number
                        .map_or("-".into(), |s| s.to_string())
                ),
                EphAction::Skip { reason } => format!("skipped: {reason}"),
            };
            t.row([
                f.path
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                l.partition_id.clone(),
                l.dialect.name().to_owned(),
                l.offset.clone().unwrap_or_else(|| "-".into()),
                l.sequence_number.map_or("-".into(), |s| s.to_string()),
                action,
            ]);
        }
        t.print();
        let count = |f: fn(&EphAction) -> bool| items.iter().filter(|i| f(&i.action)).count();
        let writes = count(|a| matches!(a, EphAction::New | EphAction::Replace { .. }));
        let skipped = count(|a| matches!(a, EphAction::Skip { .. }));
        let conflicts = count(|a| matches!(a, EphAction::Conflict { .. }));
        println!();
        if apply {
            println!("wrote {writes} checkpoint(s) to {ns}/{hub}/{group}; skipped {skipped} lease(s) without an offset");
        } else {
            println!(
                "dry run: would write {writes} checkpoint(s) to {ns}/{hub}/{group}; {skipped} lease(s) \
                 without an offset skipped; {conflicts} conflict(s). Nothing written: pass --apply"
            );
        }
    }
    Ok(EXIT_OK)
}

fn print_check(r: &admin::CheckReport) {
    let bytes = |b: Option<u64>| b.map_or("-".to_owned(), |b| format!("{b} bytes"));
    let path = r
        .path
        .as_ref()
        .map_or("(in memory)".to_owned(), |p| p.display().to_string());
    println!("database        {path}");
    if r.is_ok() {
        println!("integrity       ok");
    } else {
        println!("integrity       FAILED");
        for line in &r.integrity {
            println!("                {line}");
        }
    }
    println!(
        "schema version  {} (this build: {})",
        r.schema_version, r.supported_schema_version
    );
    println!(
        "application id  {:#x}{}",
        r.application_id,
        if r.application_id == store::APPLICATION_ID {
            " (EHCP: a checkpoint store)"
        } else {
            ""
        }
    );
    println!("journal mode    {}", r.journal_mode);
    println!(
        "file size       {} ({} pages of {} bytes, {} free)",
        bytes(r.file_size),
        r.page_count,
        r.page_size,
        r.freelist_count
    );
    println!("WAL size        {}", bytes(r.wal_size));
    match &r.rows {
        Some(c) => {
            println!("groups          {}", c.groups);
            println!(
                "ownerships      {} ({} owned, {} released)",
                c.ownerships,
                c.owned,
                c.ownerships - c.owned
            );
            println!(
                "checkpoints     {} (+{} legacy placeholders)",
                c.checkpoints, c.placeholders
            );
        }
        None => println!("rows            unreadable"),
    }
}

/// The library's conflict rule for the `--overwrite` flag.
fn on_conflict(overwrite: bool) -> OnConflict {
    if overwrite {
        OnConflict::Overwrite
    } else {
        OnConflict::Refuse
    }
}

//! `import-eph`: load EventProcessorHost lease blobs (.NET, Python or Java JSON) as
//! checkpoints of one group. A dry run unless `--apply`; positions the store holds otherwise
//! are conflicts (exit 4) unless `--overwrite`.

use std::path::{Path, PathBuf};

use clap::Args;
use eventhubs_checkpointstore_sqlite::migrate::eph::{
    scan_eph_leases, EphAction, EphImportItem, EphLeaseFile,
};
use serde::Serialize;

use super::import::on_conflict;
use super::{flag_error, Scope};
use crate::output::{self, or_dash, CheckpointRow, Table};
use crate::{open, CliError, Global, Outcome};

#[derive(Debug, Args)]
pub(crate) struct ImportEphArgs {
    /// A lease file, or a directory of them (one consumer group's partition files). With
    /// feature `blob`, or instead the lease container itself (`--container-url`/`--container`).
    path: Option<PathBuf>,
    /// In a lease container: the blobs directly under this prefix (`PREFIX/GROUP/` for .NET
    /// and Java; none, the container root, for Python 1.x).
    #[cfg(feature = "blob")]
    #[arg(long, default_value = "")]
    prefix: String,
    #[cfg(feature = "blob")]
    #[command(flatten)]
    r#where: super::blob::Where,
    #[command(flatten)]
    scope: Scope,
    /// Write the checkpoints (default: only show what would be written).
    #[arg(long)]
    apply: bool,
    /// Replace positions the store already holds.
    #[arg(long)]
    overwrite: bool,
}

pub(crate) fn run(g: &Global, args: &ImportEphArgs) -> Result<Outcome, CliError> {
    let (ns, hub, group) = args.scope.required()?;
    let files = read_files(args)?;
    let leases: Vec<_> = files.iter().map(|f| f.lease.clone()).collect();
    let rule = on_conflict(args.overwrite);
    // Plan first (in memory against a missing database, so that bad arguments create no
    // file). A dry run stops there, and so does a run with conflicts, as `import` does: both
    // show the plan and exit as the write would.
    let planned = open::for_planning(g)?
        .blocking_plan_import_eph(ns, hub, group, &leases, rule)
        .map_err(flag_error)?;
    let conflicts = planned
        .iter()
        .filter(|i| matches!(i.action, EphAction::Conflict { .. }))
        .count();
    let write = args.apply && conflicts == 0;
    let items = if write {
        open::or_create(g)?
            .blocking_import_eph(ns, hub, group, &leases, rule)
            .map_err(flag_error)?
    } else {
        planned
    };
    // For the summary lines: the names as given, escaped for the terminal.
    let (ns, hub, group) = (output::clean(ns), output::clean(hub), output::clean(group));
    let count = |f: fn(&EphAction) -> bool| items.iter().filter(|i| f(&i.action)).count();
    let writes = count(|a| matches!(a, EphAction::New | EphAction::Replace { .. }));
    let skipped = count(|a| matches!(a, EphAction::Skip { .. }));
    if g.json {
        let out: Vec<EphRow<'_>> = files
            .iter()
            .zip(&items)
            .map(|(f, item)| EphRow::new(&f.path, item))
            .collect();
        output::print_json(&out)?;
    } else {
        let mut text = table(&files, &items, write).render();
        text.push('\n');
        if write {
            text.push_str(&format!(
                "wrote {writes} checkpoint(s) to {ns}/{hub}/{group}; skipped {skipped} lease(s) without an offset\n"
            ));
        } else if args.apply {
            text.push_str(&format!(
                "nothing written to {ns}/{hub}/{group}: {conflicts} conflict(s) (use --overwrite to \
                 replace them)\n"
            ));
        } else {
            text.push_str(&format!(
                "dry run: would write {writes} checkpoint(s) to {ns}/{hub}/{group}; {skipped} lease(s) \
                 without an offset skipped; {conflicts} conflict(s). Nothing written: pass --apply\n"
            ));
        }
        output::print(&text)?;
    }
    // A dry run exits as the real run would: refused for its conflicts.
    if conflicts > 0 {
        output::warn(&format!(
            "error: {conflicts} row(s) conflict with the store; nothing was written \
             (use --overwrite to replace them)"
        ));
        return Ok(Outcome::Conflict);
    }
    Ok(Outcome::Ok)
}

/// The leases of a folder (or one file); what was not read, and what was accepted with a
/// remark, on stderr.
fn read_folder(path: &Path) -> Result<Vec<EphLeaseFile>, CliError> {
    // The lease path is input named on the command line: unreadable, it is a bad argument.
    let scan = scan_eph_leases(path).map_err(CliError::input)?;
    for skipped in &scan.skipped {
        output::warn(&format!(
            "skipped `{}` ({})",
            skipped.path.display(),
            skipped.reason
        ));
    }
    for note in &scan.notes {
        output::warn(&format!("note: {note}"));
    }
    Ok(scan.leases)
}

#[cfg(feature = "blob")]
fn read_files(args: &ImportEphArgs) -> Result<Vec<EphLeaseFile>, CliError> {
    use super::blob;
    match (&args.path, args.r#where.given()) {
        (Some(_), true) => Err(CliError::usage(
            "give a lease folder or a container, not both",
        )),
        (Some(path), false) => read_folder(path),
        (None, true) => {
            let container = args.r#where.open()?;
            let p = blob::Progress::new("reading leases");
            blob::runtime()?
                .block_on(
                    eventhubs_checkpointstore_sqlite::migrate::blob::read_eph_container(
                        &container,
                        &args.prefix,
                        &|d, t| p.update(d, t),
                    ),
                )
                .map_err(blob::blob_error)
        }
        (None, false) => Err(CliError::usage(
            "give the lease folder (or file), or a container (--container-url, --container)",
        )),
    }
}

#[cfg(not(feature = "blob"))]
fn read_files(args: &ImportEphArgs) -> Result<Vec<EphLeaseFile>, CliError> {
    match &args.path {
        Some(path) => read_folder(path),
        None => Err(CliError::usage("give the lease folder (or file)")),
    }
}

fn table(files: &[EphLeaseFile], items: &[EphImportItem], apply: bool) -> Table {
    let mut t = Table::new([
        "file",
        "partition",
        "dialect",
        "offset",
        "sequence number",
        "action",
    ]);
    for (f, item) in files.iter().zip(items) {
        let l = &item.lease;
        let action = match &item.action {
            EphAction::New => if apply { "written" } else { "would write" }.to_owned(),
            EphAction::Same => "already in the store".to_owned(),
            EphAction::Replace { current } => format!(
                "{} (was sequence number {})",
                if apply { "replaced" } else { "would replace" },
                or_dash(current.sequence_number)
            ),
            EphAction::Conflict { current } => format!(
                "CONFLICT: the store has sequence number {} (use --overwrite)",
                or_dash(current.sequence_number)
            ),
            EphAction::Skip { reason } => format!("skipped: {reason}"),
        };
        t.row([
            f.path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            l.partition_id.clone(),
            l.dialect.name().to_owned(),
            or_dash(l.offset.as_deref()),
            or_dash(l.sequence_number),
            action,
        ]);
    }
    t
}

/// One lease and what happens to it, as JSON.
#[derive(Serialize)]
struct EphRow<'a> {
    file: &'a Path,
    partition_id: &'a str,
    dialect: &'static str,
    offset: Option<&'a str>,
    sequence_number: Option<i64>,
    /// `new`, `same`, `replace`, `conflict` or `skip`.
    action: &'static str,
    /// Why a lease is skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    /// The position the store holds, for `replace` and `conflict`.
    #[serde(skip_serializing_if = "Option::is_none")]
    current: Option<CheckpointRow<'a>>,
}

impl<'a> EphRow<'a> {
    fn new(file: &'a Path, item: &'a EphImportItem) -> Self {
        let (action, reason, current) = match &item.action {
            EphAction::New => ("new", None, None),
            EphAction::Same => ("same", None, None),
            EphAction::Replace { current } => ("replace", None, Some(current.into())),
            EphAction::Conflict { current } => ("conflict", None, Some(current.into())),
            EphAction::Skip { reason } => ("skip", Some(reason.as_str()), None),
        };
        EphRow {
            file,
            partition_id: &item.lease.partition_id,
            dialect: item.lease.dialect.name(),
            offset: item.lease.offset.as_deref(),
            sequence_number: item.lease.sequence_number,
            action,
            reason,
            current,
        }
    }
}

//! `import`: load an export into the store. Every row is validated first, the write is one
//! transaction, rows the store holds with other contents are conflicts (exit 4, nothing
//! written) unless `--overwrite`; `--dry-run` only reports, with the exit code the real run
//! would have.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use eventhubs_checkpointstore_sqlite::migrate::export::{ImportPlan, StoreExport, ValidatedExport};
use eventhubs_checkpointstore_sqlite::migrate::OnConflict;
use serde::Serialize;

use time::OffsetDateTime;

use crate::{open, output, CliError, Global, Outcome};

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The export file (`-` for stdin).
    file: PathBuf,
    /// Replace rows the store holds with other contents.
    #[arg(long)]
    overwrite: bool,
    /// Show what would be written, and write nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) fn run(g: &Global, args: &ImportArgs) -> Result<Outcome, CliError> {
    let rows = read_export(&args.file)?;
    if let Some(warning) = future_times(&rows, OffsetDateTime::now_utc()) {
        output::warn(&warning);
    }
    // Against a missing database, plan in memory first so that bad input creates no file.
    let plan = open::for_planning(g)?.blocking_plan_import_validated(&rows)?;
    let conflicts = !plan.conflicts.is_empty() && !args.overwrite;
    if args.dry_run || conflicts {
        if g.json {
            output::print_json(&ImportJson {
                dry_run: args.dry_run,
                written: false,
                plan: &plan,
            })?;
        } else {
            let mut text = format!(
                "ownerships: {} new, {} unchanged; checkpoints: {} new, {} unchanged; {} conflict(s)\n",
                plan.new_ownerships,
                plan.same_ownerships,
                plan.new_checkpoints,
                plan.same_checkpoints,
                plan.conflicts.len()
            );
            for c in &plan.conflicts {
                text.push_str(&format!("  conflict: {}\n", output::clean(c)));
            }
            if !conflicts {
                text.push_str("dry run: nothing written\n");
            }
            output::print(&text)?;
        }
        if conflicts {
            output::warn(&format!(
                "error: {} row(s) conflict with the store; nothing was written \
                 (use --overwrite to replace them)",
                plan.conflicts.len()
            ));
            return Ok(Outcome::Conflict);
        }
        return Ok(Outcome::Ok);
    }
    let store = open::or_create(g)?;
    let bar = progress_bar(g.json);
    let done = store.blocking_import_validated(&rows, on_conflict(args.overwrite), &mut |p| {
        if let Some(bar) = &bar {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            bar.set_message(p.phase);
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if g.json {
        output::print_json(&ImportJson {
            dry_run: false,
            written: true,
            plan: &done,
        })?;
    } else {
        output::print(&summary(&done))?;
    }
    Ok(Outcome::Ok)
}

fn summary(done: &ImportPlan) -> String {
    format!(
        "imported: ownerships {} new, {} unchanged; checkpoints {} new, {} unchanged; {} replaced\n",
        done.new_ownerships,
        done.same_ownerships,
        done.new_checkpoints,
        done.same_checkpoints,
        done.conflicts.len()
    )
}

/// What an import did or would do, as JSON: the plan's counts and conflicts, whether this
/// was a dry run, and whether anything was written.
#[derive(Serialize)]
struct ImportJson<'a> {
    dry_run: bool,
    written: bool,
    #[serde(flatten)]
    plan: &'a ImportPlan,
}

/// The library's conflict rule for the `--overwrite` flag.
pub(crate) fn on_conflict(overwrite: bool) -> OnConflict {
    if overwrite {
        OnConflict::Overwrite
    } else {
        OnConflict::Refuse
    }
}

/// A warning when ownerships were last modified after `now` (by more than a second): a
/// processor counts such a partition as owned until that time plus the ownership expiry, so
/// nobody may claim it for that long (an export from a machine whose clock runs ahead).
fn future_times(rows: &ValidatedExport, now: OffsetDateTime) -> Option<String> {
    let limit = now + Duration::from_secs(1);
    let ahead: Vec<OffsetDateTime> = rows.ownership_times().filter(|t| *t > limit).collect();
    let latest = ahead.iter().max()?;
    Some(format!(
        "warning: {} ownership(s) were last modified in the future, up to {:.0} s ahead of \
         this machine's clock: processors will count them as owned until then plus the \
         ownership expiry",
        ahead.len(),
        (*latest - now).as_seconds_f64()
    ))
}

/// Parses the export as it is read, straight into validated rows (neither the text nor the
/// entries are held).
fn read_export(file: &Path) -> Result<ValidatedExport, CliError> {
    if file == Path::new("-") {
        let stdin = std::io::BufReader::new(std::io::stdin().lock());
        return Ok(StoreExport::read_validated(stdin)?);
    }
    let input = std::fs::File::open(file)
        .map_err(|e| CliError::usage(format!("cannot read `{}`: {e}", file.display())))?;
    Ok(StoreExport::read_validated(std::io::BufReader::new(input))?)
}

/// A progress bar on stderr when it is a terminal (and the output is not JSON).
fn progress_bar(json: bool) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} rows")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

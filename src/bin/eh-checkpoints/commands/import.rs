//! `import`: load an export into the store. Every row is validated first, the write is one
//! transaction, rows the store holds with other contents are conflicts (exit 4, nothing
//! written) unless `--overwrite`; `--dry-run` only reports, with the exit code the real run
//! would have.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Args;
use eventhubs_checkpointstore_sqlite::migrate::export::{ImportPlan, StoreExport};
use eventhubs_checkpointstore_sqlite::migrate::OnConflict;

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
    let export = StoreExport::from_json(&read_input(&args.file)?)?;
    // Against a missing database, plan in memory first so that bad input creates no file.
    let plan = open::for_planning(&g.db)?.blocking_plan_import(&export)?;
    let conflicts = !plan.conflicts.is_empty() && !args.overwrite;
    if args.dry_run || conflicts {
        if g.json {
            output::print_json(&plan)?;
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
                text.push_str(&format!("  conflict: {c}\n"));
            }
            if !conflicts {
                text.push_str("dry run: nothing written\n");
            }
            output::print(&text)?;
        }
        if conflicts {
            eprintln!(
                "error: {} row(s) conflict with the store; nothing was written \
                 (use --overwrite to replace them)",
                plan.conflicts.len()
            );
            return Ok(Outcome::Conflict);
        }
        return Ok(Outcome::Ok);
    }
    let done = open::or_create(&g.db)?.blocking_import(&export, on_conflict(args.overwrite))?;
    if g.json {
        output::print_json(&done)?;
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

/// The library's conflict rule for the `--overwrite` flag.
pub(crate) fn on_conflict(overwrite: bool) -> OnConflict {
    if overwrite {
        OnConflict::Overwrite
    } else {
        OnConflict::Refuse
    }
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

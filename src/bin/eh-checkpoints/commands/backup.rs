//! `backup`: copy the store to a new file with SQLite's online backup API, consistent while
//! processors keep writing; never overwrites a file.

use std::path::PathBuf;

use clap::Args;

use crate::{open, output, CliError, Global, Outcome};

#[derive(Debug, Args)]
pub(crate) struct BackupArgs {
    /// The new file (must not exist).
    dest: PathBuf,
}

pub(crate) fn run(g: &Global, args: &BackupArgs) -> Result<Outcome, CliError> {
    let store = open::read_only(g)?;
    let report = store.blocking_backup_to(&args.dest)?;
    if g.json {
        output::print_json(&report)?;
    } else {
        output::print(&format!(
            "backed up {} to {} ({} pages, {} bytes, quick check ok)\n",
            g.db.display(),
            report.path.display(),
            report.pages,
            report.bytes
        ))?;
    }
    Ok(Outcome::Ok)
}

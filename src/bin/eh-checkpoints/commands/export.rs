//! `export`: the whole store as JSON (the stable format of the library's `export` module),
//! to stdout or a file.

use std::path::PathBuf;

use clap::Args;

use crate::{open, output, CliError, Global, Outcome};

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// Write to this file instead of stdout.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

pub(crate) fn run(g: &Global, args: &ExportArgs) -> Result<Outcome, CliError> {
    let store = open::read_only(g)?;
    let json = store.blocking_export()?.to_json()?;
    match &args.output {
        None => output::print(&json)?,
        Some(path) => {
            // Exclusively and private, like a backup: an existing file is never overwritten.
            let mut file = eventhubs_checkpointstore_sqlite::create_new_file(path, 0o600)?;
            std::io::Write::write_all(&mut file, json.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| {
                    CliError::runtime(format!("cannot write `{}`: {e}", path.display()))
                })?;
            output::warn(&format!("exported to {}", path.display()));
        }
    }
    Ok(Outcome::Ok)
}

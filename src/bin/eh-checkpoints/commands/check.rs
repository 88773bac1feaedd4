//! `check`: the integrity check, schema version, application id, journal mode, file and WAL
//! sizes and row counts; exit 5 when it finds damage.

use eventhubs_checkpointstore_sqlite::admin::CheckReport;
use eventhubs_checkpointstore_sqlite::APPLICATION_ID;

use crate::{open, output, CliError, Global, Outcome};

pub(crate) fn run(g: &Global) -> Result<Outcome, CliError> {
    // Open a damaged store anyway: reporting the damage is this command's job.
    let store = open::read_only_with(&g.db, g.options().with_check_on_open(false))?;
    let report = store.blocking_check()?;
    if g.json {
        output::print_json(&report)?;
    } else {
        output::print(&render(&report))?;
    }
    Ok(if report.is_ok() {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

fn render(r: &CheckReport) -> String {
    let bytes = |b: Option<u64>| b.map_or("-".to_owned(), |b| format!("{b} bytes"));
    let path = r
        .path
        .as_ref()
        .map_or("(in memory)".to_owned(), |p| p.display().to_string());
    let mut s = format!("database        {path}\n");
    if r.is_ok() {
        s.push_str("integrity       ok\n");
    } else {
        s.push_str("integrity       FAILED\n");
        for line in &r.integrity {
            s.push_str(&format!("                {line}\n"));
        }
    }
    s.push_str(&format!(
        "schema version  {} (this build: {})\n",
        r.schema_version, r.supported_schema_version
    ));
    s.push_str(&format!(
        "application id  {:#x}{}\n",
        r.application_id,
        if r.application_id == APPLICATION_ID {
            " (EHCP: a checkpoint store)"
        } else {
            ""
        }
    ));
    s.push_str(&format!("journal mode    {}\n", r.journal_mode));
    s.push_str(&format!(
        "file size       {} ({} pages of {} bytes, {} free)\n",
        bytes(r.file_size),
        r.page_count,
        r.page_size,
        r.freelist_count
    ));
    // As found at open, before SQLite read (and recovered) it; and now, if that differs.
    match r.wal_size_at_open {
        Some(found) if r.wal_size != Some(found) => s.push_str(&format!(
            "WAL size        {found} bytes as found ({} now)\n",
            bytes(r.wal_size)
        )),
        _ => s.push_str(&format!("WAL size        {}\n", bytes(r.wal_size))),
    }
    match &r.rows {
        Some(c) => {
            s.push_str(&format!("groups          {}\n", c.groups));
            s.push_str(&format!(
                "ownerships      {} ({} owned, {} released)\n",
                c.ownerships,
                c.owned,
                c.ownerships - c.owned
            ));
            s.push_str(&format!(
                "checkpoints     {} (+{} legacy placeholders)\n",
                c.checkpoints, c.placeholders
            ));
        }
        None => s.push_str("rows            unreadable\n"),
    }
    s
}

//! `blob export`, `blob import` (feature `blob`): move positions to an Azure Blob Storage
//! container in the official checkpoint-store layout, and back; and where a container is named
//! (`--container-url` or `--container` with `AZURE_STORAGE_CONNECTION_STRING`), shared with
//! `import-eph`. Dry runs unless `--apply`; conflicts exit 4, as the real run would.

use std::io::IsTerminal;

use clap::{Args, Subcommand};
use eventhubs_checkpointstore_sqlite::migrate::blob::{
    self, BlobAction, BlobContainer, BlobError, ExportOptions, ExportPlan, ExportReport, Scope,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::import::on_conflict;
use crate::output::{self, Table};
use crate::{open, CliError, Global, Outcome};

/// The environment variable holding a connection string (the Azure SDKs' name).
pub(crate) const CONNECTION_STRING_ENV: &str = "AZURE_STORAGE_CONNECTION_STRING";
/// The environment variable that may hold a container URL with a SAS in its query.
pub(crate) const CONTAINER_URL_ENV: &str = "AZURE_STORAGE_CONTAINER_URL";

/// Which container, and the credential for it. Secrets are read from the environment only.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct Where {
    /// The container's URL, `https://ACCOUNT.blob.core.windows.net/CONTAINER` (or the path
    /// style `http://HOST:PORT/ACCOUNT/CONTAINER`). Its credential: a SAS in the query of the
    /// same URL given in AZURE_STORAGE_CONTAINER_URL instead of here (a SAS on the command line
    /// is refused: other users see it in `ps`), or the AccountKey of
    /// AZURE_STORAGE_CONNECTION_STRING.
    #[arg(long, value_name = "URL", conflicts_with = "container")]
    pub container_url: Option<String>,
    /// A container in the account of AZURE_STORAGE_CONNECTION_STRING
    /// (`UseDevelopmentStorage=true` for Azurite on 127.0.0.1:10000).
    #[arg(long, value_name = "NAME")]
    pub container: Option<String>,
}

impl Where {
    /// Whether a container was named (by an option, or by AZURE_STORAGE_CONTAINER_URL).
    pub(crate) fn given(&self) -> bool {
        self.container_url.is_some()
            || self.container.is_some()
            || std::env::var_os(CONTAINER_URL_ENV).is_some()
    }

    pub(crate) fn open(&self) -> Result<BlobContainer, CliError> {
        let connection_string = std::env::var(CONNECTION_STRING_ENV).ok();
        let account_key = || {
            connection_string.as_deref().and_then(|cs| {
                cs.split(';')
                    .filter_map(|p| p.trim().split_once('='))
                    .find(|(k, _)| k.trim().eq_ignore_ascii_case("AccountKey"))
                    .map(|(_, v)| v.trim().to_owned())
            })
        };
        if let Some(url) = &self.container_url {
            if url.contains('?') {
                return Err(CliError::usage(format!(
                    "--container-url has a query (a SAS?): a secret on the command line is \
                     visible to other users; put the URL in {CONTAINER_URL_ENV} instead"
                )));
            }
            return BlobContainer::from_url(url, account_key().as_deref()).map_err(blob_error);
        }
        if let Some(name) = &self.container {
            let Some(cs) = &connection_string else {
                return Err(CliError::usage(format!(
                    "--container needs the connection string in {CONNECTION_STRING_ENV}"
                )));
            };
            return BlobContainer::from_connection_string(cs, name).map_err(blob_error);
        }
        if let Ok(url) = std::env::var(CONTAINER_URL_ENV) {
            return BlobContainer::from_url(&url, account_key().as_deref()).map_err(blob_error);
        }
        Err(CliError::usage(format!(
            "name the container: --container-url URL, --container NAME (with \
             {CONNECTION_STRING_ENV}), or {CONTAINER_URL_ENV}"
        )))
    }
}

/// Maps a Blob error to an exit code: bad configuration or data 2, storage 1, store errors as
/// everywhere.
pub(crate) fn blob_error(e: BlobError) -> CliError {
    match e {
        BlobError::Store(e) => e.into(),
        BlobError::Config { .. } | BlobError::Invalid(_) => CliError::usage(e.to_string()),
        BlobError::Storage { .. } => {
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message.push_str(&format!("\n  caused by: {s}"));
                source = s.source();
            }
            CliError::runtime(message)
        }
    }
}

/// A current-thread runtime for the requests.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the async runtime: {e}")))
}

/// A progress bar on stderr when it is a terminal (hidden otherwise), and its callback.
pub(crate) struct Progress(ProgressBar);

impl Progress {
    pub(crate) fn new(what: &str) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        if let Ok(style) = ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} {elapsed}") {
            bar.set_style(style);
        }
        bar.set_message(what.to_owned());
        Progress(bar)
    }

    pub(crate) fn update(&self, done: usize, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(done as u64);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum BlobCommand {
    /// Write the store's checkpoints (and with --ownership its ownerships) into a container in
    /// the official Blob checkpoint-store layout. A dry run unless --apply.
    Export(ExportArgs),
    /// Read a container written by any official Blob checkpoint store into the store. A dry
    /// run unless --apply.
    Import(ImportArgs),
}

/// The scope of a move: names match case-insensitively; a name given in another spelling than
/// lowercase is also written in that spelling (the Rust, Java and Go stores use names verbatim).
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct BlobScope {
    /// Only this namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Only this event hub (spelled as the processors spell it).
    #[arg(long)]
    pub hub: Option<String>,
    /// Only this consumer group (spelled as the processors spell it, e.g. `$Default`).
    #[arg(long)]
    pub group: Option<String>,
}

impl BlobScope {
    fn scope(&self) -> Scope {
        Scope {
            namespace: self.namespace.clone(),
            event_hub: self.hub.clone(),
            consumer_group: self.group.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    r#where: Where,
    #[command(flatten)]
    scope: BlobScope,
    /// Export ownerships too (for a stopped fleet; otherwise processors claim afresh).
    #[arg(long)]
    ownership: bool,
    /// Replace blobs that differ, each only if unchanged since it was read (If-Match).
    #[arg(long)]
    overwrite: bool,
    /// Write the blobs (default: only show what would be written).
    #[arg(long)]
    apply: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    #[command(flatten)]
    r#where: Where,
    #[command(flatten)]
    scope: BlobScope,
    /// Import ownerships too (owner ids, the blob's etag and time).
    #[arg(long)]
    ownership: bool,
    /// Replace rows the store holds with other contents.
    #[arg(long)]
    overwrite: bool,
    /// Write into the store (default: only show what would be written).
    #[arg(long)]
    apply: bool,
}

pub(crate) fn run(g: &Global, command: &BlobCommand) -> Result<Outcome, CliError> {
    match command {
        BlobCommand::Export(args) => export(g, args),
        BlobCommand::Import(args) => import(g, args),
    }
}

fn action_text(action: &BlobAction, apply: bool) -> String {
    match action {
        BlobAction::Create => if apply { "created" } else { "would create" }.to_owned(),
        BlobAction::Same => "already there".to_owned(),
        BlobAction::Replace { current, .. } => format!(
            "{} (was {})",
            if apply { "replaced" } else { "would replace" },
            metadata_text(current)
        ),
        BlobAction::Conflict { current } => {
            format!(
                "CONFLICT: holds {} (use --overwrite)",
                metadata_text(current)
            )
        }
    }
}

fn metadata_text(m: &std::collections::BTreeMap<String, String>) -> String {
    if m.is_empty() {
        return "no metadata".to_owned();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `blob export`'s JSON: the plan and, with --apply, what was done.
#[derive(Serialize)]
struct ExportJson<'a> {
    plan: &'a ExportPlan,
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<&'a ExportReport>,
    requests: u64,
}

fn export(g: &Global, args: &ExportArgs) -> Result<Outcome, CliError> {
    let store = open::existing(g)?;
    let container = args.r#where.open()?;
    let export = store.blocking_export()?;
    let options = ExportOptions {
        scope: args.scope.scope(),
        ownership: args.ownership,
        overwrite: args.overwrite,
    };
    let rt = runtime()?;
    let plan = {
        let p = Progress::new("reading the container");
        rt.block_on(blob::plan_export(&container, &export, &options, &|d, t| {
            p.update(d, t)
        }))
        .map_err(blob_error)?
    };
    let report = if args.apply {
        let p = Progress::new("writing blobs");
        Some(
            rt.block_on(blob::apply_export(&container, &plan, &|d, t| {
                p.update(d, t)
            }))
            .map_err(blob_error)?,
        )
    } else {
        None
    };
    let (create, same, replace, conflict) = plan.counts();
    let conflicts = report.as_ref().map_or(conflict, |r| r.conflicts.len());
    if g.json {
        output::print_json(&ExportJson {
            plan: &plan,
            applied: report.as_ref(),
            requests: container.requests(),
        })?;
    } else {
        let mut t = Table::new(["blob", "metadata", "action"]);
        let late: std::collections::HashMap<&str, &str> = report
            .iter()
            .flat_map(|r| &r.conflicts)
            .map(|c| (c.blob.as_str(), c.reason.as_deref().unwrap_or("conflict")))
            .collect();
        for b in &plan.blobs {
            let action = match late.get(b.blob.as_str()) {
                Some(reason) if !matches!(b.action, BlobAction::Conflict { .. }) => {
                    format!("CONFLICT: {reason}; left as it is")
                }
                _ => action_text(&b.action, args.apply),
            };
            t.row([b.blob.clone(), metadata_text(&b.metadata), action]);
        }
        let mut text = t.render();
        text.push('\n');
        for s in &plan.skipped {
            text.push_str(&format!("skipped: {}\n", output::clean(s)));
        }
        match &report {
            Some(r) => text.push_str(&format!(
                "{}: {} created, {} replaced, {} already there, {} conflict(s); {} request(s)\n",
                plan.container,
                r.created,
                r.replaced,
                r.same,
                r.conflicts.len(),
                container.requests()
            )),
            None => text.push_str(&format!(
                "dry run against {}: would create {create}, replace {replace}; {same} already \
                 there; {conflict} conflict(s). Nothing written: pass --apply\n",
                plan.container
            )),
        }
        output::print(&text)?;
    }
    if conflicts > 0 {
        eprintln!(
            "error: {conflicts} blob(s) conflict; they were left as they are \
             (--overwrite replaces blobs that differ, if unchanged since read)"
        );
        return Ok(Outcome::Conflict);
    }
    Ok(Outcome::Ok)
}

/// `blob import`'s JSON: the store's plan (or what was done) and the container's notes.
#[derive(Serialize)]
struct ImportJson<'a> {
    container: &'a str,
    #[serde(flatten)]
    plan: &'a eventhubs_checkpointstore_sqlite::migrate::export::ImportPlan,
    notes: &'a [String],
    other_blobs: usize,
    applied: bool,
    requests: u64,
}

fn import(g: &Global, args: &ImportArgs) -> Result<Outcome, CliError> {
    let container = args.r#where.open()?;
    let read = {
        let p = Progress::new("reading blobs");
        runtime()?
            .block_on(blob::read_container(
                &container,
                &args.scope.scope(),
                args.ownership,
                &|d, t| p.update(d, t),
            ))
            .map_err(blob_error)?
    };
    // Against a missing database, plan in memory first so that bad input creates no file.
    let plan = open::for_planning(g)?.blocking_plan_import(&read.export)?;
    let refused = !plan.conflicts.is_empty() && !args.overwrite;
    let apply = args.apply && !refused;
    let plan = if apply {
        open::or_create(g)?.blocking_import(&read.export, on_conflict(args.overwrite))?
    } else {
        plan
    };
    if g.json {
        output::print_json(&ImportJson {
            container: container.label(),
            plan: &plan,
            notes: &read.notes,
            other_blobs: read.other_blobs,
            applied: apply,
            requests: container.requests(),
        })?;
    } else {
        let mut text = format!(
            "{}: ownerships {} new, {} unchanged; checkpoints {} new, {} unchanged; {} conflict(s)\n",
            container.label(),
            plan.new_ownerships,
            plan.same_ownerships,
            plan.new_checkpoints,
            plan.same_checkpoints,
            plan.conflicts.len()
        );
        for c in &plan.conflicts {
            text.push_str(&format!(
                "  {}: {c}\n",
                if apply { "replaced" } else { "conflict" },
                c = output::clean(c)
            ));
        }
        for n in &read.notes {
            text.push_str(&format!("  note: {}\n", output::clean(n)));
        }
        if read.other_blobs > 0 {
            text.push_str(&format!(
                "  {} blob(s) outside the checkpoint-store layout ignored\n",
                read.other_blobs
            ));
        }
        text.push_str(if apply {
            "imported\n"
        } else if refused {
            ""
        } else {
            "dry run: nothing written: pass --apply\n"
        });
        output::print(&text)?;
    }
    if refused {
        eprintln!(
            "error: {} row(s) conflict with the store; nothing was written \
             (use --overwrite to replace them)",
            plan.conflicts.len()
        );
        return Ok(Outcome::Conflict);
    }
    Ok(Outcome::Ok)
}

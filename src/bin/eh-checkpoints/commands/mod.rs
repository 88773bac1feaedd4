//! The commands, one file each with its clap arguments and its body (as cargo's
//! `src/bin/cargo/commands/`), and what several of them share: the `--namespace/--hub/--group`
//! scope and the per-group summary.

pub(crate) mod backup;
#[cfg(feature = "blob")]
pub(crate) mod blob;
pub(crate) mod check;
pub(crate) mod checkpoints;
pub(crate) mod export;
pub(crate) mod import;
pub(crate) mod import_eph;
pub(crate) mod ownership;
pub(crate) mod simulate;

use clap::Args;
use eventhubs_checkpointstore_sqlite::admin::GroupSummary;
use eventhubs_checkpointstore_sqlite::{Error, SqliteCheckpointStore};

use crate::output::{self, GroupRow, Table};
use crate::CliError;

/// Which (namespace, event hub, consumer group) to act on. Names match case-insensitively;
/// any left out matches all.
#[derive(Debug, Clone, Default, Args)]
pub(crate) struct Scope {
    /// The fully qualified namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// The event hub.
    #[arg(long)]
    pub hub: Option<String>,
    /// The consumer group.
    #[arg(long)]
    pub group: Option<String>,
}

impl Scope {
    /// The three names, if all were given.
    pub(crate) fn full(&self) -> Option<(&str, &str, &str)> {
        Some((
            self.namespace.as_deref()?,
            self.hub.as_deref()?,
            self.group.as_deref()?,
        ))
    }

    /// The three names, or a usage error.
    pub(crate) fn required(&self) -> Result<(&str, &str, &str), CliError> {
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

    /// " in the store" or " match the given ...", to end a sentence about no groups.
    fn note(&self) -> &'static str {
        if self.namespace.is_none() && self.hub.is_none() && self.group.is_none() {
            " in the store"
        } else {
            " match the given --namespace/--hub/--group"
        }
    }
}

/// A library error about values that came from flags, with the field named as the flag
/// (`--namespace`, not `fully_qualified_namespace`).
pub(crate) fn flag_error(e: Error) -> CliError {
    let Error::InvalidArgument { field, reason } = &e else {
        return e.into();
    };
    let flag = match *field {
        "fully_qualified_namespace" | "namespace" => "--namespace",
        "event_hub_name" | "event_hub" => "--hub",
        "consumer_group" => "--group",
        "partition_id" => "--partition",
        "offset" => "--offset",
        "sequence_number" => "--sequence-number",
        "owner_id" => "--owner",
        _ => return e.into(),
    };
    CliError::usage(format!("{flag} {reason}"))
}

/// The store's groups that `scope` matches.
pub(crate) fn matching_groups(
    store: &SqliteCheckpointStore,
    scope: &Scope,
) -> Result<Vec<GroupSummary>, CliError> {
    Ok(store
        .blocking_groups()?
        .into_iter()
        .filter(|g| scope.matches(g))
        .collect())
}

/// Prints one line per matching group with its counts (`list` without a full scope).
pub(crate) fn summary(
    store: &SqliteCheckpointStore,
    scope: &Scope,
    json: bool,
) -> Result<(), CliError> {
    let groups = matching_groups(store, scope)?;
    if json {
        return output::print_json(&output::rows::<_, GroupRow<'_>>(&groups));
    }
    if groups.is_empty() {
        return output::print(&format!("no groups{}\n", scope.note()));
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
    output::print(&format!(
        "{}\n{} group(s); give --namespace, --hub and --group for one group's rows\n",
        t.render(),
        groups.len()
    ))
}

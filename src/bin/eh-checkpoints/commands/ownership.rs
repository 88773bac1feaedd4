//! `ownership list` and `ownership release`: show partition ownership, and clear owners so
//! that anyone may claim the partitions.

use clap::Subcommand;
use eventhubs_checkpointstore_sqlite::admin::GroupSummary;
use eventhubs_checkpointstore_sqlite::{Ownership, SqliteCheckpointStore};
use serde::Serialize;

use super::{matching_groups, summary, Scope};
use crate::output::{self, OwnershipRow, Table};
use crate::{open, CliError, Global, Outcome};

#[derive(Debug, Subcommand)]
pub(crate) enum OwnershipCommand {
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

pub(crate) fn run(g: &Global, command: &OwnershipCommand) -> Result<Outcome, CliError> {
    match command {
        OwnershipCommand::List { scope } => list(&open::read_only(g)?, scope, g.json)?,
        OwnershipCommand::Release {
            scope,
            partition,
            owner,
            yes,
        } => release(
            &open::existing(g)?,
            scope,
            partition,
            owner.as_deref(),
            *yes,
            g.json,
        )?,
    }
    Ok(Outcome::Ok)
}

fn list(store: &SqliteCheckpointStore, scope: &Scope, json: bool) -> Result<(), CliError> {
    let Some((ns, hub, group)) = scope.full() else {
        return summary(store, scope, json);
    };
    let list = store.blocking_list_ownerships(ns, hub, group)?;
    if json {
        return output::print_json(&output::rows::<_, OwnershipRow<'_>>(&list));
    }
    if list.is_empty() {
        return output::print("no ownerships in this group\n");
    }
    let mut t = Table::new(["partition", "owner", "etag", "last modified (UTC)", "age"]);
    for o in &list {
        let (modified, age) = output::time_text(o.last_modified_time);
        t.row([
            o.partition_id.clone(),
            o.owner_id.clone().unwrap_or_else(|| "(released)".into()),
            o.etag.clone().unwrap_or_default(),
            modified,
            age,
        ]);
    }
    output::print(&t.render())
}

/// One released (or, changed meanwhile, left) partition, as JSON.
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
) -> Result<(), CliError> {
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
    if count == 0 {
        return if json {
            output::print_json(&Vec::<Released>::new())
        } else {
            output::print("nothing to release\n")
        };
    }
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
        return output::print_json(&results);
    }
    if results.is_empty() {
        return output::print("nothing to release\n");
    }
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
    output::print(&t.render())
}

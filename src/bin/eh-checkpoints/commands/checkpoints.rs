//! `checkpoints list`, `checkpoints set` and `checkpoints delete`: show, write and remove
//! positions (ownership is untouched).

use clap::Subcommand;
use eventhubs_checkpointstore_sqlite::admin::GroupSummary;
use eventhubs_checkpointstore_sqlite::{Checkpoint, SqliteCheckpointStore};
use serde::Serialize;

use super::{flag_error, matching_groups, summary, Scope};
use crate::output::{self, or_dash, CheckpointRow, Table};
use crate::{open, CliError, Global, Outcome};

#[derive(Debug, Subcommand)]
pub(crate) enum CheckpointsCommand {
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
        /// The offset (opaque text; may start with `-`).
        #[arg(long, allow_hyphen_values = true)]
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

pub(crate) fn run(g: &Global, command: &CheckpointsCommand) -> Result<Outcome, CliError> {
    match command {
        CheckpointsCommand::List { scope } => list(&open::read_only(g)?, scope, g.json)?,
        CheckpointsCommand::Set {
            scope,
            partition,
            offset,
            sequence_number,
            yes,
        } => set(
            g,
            scope,
            partition,
            offset.as_deref(),
            *sequence_number,
            *yes,
        )?,
        CheckpointsCommand::Delete {
            scope,
            partition,
            yes,
        } => delete(&open::existing(g)?, scope, partition, *yes, g.json)?,
    }
    Ok(Outcome::Ok)
}

fn list(store: &SqliteCheckpointStore, scope: &Scope, json: bool) -> Result<(), CliError> {
    let Some((ns, hub, group)) = scope.full() else {
        return summary(store, scope, json);
    };
    let list = store.blocking_list_checkpoints(ns, hub, group)?;
    if json {
        return output::print_json(&output::rows::<_, CheckpointRow<'_>>(&list));
    }
    if list.is_empty() {
        return output::print("no checkpoints in this group\n");
    }
    let mut t = Table::new(["partition", "offset", "sequence number"]);
    for c in &list {
        t.row([
            c.partition_id.clone(),
            or_dash(c.offset.as_deref()),
            or_dash(c.sequence_number),
        ]);
    }
    output::print(&t.render())
}

fn set(
    g: &Global,
    scope: &Scope,
    partition: &str,
    offset: Option<&str>,
    sequence_number: Option<i64>,
    yes: bool,
) -> Result<(), CliError> {
    let (ns, hub, group) = scope.required()?;
    let checkpoint = Checkpoint {
        fully_qualified_namespace: ns.to_owned(),
        event_hub_name: hub.to_owned(),
        consumer_group: group.to_owned(),
        partition_id: partition.to_owned(),
        offset: offset.map(str::to_owned),
        sequence_number,
    };
    if offset.is_none() && sequence_number.is_none() {
        return Err(CliError::usage(
            "give --offset, --sequence-number or both: a checkpoint names a position",
        ));
    }
    if offset == Some("") {
        return Err(CliError::usage(
            "--offset is empty: that is no offset (leave --offset out to set only \
             --sequence-number)",
        ));
    }
    // Validate before the database is created.
    SqliteCheckpointStore::open_in_memory()?
        .blocking_update_checkpoint(&checkpoint)
        .map_err(flag_error)?;
    let store = open::or_create(g)?;
    let current = store
        .blocking_list_checkpoints(ns, hub, group)
        .map_err(flag_error)?
        .into_iter()
        .find(|c| c.partition_id == partition);
    if let Some(c) = &current {
        let same = c.offset == checkpoint.offset && c.sequence_number == checkpoint.sequence_number;
        if !same && !yes {
            return Err(CliError::usage(format!(
                "partition {partition} already has offset {}, sequence number {}; \
                 pass --yes to replace it",
                or_dash(c.offset.as_deref()),
                or_dash(c.sequence_number)
            )));
        }
    }
    store
        .blocking_update_checkpoint(&checkpoint)
        .map_err(flag_error)?;
    if g.json {
        return output::print_json(&CheckpointRow::from(&checkpoint));
    }
    output::print(&format!(
        "set partition {}: offset {}, sequence number {}\n",
        output::clean(partition),
        or_dash(offset.map(output::clean)),
        or_dash(sequence_number)
    ))
}

/// Whether deleting `partitions` (all if empty) of `groups` would remove a row. Exact for
/// positions; a group holding legacy placeholders counts as a match (they are not listed).
fn matches_any(
    store: &SqliteCheckpointStore,
    groups: &[GroupSummary],
    partitions: &[String],
) -> Result<bool, CliError> {
    if partitions.is_empty() || groups.iter().any(|g| g.placeholders > 0) {
        return Ok(!groups.is_empty());
    }
    for g in groups {
        let listed = store.blocking_list_checkpoints(
            &g.fully_qualified_namespace,
            &g.event_hub_name,
            &g.consumer_group,
        )?;
        if listed.iter().any(|c| partitions.contains(&c.partition_id)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The rows deleted in one group (of one partition, or all), as JSON.
#[derive(Serialize)]
struct Deleted {
    namespace: String,
    event_hub: String,
    consumer_group: String,
    partition_id: Option<String>,
    deleted: u64,
}

fn delete(
    store: &SqliteCheckpointStore,
    scope: &Scope,
    partitions: &[String],
    yes: bool,
    json: bool,
) -> Result<(), CliError> {
    let groups: Vec<GroupSummary> = matching_groups(store, scope)?
        .into_iter()
        .filter(|g| g.checkpoints + g.placeholders > 0)
        .collect();
    if !matches_any(store, &groups, partitions)? {
        return if json {
            output::print_json(&Vec::<Deleted>::new())
        } else {
            output::print("nothing to delete\n")
        };
    }
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
                let gone = store
                    .blocking_delete_checkpoint(ns, hub, cg, p)
                    .map_err(flag_error)?;
                results.push(row(Some(p.clone()), u64::from(gone)));
            }
        }
    }
    if json {
        return output::print_json(&results);
    }
    let total: u64 = results.iter().map(|r| r.deleted).sum();
    let mut text = String::new();
    for r in results.iter().filter(|r| r.deleted > 0) {
        text.push_str(&format!(
            "deleted {} checkpoint row(s) of {}/{}/{}{}\n",
            r.deleted,
            output::clean(&r.namespace),
            output::clean(&r.event_hub),
            output::clean(&r.consumer_group),
            r.partition_id.as_deref().map_or(String::new(), |p| format!(
                " partition {}",
                output::clean(p)
            ))
        ));
    }
    if total == 0 {
        // Removed meanwhile by someone else.
        text.push_str("nothing to delete\n");
    } else {
        text.push_str(&format!("{total} checkpoint row(s) deleted\n"));
    }
    output::print(&text)
}

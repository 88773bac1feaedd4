//! Quick start: three processors share four partitions in a store file, checkpoint, and one of
//! them takes over a partition. Prints what the store holds at the end.
//!
//! ```text
//! cargo run --example quickstart [-- PATH]
//! ```
//! PATH defaults to `eh-checkpoints.db` in the current directory.

use eventhubs_checkpointstore_sqlite::{
    Checkpoint, CheckpointStore, Ownership, Result, SqliteCheckpointStore,
};

const NS: &str = "example.servicebus.windows.net";
const HUB: &str = "telemetry";
const GROUP: &str = "$Default";

fn ownership(partition: &str, owner: &str, etag: Option<String>) -> Ownership {
    Ownership {
        fully_qualified_namespace: NS.into(),
        event_hub_name: HUB.into(),
        consumer_group: GROUP.into(),
        partition_id: partition.into(),
        owner_id: Some(owner.into()),
        etag,
        last_modified_time: None,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "eh-checkpoints.db".into());
    let store = SqliteCheckpointStore::open(&path)?;
    println!("store: {path}");

    // Each processor claims the partitions nobody owns yet (create-only: no etag).
    let existing = store.list_ownerships(NS, HUB, GROUP).await?;
    let mut claims = Vec::new();
    for (i, partition) in ["0", "1", "2", "3"].iter().enumerate() {
        if !existing.iter().any(|o| o.partition_id == *partition) {
            claims.push(ownership(partition, ["proc-a", "proc-b"][i % 2], None));
        }
    }
    let won = store.claim_ownership(&claims).await?;
    println!("claimed {} new partition(s)", won.len());

    // Every owner checkpoints what it processed.
    for o in store.list_ownerships(NS, HUB, GROUP).await? {
        let sequence_number = 100 * o.partition_id.parse::<i64>().unwrap_or(0) + 42;
        store
            .update_checkpoint(Checkpoint {
                fully_qualified_namespace: NS.into(),
                event_hub_name: HUB.into(),
                consumer_group: GROUP.into(),
                partition_id: o.partition_id.clone(),
                offset: Some((sequence_number * 64).to_string()),
                sequence_number: Some(sequence_number),
            })
            .await?;
    }

    // A third processor steals partition 3 with the etag it listed; a stale etag loses.
    let current = store.list_ownerships(NS, HUB, GROUP).await?;
    if let Some(p3) = current.iter().find(|o| o.partition_id == "3") {
        let steal = ownership("3", "proc-c", p3.etag.clone());
        let stale = ownership("3", "proc-a", Some("stale-etag".into()));
        let won = store.claim_ownership(&[steal, stale]).await?;
        println!(
            "proc-c stole partition 3: {}; the stale claim lost: {}",
            won.iter().any(|o| o.owner_id.as_deref() == Some("proc-c")),
            !won.iter().any(|o| o.owner_id.as_deref() == Some("proc-a")),
        );
    }

    println!(
        "\n{:<10} {:<8} {:<38} last modified",
        "partition", "owner", "etag"
    );
    for o in store.list_ownerships(NS, HUB, GROUP).await? {
        println!(
            "{:<10} {:<8} {:<38} {}",
            o.partition_id,
            o.owner_id.as_deref().unwrap_or("-"),
            o.etag.as_deref().unwrap_or("-"),
            o.last_modified_time.map_or("-".into(), |t| t.to_string()),
        );
    }
    println!("\n{:<10} {:<10} sequence number", "partition", "offset");
    for c in store.list_checkpoints(NS, HUB, GROUP).await? {
        println!(
            "{:<10} {:<10} {}",
            c.partition_id,
            c.offset.as_deref().unwrap_or("-"),
            c.sequence_number.map_or("-".into(), |s| s.to_string()),
        );
    }
    Ok(())
}

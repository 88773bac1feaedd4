//! The official Rust `EventProcessor` with this crate's SQLite store in place of the Blob store:
//! it claims partitions, prints each event it receives and checkpoints it. Start it twice with
//! the same database file and the two processes share the hub's partitions.
//!
//! **It needs a real Event Hub** (a namespace and a hub you can read from): there is no local
//! stand-in for Event Hubs here. It stops on Ctrl-C.
//!
//! ```text
//! EVENTHUBS_CONNECTION_STRING='Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…' \
//! EVENTHUB_NAME=telemetry \
//!   cargo run --features azure --example azure_processor
//! ```
//!
//! | variable | |
//! |---|---|
//! | `EVENTHUBS_CONNECTION_STRING` | required: a connection string of the namespace or of the hub |
//! | `EVENTHUB_NAME` | the event hub; required unless the connection string has `EntityPath` |
//! | `EVENTHUBS_CONSUMER_GROUP` | default `$Default` |
//! | `CHECKPOINT_DB` | the store's file; default `eh-checkpoints.db` in the current directory |
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;
use std::sync::Arc;

use azure_messaging_eventhubs::error::ErrorKind;
use azure_messaging_eventhubs::processor::PartitionClient;
use azure_messaging_eventhubs::{ConsumerClient, EventProcessor};
use eventhubs_checkpointstore_sqlite::SqliteCheckpointStore;
use futures::StreamExt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Config {
    connection_string: String,
    event_hub: Option<String>,
    consumer_group: String,
    db_path: String,
}

impl Config {
    fn from_env() -> Result<Config, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let connection_string =
            var("EVENTHUBS_CONNECTION_STRING").ok_or("EVENTHUBS_CONNECTION_STRING is not set")?;
        let event_hub = var("EVENTHUB_NAME");
        if event_hub.is_none() && !connection_string.contains("EntityPath=") {
            return Err(
                "EVENTHUB_NAME is not set and the connection string has no EntityPath".to_owned(),
            );
        }
        Ok(Config {
            connection_string,
            event_hub,
            consumer_group: var("EVENTHUBS_CONSUMER_GROUP").unwrap_or_else(|| "$Default".into()),
            db_path: var("CHECKPOINT_DB").unwrap_or_else(|| "eh-checkpoints.db".into()),
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(missing) => {
            eprintln!("azure_processor: {missing}.");
            eprintln!(
                "This example needs a real Event Hub. Set EVENTHUBS_CONNECTION_STRING and \
                 EVENTHUB_NAME (optional: EVENTHUBS_CONSUMER_GROUP, CHECKPOINT_DB); see the \
                 comment at the top of examples/azure_processor.rs."
            );
            return ExitCode::from(2);
        }
    };
    // `PartitionClient::stream_events` is not `Send`: the partitions are processed as local
    // tasks of this thread.
    match tokio::task::LocalSet::new().run_until(run(config)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("azure_processor: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), BoxError> {
    let store = SqliteCheckpointStore::open(&config.db_path)?;
    println!("checkpoint store: {}", config.db_path);

    let consumer = ConsumerClient::builder()
        .with_consumer_group(config.consumer_group.clone())
        .open_with_connection_string(&config.connection_string, config.event_hub.as_deref())
        .await?;
    // The store goes where the official examples put `BlobCheckpointStore`.
    let processor = EventProcessor::builder()
        .build(consumer, Arc::new(store))
        .await?;

    let running = Arc::clone(&processor);
    let mut load_balancer = tokio::spawn(async move { running.run().await });
    println!("processing; Ctrl-C stops");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            ended = &mut load_balancer => {
                // `run` ends only on shutdown or on an error from the store or the service.
                ended??;
                return Ok(());
            }
            next = processor.next_partition_client() => {
                let partition = next?;
                tokio::task::spawn_local(async move {
                    if let Err(e) = process(&partition).await {
                        eprintln!("partition {}: {e}", partition.get_partition_id());
                    }
                });
            }
        }
    }
    println!("stopping");
    processor.shutdown().await?;
    load_balancer.await??;
    Ok(())
}

/// Prints and checkpoints every event of one partition until another processor takes it over.
async fn process(partition: &PartitionClient) -> Result<(), BoxError> {
    let id = partition.get_partition_id().to_owned();
    println!("partition {id}: claimed");
    let mut events = partition.stream_events();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let body = event.event_data().body().map_or(0, <[u8]>::len);
                println!(
                    "partition {id}: sequence number {:?}, offset {:?}, {body} bytes",
                    event.sequence_number(),
                    event.offset()
                );
                // One write per event keeps the example short; a real processor checkpoints
                // every N events or every few seconds.
                partition.update_checkpoint(&event).await?;
            }
            Err(e) if matches!(e.kind, ErrorKind::ConsumerDisconnected(_)) => {
                println!("partition {id}: taken over by another processor");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

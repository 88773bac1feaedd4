//! The official Rust `BlobCheckpointStore` 0.9 as the other side of `eh-checkpoints blob`
//! (issue 15): `tests/it/blob_move.rs` runs these modes and compares what they print with ours.
//!
//! ```text
//! blob-reference --create-container ACCOUNT_URL NAME        creates it; prints its SAS URL
//! blob-reference --list CONTAINER_URL NS HUB GROUP          prints what the store lists (JSON)
//! blob-reference --write CONTAINER_URL NS HUB GROUP N OWNER checkpoints and claims partitions
//!                                                           0..N, then prints the listing
//! ```
//! The names are passed to the store exactly as given: the Rust store does not fold case, so
//! `--list … '$Default'` finds only blobs spelled `$Default`. The listing is one JSON object,
//! `{"checkpoints":[{"partition_id","offset","sequence_number"}],"ownerships":[{"partition_id",
//! "owner_id","etag"}]}`, each sorted by partition id as a string.
use std::error::Error;

use azure_messaging_eventhubs::models::{Checkpoint, Ownership};
use azure_messaging_eventhubs::CheckpointStore as _;
use azure_messaging_eventhubs_checkpointstore_blob::BlobCheckpointStore;
use azure_storage_blob::BlobContainerClient;

type BoxError = Box<dyn Error>;

fn store(url: &str) -> Result<std::sync::Arc<BlobCheckpointStore>, BoxError> {
    let url = azure_core::http::Url::parse(url)?;
    Ok(BlobCheckpointStore::new(BlobContainerClient::new(
        url, None, None,
    )?))
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn opt(s: Option<&str>) -> String {
    s.map_or("null".to_owned(), json_str)
}

async fn listing(
    store: &BlobCheckpointStore,
    ns: &str,
    hub: &str,
    group: &str,
) -> Result<String, BoxError> {
    let mut checkpoints = store.list_checkpoints(ns, hub, group).await?;
    checkpoints.sort_by(|a, b| a.partition_id.cmp(&b.partition_id));
    let mut ownerships = store.list_ownerships(ns, hub, group).await?;
    ownerships.sort_by(|a, b| a.partition_id.cmp(&b.partition_id));
    let cps: Vec<String> = checkpoints
        .iter()
        .map(|c| {
            format!(
                "{{\"partition_id\":{},\"offset\":{},\"sequence_number\":{}}}",
                json_str(&c.partition_id),
                opt(c.offset.as_deref()),
                c.sequence_number
                    .map_or("null".to_owned(), |s| s.to_string())
            )
        })
        .collect();
    let owns: Vec<String> = ownerships
        .iter()
        .map(|o| {
            format!(
                "{{\"partition_id\":{},\"owner_id\":{},\"etag\":{}}}",
                json_str(&o.partition_id),
                opt(o.owner_id.as_deref()),
                opt(o.etag.as_ref().map(|e| e.as_ref().trim_matches('"')))
            )
        })
        .collect();
    Ok(format!(
        "{{\"checkpoints\":[{}],\"ownerships\":[{}]}}",
        cps.join(","),
        owns.join(",")
    ))
}

/// Runs one interop mode; `args` starts with the mode.
pub async fn main(args: &[String]) -> Result<(), BoxError> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["--create-container", account_url, name] => {
            let url = crate::container_url(account_url, name)?;
            BlobContainerClient::new(url.clone(), None, None)?
                .create(None)
                .await?;
            println!("{url}");
        }
        ["--list", url, ns, hub, group] => {
            println!("{}", listing(&*store(url)?, ns, hub, group).await?);
        }
        ["--write", url, ns, hub, group, n, owner] => {
            let store = store(url)?;
            let n: usize = n.parse()?;
            let mut claims = Vec::new();
            for p in 0..n {
                store
                    .update_checkpoint(Checkpoint {
                        fully_qualified_namespace: (*ns).into(),
                        event_hub_name: (*hub).into(),
                        consumer_group: (*group).into(),
                        partition_id: p.to_string(),
                        offset: Some((7_000 + p * 13).to_string()),
                        sequence_number: Some(500 + p as i64),
                    })
                    .await?;
                claims.push(Ownership {
                    fully_qualified_namespace: (*ns).into(),
                    event_hub_name: (*hub).into(),
                    consumer_group: (*group).into(),
                    partition_id: p.to_string(),
                    owner_id: Some((*owner).into()),
                    ..Default::default()
                });
            }
            let claimed = store.claim_ownership(&claims).await?;
            if claimed.len() != n {
                return Err(format!("claimed {} of {n} partitions", claimed.len()).into());
            }
            println!("{}", listing(&store, ns, hub, group).await?);
        }
        _ => {
            return Err(
                "usage: blob-reference --create-container ACCOUNT_URL NAME | --list \
                        CONTAINER_URL NS HUB GROUP | --write CONTAINER_URL NS HUB GROUP N OWNER"
                    .into(),
            )
        }
    }
    Ok(())
}

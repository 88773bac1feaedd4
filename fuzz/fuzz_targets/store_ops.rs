//! Any sequence of claims, checkpoints and lists with any text, through the blocking API:
//! nothing panics, every refusal is `InvalidArgument` (or `OwnershipLost` for a fenced
//! write), and every accepted checkpoint reads back exactly.
#![no_main]

use arbitrary::Arbitrary;
use eventhubs_checkpointstore_sqlite::{Checkpoint, Error, Ownership, SqliteCheckpointStore};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Names {
    namespace: String,
    event_hub: String,
    consumer_group: String,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Claim(Names, Vec<(String, Option<String>, Option<String>)>),
    Update(Names, String, Option<String>, Option<i64>),
    /// A fenced update with the etag of the n-th ownership won so far.
    Fenced(usize, Option<String>, Option<i64>),
    List(Names),
}

fn checkpoint(
    n: &Names,
    partition: String,
    offset: Option<String>,
    seq: Option<i64>,
) -> Checkpoint {
    Checkpoint {
        fully_qualified_namespace: n.namespace.clone(),
        event_hub_name: n.event_hub.clone(),
        consumer_group: n.consumer_group.clone(),
        partition_id: partition,
        offset,
        sequence_number: seq,
    }
}

/// Reads `cp` back through a list of its group.
fn assert_stored(store: &SqliteCheckpointStore, cp: &Checkpoint) {
    let listed = store
        .blocking_list_checkpoints(
            &cp.fully_qualified_namespace,
            &cp.event_hub_name,
            &cp.consumer_group,
        )
        .expect("list the group just written");
    assert!(listed.contains(cp), "{cp:?} not in {listed:?}");
}

fn refusal(e: &Error) -> bool {
    matches!(e, Error::InvalidArgument { .. })
}

fuzz_target!(|ops: Vec<Op>| {
    let store = SqliteCheckpointStore::open_in_memory().expect("in-memory store");
    let mut won: Vec<Ownership> = Vec::new();
    for op in ops.into_iter().take(32) {
        match op {
            Op::Claim(n, requests) => {
                let requests: Vec<Ownership> = requests
                    .into_iter()
                    .map(|(partition_id, owner_id, etag)| Ownership {
                        fully_qualified_namespace: n.namespace.clone(),
                        event_hub_name: n.event_hub.clone(),
                        consumer_group: n.consumer_group.clone(),
                        partition_id,
                        owner_id,
                        etag,
                        last_modified_time: None,
                    })
                    .collect();
                match store.blocking_claim_ownership(&requests) {
                    Ok(wins) => {
                        assert!(wins.len() <= requests.len());
                        assert!(wins.iter().all(|w| w.etag.is_some()
                            && w.last_modified_time.is_some()
                            && w.owner_id.as_deref() != Some("")));
                        won.extend(wins);
                    }
                    Err(e) => assert!(refusal(&e), "{e:?}"),
                }
            }
            Op::Update(n, partition, offset, seq) => {
                let cp = checkpoint(&n, partition, offset, seq);
                match store.blocking_update_checkpoint(&cp) {
                    Ok(()) => assert_stored(&store, &cp),
                    Err(e) => assert!(refusal(&e), "{e:?}"),
                }
            }
            Op::Fenced(i, offset, seq) => {
                let Some(held) = won.get(i % won.len().max(1)) else {
                    continue;
                };
                let cp = Checkpoint {
                    fully_qualified_namespace: held.fully_qualified_namespace.clone(),
                    event_hub_name: held.event_hub_name.clone(),
                    consumer_group: held.consumer_group.clone(),
                    partition_id: held.partition_id.clone(),
                    offset,
                    sequence_number: seq,
                };
                match store.blocking_update_checkpoint_fenced(&cp, held) {
                    Ok(()) => assert_stored(&store, &cp),
                    Err(e) => assert!(
                        refusal(&e) || matches!(e, Error::OwnershipLost { .. }),
                        "{e:?}"
                    ),
                }
            }
            Op::List(n) => {
                for result in [
                    store
                        .blocking_list_ownerships(&n.namespace, &n.event_hub, &n.consumer_group)
                        .map(drop),
                    store
                        .blocking_list_checkpoints(&n.namespace, &n.event_hub, &n.consumer_group)
                        .map(drop),
                ] {
                    assert!(result.as_ref().map_or_else(refusal, |_| true), "{result:?}");
                }
            }
        }
    }
});

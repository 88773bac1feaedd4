//! Differential test against the official `InMemoryCheckpointStore` (azure_messaging_eventhubs
//! 0.16, feature `in_memory_checkpoint_store`): random operations through the official trait on
//! both stores, wherever the two must agree — checkpoints, claims that do not conflict, releases
//! and lists — with the results compared after normalising what legitimately differs (etag
//! values, times, list order).
//!
//! Where the two legitimately differ, `documented_differences_from_the_in_memory_store` shows
//! each difference concretely. The in-memory store departs from the Blob stores there; ours
//! follows the Blob stores (see `azure_conformance.rs` and the Blob transcript).
#![cfg(feature = "azure")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use azure_core::http::Etag;
use azure_messaging_eventhubs::models::{Checkpoint, Ownership};
use azure_messaging_eventhubs::{CheckpointStore, InMemoryCheckpointStore};
use eventhubs_checkpointstore_sqlite::SqliteCheckpointStore;
use proptest::prelude::*;

/// (namespace, hub, group): one spelling each, since the in-memory store matches names
/// case-sensitively and ours does not.
const SCOPES: [(&str, &str, &str); 4] = [
    ("ns1.servicebus.windows.net", "hub-a", "$Default"),
    ("ns1.servicebus.windows.net", "hub-a", "group-b"),
    ("ns1.servicebus.windows.net", "hub-b", "$Default"),
    ("ns2.servicebus.windows.net", "hub-a", "$Default"),
];
const PARTITIONS: [&str; 5] = ["0", "1", "2", "10", "a"];
const OWNERS: [&str; 3] = ["p1", "p2", "p3"];

#[derive(Debug, Clone)]
enum Op {
    /// A batch of (partition, owner or None = release), partitions distinct, each presenting
    /// the etag that store last gave out for it (none for a new partition): every claim wins.
    Claim(usize, Vec<(usize, Option<usize>)>),
    /// A checkpoint with at least one of offset and sequence number.
    Checkpoint(usize, usize, Option<String>, Option<i64>),
    ListOwnerships(usize),
    ListCheckpoints(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let claim = (
        0..SCOPES.len(),
        prop::collection::btree_map(
            0..PARTITIONS.len(),
            prop::option::weighted(0.8, 0..OWNERS.len()),
            0..4,
        ),
    )
        .prop_map(|(s, m)| Op::Claim(s, m.into_iter().collect()));
    let checkpoint = (
        0..SCOPES.len(),
        0..PARTITIONS.len(),
        prop::option::of("[0-9a-z:]{0,12}"),
        prop::option::of(any::<i64>()),
    )
        .prop_filter("a checkpoint names a position", |(_, _, o, s)| {
            o.is_some() || s.is_some()
        })
        .prop_map(|(s, p, o, n)| Op::Checkpoint(s, p, o, n));
    prop_oneof![
        4 => claim,
        3 => checkpoint,
        2 => (0..SCOPES.len()).prop_map(Op::ListOwnerships),
        2 => (0..SCOPES.len()).prop_map(Op::ListCheckpoints),
    ]
}

/// One store and the etags it gave out, by (scope, partition).
struct Side<'a> {
    name: &'static str,
    store: &'a dyn CheckpointStore,
    etags: HashMap<(usize, usize), Etag>,
}

type OwnershipView = Vec<(String, String, String, String, Option<String>)>;

/// The comparable part of an ownership list: names, partition and owner, sorted. Checks on
/// the way that every entry has a time and the etag this side last gave out.
fn ownerships_view(side: &Side<'_>, scope: usize, list: &[Ownership]) -> OwnershipView {
    let mut view: OwnershipView = list
        .iter()
        .map(|o| {
            assert!(o.last_modified_time.is_some(), "{}: {o:?}", side.name);
            let p = PARTITIONS
                .iter()
                .position(|p| *p == o.partition_id)
                .unwrap();
            assert_eq!(
                o.etag.as_ref(),
                side.etags.get(&(scope, p)),
                "{}: listed etag",
                side.name
            );
            (
                o.fully_qualified_namespace.clone(),
                o.event_hub_name.clone(),
                o.consumer_group.clone(),
                o.partition_id.clone(),
                o.owner_id.clone(),
            )
        })
        .collect();
    view.sort();
    view
}

type CheckpointView = Vec<(String, String, String, String, Option<String>, Option<i64>)>;

fn checkpoints_view(list: &[Checkpoint]) -> CheckpointView {
    let mut view: CheckpointView = list
        .iter()
        .map(|c| {
            (
                c.fully_qualified_namespace.clone(),
                c.event_hub_name.clone(),
                c.consumer_group.clone(),
                c.partition_id.clone(),
                c.offset.clone(),
                c.sequence_number,
            )
        })
        .collect();
    view.sort();
    view
}

async fn claim(
    side: &mut Side<'_>,
    scope: usize,
    batch: &[(usize, Option<usize>)],
) -> OwnershipView {
    let (ns, hub, group) = SCOPES[scope];
    let requests: Vec<Ownership> = batch
        .iter()
        .map(|&(p, owner)| Ownership {
            fully_qualified_namespace: ns.into(),
            event_hub_name: hub.into(),
            consumer_group: group.into(),
            partition_id: PARTITIONS[p].into(),
            owner_id: owner.map(|o| OWNERS[o].to_owned()),
            etag: side.etags.get(&(scope, p)).cloned(),
            last_modified_time: None,
        })
        .collect();
    let won = side
        .store
        .claim_ownership(&requests)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", side.name));
    assert_eq!(won.len(), batch.len(), "{}: every claim wins", side.name);
    for (w, &(p, _)) in won.iter().zip(batch) {
        let etag = w.etag.clone().expect("a won claim has an etag");
        assert_ne!(
            Some(&etag),
            side.etags.get(&(scope, p)),
            "{}: etag rotates",
            side.name
        );
        side.etags.insert((scope, p), etag);
    }
    // Results come in request order, in both stores.
    won.iter()
        .map(|o| {
            assert!(o.last_modified_time.is_some());
            (
                o.fully_qualified_namespace.clone(),
                o.event_hub_name.clone(),
                o.consumer_group.clone(),
                o.partition_id.clone(),
                o.owner_id.clone(),
            )
        })
        .collect()
}

async fn check(ops: Vec<Op>) {
    let official = InMemoryCheckpointStore::new();
    let ours = SqliteCheckpointStore::open_in_memory().unwrap();
    let mut a = Side {
        name: "in-memory",
        store: &official,
        etags: HashMap::new(),
    };
    let mut b = Side {
        name: "sqlite",
        store: &ours,
        etags: HashMap::new(),
    };
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Claim(s, batch) => {
                assert_eq!(
                    claim(&mut a, *s, batch).await,
                    claim(&mut b, *s, batch).await,
                    "step {i}: {op:?}"
                );
            }
            Op::Checkpoint(s, p, offset, seq) => {
                let (ns, hub, group) = SCOPES[*s];
                let c = Checkpoint {
                    fully_qualified_namespace: ns.into(),
                    event_hub_name: hub.into(),
                    consumer_group: group.into(),
                    partition_id: PARTITIONS[*p].into(),
                    offset: offset.clone(),
                    sequence_number: *seq,
                };
                a.store.update_checkpoint(c.clone()).await.unwrap();
                b.store.update_checkpoint(c).await.unwrap();
            }
            Op::ListOwnerships(s) => {
                let (ns, hub, group) = SCOPES[*s];
                let la = a.store.list_ownerships(ns, hub, group).await.unwrap();
                let lb = b.store.list_ownerships(ns, hub, group).await.unwrap();
                assert_eq!(
                    ownerships_view(&a, *s, &la),
                    ownerships_view(&b, *s, &lb),
                    "step {i}: {op:?}"
                );
            }
            Op::ListCheckpoints(s) => {
                let (ns, hub, group) = SCOPES[*s];
                let la = a.store.list_checkpoints(ns, hub, group).await.unwrap();
                let lb = b.store.list_checkpoints(ns, hub, group).await.unwrap();
                assert_eq!(
                    checkpoints_view(&la),
                    checkpoints_view(&lb),
                    "step {i}: {op:?}"
                );
            }
        }
    }
    // At the end, every scope lists the same on both.
    for (s, (ns, hub, group)) in SCOPES.iter().enumerate() {
        let la = a.store.list_ownerships(ns, hub, group).await.unwrap();
        let lb = b.store.list_ownerships(ns, hub, group).await.unwrap();
        assert_eq!(ownerships_view(&a, s, &la), ownerships_view(&b, s, &lb));
        let la = a.store.list_checkpoints(ns, hub, group).await.unwrap();
        let lb = b.store.list_checkpoints(ns, hub, group).await.unwrap();
        assert_eq!(checkpoints_view(&la), checkpoints_view(&lb));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn agrees_with_the_official_in_memory_store(ops in prop::collection::vec(op(), 1..40)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(check(ops));
    }
}

fn ownership(ns: &str, partition: &str, owner: Option<&str>, etag: Option<Etag>) -> Ownership {
    Ownership {
        fully_qualified_namespace: ns.into(),
        event_hub_name: "hub".into(),
        consumer_group: "$Default".into(),
        partition_id: partition.into(),
        owner_id: owner.map(Into::into),
        etag,
        last_modified_time: None,
    }
}

/// Each place where the official in-memory store and ours legitimately differ, shown on both.
/// In every one of them ours does what the Blob stores do.
#[tokio::test]
async fn documented_differences_from_the_in_memory_store() {
    let official = InMemoryCheckpointStore::new();
    let ours = SqliteCheckpointStore::open_in_memory().unwrap();
    let stores: [&dyn CheckpointStore; 2] = [&official, &ours];
    let ns = "diff.servicebus.windows.net";

    let mut first = Vec::new();
    for s in stores {
        first.push(
            s.claim_ownership(&[ownership(ns, "0", Some("a"), None)])
                .await
                .unwrap()
                .remove(0),
        );
        // A renewal makes `first` stale.
        s.claim_ownership(&[first.last().unwrap().clone()])
            .await
            .unwrap();
    }

    // 1. A stale etag: the in-memory store fails the whole call (and, since `EventProcessor`
    //    stops on a claim error, the processor); the Blob stores and ours leave that claim out
    //    and keep the rest of the batch.
    let batch = |stale: &Ownership| vec![ownership(ns, "1", Some("b"), None), stale.clone()];
    let r = official.claim_ownership(&batch(&first[0])).await;
    assert!(r.is_err());
    let r = stores[1].claim_ownership(&batch(&first[1])).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].partition_id, "1");

    // 2. A claim without an etag for a claimed partition: in-memory `Err`, ours left out.
    assert!(official
        .claim_ownership(&[ownership(ns, "0", Some("b"), None)])
        .await
        .is_err());
    assert!(stores[1]
        .claim_ownership(&[ownership(ns, "0", Some("b"), None)])
        .await
        .unwrap()
        .is_empty());

    // 3. An etag for a partition nobody claimed: in-memory creates it, ours leaves it out.
    let made_up = || ownership(ns, "7", Some("a"), Some(Etag::from("made-up")));
    assert_eq!(
        official.claim_ownership(&[made_up()]).await.unwrap().len(),
        1
    );
    assert!(stores[1]
        .claim_ownership(&[made_up()])
        .await
        .unwrap()
        .is_empty());

    // 4. Names: the in-memory store matches them case-sensitively, ours case-insensitively.
    let upper = "DIFF.servicebus.windows.net";
    assert!(official
        .list_ownerships(upper, "HUB", "$default")
        .await
        .unwrap()
        .is_empty());
    assert!(!stores[1]
        .list_ownerships(upper, "HUB", "$default")
        .await
        .unwrap()
        .is_empty());

    // 5. List order: the in-memory store sorts partition ids as text, ours numbers by value.
    for s in stores {
        s.claim_ownership(&[
            ownership(ns, "10", Some("a"), None),
            ownership(ns, "2", Some("a"), None),
        ])
        .await
        .unwrap();
    }
    let ids = |l: Vec<Ownership>| l.into_iter().map(|o| o.partition_id).collect::<Vec<_>>();
    assert_eq!(
        ids(official
            .list_ownerships(ns, "hub", "$Default")
            .await
            .unwrap()),
        ["0", "1", "10", "2", "7"]
    );
    assert_eq!(
        ids(stores[1]
            .list_ownerships(ns, "hub", "$Default")
            .await
            .unwrap()),
        ["0", "1", "2", "10"]
    );

    // 6. A checkpoint with neither offset nor sequence number: in-memory `Ok`, ours refuses it.
    let empty = Checkpoint {
        fully_qualified_namespace: ns.into(),
        event_hub_name: "hub".into(),
        consumer_group: "$Default".into(),
        partition_id: "0".into(),
        offset: None,
        sequence_number: None,
    };
    assert!(official.update_checkpoint(empty.clone()).await.is_ok());
    assert!(stores[1].update_checkpoint(empty).await.is_err());

    // 7. A release with an empty owner id: the in-memory store keeps `Some("")`, which the Rust
    //    load balancer counts as a live owner; ours reads it back as `None`.
    for (s, expected) in stores.into_iter().zip([Some(String::new()), None]) {
        let current = s
            .list_ownerships(ns, "hub", "$Default")
            .await
            .unwrap()
            .remove(0);
        let released = s
            .claim_ownership(&[Ownership {
                owner_id: Some(String::new()),
                ..current
            }])
            .await
            .unwrap();
        assert_eq!(released[0].owner_id, expected);
        assert_eq!(
            s.list_ownerships(ns, "hub", "$Default").await.unwrap()[0].owner_id,
            expected
        );
    }
}

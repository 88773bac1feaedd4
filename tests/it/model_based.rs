//! Model-based test: random claims, releases, renewals and checkpoints by several owners run
//! against the store and against a small reference model of the Blob stores' semantics. After
//! every step the store must equal the model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::{BTreeMap, HashSet};

use common::*;
use eventhubs_checkpointstore_sqlite::{Error, Ownership, SqliteCheckpointStore, StoreOptions};
use proptest::prelude::*;

const OWNERS: [&str; 3] = ["a", "b", "c"];
const PARTITIONS: [&str; 5] = ["0", "1", "2", "10", "x"];

/// Which etag a claim presents, resolved against the model when the step runs.
#[derive(Debug, Clone)]
enum EtagChoice {
    None,
    Empty,
    Current,
    /// An etag this partition had before (or a made-up one if it had none).
    Stale(usize),
}

#[derive(Debug, Clone)]
enum Step {
    /// A batch of (owner index or None = release, partition index, etag choice).
    Claim(Vec<(Option<usize>, usize, EtagChoice)>),
    Checkpoint(usize, Option<String>, Option<i64>),
    /// A fenced checkpoint by an owner presenting the current or a stale etag.
    Fenced(usize, usize, bool, i64),
}

fn etag_choice() -> impl Strategy<Value = EtagChoice> {
    prop_oneof![
        2 => Just(EtagChoice::None),
        1 => Just(EtagChoice::Empty),
        5 => Just(EtagChoice::Current),
        2 => (0usize..8).prop_map(EtagChoice::Stale),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let claim = (
        prop::option::weighted(0.85, 0..OWNERS.len()),
        0..PARTITIONS.len(),
        etag_choice(),
    );
    prop_oneof![
        5 => prop::collection::vec(claim, 0..5).prop_map(Step::Claim),
        2 => (
            0..PARTITIONS.len(),
            prop::option::of("[0-9a-z:]{0,6}"),
            prop::option::of(any::<i64>()),
        )
            .prop_map(|(p, o, s)| Step::Checkpoint(p, o, s)),
        2 => (0..OWNERS.len(), 0..PARTITIONS.len(), any::<bool>(), 0i64..1000)
            .prop_map(|(o, p, current, s)| Step::Fenced(o, p, current, s)),
    ]
}

#[derive(Debug, Clone)]
struct Row {
    owner: Option<String>,
    etag: String,
}

/// The reference: the Blob stores' semantics in a few lines.
#[derive(Default)]
struct Model {
    ownership: BTreeMap<String, Row>,
    /// Every etag each partition ever had, oldest first.
    history: BTreeMap<String, Vec<String>>,
    checkpoints: BTreeMap<String, (Option<String>, Option<i64>)>,
}

impl Model {
    fn resolve(&self, partition: &str, choice: &EtagChoice) -> Option<String> {
        match choice {
            EtagChoice::None => None,
            EtagChoice::Empty => Some(String::new()),
            EtagChoice::Current => Some(
                self.ownership
                    .get(partition)
                    .map_or_else(|| "never-existed".to_owned(), |r| r.etag.clone()),
            ),
            EtagChoice::Stale(i) => Some(
                self.history
                    .get(partition)
                    .and_then(|h| h.get(i % h.len().max(1)).cloned())
                    .unwrap_or_else(|| format!("made-up-{i}")),
            ),
        }
    }

    /// Would a claim presenting `etag` win right now?
    fn wins(&self, partition: &str, etag: Option<&str>) -> bool {
        match (etag, self.ownership.get(partition)) {
            (None | Some(""), row) => row.is_none(),
            (Some(e), Some(row)) => row.etag == e,
            (Some(_), None) => false,
        }
    }
}

fn check_equal(store: &SqliteCheckpointStore, model: &Model) {
    let stored: Vec<(String, Option<String>, Option<String>)> = owners(store);
    let mut expected: Vec<(String, Option<String>, Option<String>)> = model
        .ownership
        .iter()
        .map(|(p, r)| (p.clone(), r.owner.clone(), Some(r.etag.clone())))
        .collect();
    let order = |p: &str| PARTITIONS.iter().position(|x| *x == p);
    expected.sort_by_key(|(p, _, _)| order(p));
    assert_eq!(stored, expected, "ownerships differ from the model");

    let stored: Vec<(String, Option<String>, Option<i64>)> = store
        .blocking_list_checkpoints(NS, HUB, GROUP)
        .unwrap()
        .into_iter()
        .map(|c| (c.partition_id, c.offset, c.sequence_number))
        .collect();
    let mut expected: Vec<(String, Option<String>, Option<i64>)> = model
        .checkpoints
        .iter()
        .map(|(p, (o, s))| (p.clone(), o.clone(), *s))
        .collect();
    expected.sort_by_key(|(p, _, _)| order(p));
    assert_eq!(stored, expected, "checkpoints differ from the model");
}

fn run(steps: Vec<Step>) {
    let clock = ManualClock::new();
    let store =
        SqliteCheckpointStore::open_in_memory_with(StoreOptions::new().with_clock(clock.clone()))
            .unwrap();
    let mut model = Model::default();
    let mut all_etags = HashSet::new();
    for step in steps {
        clock.advance_secs(1);
        match step {
            Step::Claim(batch) => {
                let requests: Vec<Ownership> = batch
                    .iter()
                    .map(|(owner, p, choice)| {
                        let partition = PARTITIONS[*p];
                        let etag = model.resolve(partition, choice);
                        claim(partition, owner.map(|o| OWNERS[o]), etag.as_deref())
                    })
                    .collect();
                let won = store.blocking_claim_ownership(&requests).unwrap();
                // Predict the winners in order, applying each to the model as it wins.
                let mut expected_winners = Vec::new();
                let mut won_iter = won.iter();
                for request in &requests {
                    let p = &request.partition_id;
                    if !model.wins(p, request.etag.as_deref()) {
                        continue;
                    }
                    let got = won_iter
                        .next()
                        .expect("the store lost a claim the model won");
                    assert_eq!(&got.partition_id, p);
                    let owner = request.owner_id.clone().filter(|o| !o.is_empty());
                    assert_eq!(got.owner_id, owner, "a release reads back as None");
                    assert_eq!(got.last_modified_time, Some(clock.now()));
                    let etag = got.etag.clone().expect("a won claim has an etag");
                    assert!(all_etags.insert(etag.clone()), "etag reused: {etag}");
                    model.ownership.insert(
                        p.clone(),
                        Row {
                            owner,
                            etag: etag.clone(),
                        },
                    );
                    model.history.entry(p.clone()).or_default().push(etag);
                    expected_winners.push(p.clone());
                }
                assert!(
                    won_iter.next().is_none(),
                    "the store won a claim the model lost"
                );
                let got: Vec<String> = won.into_iter().map(|o| o.partition_id).collect();
                assert_eq!(got, expected_winners);
            }
            Step::Checkpoint(p, offset, seq) => {
                let partition = PARTITIONS[p];
                let result = store.blocking_update_checkpoint(&checkpoint(
                    partition,
                    offset.as_deref(),
                    seq,
                ));
                if offset.is_none() && seq.is_none() {
                    assert!(matches!(result, Err(Error::InvalidArgument { .. })));
                } else {
                    result.unwrap();
                    model
                        .checkpoints
                        .insert(partition.to_owned(), (offset, seq));
                }
            }
            Step::Fenced(o, p, current, seq) => {
                let partition = PARTITIONS[p];
                let etag = model.resolve(
                    partition,
                    &if current {
                        EtagChoice::Current
                    } else {
                        EtagChoice::Stale(0)
                    },
                );
                let owner = OWNERS[o];
                let ownership = claim(partition, Some(owner), etag.as_deref());
                let cp = checkpoint(partition, Some(&seq.to_string()), Some(seq));
                let result = store.blocking_update_checkpoint_fenced(&cp, &ownership);
                let holds = model.ownership.get(partition).is_some_and(|r| {
                    r.owner.as_deref() == Some(owner) && Some(&r.etag) == etag.as_ref()
                });
                if holds {
                    result.unwrap();
                    model
                        .checkpoints
                        .insert(partition.to_owned(), (cp.offset, cp.sequence_number));
                } else {
                    assert!(
                        matches!(result, Err(Error::OwnershipLost { .. })),
                        "fenced write by a non-owner must fail with ownership lost: {result:?}"
                    );
                }
            }
        }
        check_equal(&store, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn store_follows_the_reference_model(steps in prop::collection::vec(step(), 1..40)) {
        run(steps);
    }
}

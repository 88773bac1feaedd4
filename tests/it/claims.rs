//! CONTRACT §3.1: ownership claims follow the official Blob stores.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::HashSet;

use common::*;
use eventhubs_checkpointstore_sqlite::{
    CheckpointStore, Error, SqliteCheckpointStore, StoreOptions,
};

fn store() -> SqliteCheckpointStore {
    SqliteCheckpointStore::open_in_memory().unwrap()
}

#[tokio::test]
async fn claim_without_etag_creates_only() {
    let s = store();
    let won = s
        .claim_ownership(&[claim("0", Some("a"), None)])
        .await
        .unwrap();
    assert_eq!(won.len(), 1);
    assert_eq!(won[0].owner_id.as_deref(), Some("a"));
    // A second create-only claim, with None or with "", loses: the row exists.
    for etag in [None, Some("")] {
        let lost = s
            .claim_ownership(&[claim("0", Some("b"), etag)])
            .await
            .unwrap();
        assert!(
            lost.is_empty(),
            "create-only claim with etag {etag:?} must lose"
        );
    }
    assert_eq!(owners(&s)[0].1.as_deref(), Some("a"));
}

#[tokio::test]
async fn claim_with_current_etag_wins_and_with_stale_etag_loses() {
    let s = store();
    let first = s
        .claim_ownership(&[claim("0", Some("a"), None)])
        .await
        .unwrap();
    let etag = first[0].etag.clone().unwrap();
    let stolen = s
        .claim_ownership(&[claim("0", Some("b"), Some(&etag))])
        .await
        .unwrap();
    assert_eq!(stolen.len(), 1);
    // The same (now stale) etag loses.
    let again = s
        .claim_ownership(&[claim("0", Some("c"), Some(&etag))])
        .await
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(owners(&s)[0].1.as_deref(), Some("b"));
}

#[tokio::test]
async fn etag_for_a_partition_without_a_row_loses() {
    let s = store();
    let won = s
        .claim_ownership(&[claim("7", Some("a"), Some("no-such-etag"))])
        .await
        .unwrap();
    assert!(won.is_empty());
    assert!(owners(&s).is_empty(), "a lost claim must not create a row");
}

#[tokio::test]
async fn stale_claim_in_the_middle_of_a_batch_leaves_the_others_winning() {
    let s = store();
    let created = s
        .claim_ownership(&[
            claim("0", Some("a"), None),
            claim("1", Some("a"), None),
            claim("2", Some("a"), None),
        ])
        .await
        .unwrap();
    let etags: Vec<String> = created.iter().map(|o| o.etag.clone().unwrap()).collect();
    let won = s
        .claim_ownership(&[
            claim("0", Some("b"), Some(&etags[0])),
            claim("1", Some("b"), Some("stale")),
            claim("2", Some("b"), Some(&etags[2])),
        ])
        .await
        .unwrap();
    let ids: Vec<&str> = won.iter().map(|o| o.partition_id.as_str()).collect();
    assert_eq!(ids, ["0", "2"]);
    let now: Vec<Option<String>> = owners(&s).into_iter().map(|(_, o, _)| o).collect();
    assert_eq!(now, [Some("b".into()), Some("a".into()), Some("b".into())]);
}

#[tokio::test]
async fn two_claims_with_the_same_etag_in_one_batch_have_one_winner() {
    let s = store();
    let etag = s
        .claim_ownership(&[claim("0", Some("a"), None)])
        .await
        .unwrap()[0]
        .etag
        .clone()
        .unwrap();
    let won = s
        .claim_ownership(&[
            claim("0", Some("b"), Some(&etag)),
            claim("0", Some("c"), Some(&etag)),
        ])
        .await
        .unwrap();
    assert_eq!(won.len(), 1);
    assert_eq!(won[0].owner_id.as_deref(), Some("b"));
    assert_eq!(owners(&s)[0].1.as_deref(), Some("b"));
}

#[tokio::test]
async fn two_create_only_claims_in_one_batch_have_one_winner() {
    let s = store();
    let won = s
        .claim_ownership(&[claim("0", Some("a"), None), claim("0", Some("b"), None)])
        .await
        .unwrap();
    assert_eq!(won.len(), 1);
    assert_eq!(won[0].owner_id.as_deref(), Some("a"));
}

#[tokio::test]
async fn empty_batch_returns_nothing_and_writes_nothing() {
    let s = store();
    assert!(s.claim_ownership(&[]).await.unwrap().is_empty());
    assert!(owners(&s).is_empty());
}

#[tokio::test]
async fn every_successful_claim_rotates_the_etag_and_refreshes_the_time() {
    let clock = ManualClock::new();
    let s =
        SqliteCheckpointStore::open_in_memory_with(StoreOptions::new().with_clock(clock.clone()))
            .unwrap();
    let mut current = s
        .claim_ownership(&[claim("0", Some("a"), None)])
        .await
        .unwrap()[0]
        .clone();
    assert_eq!(current.last_modified_time, Some(clock.now()));
    let mut seen = HashSet::from([current.etag.clone().unwrap()]);
    for _ in 0..5 {
        clock.advance_secs(10);
        // A renewal by the same owner.
        let renewed = s
            .claim_ownership(&[claim("0", Some("a"), current.etag.as_deref())])
            .await
            .unwrap();
        assert_eq!(renewed.len(), 1);
        let renewed = renewed[0].clone();
        assert!(
            seen.insert(renewed.etag.clone().unwrap()),
            "etag must be new"
        );
        assert_eq!(renewed.last_modified_time, Some(clock.now()));
        // What the claim returned is what the store now holds.
        let listed = s.list_ownerships(NS, HUB, GROUP).await.unwrap();
        assert_eq!(listed, vec![renewed.clone()]);
        current = renewed;
    }
}

#[tokio::test]
async fn release_reads_back_as_none_and_can_be_claimed_again_with_its_etag() {
    let s = store();
    let held = s
        .claim_ownership(&[claim("0", Some("a"), None)])
        .await
        .unwrap();
    for release_owner in [None, Some("")] {
        let etag = owners(&s)[0].2.clone();
        let released = s
            .claim_ownership(&[claim("0", release_owner, etag.as_deref())])
            .await
            .unwrap();
        assert_eq!(released.len(), 1, "release with owner {release_owner:?}");
        assert_eq!(released[0].owner_id, None);
        let listed = s.list_ownerships(NS, HUB, GROUP).await.unwrap();
        assert_eq!(
            listed[0].owner_id, None,
            "a released owner reads back as None"
        );
        assert_ne!(listed[0].etag, held[0].etag);
    }
    // The row stays: create-only loses, a claim with the released row's etag wins.
    assert!(s
        .claim_ownership(&[claim("0", Some("b"), None)])
        .await
        .unwrap()
        .is_empty());
    let etag = owners(&s)[0].2.clone();
    let won = s
        .claim_ownership(&[claim("0", Some("b"), etag.as_deref())])
        .await
        .unwrap();
    assert_eq!(won[0].owner_id.as_deref(), Some("b"));
}

#[tokio::test]
async fn claim_result_keeps_the_callers_fields_and_spelling() {
    let s = store();
    let request = claim_in("MyNS.Example", "Hub", "$DEFAULT", "0", Some("a"), None);
    let won = s
        .claim_ownership(std::slice::from_ref(&request))
        .await
        .unwrap();
    assert_eq!(won[0].fully_qualified_namespace, "MyNS.Example");
    assert_eq!(won[0].event_hub_name, "Hub");
    assert_eq!(won[0].consumer_group, "$DEFAULT");
    assert_eq!(won[0].partition_id, "0");
}

#[tokio::test]
async fn invalid_request_anywhere_in_a_batch_writes_nothing() {
    let s = store();
    let fields = [
        (
            "fully_qualified_namespace",
            claim_in("", HUB, GROUP, "1", Some("a"), None),
        ),
        (
            "event_hub_name",
            claim_in(NS, "", GROUP, "1", Some("a"), None),
        ),
        (
            "consumer_group",
            claim_in(NS, HUB, "", "1", Some("a"), None),
        ),
        (
            "partition_id",
            claim_in(NS, HUB, GROUP, "", Some("a"), None),
        ),
    ];
    for (field, bad) in fields {
        let batch = [
            claim("0", Some("a"), None),
            bad,
            claim("2", Some("a"), None),
        ];
        match s.claim_ownership(&batch).await {
            Err(Error::InvalidArgument { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
        assert!(
            owners(&s).is_empty(),
            "nothing may be written for a bad batch"
        );
    }
}

#[tokio::test]
async fn store_is_usable_as_a_trait_object() {
    let s: std::sync::Arc<dyn CheckpointStore> = std::sync::Arc::new(store());
    let won = s
        .claim_ownership(&[claim("0", Some("a"), None)])
        .await
        .unwrap();
    assert_eq!(won.len(), 1);
    assert_eq!(s.list_ownerships(NS, HUB, GROUP).await.unwrap(), won);
}

#[test]
fn blocking_api_matches_the_async_one() {
    let s = store();
    let won = s
        .blocking_claim_ownership(&[claim("0", Some("a"), None)])
        .unwrap();
    assert_eq!(s.blocking_list_ownerships(NS, HUB, GROUP).unwrap(), won);
    s.blocking_update_checkpoint(&checkpoint("0", Some("10"), Some(1)))
        .unwrap();
    assert_eq!(
        s.blocking_list_checkpoints(NS, HUB, GROUP).unwrap(),
        vec![checkpoint("0", Some("10"), Some(1))]
    );
}

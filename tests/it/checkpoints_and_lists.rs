//! CONTRACT §3.2–3.4: names, checkpoints (plain and fenced) and lists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::*;
use eventhubs_checkpointstore_sqlite::{Checkpoint, CheckpointStore, Error, SqliteCheckpointStore};

fn store() -> SqliteCheckpointStore {
    SqliteCheckpointStore::open_in_memory().unwrap()
}

#[tokio::test]
async fn names_differing_only_in_case_are_one_group_and_lists_use_the_callers_spelling() {
    let s = store();
    s.claim_ownership(&[claim_in(
        "NS.Example",
        "HUB",
        "$Default",
        "0",
        Some("a"),
        None,
    )])
    .await
    .unwrap();
    // Another spelling of the same names cannot create the row again.
    let lost = s
        .claim_ownership(&[claim_in(
            "ns.example",
            "hub",
            "$DEFAULT",
            "0",
            Some("b"),
            None,
        )])
        .await
        .unwrap();
    assert!(lost.is_empty());
    let listed = s
        .list_ownerships("ns.EXAMPLE", "Hub", "$default")
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].owner_id.as_deref(), Some("a"));
    assert_eq!(listed[0].fully_qualified_namespace, "ns.EXAMPLE");
    assert_eq!(listed[0].event_hub_name, "Hub");
    assert_eq!(listed[0].consumer_group, "$default");

    let mut cp = checkpoint("0", Some("5"), Some(5));
    cp.consumer_group = "$DEFAULT".into();
    s.update_checkpoint(cp).await.unwrap();
    let cps = s.list_checkpoints(NS, HUB, "$default").await.unwrap();
    assert_eq!(cps.len(), 1);
    assert_eq!(cps[0].consumer_group, "$default");
}

#[tokio::test]
async fn partition_ids_are_case_sensitive() {
    let s = store();
    let won = s
        .claim_ownership(&[claim("p", Some("a"), None), claim("P", Some("b"), None)])
        .await
        .unwrap();
    assert_eq!(won.len(), 2);
    assert_eq!(owners(&s).len(), 2);
}

#[tokio::test]
async fn lists_never_return_another_groups_rows() {
    let s = store();
    let scopes = [
        (NS, HUB, GROUP),
        (NS, HUB, "other-group"),
        (NS, "other-hub", GROUP),
        ("other.ns", HUB, GROUP),
    ];
    for (i, (ns, hub, group)) in scopes.iter().enumerate() {
        let owner = format!("owner-{i}");
        s.claim_ownership(&[claim_in(ns, hub, group, "0", Some(&owner), None)])
            .await
            .unwrap();
        let mut cp = checkpoint("0", Some(&i.to_string()), Some(i as i64));
        cp.fully_qualified_namespace = ns.to_string();
        cp.event_hub_name = hub.to_string();
        cp.consumer_group = group.to_string();
        s.update_checkpoint(cp).await.unwrap();
    }
    for (i, (ns, hub, group)) in scopes.iter().enumerate() {
        let o = s.list_ownerships(ns, hub, group).await.unwrap();
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].owner_id, Some(format!("owner-{i}")));
        let c = s.list_checkpoints(ns, hub, group).await.unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].sequence_number, Some(i as i64));
    }
    // A group with nothing in it lists nothing (not everything).
    assert!(s
        .list_ownerships(NS, HUB, "empty")
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .list_checkpoints(NS, HUB, "empty")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn numeric_partition_ids_list_in_numeric_order() {
    let s = store();
    let ids = ["10", "2", "1", "32", "0", "x", "3"];
    let batch: Vec<_> = ids.iter().map(|p| claim(p, Some("a"), None)).collect();
    s.claim_ownership(&batch).await.unwrap();
    for p in ids {
        s.update_checkpoint(checkpoint(p, Some("1"), Some(1)))
            .await
            .unwrap();
    }
    let expected = ["0", "1", "2", "3", "10", "32", "x"];
    let o: Vec<String> = s
        .list_ownerships(NS, HUB, GROUP)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.partition_id)
        .collect();
    assert_eq!(o, expected);
    let c: Vec<String> = s
        .list_checkpoints(NS, HUB, GROUP)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.partition_id)
        .collect();
    assert_eq!(c, expected);
}

#[tokio::test]
async fn every_listed_ownership_has_a_time_and_an_etag() {
    let s = store();
    s.claim_ownership(&[claim("0", Some("a"), None), claim("1", None, None)])
        .await
        .unwrap();
    for o in s.list_ownerships(NS, HUB, GROUP).await.unwrap() {
        assert!(o.last_modified_time.is_some(), "{o:?}");
        assert!(o.etag.is_some(), "{o:?}");
    }
}

#[tokio::test]
async fn lists_are_copies() {
    let s = store();
    s.claim_ownership(&[claim("0", Some("a"), None)])
        .await
        .unwrap();
    let mut first = s.list_ownerships(NS, HUB, GROUP).await.unwrap();
    first[0].owner_id = Some("mutated".into());
    assert_eq!(owners(&s)[0].1.as_deref(), Some("a"));
}

#[tokio::test]
async fn update_checkpoint_creates_then_replaces_the_pair() {
    let s = store();
    s.update_checkpoint(checkpoint("0", Some("100"), Some(7)))
        .await
        .unwrap();
    assert_eq!(
        s.list_checkpoints(NS, HUB, GROUP).await.unwrap(),
        vec![checkpoint("0", Some("100"), Some(7))]
    );
    // Replaces the whole pair: a missing field is stored as missing.
    s.update_checkpoint(checkpoint("0", None, Some(9)))
        .await
        .unwrap();
    assert_eq!(
        s.list_checkpoints(NS, HUB, GROUP).await.unwrap(),
        vec![checkpoint("0", None, Some(9))]
    );
    s.update_checkpoint(checkpoint("0", Some("opaque:geo/1"), None))
        .await
        .unwrap();
    assert_eq!(
        s.list_checkpoints(NS, HUB, GROUP).await.unwrap(),
        vec![checkpoint("0", Some("opaque:geo/1"), None)]
    );
}

#[tokio::test]
async fn offsets_are_stored_verbatim_and_sequence_numbers_at_the_limits() {
    let s = store();
    let cases = [
        (Some("00042"), Some(i64::MAX)),
        (Some(" spaced "), Some(i64::MIN)),
        (Some("ünïcödé-✓"), Some(0)),
        (Some("-1"), Some(-1)),
    ];
    for (i, (offset, seq)) in cases.iter().enumerate() {
        let cp = checkpoint(&i.to_string(), *offset, *seq);
        s.update_checkpoint(cp.clone()).await.unwrap();
        let listed = s.list_checkpoints(NS, HUB, GROUP).await.unwrap();
        assert_eq!(listed[i], cp);
    }
}

#[tokio::test]
async fn checkpoint_without_a_position_is_rejected() {
    let s = store();
    let err = s
        .update_checkpoint(checkpoint("0", None, None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                field: "checkpoint",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("names no position"), "{err}");
    assert!(s.list_checkpoints(NS, HUB, GROUP).await.unwrap().is_empty());
}

#[tokio::test]
async fn checkpoint_with_an_empty_name_is_rejected() {
    let s = store();
    let mut cp = checkpoint("0", Some("1"), Some(1));
    cp.event_hub_name.clear();
    let err = s.update_checkpoint(cp).await.unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidArgument {
            field: "event_hub_name",
            ..
        }
    ));
    let err = s
        .update_checkpoint(Checkpoint {
            partition_id: String::new(),
            ..checkpoint("0", Some("1"), Some(1))
        })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidArgument {
            field: "partition_id",
            ..
        }
    ));
}

#[tokio::test]
async fn fenced_write_succeeds_for_the_current_owner_only() {
    let s = store();
    let a = s
        .claim_ownership(&[claim("0", Some("a"), None)])
        .await
        .unwrap()[0]
        .clone();
    s.update_checkpoint_fenced(checkpoint("0", Some("1"), Some(1)), &a)
        .await
        .unwrap();
    // b steals the partition and writes its own position.
    let b = s
        .claim_ownership(&[claim("0", Some("b"), a.etag.as_deref())])
        .await
        .unwrap()[0]
        .clone();
    s.update_checkpoint_fenced(checkpoint("0", Some("50"), Some(50)), &b)
        .await
        .unwrap();
    // a's late write is refused and leaves b's position alone.
    let err = s
        .update_checkpoint_fenced(checkpoint("0", Some("2"), Some(2)), &a)
        .await
        .unwrap_err();
    match &err {
        Error::OwnershipLost {
            partition_id,
            reason,
        } => {
            assert_eq!(partition_id, "0");
            assert!(reason.contains("`b`"), "{reason}");
        }
        other => panic!("expected ownership lost, got {other:?}"),
    }
    assert_eq!(
        s.list_checkpoints(NS, HUB, GROUP).await.unwrap(),
        vec![checkpoint("0", Some("50"), Some(50))]
    );
}

#[tokio::test]
async fn fenced_write_fails_after_a_renewal_by_someone_holding_a_newer_etag() {
    let s = store();
    let a = s
        .claim_ownership(&[claim("0", Some("a"), None)])
        .await
        .unwrap()[0]
        .clone();
    let renewed = s
        .claim_ownership(&[claim("0", Some("a"), a.etag.as_deref())])
        .await
        .unwrap()[0]
        .clone();
    // The old etag is no longer current, even for the same owner.
    let err = s
        .update_checkpoint_fenced(checkpoint("0", Some("1"), Some(1)), &a)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OwnershipLost { .. }), "{err}");
    s.update_checkpoint_fenced(checkpoint("0", Some("1"), Some(1)), &renewed)
        .await
        .unwrap();
}

#[tokio::test]
async fn fenced_write_fails_when_released_or_never_owned() {
    let s = store();
    let never = claim("9", Some("a"), Some("etag"));
    let err = s
        .update_checkpoint_fenced(checkpoint("9", Some("1"), Some(1)), &never)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OwnershipLost { .. }), "{err}");

    let a = s
        .claim_ownership(&[claim("0", Some("a"), None)])
        .await
        .unwrap()[0]
        .clone();
    s.claim_ownership(&[claim("0", None, a.etag.as_deref())])
        .await
        .unwrap();
    let err = s
        .update_checkpoint_fenced(checkpoint("0", Some("1"), Some(1)), &a)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("released"), "{err}");
    assert!(s.list_checkpoints(NS, HUB, GROUP).await.unwrap().is_empty());
}

#[tokio::test]
async fn fenced_write_rejects_a_mismatched_or_incomplete_ownership() {
    let s = store();
    let a = s
        .claim_ownership(&[claim("0", Some("a"), None)])
        .await
        .unwrap()[0]
        .clone();
    let cases = [
        ("ownership", claim("1", Some("a"), a.etag.as_deref())),
        ("ownership.owner_id", claim("0", None, a.etag.as_deref())),
        ("ownership.etag", claim("0", Some("a"), None)),
    ];
    for (field, ownership) in cases {
        let err = s
            .update_checkpoint_fenced(checkpoint("0", Some("1"), Some(1)), &ownership)
            .await
            .unwrap_err();
        match err {
            Error::InvalidArgument { field: f, .. } => assert_eq!(f, field),
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
}

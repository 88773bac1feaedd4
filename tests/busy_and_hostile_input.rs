//! A lock held past the busy timeout is a clear error and writes nothing; hostile names are
//! stored exactly or refused clearly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use eventhubs_checkpointstore_sqlite::{
    Error, SqliteCheckpointStore, StoreOptions, MAX_NAME_LEN, MAX_OFFSET_LEN,
};

#[test]
fn a_lock_held_past_the_busy_timeout_is_a_busy_error_and_nothing_is_written() {
    let options = StoreOptions::new().with_busy_timeout(Duration::from_millis(200));
    let (_dir, path, store) = file_store_with(options);
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();

    let started = Instant::now();
    let err = store
        .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap_err();
    assert!(err.is_busy(), "{err:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "it must wait first"
    );
    let err = store
        .blocking_claim_ownership(&[claim("0", Some("a"), None)])
        .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "`{}` is busy: gave up after the busy timeout of 200ms",
            path.display()
        )
    );

    lock.rollback().unwrap();
    assert!(store
        .blocking_list_checkpoints(NS, HUB, GROUP)
        .unwrap()
        .is_empty());
    assert!(owners(&store).is_empty());
    // Once the lock is gone the same writes succeed.
    store
        .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap();
}

#[test]
fn odd_names_are_stored_and_returned_exactly() {
    let store = SqliteCheckpointStore::open_in_memory().unwrap();
    let odd = [
        "'; DROP TABLE ownership; --",
        "100%_match",
        "quote\"s and 'apostrophes'",
        "ünïcödé/パーティション",
        " leading and trailing ",
        &"x".repeat(MAX_NAME_LEN),
    ];
    for (i, name) in odd.iter().enumerate() {
        let owner = name.to_string();
        let request = claim_in(name, name, name, name, Some(&owner), None);
        let won = store.blocking_claim_ownership(&[request]).unwrap();
        assert_eq!(won.len(), 1, "case {i}");
        let listed = store.blocking_list_ownerships(name, name, name).unwrap();
        assert_eq!(listed.len(), 1, "case {i}: exactly its own row");
        assert_eq!(listed[0].partition_id, *name);
        assert_eq!(listed[0].owner_id.as_deref(), Some(owner.as_str()));
    }
    // `%` and `_` are not wildcards: a group named like a pattern sees only itself.
    assert!(store
        .blocking_list_ownerships("100%", "100%", "100%")
        .unwrap()
        .is_empty());
}

#[test]
fn names_and_offsets_over_the_limit_or_with_nul_are_refused_clearly() {
    let store = SqliteCheckpointStore::open_in_memory().unwrap();
    let huge = "n".repeat(1024 * 1024);
    let cases = [
        (
            claim_in(&huge, HUB, GROUP, "0", Some("a"), None),
            "fully_qualified_namespace",
        ),
        (
            claim_in(NS, HUB, GROUP, &huge, Some("a"), None),
            "partition_id",
        ),
        (claim("0", Some(&huge), None), "owner_id"),
        (claim("0", Some("a"), Some(&huge)), "etag"),
        (
            claim_in(NS, "h\0ub", GROUP, "0", Some("a"), None),
            "event_hub_name",
        ),
        (claim("0", Some("a\0b"), None), "owner_id"),
    ];
    for (request, field) in cases {
        match store.blocking_claim_ownership(&[request]) {
            Err(Error::InvalidArgument { field: f, reason }) => {
                assert_eq!(f, field);
                assert!(
                    reason.contains("limit") || reason.contains("NUL"),
                    "{reason}"
                );
            }
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
    let long_offset = "9".repeat(MAX_OFFSET_LEN + 1);
    let err = store
        .blocking_update_checkpoint(&checkpoint("0", Some(&long_offset), Some(1)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                field: "offset",
                ..
            }
        ),
        "{err}"
    );
    let fits = "9".repeat(MAX_OFFSET_LEN);
    store
        .blocking_update_checkpoint(&checkpoint("0", Some(&fits), Some(1)))
        .unwrap();
    assert_eq!(
        store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap()[0]
            .offset
            .as_deref(),
        Some(fits.as_str())
    );
    assert!(
        owners(&store).is_empty(),
        "no refused claim may have written"
    );
}

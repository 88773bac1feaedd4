//! CONTRACT §4: the legacy EventProcessorHost API over the same tables as the modern one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use eventhubs_checkpointstore_sqlite::legacy::{
    Checkpoint, CheckpointManager, HostContext, Lease, LeaseManager, LeaseOptions,
    SqliteCheckpointLeaseManager,
};
use eventhubs_checkpointstore_sqlite::{
    CheckpointStore, Error, Ownership, Result, SqliteCheckpointStore, StoreOptions,
};

fn store() -> SqliteCheckpointStore {
    SqliteCheckpointStore::open_in_memory().unwrap()
}

/// A store whose time only moves when the test says so.
fn clocked() -> (Arc<ManualClock>, SqliteCheckpointStore) {
    let clock = ManualClock::new();
    let store =
        SqliteCheckpointStore::open_in_memory_with(StoreOptions::new().with_clock(clock.clone()))
            .unwrap();
    (clock, store)
}

/// A legacy host in the default group.
fn host(store: &SqliteCheckpointStore, name: &str) -> SqliteCheckpointLeaseManager {
    SqliteCheckpointLeaseManager::new(store, HostContext::new(NS, HUB, GROUP, name)).unwrap()
}

/// Creates the partition's lease if needed and acquires it.
async fn held(manager: &SqliteCheckpointLeaseManager, partition: &str) -> Lease {
    let mut lease = manager.create_lease_if_not_exists(partition).await.unwrap();
    manager.acquire_lease(&mut lease).await.unwrap();
    lease
}

fn check_lost<T: std::fmt::Debug>(result: Result<T>) {
    match result {
        Err(e) => assert!(e.is_ownership_lost(), "expected lease lost, got {e:?}"),
        Ok(v) => panic!("expected lease lost, got Ok({v:?})"),
    }
}

fn check_invalid<T: std::fmt::Debug>(result: Result<T>, expected_field: &str) {
    match result {
        Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, expected_field),
        other => panic!("expected invalid `{expected_field}`, got {other:?}"),
    }
}

/// The stored (owner, etag) of a partition, as the modern API lists it.
fn stored(store: &SqliteCheckpointStore, partition: &str) -> Option<(Option<String>, String)> {
    owners(store)
        .into_iter()
        .find(|(p, _, _)| p == partition)
        .map(|(_, owner, etag)| (owner, etag.unwrap()))
}

/// The modern position of a partition: (offset, sequence number), if listed.
fn modern_position(
    store: &SqliteCheckpointStore,
    partition: &str,
) -> Option<(Option<String>, Option<i64>)> {
    store
        .blocking_list_checkpoints(NS, HUB, GROUP)
        .unwrap()
        .into_iter()
        .find(|c| c.partition_id == partition)
        .map(|c| (c.offset, c.sequence_number))
}

// ---------------------------------------------------------------------------------------------
// Checkpoint manager contract

#[tokio::test]
async fn creating_the_stores_succeeds_and_writes_nothing() {
    let s = store();
    let m = host(&s, "a");
    for _ in 0..2 {
        m.create_checkpoint_store_if_not_exists().await.unwrap();
        m.create_lease_store_if_not_exists().await.unwrap();
    }
    assert!(m.get_all_leases().await.unwrap().is_empty());
    assert!(owners(&s).is_empty());
}

#[tokio::test]
async fn get_checkpoint_is_none_until_one_is_created_then_start_of_stream() {
    let s = store();
    let m = host(&s, "a");
    assert_eq!(m.get_checkpoint("0").await.unwrap(), None);

    let created = m.create_checkpoint_if_not_exists("0").await.unwrap();
    assert_eq!(created.partition_id, "0");
    assert_eq!(created.offset, "-1");
    assert_eq!(created.sequence_number, 0);
    assert!(created.is_start_of_stream());
    assert_eq!(m.get_checkpoint("0").await.unwrap(), Some(created));

    // The placeholder is no position for the modern API, and creating it made no lease.
    assert!(s.list_checkpoints(NS, HUB, GROUP).await.unwrap().is_empty());
    assert_eq!(m.get_lease("0").await.unwrap(), None);
}

#[tokio::test]
async fn create_checkpoint_if_not_exists_returns_the_existing_position() {
    let s = store();
    let m = host(&s, "a");
    s.update_checkpoint(checkpoint("0", Some("4096"), Some(42)))
        .await
        .unwrap();
    let existing = m.create_checkpoint_if_not_exists("0").await.unwrap();
    assert_eq!(existing, Checkpoint::at("0", "4096", 42));
    assert_eq!(
        modern_position(&s, "0"),
        Some((Some("4096".into()), Some(42))),
        "create must not reset an existing position"
    );
}

#[tokio::test]
async fn update_checkpoint_writes_while_the_lease_is_held() {
    let s = store();
    let m = host(&s, "a");
    let lease = held(&m, "0").await;
    m.update_checkpoint(&lease, &Checkpoint::at("0", "8591964920", 960180))
        .await
        .unwrap();
    assert_eq!(
        m.get_checkpoint("0").await.unwrap(),
        Some(Checkpoint::at("0", "8591964920", 960180))
    );
    assert_eq!(
        modern_position(&s, "0"),
        Some((Some("8591964920".into()), Some(960180)))
    );
    // The token is not rotated: the same lease keeps working.
    assert_eq!(stored(&s, "0").unwrap().1, lease.token.clone().unwrap());
    m.update_checkpoint(&lease, &Checkpoint::at("0", "8591965000", 960181))
        .await
        .unwrap();
    assert_eq!(
        m.get_checkpoint("0")
            .await
            .unwrap()
            .unwrap()
            .sequence_number,
        960181
    );
}

#[tokio::test]
async fn a_start_of_stream_update_is_stored_as_the_placeholder() {
    let s = store();
    let m = host(&s, "a");
    let lease = held(&m, "0").await;
    m.update_checkpoint(&lease, &Checkpoint::at("0", "100", 7))
        .await
        .unwrap();
    m.update_checkpoint(&lease, &Checkpoint::new("0"))
        .await
        .unwrap();
    // Offset "-1", sequence number 0 as a modern position would skip event 0: not listed.
    assert_eq!(modern_position(&s, "0"), None);
    assert_eq!(
        m.get_checkpoint("0").await.unwrap(),
        Some(Checkpoint::new("0"))
    );
}

#[tokio::test]
async fn update_checkpoint_rejects_bad_input_and_writes_nothing() {
    let s = store();
    let a = host(&s, "a");
    let b = host(&s, "b");
    let lease = held(&a, "0").await;
    a.update_checkpoint(&lease, &Checkpoint::at("0", "10", 1))
        .await
        .unwrap();

    let bad = [
        (Checkpoint::at("0", "", 5), "checkpoint.offset"),
        (Checkpoint::at("0", "-1", 5), "checkpoint.sequence_number"),
        (Checkpoint::at("1", "20", 2), "lease"),
        (Checkpoint::at("", "20", 2), "partition_id"),
    ];
    for (checkpoint, field) in bad {
        check_invalid(a.update_checkpoint(&lease, &checkpoint).await, field);
    }
    // A lease that was never acquired has no owner.
    check_invalid(
        a.update_checkpoint(&Lease::new("0"), &Checkpoint::at("0", "20", 2))
            .await,
        "lease.owner",
    );
    // Another host cannot write with a's lease, even with its current token.
    check_lost(
        b.update_checkpoint(&lease, &Checkpoint::at("0", "20", 2))
            .await,
    );
    assert_eq!(
        a.get_checkpoint("0").await.unwrap(),
        Some(Checkpoint::at("0", "10", 1))
    );
}

#[tokio::test]
async fn delete_checkpoint_leaves_the_lease_and_a_missing_one_is_fine() {
    let s = store();
    let m = host(&s, "a");
    m.delete_checkpoint("0").await.unwrap();

    let lease = held(&m, "0").await;
    m.update_checkpoint(&lease, &Checkpoint::at("0", "10", 1))
        .await
        .unwrap();
    let before = stored(&s, "0");
    m.delete_checkpoint("0").await.unwrap();
    assert_eq!(m.get_checkpoint("0").await.unwrap(), None);
    assert_eq!(modern_position(&s, "0"), None);
    assert_eq!(stored(&s, "0"), before, "ownership must be untouched");
    m.delete_checkpoint("0").await.unwrap();
    // The lease still works.
    m.update_checkpoint(&lease, &Checkpoint::at("0", "11", 2))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Lease manager contract

#[tokio::test]
async fn options_default_to_eph_and_reject_a_renew_interval_not_shorter_than_the_duration() {
    let s = store();
    let m = host(&s, "a");
    assert_eq!(m.lease_duration(), Duration::from_secs(30));
    assert_eq!(m.lease_renew_interval(), Duration::from_secs(10));

    let ctx = || HostContext::new(NS, HUB, GROUP, "a");
    let secs = Duration::from_secs;
    for (duration, renew) in [
        (secs(30), secs(30)),
        (secs(30), secs(31)),
        (secs(30), secs(0)),
    ] {
        let options = LeaseOptions::new()
            .with_lease_duration(duration)
            .with_lease_renew_interval(renew);
        check_invalid(
            SqliteCheckpointLeaseManager::with_options(&s, ctx(), options),
            "lease_renew_interval",
        );
    }
    let options = LeaseOptions::new()
        .with_lease_duration(secs(60))
        .with_lease_renew_interval(secs(59));
    let m = SqliteCheckpointLeaseManager::with_options(&s, ctx(), options).unwrap();
    assert_eq!(m.lease_duration(), secs(60));
    assert_eq!(m.lease_renew_interval(), secs(59));

    check_invalid(
        SqliteCheckpointLeaseManager::new(&s, HostContext::new(NS, HUB, GROUP, "")),
        "host_name",
    );
    check_invalid(
        SqliteCheckpointLeaseManager::new(&s, HostContext::new(NS, "", GROUP, "a")),
        "event_hub_name",
    );
}

#[tokio::test]
async fn the_managers_are_dyn_compatible() {
    let s = store();
    let m = host(&s, "a");
    let leases: Arc<dyn LeaseManager> = Arc::new(m.clone());
    let checkpoints: Arc<dyn CheckpointManager> = Arc::new(m);
    let mut lease = leases.create_lease_if_not_exists("0").await.unwrap();
    leases.acquire_lease(&mut lease).await.unwrap();
    checkpoints
        .update_checkpoint(&lease, &Checkpoint::at("0", "1", 1))
        .await
        .unwrap();
    assert_eq!(
        checkpoints.get_checkpoint("0").await.unwrap(),
        Some(Checkpoint::at("0", "1", 1))
    );
}

#[tokio::test]
async fn create_lease_makes_a_released_lease_once_and_get_reads_it() {
    let (clock, s) = clocked();
    let m = host(&s, "a");
    assert_eq!(m.get_lease("0").await.unwrap(), None);

    let created = m.create_lease_if_not_exists("0").await.unwrap();
    assert_eq!(created.partition_id, "0");
    assert_eq!(created.owner, None);
    assert_eq!(created.epoch, 0);
    assert_eq!(created.event_processor_context, None);
    assert_eq!(created.last_modified_time, Some(clock.now()));
    assert!(created.token.is_some(), "a stored lease has a token");
    assert!(
        m.is_expired(&created),
        "a released lease is free to acquire"
    );
    assert_eq!(m.get_lease("0").await.unwrap(), Some(created.clone()));

    clock.advance_secs(5);
    let again = m.create_lease_if_not_exists("0").await.unwrap();
    assert_eq!(again, created, "an existing lease is returned unchanged");
    // The modern API sees the same row: a released ownership.
    assert_eq!(stored(&s, "0"), Some((None, created.token.unwrap())));
}

#[tokio::test]
async fn get_all_leases_lists_the_group_in_partition_order() {
    let s = store();
    let m = host(&s, "a");
    for p in ["10", "2", "1"] {
        m.create_lease_if_not_exists(p).await.unwrap();
    }
    // A modern claim is a lease too; another group's is not.
    s.claim_ownership(&[
        claim("3", Some("modern"), None),
        claim_in(NS, HUB, "other", "4", Some("x"), None),
    ])
    .await
    .unwrap();
    let ids: Vec<String> = m
        .get_all_leases()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.partition_id)
        .collect();
    assert_eq!(ids, ["1", "2", "3", "10"]);

    // Names match case-insensitively, as in the modern API.
    let shouting = SqliteCheckpointLeaseManager::new(
        &s,
        HostContext::new(NS.to_uppercase(), "HUB", "$DEFAULT", "a"),
    )
    .unwrap();
    assert_eq!(shouting.get_all_leases().await.unwrap().len(), 4);
}

#[tokio::test]
async fn acquire_takes_the_lease_and_raises_the_epoch_by_one() {
    let (clock, s) = clocked();
    let m = host(&s, "a");
    let mut lease = m.create_lease_if_not_exists("0").await.unwrap();
    let before = lease.clone();
    clock.advance_secs(1);
    m.acquire_lease(&mut lease).await.unwrap();
    assert_eq!(lease.owner.as_deref(), Some("a"));
    assert_eq!(lease.epoch, 1);
    assert_ne!(lease.token, before.token);
    assert_eq!(lease.last_modified_time, Some(clock.now()));
    assert_eq!(m.get_lease("0").await.unwrap(), Some(lease.clone()));
    assert!(!m.is_expired(&lease));

    // Acquiring again (here: by the holder itself) is a new generation too.
    m.acquire_lease(&mut lease).await.unwrap();
    assert_eq!(lease.epoch, 2);

    // A stale copy loses and changes nothing.
    let mut stale = before;
    check_lost(m.acquire_lease(&mut stale).await);
    assert_eq!(m.get_lease("0").await.unwrap(), Some(lease));
}

#[tokio::test]
async fn acquire_without_a_token_only_creates() {
    let s = store();
    let a = host(&s, "a");
    let b = host(&s, "b");
    let mut fresh = Lease::new("0");
    a.acquire_lease(&mut fresh).await.unwrap();
    assert_eq!(fresh.owner.as_deref(), Some("a"));
    assert_eq!(fresh.epoch, 1);

    let mut blind = Lease::new("0");
    check_lost(b.acquire_lease(&mut blind).await);
    assert_eq!(
        blind,
        Lease::new("0"),
        "a lost acquire leaves the copy alone"
    );
    assert_eq!(stored(&s, "0").unwrap().0.as_deref(), Some("a"));
}

#[tokio::test]
async fn renew_rotates_the_token_and_the_caller_learns_it() {
    let (clock, s) = clocked();
    let m = host(&s, "a");
    let mut lease = held(&m, "0").await;
    let old = lease.clone();
    clock.advance_secs(10);
    m.renew_lease(&mut lease).await.unwrap();
    assert_ne!(lease.token, old.token);
    assert_eq!(
        stored(&s, "0"),
        Some((Some("a".into()), lease.token.clone().unwrap()))
    );
    assert_eq!(lease.epoch, old.epoch, "renewing is not a new generation");
    assert_eq!(lease.last_modified_time, Some(clock.now()));

    // The copy from before the renewal is stale now.
    let mut stale = old;
    check_lost(m.renew_lease(&mut stale).await);
    check_lost(
        m.update_checkpoint(&stale, &Checkpoint::at("0", "1", 1))
            .await,
    );
    m.renew_lease(&mut lease).await.unwrap();
}

#[tokio::test]
async fn release_clears_the_owner_and_keeps_the_epoch() {
    let s = store();
    let a = host(&s, "a");
    let b = host(&s, "b");
    let mut lease = held(&a, "0").await;
    let held_copy = lease.clone();
    a.release_lease(&mut lease).await.unwrap();
    assert_eq!(lease.owner, None);
    assert_eq!(lease.epoch, 1);
    assert!(a.is_expired(&lease));
    assert_eq!(stored(&s, "0"), Some((None, lease.token.clone().unwrap())));

    // Nothing the old holder had still works.
    let mut stale = held_copy.clone();
    check_lost(a.renew_lease(&mut stale).await);
    let mut stale = held_copy.clone();
    check_lost(a.release_lease(&mut stale).await);
    check_lost(
        a.update_checkpoint(&held_copy, &Checkpoint::at("0", "1", 1))
            .await,
    );
    check_invalid(a.renew_lease(&mut lease).await, "lease.owner");

    // Whoever acquires it next is a new generation.
    let mut taken = b.get_lease("0").await.unwrap().unwrap();
    b.acquire_lease(&mut taken).await.unwrap();
    assert_eq!(taken.epoch, 2);
}

#[tokio::test]
async fn update_lease_stores_the_context_and_renews() {
    let s = store();
    let a = host(&s, "a");
    let b = host(&s, "b");
    let mut lease = held(&a, "0").await;
    let old = lease.clone();
    lease.event_processor_context = Some(r#"{"batch":7}"#.into());
    a.update_lease(&mut lease).await.unwrap();
    assert_ne!(lease.token, old.token, "update renews: a new token");
    let read = a.get_lease("0").await.unwrap().unwrap();
    assert_eq!(
        read.event_processor_context.as_deref(),
        Some(r#"{"batch":7}"#)
    );
    assert_eq!(read, lease);

    // A stale copy cannot overwrite it.
    let mut stale = Lease {
        event_processor_context: Some("stale".into()),
        ..old
    };
    check_lost(a.update_lease(&mut stale).await);

    // update_checkpoint stores the context beside the position, as EPH's lease blob did.
    lease.event_processor_context = Some(r#"{"batch":8}"#.into());
    a.update_checkpoint(&lease, &Checkpoint::at("0", "5", 5))
        .await
        .unwrap();
    assert_eq!(
        a.get_lease("0")
            .await
            .unwrap()
            .unwrap()
            .event_processor_context
            .as_deref(),
        Some(r#"{"batch":8}"#)
    );

    // The context belongs to the partition: a modern claim and a steal keep it.
    let etag = stored(&s, "0").unwrap().1;
    s.claim_ownership(&[claim("0", Some("modern"), Some(&etag))])
        .await
        .unwrap();
    let mut taken = b.get_lease("0").await.unwrap().unwrap();
    b.acquire_lease(&mut taken).await.unwrap();
    assert_eq!(
        taken.event_processor_context.as_deref(),
        Some(r#"{"batch":8}"#)
    );

    // Oversized context is refused before anything is written.
    taken.event_processor_context = Some("x".repeat(64 * 1024 + 1));
    check_invalid(
        b.update_lease(&mut taken).await,
        "lease.event_processor_context",
    );
}

#[tokio::test]
async fn delete_lease_is_fenced_by_the_token_and_a_missing_one_is_fine() {
    let s = store();
    let m = host(&s, "a");
    let mut lease = held(&m, "0").await;
    m.update_checkpoint(&lease, &Checkpoint::at("0", "9", 9))
        .await
        .unwrap();
    let stale = lease.clone();
    m.renew_lease(&mut lease).await.unwrap();

    check_lost(m.delete_lease(&stale).await);
    assert!(
        m.get_lease("0").await.unwrap().is_some(),
        "a stale delete deletes nothing"
    );
    m.delete_lease(&lease).await.unwrap();
    assert_eq!(m.get_lease("0").await.unwrap(), None);
    m.delete_lease(&lease).await.unwrap();
    check_invalid(m.delete_lease(&Lease::new("0")).await, "lease.token");
    // The checkpoint is not the lease.
    assert_eq!(
        m.get_checkpoint("0").await.unwrap(),
        Some(Checkpoint::at("0", "9", 9))
    );
}

#[tokio::test]
async fn delete_lease_store_deletes_the_groups_leases_and_keeps_checkpoints() {
    let s = store();
    let m = host(&s, "a");
    let lease = held(&m, "0").await;
    m.create_lease_if_not_exists("1").await.unwrap();
    m.update_checkpoint(&lease, &Checkpoint::at("0", "9", 9))
        .await
        .unwrap();
    s.claim_ownership(&[claim_in(NS, HUB, "other", "0", Some("x"), None)])
        .await
        .unwrap();

    m.delete_lease_store().await.unwrap();
    assert!(m.get_all_leases().await.unwrap().is_empty());
    assert_eq!(
        s.list_ownerships(NS, HUB, "other").await.unwrap().len(),
        1,
        "another group's ownership stays"
    );
    assert_eq!(modern_position(&s, "0"), Some((Some("9".into()), Some(9))));
    check_lost(
        m.update_checkpoint(&lease, &Checkpoint::at("0", "10", 10))
            .await,
    );
}

// ---------------------------------------------------------------------------------------------
// Lease lost, expiry, epoch

#[tokio::test]
async fn a_stolen_lease_fences_out_the_old_holder() {
    let s = store();
    let a = host(&s, "a");
    let b = host(&s, "b");
    let mut a_lease = held(&a, "0").await;
    a.update_checkpoint(&a_lease, &Checkpoint::at("0", "100", 10))
        .await
        .unwrap();

    // b steals partition 0 from the lease it read.
    let mut b_lease = b.get_lease("0").await.unwrap().unwrap();
    b.acquire_lease(&mut b_lease).await.unwrap();
    b.update_checkpoint(&b_lease, &Checkpoint::at("0", "200", 20))
        .await
        .unwrap();

    // a's writes all fail with lease lost and leave b's position.
    check_lost(
        a.update_checkpoint(&a_lease, &Checkpoint::at("0", "300", 30))
            .await,
    );
    check_lost(a.renew_lease(&mut a_lease).await);
    check_lost(a.update_lease(&mut a_lease).await);
    check_lost(a.release_lease(&mut a_lease).await);
    // Reading the lease again gives a b's token; a still may not write with it.
    let reread = a.get_lease("0").await.unwrap().unwrap();
    check_lost(
        a.update_checkpoint(&reread, &Checkpoint::at("0", "300", 30))
            .await,
    );

    assert_eq!(
        a.get_checkpoint("0").await.unwrap(),
        Some(Checkpoint::at("0", "200", 20))
    );
    assert_eq!(
        modern_position(&s, "0"),
        Some((Some("200".into()), Some(20)))
    );
    assert_eq!(stored(&s, "0").unwrap().0.as_deref(), Some("b"));
    b.renew_lease(&mut b_lease).await.unwrap();
}

#[tokio::test]
async fn the_token_fences_out_a_stale_copy_even_under_the_same_host_name() {
    let s = store();
    let before_restart = host(&s, "a");
    let old = held(&before_restart, "0").await;
    // The host restarts under the same name and takes its partition back.
    let after_restart = host(&s, "a");
    let mut new = after_restart.get_lease("0").await.unwrap().unwrap();
    after_restart.acquire_lease(&mut new).await.unwrap();
    assert_eq!(new.owner, old.owner);

    check_lost(
        before_restart
            .update_checkpoint(&old, &Checkpoint::at("0", "1", 1))
            .await,
    );
    check_lost(before_restart.renew_lease(&mut old.clone()).await);
    assert_eq!(after_restart.get_checkpoint("0").await.unwrap(), None);
    after_restart
        .update_checkpoint(&new, &Checkpoint::at("0", "2", 2))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lease_not_renewed_within_its_duration_expires_and_another_host_acquires_it() {
    let (clock, s) = clocked();
    let a = host(&s, "a");
    let b = host(&s, "b");
    let mut a_lease = held(&a, "0").await;

    clock.advance_secs(20);
    a.renew_lease(&mut a_lease).await.unwrap();
    clock.advance_secs(29);
    let seen = b.get_lease("0").await.unwrap().unwrap();
    assert!(
        !b.is_expired(&seen),
        "29 s after the renewal it is still held"
    );

    clock.advance_secs(1);
    let mut seen = b.get_lease("0").await.unwrap().unwrap();
    assert!(b.is_expired(&seen), "30 s after the renewal it has expired");
    b.acquire_lease(&mut seen).await.unwrap();
    assert_eq!(seen.owner.as_deref(), Some("b"));
    assert!(!b.is_expired(&seen));
    check_lost(a.renew_lease(&mut a_lease).await);
}

#[tokio::test]
async fn the_lease_duration_option_sets_expiry() {
    let (clock, s) = clocked();
    let options = LeaseOptions::new()
        .with_lease_duration(Duration::from_secs(5))
        .with_lease_renew_interval(Duration::from_secs(2));
    let m = SqliteCheckpointLeaseManager::with_options(
        &s,
        HostContext::new(NS, HUB, GROUP, "a"),
        options,
    )
    .unwrap();
    let lease = held(&m, "0").await;
    clock.advance_secs(4);
    assert!(!m.is_expired(&lease));
    clock.advance_secs(1);
    assert!(m.is_expired(&lease));
}

#[tokio::test]
async fn an_expired_lease_nobody_took_can_still_be_renewed() {
    let (clock, s) = clocked();
    let m = host(&s, "a");
    let mut lease = held(&m, "0").await;
    clock.advance_secs(120);
    assert!(m.is_expired(&lease));
    m.renew_lease(&mut lease).await.unwrap();
    assert!(!m.is_expired(&lease));
    m.update_checkpoint(&lease, &Checkpoint::at("0", "1", 1))
        .await
        .unwrap();
}

#[tokio::test]
async fn epoch_rises_with_every_change_of_owner_and_never_falls() {
    let (clock, s) = clocked();
    let a = host(&s, "a");
    let b = host(&s, "b");
    let epoch = || async { a.get_lease("0").await.unwrap().unwrap().epoch };
    let modern = |etag: String, owner: Option<&str>| claim("0", owner, Some(&etag));

    let mut steps = Vec::new();
    let mut a_lease = held(&a, "0").await; // a takes it
    steps.push(("a acquires", epoch().await, true));
    a.renew_lease(&mut a_lease).await.unwrap();
    steps.push(("a renews", epoch().await, false));
    let mut b_lease = b.get_lease("0").await.unwrap().unwrap();
    b.acquire_lease(&mut b_lease).await.unwrap();
    steps.push(("b steals", epoch().await, true));
    let won = s
        .claim_ownership(&[modern(b_lease.token.clone().unwrap(), Some("m"))])
        .await
        .unwrap();
    steps.push(("modern m steals", epoch().await, true));
    let won = s
        .claim_ownership(&[modern(won[0].etag.clone().unwrap(), Some("m"))])
        .await
        .unwrap();
    steps.push(("modern m renews", epoch().await, false));
    s.claim_ownership(&[modern(won[0].etag.clone().unwrap(), None)])
        .await
        .unwrap();
    steps.push(("modern m releases", epoch().await, false));
    let mut a_lease = a.get_lease("0").await.unwrap().unwrap();
    a.acquire_lease(&mut a_lease).await.unwrap();
    steps.push(("a acquires the released lease", epoch().await, true));
    a.update_checkpoint(&a_lease, &Checkpoint::at("0", "1", 1))
        .await
        .unwrap();
    a.update_lease(&mut a_lease).await.unwrap();
    steps.push(("a checkpoints and updates", epoch().await, false));
    clock.advance_secs(31);
    let mut b_lease = b.get_lease("0").await.unwrap().unwrap();
    assert!(b.is_expired(&b_lease));
    b.acquire_lease(&mut b_lease).await.unwrap();
    steps.push(("b acquires the expired lease", epoch().await, true));
    b.release_lease(&mut b_lease).await.unwrap();
    steps.push(("b releases", epoch().await, false));

    let mut last = 0;
    for (what, epoch, owner_changed) in steps {
        if owner_changed {
            assert_eq!(epoch, last + 1, "{what}: a new owner is a new generation");
        } else {
            assert_eq!(epoch, last, "{what}: same owner, same generation");
        }
        last = epoch;
    }
    assert_eq!(last, 5);
}

// ---------------------------------------------------------------------------------------------
// Mixed fleet

#[tokio::test]
async fn mixed_fleet_takes_turns_and_shares_positions() {
    let s = store();
    let legacy = host(&s, "legacy");
    // Partition 9 only ever has a legacy placeholder.
    legacy.create_checkpoint_if_not_exists("9").await.unwrap();

    let mut legacy_lease = held(&legacy, "0").await;
    let mut modern: Option<Ownership> = None;
    let mut last_epoch = legacy_lease.epoch;
    for round in 1..=40_i64 {
        if round % 2 == 1 {
            // The modern processor steals with the etag it listed: the legacy host's token.
            let listed = s.list_ownerships(NS, HUB, GROUP).await.unwrap().remove(0);
            assert_eq!(listed.etag, legacy_lease.token, "round {round}");
            let won = s
                .claim_ownership(&[Ownership {
                    owner_id: Some("modern".into()),
                    ..listed
                }])
                .await
                .unwrap();
            assert_eq!(won.len(), 1, "round {round}: the steal must win");
            let mine = won[0].clone();
            // The legacy host is fenced out and its position is not written.
            check_lost(
                legacy
                    .update_checkpoint(&legacy_lease, &Checkpoint::at("0", "stale", -round))
                    .await,
            );
            check_lost(legacy.renew_lease(&mut legacy_lease.clone()).await);
            s.update_checkpoint_fenced(
                checkpoint("0", Some(&format!("m{round}")), Some(round)),
                &mine,
            )
            .await
            .unwrap();
            // The legacy API reads the modern position.
            assert_eq!(
                legacy.get_checkpoint("0").await.unwrap(),
                Some(Checkpoint::at("0", format!("m{round}"), round))
            );
            modern = Some(mine);
        } else {
            // The legacy host steals back from the lease it read: the modern etag.
            let mut lease = legacy.get_lease("0").await.unwrap().unwrap();
            let theirs = modern.clone().unwrap();
            assert_eq!(lease.owner.as_deref(), Some("modern"));
            assert_eq!(lease.token, theirs.etag, "round {round}");
            legacy.acquire_lease(&mut lease).await.unwrap();
            // The modern processor is fenced out and its renewal loses.
            let err = s
                .update_checkpoint_fenced(checkpoint("0", Some("stale"), Some(-round)), &theirs)
                .await
                .unwrap_err();
            assert!(err.is_ownership_lost());
            assert!(s.claim_ownership(&[theirs]).await.unwrap().is_empty());
            legacy
                .update_checkpoint(&lease, &Checkpoint::at("0", format!("l{round}"), round))
                .await
                .unwrap();
            // The modern API reads the legacy position.
            assert_eq!(
                modern_position(&s, "0"),
                Some((Some(format!("l{round}")), Some(round)))
            );
            legacy_lease = lease;
        }
        let epoch = legacy.get_lease("0").await.unwrap().unwrap().epoch;
        assert_eq!(
            epoch,
            last_epoch + 1,
            "round {round}: every steal is a new generation"
        );
        last_epoch = epoch;
        let listed = s.list_checkpoints(NS, HUB, GROUP).await.unwrap();
        assert!(
            listed.iter().all(|c| c.partition_id != "9"),
            "a placeholder is never a modern position"
        );
    }
}

/// One successful etag-rotating write, as its writer saw it.
#[derive(Debug, Clone)]
struct Transition {
    partition: String,
    actor: String,
    presented: String,
    new: String,
    owner: Option<String>,
    /// The epoch the legacy API reported after the write; modern claims do not report one.
    epoch: Option<i64>,
    /// Whether this write may raise the epoch: a legacy acquire always does, a modern claim
    /// when the owner changes.
    kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    LegacyAcquire,
    LegacyKeep,
    ModernClaim,
}

/// One successful fenced checkpoint write.
#[derive(Debug, Clone)]
struct Write {
    partition: String,
    token: String,
    offset: Option<String>,
    sequence_number: i64,
}

type Log<T> = Arc<std::sync::Mutex<Vec<T>>>;

/// A tiny deterministic generator, so each actor makes different but repeatable choices.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

const PARTITIONS: [&str; 4] = ["0", "1", "2", "3"];
const ROUNDS: usize = 60;

async fn legacy_actor(
    manager: SqliteCheckpointLeaseManager,
    seed: u64,
    seq: Arc<std::sync::atomic::AtomicI64>,
    transitions: Log<Transition>,
    writes: Log<Write>,
) {
    let name = manager.host().host_name.clone();
    let mut rng = Lcg(seed);
    let mut mine: std::collections::HashMap<String, Lease> = Default::default();
    for _ in 0..ROUNDS {
        for p in PARTITIONS {
            if let Some(mut lease) = mine.remove(p) {
                let presented = lease.token.clone().unwrap();
                let result = match rng.next(10) {
                    0 => manager.release_lease(&mut lease).await.map(|()| true),
                    1..=3 => manager.renew_lease(&mut lease).await.map(|()| true),
                    _ => {
                        let n = seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        // Now and then a StartOfStream reset, which is stored as the placeholder.
                        let cp = if n % 7 == 0 {
                            Checkpoint::new(p)
                        } else {
                            Checkpoint::at(p, (n * 100).to_string(), n)
                        };
                        manager.update_checkpoint(&lease, &cp).await.map(|()| {
                            writes.lock().unwrap().push(Write {
                                partition: p.into(),
                                token: presented.clone(),
                                offset: (!cp.is_start_of_stream()).then(|| cp.offset.clone()),
                                sequence_number: cp.sequence_number,
                            });
                            false
                        })
                    }
                };
                match result {
                    Ok(rotated) => {
                        if rotated {
                            transitions.lock().unwrap().push(Transition {
                                partition: p.into(),
                                actor: name.clone(),
                                presented,
                                new: lease.token.clone().unwrap(),
                                owner: lease.owner.clone(),
                                epoch: Some(lease.epoch),
                                kind: Kind::LegacyKeep,
                            });
                        }
                        if lease.owner.is_some() {
                            mine.insert(p.into(), lease);
                        }
                    }
                    Err(e) => assert!(e.is_ownership_lost(), "{name}: {e}"),
                }
            } else if rng.next(3) == 0 {
                let mut lease = manager.get_lease(p).await.unwrap().unwrap();
                let presented = lease.token.clone().unwrap();
                match manager.acquire_lease(&mut lease).await {
                    Ok(()) => {
                        transitions.lock().unwrap().push(Transition {
                            partition: p.into(),
                            actor: name.clone(),
                            presented,
                            new: lease.token.clone().unwrap(),
                            owner: lease.owner.clone(),
                            epoch: Some(lease.epoch),
                            kind: Kind::LegacyAcquire,
                        });
                        mine.insert(p.into(), lease);
                    }
                    Err(e) => assert!(e.is_ownership_lost(), "{name}: {e}"),
                }
            }
        }
        tokio::task::yield_now().await;
    }
}

async fn modern_actor(
    store: SqliteCheckpointStore,
    name: String,
    seed: u64,
    seq: Arc<std::sync::atomic::AtomicI64>,
    transitions: Log<Transition>,
    writes: Log<Write>,
) {
    let mut rng = Lcg(seed);
    let mut mine: std::collections::HashMap<String, Ownership> = Default::default();
    for _ in 0..ROUNDS {
        let listed = store.list_ownerships(NS, HUB, GROUP).await.unwrap();
        for c in store.list_checkpoints(NS, HUB, GROUP).await.unwrap() {
            assert!(
                c.offset.is_some() && c.offset.as_deref() != Some("-1"),
                "a legacy placeholder must never be a modern position: {c:?}"
            );
        }
        for p in PARTITIONS {
            let request = match mine.remove(p) {
                // Renew what it holds, or checkpoint through the fence.
                Some(held) => {
                    if rng.next(2) == 0 {
                        let n = seq.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let cp = checkpoint(p, Some(&(n * 100).to_string()), Some(n));
                        match store.update_checkpoint_fenced(cp.clone(), &held).await {
                            Ok(()) => {
                                writes.lock().unwrap().push(Write {
                                    partition: p.into(),
                                    token: held.etag.clone().unwrap(),
                                    offset: cp.offset,
                                    sequence_number: n,
                                });
                                mine.insert(p.into(), held);
                            }
                            Err(e) => assert!(e.is_ownership_lost(), "{name}: {e}"),
                        }
                        continue;
                    }
                    held
                }
                // Steal with the etag it listed.
                None if rng.next(3) == 0 => {
                    let o = listed.iter().find(|o| o.partition_id == p).unwrap();
                    Ownership {
                        owner_id: Some(name.clone()),
                        ..o.clone()
                    }
                }
                None => continue,
            };
            let presented = request.etag.clone().unwrap();
            let won = store.claim_ownership(&[request]).await.unwrap();
            if let Some(w) = won.into_iter().next() {
                transitions.lock().unwrap().push(Transition {
                    partition: p.into(),
                    actor: name.clone(),
                    presented,
                    new: w.etag.clone().unwrap(),
                    owner: w.owner_id.clone(),
                    epoch: None,
                    kind: Kind::ModernClaim,
                });
                mine.insert(p.into(), w);
            }
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_fleet_never_has_two_owners_over_many_concurrent_rounds() {
    let (_dir, _path, s) = file_store_with(
        StoreOptions::new().with_durability(eventhubs_checkpointstore_sqlite::Durability::Normal),
    );
    let setup = host(&s, "setup");
    let mut roots = std::collections::HashMap::new();
    for p in PARTITIONS {
        let lease = setup.create_lease_if_not_exists(p).await.unwrap();
        roots.insert(p.to_owned(), lease.token.unwrap());
    }
    let seq = Arc::new(std::sync::atomic::AtomicI64::new(1));
    let transitions: Log<Transition> = Default::default();
    let writes: Log<Write> = Default::default();

    let mut tasks = Vec::new();
    for (i, name) in ["legacy-1", "legacy-2"].into_iter().enumerate() {
        tasks.push(tokio::spawn(legacy_actor(
            host(&s, name),
            11 + i as u64,
            seq.clone(),
            transitions.clone(),
            writes.clone(),
        )));
    }
    for (i, name) in ["modern-1", "modern-2"].into_iter().enumerate() {
        tasks.push(tokio::spawn(modern_actor(
            s.clone(),
            name.into(),
            23 + i as u64,
            seq.clone(),
            transitions.clone(),
            writes.clone(),
        )));
    }
    for t in tasks {
        t.await.unwrap();
    }

    let transitions = transitions.lock().unwrap().clone();
    let writes = writes.lock().unwrap().clone();
    let final_leases = setup.get_all_leases().await.unwrap();
    let mut steals_between_apis = 0;
    for p in PARTITIONS {
        // Every successful write replaced exactly the etag the previous holder had: the
        // transitions form one chain from the created lease, with no fork (two writes that
        // won from the same etag would be two owners at once).
        let mut by_presented = std::collections::HashMap::new();
        for t in transitions.iter().filter(|t| t.partition == p) {
            let earlier = by_presented.insert(t.presented.clone(), t.clone());
            assert!(
                earlier.is_none(),
                "partition {p}: two writes won from one etag: {earlier:?} and {t:?}"
            );
        }
        let mut chain = Vec::new();
        let mut etag = roots[p].clone();
        let (mut owner, mut epoch) = (None::<String>, 0_i64);
        let mut position = std::collections::HashMap::new();
        while let Some(t) = by_presented.remove(&etag) {
            let new_owner_generation = match t.kind {
                Kind::LegacyAcquire => true,
                Kind::ModernClaim => t.owner.is_some() && t.owner != owner,
                Kind::LegacyKeep => false,
            };
            if owner.is_some()
                && t.owner.is_some()
                && owner != t.owner
                && owner.as_deref().unwrap().starts_with("legacy") != t.actor.starts_with("legacy")
            {
                steals_between_apis += 1;
            }
            epoch += i64::from(new_owner_generation);
            if let Some(reported) = t.epoch {
                assert_eq!(reported, epoch, "partition {p}: epoch after {t:?}");
            }
            if t.kind == Kind::LegacyKeep {
                assert_eq!(
                    owner.as_deref(),
                    Some(t.actor.as_str()),
                    "only the holder renews"
                );
            }
            position.insert(t.new.clone(), chain.len());
            chain.push(t.clone());
            owner = t.owner.clone();
            etag = t.new;
        }
        assert!(
            by_presented.is_empty(),
            "partition {p}: writes off the chain: {by_presented:?}"
        );
        let stored_lease = final_leases.iter().find(|l| l.partition_id == p).unwrap();
        assert_eq!(
            stored_lease.token.as_deref(),
            Some(etag.as_str()),
            "partition {p}"
        );
        assert_eq!(stored_lease.owner, owner, "partition {p}");
        assert_eq!(stored_lease.epoch, epoch, "partition {p}");

        // Every fenced write used a token of the chain, and the stored position is the last
        // write under the newest token that wrote: no write got in after its holder lost.
        let mut last = None;
        for w in writes.iter().filter(|w| w.partition == p) {
            let at = *position
                .get(&w.token)
                .unwrap_or_else(|| panic!("partition {p}: write with an unknown token {w:?}"));
            if last.as_ref().is_none_or(|(l, _)| at >= *l) {
                last = Some((at, w.clone()));
            }
        }
        if let Some((_, w)) = last {
            let read = setup.get_checkpoint(p).await.unwrap().unwrap();
            let expected = match &w.offset {
                Some(o) => Checkpoint::at(p, o.clone(), w.sequence_number),
                None => Checkpoint::new(p),
            };
            assert_eq!(read, expected, "partition {p}");
            let modern = modern_position(&s, p);
            match w.offset {
                Some(o) => assert_eq!(modern, Some((Some(o), Some(w.sequence_number)))),
                None => assert_eq!(modern, None),
            }
        }
    }
    assert!(
        steals_between_apis > 0,
        "the run must exercise takeovers between a legacy host and a modern processor"
    );
    assert!(
        writes.len() > 10,
        "the run must checkpoint: {} writes",
        writes.len()
    );
}

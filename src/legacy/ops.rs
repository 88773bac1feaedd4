//! The legacy sync core: each operation is a plain function over a connection, as in
//! `store/ops.rs`, whose helpers it reuses. The manager in `manager.rs` runs these through the
//! store's one blocking hop.
//!
//! Every lease write is decided by one compare-and-swap statement on the row's etag (the lease
//! token): an `UPDATE … WHERE etag = ? … RETURNING` that returns a row or not, or an
//! `INSERT … ON CONFLICT DO NOTHING`. Reads that explain a loss come after, in the same
//! transaction.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::lease::{Checkpoint, Lease};
use crate::error::{Error, Result};
use crate::model::{self, GroupKey, PartitionKey};
use crate::options::Clock;
use crate::store::group_commit::{Fence, Write};
use crate::store::ops::{self as store_ops, check_owner, from_nanos, new_etag, to_nanos};

/// The lease columns, in the order [`lease_from_row`] reads them.
macro_rules! lease_columns {
    () => {
        "partition_id, owner_id, etag, epoch, last_modified, event_processor_context"
    };
}

fn lease_from_row(r: &Row<'_>) -> rusqlite::Result<(Lease, i64)> {
    Ok((
        Lease {
            partition_id: r.get(0)?,
            owner: r.get(1)?,
            token: r.get(2)?,
            epoch: r.get(3)?,
            event_processor_context: r.get(5)?,
            last_modified_time: None,
        },
        r.get(4)?,
    ))
}

/// Completes a lease read by [`lease_from_row`] with its time.
fn with_time((mut lease, nanos): (Lease, i64)) -> Result<Lease> {
    lease.last_modified_time = Some(from_nanos(nanos)?);
    Ok(lease)
}

fn key_params(k: &PartitionKey) -> [&str; 4] {
    [
        &k.namespace,
        &k.event_hub,
        &k.consumer_group,
        &k.partition_id,
    ]
}

/// Checks that the tables answer; the schema exists once the store is open.
pub(crate) fn ping(conn: &Connection) -> Result<()> {
    conn.prepare_cached(
        "SELECT (SELECT count(*) FROM ownership WHERE 0) + (SELECT count(*) FROM checkpoint WHERE 0)",
    )?
    .query_row([], |_| Ok(()))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

/// The partition's checkpoint; a placeholder reads as StartOfStream.
pub(crate) fn get_checkpoint(conn: &Connection, key: &PartitionKey) -> Result<Option<Checkpoint>> {
    let row = store_ops::stored_checkpoint(conn, key)?;
    Ok(row.map(|(offset, seq)| Checkpoint::from_stored(key.partition_id.clone(), offset, seq)))
}

/// A placeholder (no position) unless the partition has a checkpoint row already.
const CREATE_CHECKPOINT: &str = "\
    INSERT INTO checkpoint (namespace, event_hub, consumer_group, partition_id) \
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING";

pub(crate) fn create_checkpoint_if_not_exists(
    conn: &mut Connection,
    key: &PartitionKey,
) -> Result<Checkpoint> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached(CREATE_CHECKPOINT)?
        .execute(key_params(key))?;
    let checkpoint = get_checkpoint(&tx, key)?
        .ok_or_else(|| Error::internal("a checkpoint row vanished inside its transaction"))?;
    tx.commit()?;
    Ok(checkpoint)
}

/// Validates a lease-checked checkpoint write for the group commit: it writes the position
/// and the lease's `event_processor_context` only while the lease's owner and token are the
/// stored ones, checked inside the batch's transaction.
pub(crate) fn checkpoint_write(
    group: &GroupKey,
    lease: &Lease,
    checkpoint: &Checkpoint,
) -> Result<Write> {
    let key = group.clone().partition(&checkpoint.partition_id)?;
    if lease.partition_id != checkpoint.partition_id {
        return Err(Error::invalid(
            "lease",
            format!(
                "is for partition `{}` but the checkpoint is for `{}`",
                lease.partition_id, checkpoint.partition_id
            ),
        ));
    }
    let (owner, token) = lease.held()?;
    let context = lease.context()?.map(ToOwned::to_owned);
    let (offset, sequence_number) = checkpoint.stored()?;
    Ok(Write {
        key,
        offset: offset.map(ToOwned::to_owned),
        sequence_number,
        fence: Some(Fence {
            owner_id: owner.to_owned(),
            etag: token.to_owned(),
            context: Some(context),
        }),
    })
}

/// Deletes the partition's checkpoint (none is fine); ownership is not touched.
pub(crate) fn delete_checkpoint(conn: &mut Connection, key: &PartitionKey) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    store_ops::delete_checkpoint(&tx, key)?;
    tx.commit()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Leases

const GET_LEASE: &str = concat!(
    "SELECT ",
    lease_columns!(),
    " FROM ownership \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4"
);

pub(crate) fn get_lease(conn: &Connection, key: &PartitionKey) -> Result<Option<Lease>> {
    conn.prepare_cached(GET_LEASE)?
        .query_row(key_params(key), lease_from_row)
        .optional()?
        .map(with_time)
        .transpose()
}

const LIST_LEASES: &str = concat!(
    "SELECT ",
    lease_columns!(),
    " FROM ownership WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3"
);

pub(crate) fn list_leases(conn: &Connection, group: &GroupKey) -> Result<Vec<Lease>> {
    let mut stmt = conn.prepare_cached(LIST_LEASES)?;
    let rows = stmt.query_map(
        params![group.namespace, group.event_hub, group.consumer_group],
        lease_from_row,
    )?;
    let mut out = Vec::new();
    for row in rows {
        out.push(with_time(row?)?);
    }
    out.sort_by(|a, b| model::partition_order(&a.partition_id, &b.partition_id));
    Ok(out)
}

/// A released lease (epoch 0) unless the partition has one already.
const CREATE_LEASE: &str = "\
    INSERT INTO ownership \
        (namespace, event_hub, consumer_group, partition_id, owner_id, etag, last_modified, epoch) \
    VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6, 0) \
    ON CONFLICT DO NOTHING";

pub(crate) fn create_lease_if_not_exists(
    conn: &mut Connection,
    clock: &dyn Clock,
    key: &PartitionKey,
) -> Result<Lease> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stamp = to_nanos(clock.now_utc())?;
    let [ns, hub, cg, pid] = key_params(key);
    tx.prepare_cached(CREATE_LEASE)?
        .execute(params![ns, hub, cg, pid, new_etag(), stamp])?;
    let lease = get_lease(&tx, key)?
        .ok_or_else(|| Error::internal("a lease row vanished inside its transaction"))?;
    tx.commit()?;
    Ok(lease)
}

const DELETE_LEASE: &str = "\
    DELETE FROM ownership \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4 \
      AND etag = ?5";

/// Deletes the lease if its token is still `token`; a missing lease is fine.
pub(crate) fn delete_lease(conn: &mut Connection, key: &PartitionKey, token: &str) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let [ns, hub, cg, pid] = key_params(key);
    let deleted = tx
        .prepare_cached(DELETE_LEASE)?
        .execute(params![ns, hub, cg, pid, token])?;
    if deleted != 1 {
        if let Some(current) = get_lease(&tx, key)? {
            return Err(Error::OwnershipLost {
                partition_id: key.partition_id.clone(),
                reason: format!(
                    "the lease changed since it was read ({}): it was not deleted",
                    describe(&current)
                ),
            });
        }
    }
    tx.commit()?;
    Ok(())
}

/// Deletes every lease of the group; checkpoints stay.
pub(crate) fn delete_leases(conn: &mut Connection, group: &GroupKey) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    store_ops::delete_group_ownerships(&tx, group)?;
    tx.commit()?;
    Ok(())
}

/// Acquire of a partition without a lease: create-only, owned, the first generation.
const ACQUIRE_NEW: &str = concat!(
    "INSERT INTO ownership \
        (namespace, event_hub, consumer_group, partition_id, owner_id, etag, last_modified, epoch) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1) \
    ON CONFLICT DO NOTHING RETURNING ",
    lease_columns!()
);

/// Acquire (or steal): compare-and-swap on the token; every acquire is a new generation.
const ACQUIRE: &str = concat!(
    "UPDATE ownership SET owner_id = ?5, etag = ?6, last_modified = ?7, epoch = epoch + 1 \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4 \
      AND etag = ?8 \
    RETURNING ",
    lease_columns!()
);

/// Takes the lease for `host` if its token is still `token` (`None`: if there is no lease).
pub(crate) fn acquire(
    conn: &mut Connection,
    clock: &dyn Clock,
    key: &PartitionKey,
    host: &str,
    token: Option<&str>,
) -> Result<Lease> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read the clock under the write lock, so stamps follow the order of the writes.
    let stamp = to_nanos(clock.now_utc())?;
    let [ns, hub, cg, pid] = key_params(key);
    let won = match token {
        None => tx
            .prepare_cached(ACQUIRE_NEW)?
            .query_row(
                params![ns, hub, cg, pid, host, new_etag(), stamp],
                lease_from_row,
            )
            .optional()?,
        Some(token) => tx
            .prepare_cached(ACQUIRE)?
            .query_row(
                params![ns, hub, cg, pid, host, new_etag(), stamp, token],
                lease_from_row,
            )
            .optional()?,
    };
    let Some(won) = won else {
        let reason = match (get_lease(&tx, key)?, token) {
            (Some(current), None) => format!(
                "the partition has a lease already ({}): get it and acquire it with its token",
                describe(&current)
            ),
            (Some(current), Some(_)) => format!(
                "the lease changed since it was read ({})",
                describe(&current)
            ),
            (None, _) => "the partition has no lease any more: it was deleted".to_owned(),
        };
        tracing::debug!(partition_id = %key.partition_id, %reason, "lease acquire lost");
        return Err(Error::OwnershipLost {
            partition_id: key.partition_id.clone(),
            reason,
        });
    };
    let lease = with_time(won)?;
    tx.commit()?;
    Ok(lease)
}

/// What a write by the holder of a lease changes.
pub(crate) enum HeldWrite {
    /// Rotate the token and refresh the time.
    Renew,
    /// Clear the owner, rotate the token and refresh the time.
    Release,
    /// Store the context, rotate the token and refresh the time.
    Update(Option<String>),
}

const RENEW: &str = concat!(
    "UPDATE ownership SET etag = ?7, last_modified = ?8 \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4 \
      AND owner_id = ?5 AND etag = ?6 \
    RETURNING ",
    lease_columns!()
);

const RELEASE: &str = concat!(
    "UPDATE ownership SET owner_id = NULL, etag = ?7, last_modified = ?8 \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4 \
      AND owner_id = ?5 AND etag = ?6 \
    RETURNING ",
    lease_columns!()
);

const UPDATE_LEASE: &str = concat!(
    "UPDATE ownership SET etag = ?7, last_modified = ?8, event_processor_context = ?9 \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4 \
      AND owner_id = ?5 AND etag = ?6 \
    RETURNING ",
    lease_columns!()
);

/// Renews, releases or updates the lease while `owner` and `token` are the stored ones.
pub(crate) fn write_held(
    conn: &mut Connection,
    clock: &dyn Clock,
    key: &PartitionKey,
    owner: &str,
    token: &str,
    write: HeldWrite,
) -> Result<Lease> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let stamp = to_nanos(clock.now_utc())?;
    let [ns, hub, cg, pid] = key_params(key);
    let etag = new_etag();
    let won = match write {
        HeldWrite::Renew => tx.prepare_cached(RENEW)?.query_row(
            params![ns, hub, cg, pid, owner, token, etag, stamp],
            lease_from_row,
        ),
        HeldWrite::Release => tx.prepare_cached(RELEASE)?.query_row(
            params![ns, hub, cg, pid, owner, token, etag, stamp],
            lease_from_row,
        ),
        HeldWrite::Update(context) => tx.prepare_cached(UPDATE_LEASE)?.query_row(
            params![
                ns,
                hub,
                cg,
                pid,
                owner,
                token,
                etag,
                stamp,
                context.as_deref()
            ],
            lease_from_row,
        ),
    }
    .optional()?;
    let Some(won) = won else {
        return Err(lost(&tx, key, owner, token));
    };
    let lease = with_time(won)?;
    tx.commit()?;
    Ok(lease)
}

/// The lease-lost error for a fenced write that changed nothing, with the reason read inside
/// the same transaction.
fn lost(tx: &Transaction<'_>, key: &PartitionKey, owner: &str, token: &str) -> Error {
    let err = match check_owner(tx, key, owner, token) {
        Err(e) => e,
        Ok(()) => Error::internal("a fenced write changed nothing although its lease is current"),
    };
    tracing::debug!(partition_id = %key.partition_id, error = %err, "lease lost");
    err
}

/// A short description of a stored lease for error messages.
fn describe(lease: &Lease) -> String {
    match &lease.owner {
        Some(owner) => format!("now held by `{owner}`, epoch {}", lease.epoch),
        None => format!("now released, epoch {}", lease.epoch),
    }
}

//! The sync core: each operation is a plain function over a connection. The async shell in
//! `store/mod.rs` calls these inside `spawn_blocking`, the group commit's leader calls the
//! checkpoint writes, and the blocking API calls them directly. A claim is validated on the caller's thread first (`ClaimBatch`), and only what its transaction
//! needs crosses to the blocking pool (`PackedClaims`).
//!
//! Every write runs in one `BEGIN IMMEDIATE` transaction, and every argument is validated
//! before that transaction starts.

use std::ops::Range;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::model::{self, Checkpoint, GroupKey, Ownership, PartitionKey, MAX_NAME_LEN};
use crate::options::Clock;

/// Unix nanoseconds, the stored form of a time. `i64` nanoseconds reach the year 2262.
pub(crate) fn to_nanos(t: OffsetDateTime) -> Result<i64> {
    i64::try_from(t.unix_timestamp_nanos())
        .map_err(|_| Error::invalid("clock", format!("time {t} is outside 1677..2262")))
}

pub(crate) fn from_nanos(nanos: i64) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .map_err(|e| Error::internal(format!("stored time {nanos} is out of range: {e}")))
}

/// A new etag: a random UUID v4, as the official in-memory stores make them.
pub(crate) fn new_etag() -> String {
    Uuid::new_v4().to_string()
}

/// One validated claim: the request (whose spelling the answer keeps) and its row.
struct Claim<'a> {
    request: &'a Ownership,
    row: ClaimRow<'a>,
}

/// What the claim transaction needs of one claim: its group (an index into the batch's
/// distinct groups), the partition, the owner to write (None releases) and the etag it
/// presents.
#[derive(Clone, Copy)]
struct ClaimRow<'a> {
    group: usize,
    partition_id: &'a str,
    owner: Option<&'a str>,
    etag: Option<&'a str>,
}

/// A validated batch of claims, borrowed from the requests. Each distinct (namespace, hub,
/// group) is folded once: a batch almost always names one.
pub(crate) struct ClaimBatch<'a> {
    groups: Vec<GroupKey>,
    claims: Vec<Claim<'a>>,
}

/// A [`ClaimBatch`] reduced to what its transaction needs, owned, for the trip to another
/// thread: the groups and, in one string, every claim's partition, owner and etag.
pub(crate) struct PackedClaims {
    groups: Vec<GroupKey>,
    text: String,
    rows: Vec<PackedRow>,
}

struct PackedRow {
    group: usize,
    partition_id: Range<usize>,
    owner: Option<Range<usize>>,
    etag: Option<Range<usize>>,
}

/// What a claim transaction decided: its time, and for each claim, in order, the new etag if
/// the claim won.
pub(crate) struct ClaimOutcome {
    now: OffsetDateTime,
    etags: Vec<Option<Uuid>>,
}

impl<'a> ClaimBatch<'a> {
    /// Validates a whole batch before anything is written.
    pub(crate) fn validate(requests: &'a [Ownership]) -> Result<Self> {
        let mut groups: Vec<(GroupKey, &Ownership)> = Vec::new();
        let mut claims = Vec::with_capacity(requests.len());
        for request in requests {
            let same = |(_, seen): &(GroupKey, &Ownership)| {
                seen.fully_qualified_namespace == request.fully_qualified_namespace
                    && seen.event_hub_name == request.event_hub_name
                    && seen.consumer_group == request.consumer_group
            };
            let group = match groups.iter().position(same) {
                Some(i) => i,
                None => {
                    let key = GroupKey::new(
                        &request.fully_qualified_namespace,
                        &request.event_hub_name,
                        &request.consumer_group,
                    )?;
                    groups.push((key, request));
                    groups.len() - 1
                }
            };
            let partition_id = model::name("partition_id", &request.partition_id)?;
            let owner = model::owner(request.owner_id.as_deref())?;
            let etag = match request.etag.as_deref() {
                None | Some("") => None,
                Some(e) => Some(model::bounded("etag", e, MAX_NAME_LEN)?),
            };
            claims.push(Claim {
                request,
                row: ClaimRow {
                    group,
                    partition_id,
                    owner,
                    etag,
                },
            });
        }
        Ok(ClaimBatch {
            groups: groups.into_iter().map(|(g, _)| g).collect(),
            claims,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    fn rows(&self) -> impl ExactSizeIterator<Item = ClaimRow<'_>> {
        self.claims.iter().map(|c| c.row)
    }

    /// The owned form, for running the transaction on another thread.
    pub(crate) fn pack(&self) -> PackedClaims {
        let mut text = String::new();
        let mut put = |s: &str| {
            text.push_str(s);
            text.len() - s.len()..text.len()
        };
        let rows = self
            .rows()
            .map(|r| PackedRow {
                group: r.group,
                partition_id: put(r.partition_id),
                owner: r.owner.map(&mut put),
                etag: r.etag.map(&mut put),
            })
            .collect();
        PackedClaims {
            groups: self.groups.clone(),
            text,
            rows,
        }
    }

    /// The claims that won, as the caller spelled them, with their new etag and time.
    pub(crate) fn results(&self, outcome: ClaimOutcome) -> Vec<Ownership> {
        let won = outcome.etags.iter().filter(|e| e.is_some()).count();
        let mut results = Vec::with_capacity(won);
        for (claim, etag) in self.claims.iter().zip(outcome.etags) {
            let Some(etag) = etag else { continue };
            let r = claim.request;
            results.push(Ownership {
                fully_qualified_namespace: r.fully_qualified_namespace.clone(),
                event_hub_name: r.event_hub_name.clone(),
                consumer_group: r.consumer_group.clone(),
                partition_id: r.partition_id.clone(),
                owner_id: claim.row.owner.map(ToOwned::to_owned),
                etag: Some(etag.to_string()),
                last_modified_time: Some(outcome.now),
            });
        }
        results
    }
}

impl PackedClaims {
    /// Runs the claim transaction (see [`claim_ownership`]).
    pub(crate) fn write(&self, conn: &mut Connection, clock: &dyn Clock) -> Result<ClaimOutcome> {
        let rows = self.rows.iter().map(|r| ClaimRow {
            group: r.group,
            partition_id: &self.text[r.partition_id.clone()],
            owner: r.owner.clone().map(|o| &self.text[o]),
            etag: r.etag.clone().map(|e| &self.text[e]),
        });
        write_claims(conn, clock, &self.groups, rows)
    }
}

/// Create-only: succeeds only when the partition has no ownership row. A new owned row starts
/// at epoch 1 (the first owner's generation), a new released row at 0.
const INSERT_OWNERSHIP: &str = "\
    INSERT INTO ownership \
        (namespace, event_hub, consumer_group, partition_id, owner_id, etag, last_modified, epoch) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?5 IS NOT NULL) \
    ON CONFLICT DO NOTHING";

/// Compare-and-swap on the etag. The epoch goes up when a different owner takes the partition.
const UPDATE_OWNERSHIP: &str = "\
    UPDATE ownership \
    SET owner_id = ?5, etag = ?6, last_modified = ?7, \
        epoch = epoch + (?5 IS NOT NULL AND owner_id IS NOT ?5) \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4 \
      AND etag = ?8";

/// Claims (or releases) each requested ownership on its own, in one transaction, and returns
/// the claims that won with their new etag and time. See CONTRACT §3.1.
pub(crate) fn claim_ownership(
    conn: &mut Connection,
    clock: &dyn Clock,
    requests: &[Ownership],
) -> Result<Vec<Ownership>> {
    let batch = ClaimBatch::validate(requests)?;
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let outcome = write_claims(conn, clock, &batch.groups, batch.rows())?;
    Ok(batch.results(outcome))
}

/// The claim transaction: each row is decided on its own by `changes() == 1` of one statement.
fn write_claims<'r>(
    conn: &mut Connection,
    clock: &dyn Clock,
    groups: &[GroupKey],
    rows: impl ExactSizeIterator<Item = ClaimRow<'r>>,
) -> Result<ClaimOutcome> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read the clock under the write lock, so stamps follow the order of the writes.
    let now = clock.now_utc();
    let stamp = to_nanos(now)?;
    let mut etags = Vec::with_capacity(rows.len());
    {
        let mut insert = tx.prepare_cached(INSERT_OWNERSHIP)?;
        let mut update = tx.prepare_cached(UPDATE_OWNERSHIP)?;
        for row in rows {
            let g = &groups[row.group];
            let etag = Uuid::new_v4();
            let mut buf = Uuid::encode_buffer();
            let etag_text: &str = etag.hyphenated().encode_lower(&mut buf);
            let changed = match row.etag {
                None => insert.execute(params![
                    g.namespace,
                    g.event_hub,
                    g.consumer_group,
                    row.partition_id,
                    row.owner,
                    etag_text,
                    stamp
                ])?,
                Some(expected) => update.execute(params![
                    g.namespace,
                    g.event_hub,
                    g.consumer_group,
                    row.partition_id,
                    row.owner,
                    etag_text,
                    stamp,
                    expected
                ])?,
            };
            if changed == 1 {
                etags.push(Some(etag));
            } else {
                // Losing a race is normal under load balancing: leave it out, as the Blob
                // stores do, and never fail the batch for it.
                tracing::debug!(
                    partition_id = %row.partition_id,
                    presented_etag = ?row.etag,
                    "ownership claim lost"
                );
                etags.push(None);
            }
        }
    }
    tx.commit()?;
    Ok(ClaimOutcome { now, etags })
}

const LIST_OWNERSHIPS: &str = "\
    SELECT partition_id, owner_id, etag, last_modified FROM ownership \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3";

/// The ownerships of one (namespace, hub, group), spelled as the caller spelled the names, in
/// partition order.
pub(crate) fn list_ownerships(
    conn: &Connection,
    namespace: &str,
    event_hub: &str,
    consumer_group: &str,
) -> Result<Vec<Ownership>> {
    let g = GroupKey::new(namespace, event_hub, consumer_group)?;
    let mut stmt = conn.prepare_cached(LIST_OWNERSHIPS)?;
    let rows = stmt.query_map(params![g.namespace, g.event_hub, g.consumer_group], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (partition_id, owner_id, etag, modified) = row?;
        out.push(Ownership {
            fully_qualified_namespace: namespace.to_owned(),
            event_hub_name: event_hub.to_owned(),
            consumer_group: consumer_group.to_owned(),
            partition_id,
            owner_id,
            etag: Some(etag),
            last_modified_time: Some(from_nanos(modified)?),
        });
    }
    out.sort_by(|a, b| model::partition_order(&a.partition_id, &b.partition_id));
    Ok(out)
}

const LIST_CHECKPOINTS: &str = "\
    SELECT partition_id, event_offset, sequence_number FROM checkpoint \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 \
      AND (event_offset IS NOT NULL OR sequence_number IS NOT NULL)";

/// The checkpoints of one (namespace, hub, group) in partition order. Legacy StartOfStream
/// placeholders (rows with no position) are not positions and are left out.
pub(crate) fn list_checkpoints(
    conn: &Connection,
    namespace: &str,
    event_hub: &str,
    consumer_group: &str,
) -> Result<Vec<Checkpoint>> {
    let g = GroupKey::new(namespace, event_hub, consumer_group)?;
    let mut stmt = conn.prepare_cached(LIST_CHECKPOINTS)?;
    let rows = stmt.query_map(params![g.namespace, g.event_hub, g.consumer_group], |r| {
        Ok(Checkpoint {
            fully_qualified_namespace: namespace.to_owned(),
            event_hub_name: event_hub.to_owned(),
            consumer_group: consumer_group.to_owned(),
            partition_id: r.get(0)?,
            offset: r.get(1)?,
            sequence_number: r.get(2)?,
        })
    })?;
    let mut out = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    out.sort_by(|a, b| model::partition_order(&a.partition_id, &b.partition_id));
    Ok(out)
}

const UPSERT_CHECKPOINT: &str = "\
    INSERT INTO checkpoint \
        (namespace, event_hub, consumer_group, partition_id, event_offset, sequence_number) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
    ON CONFLICT (namespace, event_hub, consumer_group, partition_id) DO UPDATE \
    SET event_offset = excluded.event_offset, sequence_number = excluded.sequence_number";

/// Creates or replaces a partition's position inside an open transaction.
pub(crate) fn write_checkpoint(
    tx: &Transaction<'_>,
    key: &PartitionKey,
    offset: Option<&str>,
    sequence_number: Option<i64>,
) -> Result<()> {
    tx.prepare_cached(UPSERT_CHECKPOINT)?.execute(params![
        key.namespace,
        key.event_hub,
        key.consumer_group,
        key.partition_id,
        offset,
        sequence_number
    ])?;
    Ok(())
}

const GET_CHECKPOINT: &str = "\
    SELECT event_offset, sequence_number FROM checkpoint \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4";

/// A stored position: (offset, sequence number), both `None` for a legacy placeholder.
pub(crate) type StoredPosition = (Option<String>, Option<i64>);

/// The stored position of a partition, if it has a checkpoint row. The admin, legacy and
/// import paths all read a single row through this one statement.
pub(crate) fn stored_checkpoint(
    conn: &Connection,
    key: &PartitionKey,
) -> Result<Option<StoredPosition>> {
    Ok(conn
        .prepare_cached(GET_CHECKPOINT)?
        .query_row(
            params![
                key.namespace,
                key.event_hub,
                key.consumer_group,
                key.partition_id
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

const DELETE_CHECKPOINT: &str = "\
    DELETE FROM checkpoint \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4";

/// Deletes a partition's checkpoint row (position or placeholder) inside an open transaction;
/// whether there was one. Ownership is not touched.
pub(crate) fn delete_checkpoint(tx: &Transaction<'_>, key: &PartitionKey) -> Result<bool> {
    let n = tx.prepare_cached(DELETE_CHECKPOINT)?.execute(params![
        key.namespace,
        key.event_hub,
        key.consumer_group,
        key.partition_id
    ])?;
    Ok(n == 1)
}

const DELETE_GROUP_OWNERSHIPS: &str = "\
    DELETE FROM ownership WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3";

/// Deletes every ownership row (lease) of a group inside an open transaction; how many went.
/// Checkpoints are not touched.
pub(crate) fn delete_group_ownerships(tx: &Transaction<'_>, group: &GroupKey) -> Result<u64> {
    let n = tx
        .prepare_cached(DELETE_GROUP_OWNERSHIPS)?
        .execute(params![
            group.namespace,
            group.event_hub,
            group.consumer_group
        ])?;
    Ok(n as u64)
}

const CURRENT_OWNER: &str = "\
    SELECT owner_id, etag FROM ownership \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4";

/// Checks, inside `tx`, that `owner` (owner id + etag) is still the stored ownership of `key`.
pub(crate) fn check_owner(
    tx: &Transaction<'_>,
    key: &PartitionKey,
    owner_id: &str,
    etag: &str,
) -> Result<()> {
    let current: Option<(Option<String>, String)> = tx
        .prepare_cached(CURRENT_OWNER)?
        .query_row(
            params![
                key.namespace,
                key.event_hub,
                key.consumer_group,
                key.partition_id
            ],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let lost = |reason: String| Error::OwnershipLost {
        partition_id: key.partition_id.clone(),
        reason,
    };
    match current {
        None => Err(lost("the partition has no ownership".to_owned())),
        Some((stored_owner, _)) if stored_owner.as_deref() != Some(owner_id) => {
            Err(lost(match stored_owner {
                Some(o) => format!("it is now owned by `{o}`"),
                None => "it was released".to_owned(),
            }))
        }
        Some((_, stored_etag)) if stored_etag != etag => Err(lost(
            "the etag changed: it was claimed again since".to_owned(),
        )),
        Some(_) => Ok(()),
    }
}

/// Stores a legacy lease's `event_processor_context` on its ownership row, only while that
/// owner and etag are current (EventProcessorHost kept both in one lease blob). The etag is not
/// rotated: the writer still holds the lease.
const FENCE_WITH_CONTEXT: &str = "\
    UPDATE ownership SET event_processor_context = ?7 \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 AND partition_id = ?4 \
      AND owner_id = ?5 AND etag = ?6";

/// Checks, inside `tx`, that (owner, etag) is still the partition's ownership; with `context`
/// (legacy writes) it also stores that context on the ownership row in the same step.
pub(crate) fn fence(
    tx: &Transaction<'_>,
    key: &PartitionKey,
    owner_id: &str,
    etag: &str,
    context: Option<Option<&str>>,
) -> Result<()> {
    let Some(context) = context else {
        return check_owner(tx, key, owner_id, etag);
    };
    let changed = tx.prepare_cached(FENCE_WITH_CONTEXT)?.execute(params![
        key.namespace,
        key.event_hub,
        key.consumer_group,
        key.partition_id,
        owner_id,
        etag,
        context
    ])?;
    if changed == 1 {
        return Ok(());
    }
    check_owner(tx, key, owner_id, etag)?;
    Err(Error::internal(
        "a fenced write changed nothing although its ownership is current",
    ))
}

/// Checks that `ownership` can fence a write to `key`: the same partition, with an owner and
/// an etag. Returns the (owner id, etag) to check inside the write's transaction.
pub(crate) fn validate_fence(
    key: &PartitionKey,
    ownership: &Ownership,
) -> Result<(String, String)> {
    if &ownership.key()? != key {
        return Err(Error::invalid(
            "ownership",
            "names a different partition than the checkpoint",
        ));
    }
    let owner_id = model::owner(ownership.owner_id.as_deref())?
        .ok_or_else(|| Error::invalid("ownership.owner_id", "a fenced write needs an owner"))?;
    match ownership.etag.as_deref() {
        None | Some("") => Err(Error::invalid(
            "ownership.etag",
            "a fenced write needs the etag of the ownership",
        )),
        Some(etag) => Ok((owner_id.to_owned(), etag.to_owned())),
    }
}

//! The sync core: each operation is a plain function over a connection. The async shell in
//! `store/mod.rs` calls these inside `spawn_blocking`, the group commit's leader calls the
//! checkpoint writes and claims, and the blocking API calls them directly. A claim is
//! validated on the caller's thread first (`ClaimBatch`), and only what its transaction needs
//! crosses to the group commit (`PackedClaims`).
//!
//! Every write runs in one `BEGIN IMMEDIATE` transaction, and every argument is validated
//! before that transaction starts.

use std::ops::Range;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
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
struct Claim<'a, R> {
    request: &'a R,
    row: ClaimRow<'a>,
}

/// A claim request: our [`Ownership`] or the official one (feature `azure`), read in place, so
/// that neither is converted into the other on the way in or out.
pub(crate) trait ClaimRequest: Sized {
    /// Namespace, event hub, consumer group and partition id, as the caller spelled them.
    fn names(&self) -> [&str; 4];
    fn owner_id(&self) -> Option<&str>;
    /// The etag presented, as the store wrote it (the official form's quotes taken off).
    fn etag(&self) -> Option<&str>;
    /// The answer to this request when it won: the caller's spelling, the owner written, the
    /// new etag and time.
    fn won(&self, owner: Option<&str>, etag: String, now: OffsetDateTime) -> Self;
}

impl ClaimRequest for Ownership {
    fn names(&self) -> [&str; 4] {
        [
            &self.fully_qualified_namespace,
            &self.event_hub_name,
            &self.consumer_group,
            &self.partition_id,
        ]
    }

    fn owner_id(&self) -> Option<&str> {
        self.owner_id.as_deref()
    }

    fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    fn won(&self, owner: Option<&str>, etag: String, now: OffsetDateTime) -> Self {
        Ownership {
            fully_qualified_namespace: self.fully_qualified_namespace.clone(),
            event_hub_name: self.event_hub_name.clone(),
            consumer_group: self.consumer_group.clone(),
            partition_id: self.partition_id.clone(),
            owner_id: owner.map(ToOwned::to_owned),
            etag: Some(etag),
            last_modified_time: Some(now),
        }
    }
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
pub(crate) struct ClaimBatch<'a, R> {
    groups: Vec<GroupKey>,
    claims: Vec<Claim<'a, R>>,
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

impl<'a, R: ClaimRequest> ClaimBatch<'a, R> {
    /// Validates a whole batch before anything is written.
    pub(crate) fn validate(requests: &'a [R]) -> Result<Self> {
        let mut groups: Vec<(GroupKey, [&str; 3])> = Vec::new();
        let mut claims = Vec::with_capacity(requests.len());
        for request in requests {
            let [ns, hub, group, partition_id] = request.names();
            let same = |(_, seen): &(GroupKey, [&str; 3])| seen == &[ns, hub, group];
            let group = match groups.iter().position(same) {
                Some(i) => i,
                None => {
                    groups.push((GroupKey::new(ns, hub, group)?, [ns, hub, group]));
                    groups.len() - 1
                }
            };
            let partition_id = model::name("partition_id", partition_id)?;
            let owner = model::owner(request.owner_id())?;
            let etag = match request.etag() {
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
    pub(crate) fn results(&self, outcome: ClaimOutcome) -> Vec<R> {
        let won = outcome.etags.iter().filter(|e| e.is_some()).count();
        let mut results = Vec::with_capacity(won);
        for (claim, etag) in self.claims.iter().zip(outcome.etags) {
            let Some(etag) = etag else { continue };
            results.push(
                claim
                    .request
                    .won(claim.row.owner, etag.to_string(), outcome.now),
            );
        }
        results
    }
}

impl PackedClaims {
    /// How many claims the call makes.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Applies the claims inside `tx`, an open write transaction (see [`claim_in`]).
    pub(crate) fn apply(&self, tx: &Transaction<'_>, clock: &dyn Clock) -> Result<ClaimOutcome> {
        let rows = self.rows.iter().map(|r| ClaimRow {
            group: r.group,
            partition_id: &self.text[r.partition_id.clone()],
            owner: r.owner.clone().map(|o| &self.text[o]),
            etag: r.etag.clone().map(|e| &self.text[e]),
        });
        claim_in(tx, clock, &self.groups, rows)
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

/// Claims (or releases) each row on its own inside `tx`, an open write transaction, and returns
/// the time and, per row, the new etag of a claim that won. See CONTRACT §3.1. Each row is
/// decided by `changes() == 1` of one statement.
fn claim_in<'r>(
    tx: &Transaction<'_>,
    clock: &dyn Clock,
    groups: &[GroupKey],
    rows: impl ExactSizeIterator<Item = ClaimRow<'r>>,
) -> Result<ClaimOutcome> {
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
    Ok(ClaimOutcome { now, etags })
}

const LIST_OWNERSHIPS: &str = "\
    SELECT partition_id, owner_id, etag, last_modified FROM ownership \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3";

/// A listed row's partition id, by which a list is put in partition order.
pub(crate) trait Listed {
    fn partition_id(&self) -> &str;
}

impl Listed for Ownership {
    fn partition_id(&self) -> &str {
        &self.partition_id
    }
}

impl Listed for Checkpoint {
    fn partition_id(&self) -> &str {
        &self.partition_id
    }
}

/// Puts `rows` in `model::partition_order`: numeric ids by value (ties by text), then the
/// others by text. Each id is parsed once and only indexes are sorted; then each row moves
/// once, into the returned list (rows come out of the primary key in text order, "10" before
/// "2"). A list is built straight into the caller's model as its rows are read, as plain
/// rusqlite does; the packed text buffer this replaced was no faster once only indexes were
/// sorted (BENCHMARKS.md, eighth pass).
fn in_partition_order<T: Listed>(mut rows: Vec<Option<T>>) -> Vec<T> {
    fn id<T: Listed>(r: &Option<T>) -> &str {
        r.as_ref().map_or("", Listed::partition_id)
    }
    let mut numeric: Vec<(u128, usize)> = Vec::with_capacity(rows.len());
    let mut other: Vec<usize> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match numeric_id(id(r)) {
            Some(n) => numeric.push((n, i)),
            None => other.push(i),
        }
    }
    let text = |i: usize| id(&rows[i]);
    numeric.sort_unstable_by(|(x, a), (y, b)| x.cmp(y).then_with(|| text(*a).cmp(text(*b))));
    other.sort_unstable_by(|a, b| text(*a).cmp(text(*b)));
    let order = numeric.iter().map(|&(_, i)| i).chain(other);
    order
        .filter_map(|i| rows.get_mut(i).and_then(Option::take))
        .collect()
}

/// A text column of a listed row (not NULL).
fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<&'r str> {
    let value = row.get_ref(i)?;
    Ok(value
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, value.data_type(), e.into()))?)
}

/// A text column of a listed row that may be NULL.
fn text_or_null<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> Result<Option<&'r str>> {
    let value = row.get_ref(i)?;
    Ok(value
        .as_str_or_null()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, value.data_type(), e.into()))?)
}

/// One listed ownership row, for the caller to map into the model it returns.
pub(crate) struct OwnershipRow<'a> {
    pub partition_id: &'a str,
    pub owner_id: Option<&'a str>,
    pub etag: &'a str,
    pub last_modified: OffsetDateTime,
}

/// Our model of a listed ownership, with the names spelled as the caller spelled them.
pub(crate) fn ownership_model<'a>(
    (namespace, event_hub, consumer_group): (&'a str, &'a str, &'a str),
) -> impl FnMut(OwnershipRow<'_>) -> Ownership + 'a {
    move |r| Ownership {
        fully_qualified_namespace: namespace.to_owned(),
        event_hub_name: event_hub.to_owned(),
        consumer_group: consumer_group.to_owned(),
        partition_id: r.partition_id.to_owned(),
        owner_id: r.owner_id.map(ToOwned::to_owned),
        etag: Some(r.etag.to_owned()),
        last_modified_time: Some(r.last_modified),
    }
}

/// The ownerships of one (namespace, hub, group), each mapped by `make`, in partition order.
pub(crate) fn list_ownerships<T: Listed>(
    conn: &Connection,
    (namespace, event_hub, consumer_group): (&str, &str, &str),
    mut make: impl FnMut(OwnershipRow<'_>) -> T,
) -> Result<Vec<T>> {
    let g = GroupKey::new(namespace, event_hub, consumer_group)?;
    let mut stmt = conn.prepare_cached(LIST_OWNERSHIPS)?;
    let mut rows = stmt.query(params![g.namespace, g.event_hub, g.consumer_group])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(Some(make(OwnershipRow {
            partition_id: text(r, 0)?,
            owner_id: text_or_null(r, 1)?,
            etag: text(r, 2)?,
            last_modified: from_nanos(r.get(3)?)?,
        })));
    }
    Ok(in_partition_order(out))
}

/// A partition id's numeric value, if it is all ASCII digits (see `model::partition_order`).
fn numeric_id(id: &str) -> Option<u128> {
    if id.bytes().all(|c| c.is_ascii_digit()) {
        id.parse().ok()
    } else {
        None
    }
}

const LIST_CHECKPOINTS: &str = "\
    SELECT partition_id, event_offset, sequence_number FROM checkpoint \
    WHERE namespace = ?1 AND event_hub = ?2 AND consumer_group = ?3 \
      AND (event_offset IS NOT NULL OR sequence_number IS NOT NULL)";

/// One listed checkpoint row.
pub(crate) struct CheckpointRow<'a> {
    pub partition_id: &'a str,
    pub offset: Option<&'a str>,
    pub sequence_number: Option<i64>,
}

/// Our model of a listed checkpoint, with the names spelled as the caller spelled them.
pub(crate) fn checkpoint_model<'a>(
    (namespace, event_hub, consumer_group): (&'a str, &'a str, &'a str),
) -> impl FnMut(CheckpointRow<'_>) -> Checkpoint + 'a {
    move |r| Checkpoint {
        fully_qualified_namespace: namespace.to_owned(),
        event_hub_name: event_hub.to_owned(),
        consumer_group: consumer_group.to_owned(),
        partition_id: r.partition_id.to_owned(),
        offset: r.offset.map(ToOwned::to_owned),
        sequence_number: r.sequence_number,
    }
}

/// The checkpoints of one (namespace, hub, group), each mapped by `make`, in partition order.
/// Legacy StartOfStream placeholders (rows with no position) are not positions and are left
/// out.
pub(crate) fn list_checkpoints<T: Listed>(
    conn: &Connection,
    (namespace, event_hub, consumer_group): (&str, &str, &str),
    mut make: impl FnMut(CheckpointRow<'_>) -> T,
) -> Result<Vec<T>> {
    let g = GroupKey::new(namespace, event_hub, consumer_group)?;
    let mut stmt = conn.prepare_cached(LIST_CHECKPOINTS)?;
    let mut rows = stmt.query(params![g.namespace, g.event_hub, g.consumer_group])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(Some(make(CheckpointRow {
            partition_id: text(r, 0)?,
            offset: text_or_null(r, 1)?,
            sequence_number: r.get(2)?,
        })));
    }
    Ok(in_partition_order(out))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyed_sort_is_the_partition_order() -> Result<()> {
        let ids = [
            "10",
            "2",
            "b",
            "02",
            "1",
            "a",
            "0",
            "007",
            "7",
            "x1",
            "100",
            "99",
            "1a",
            "",
            "00",
            "340282366920938463463374607431768211456",
            "18446744073709551616",
        ];
        let mut expected: Vec<&str> = ids.to_vec();
        expected.sort_by(|a, b| model::partition_order(a, b));
        struct Id(&'static str);
        impl Listed for Id {
            fn partition_id(&self) -> &str {
                self.0
            }
        }
        let sorted: Vec<&str> = in_partition_order(ids.iter().map(|&s| Some(Id(s))).collect())
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(sorted, expected);
        Ok(())
    }
}

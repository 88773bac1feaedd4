//! Plain data: ownerships, checkpoints and their validation. No I/O happens here.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// The longest name, id, owner or etag accepted, in bytes. Event Hubs names are far shorter;
/// the limit keeps a hostile caller from storing megabytes per row.
pub const MAX_NAME_LEN: usize = 1024;

/// The longest offset accepted, in bytes. Offsets are opaque strings; today's are short.
pub const MAX_OFFSET_LEN: usize = 4096;

/// The longest legacy lease `event_processor_context` accepted, in bytes.
pub const MAX_CONTEXT_LEN: usize = 64 * 1024;

/// Who owns a partition, as the official Rust SDK's `models::Ownership` has it.
///
/// `owner_id` of `None` (or `Some("")` on input) means the partition is released. `etag` and
/// `last_modified_time` are set by the store on every successful claim.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Ownership {
    /// The fully qualified namespace, e.g. `myns.servicebus.windows.net` (case-insensitive).
    pub fully_qualified_namespace: String,
    /// The event hub name (case-insensitive).
    pub event_hub_name: String,
    /// The consumer group, e.g. `$Default` (case-insensitive).
    pub consumer_group: String,
    /// The partition id (exact).
    pub partition_id: String,
    /// The owning processor's id; `None` when the partition is released.
    pub owner_id: Option<String>,
    /// The concurrency token of the stored row; a claim must present the current one.
    pub etag: Option<String>,
    /// When the store last wrote this ownership, by the store's UTC clock.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_modified_time: Option<OffsetDateTime>,
}

/// How far a partition has been processed, as the official Rust SDK's `models::Checkpoint`
/// has it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The fully qualified namespace (case-insensitive).
    pub fully_qualified_namespace: String,
    /// The event hub name (case-insensitive).
    pub event_hub_name: String,
    /// The consumer group (case-insensitive).
    pub consumer_group: String,
    /// The partition id (exact).
    pub partition_id: String,
    /// The offset of the last processed event: an opaque string, stored verbatim.
    pub offset: Option<String>,
    /// The sequence number of the last processed event.
    pub sequence_number: Option<i64>,
}

/// The storage key of a partition: the three names folded to ASCII lowercase (they match
/// case-insensitively) and the partition id verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PartitionKey {
    pub namespace: String,
    pub event_hub: String,
    pub consumer_group: String,
    pub partition_id: String,
}

/// The folded (namespace, event hub, consumer group) scope that lists read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupKey {
    pub namespace: String,
    pub event_hub: String,
    pub consumer_group: String,
}

impl GroupKey {
    pub(crate) fn new(namespace: &str, event_hub: &str, consumer_group: &str) -> Result<Self> {
        Ok(GroupKey {
            namespace: name("fully_qualified_namespace", namespace)?.to_ascii_lowercase(),
            event_hub: name("event_hub_name", event_hub)?.to_ascii_lowercase(),
            consumer_group: name("consumer_group", consumer_group)?.to_ascii_lowercase(),
        })
    }

    pub(crate) fn partition(self, partition_id: &str) -> Result<PartitionKey> {
        Ok(PartitionKey {
            namespace: self.namespace,
            event_hub: self.event_hub,
            consumer_group: self.consumer_group,
            partition_id: name("partition_id", partition_id)?.to_owned(),
        })
    }
}

impl PartitionKey {
    pub(crate) fn new(ns: &str, hub: &str, group: &str, partition_id: &str) -> Result<Self> {
        GroupKey::new(ns, hub, group)?.partition(partition_id)
    }
}

/// Checks a required name or id: non-empty, at most [`MAX_NAME_LEN`] bytes, no NUL.
pub(crate) fn name<'a>(field: &'static str, value: &'a str) -> Result<&'a str> {
    if value.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    bounded(field, value, MAX_NAME_LEN)
}

/// Checks an optional text field's length and that it has no NUL.
pub(crate) fn bounded<'a>(field: &'static str, value: &'a str, max: usize) -> Result<&'a str> {
    if value.len() > max {
        return Err(Error::invalid(
            field,
            format!("is {} bytes long; the limit is {max}", value.len()),
        ));
    }
    if value.contains('\0') {
        return Err(Error::invalid(field, "must not contain a NUL character"));
    }
    Ok(value)
}

/// An empty owner id means "released", as every official SDK writes it; store and return it
/// as `None` (the Rust load balancer counts `Some("")` as a live owner).
pub(crate) fn owner(owner_id: Option<&str>) -> Result<Option<&str>> {
    match owner_id {
        None | Some("") => Ok(None),
        Some(o) => bounded("owner_id", o, MAX_NAME_LEN).map(Some),
    }
}

impl Ownership {
    pub(crate) fn key(&self) -> Result<PartitionKey> {
        PartitionKey::new(
            &self.fully_qualified_namespace,
            &self.event_hub_name,
            &self.consumer_group,
            &self.partition_id,
        )
    }
}

impl Checkpoint {
    pub(crate) fn key(&self) -> Result<PartitionKey> {
        PartitionKey::new(
            &self.fully_qualified_namespace,
            &self.event_hub_name,
            &self.consumer_group,
            &self.partition_id,
        )
    }

    /// Checks everything `update_checkpoint` needs before it writes.
    pub(crate) fn validate(&self) -> Result<PartitionKey> {
        let key = self.key()?;
        if self.offset.is_none() && self.sequence_number.is_none() {
            return Err(Error::invalid(
                "checkpoint",
                "names no position: offset and sequence_number are both missing",
            ));
        }
        if let Some(offset) = &self.offset {
            bounded("offset", offset, MAX_OFFSET_LEN)?;
        }
        Ok(key)
    }
}

/// Orders partition ids as people expect: numeric ids by value (`2` before `10`), then the
/// rest by their text.
pub(crate) fn partition_order(a: &str, b: &str) -> std::cmp::Ordering {
    let num = |s: &str| {
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse::<u128>().ok()
        } else {
            None
        }
    };
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ids_sort_by_value_then_text() {
        let mut ids = vec!["10", "b", "2", "a", "02", "1"];
        ids.sort_by(|a, b| partition_order(a, b));
        assert_eq!(ids, ["1", "02", "2", "10", "a", "b"]);
    }

    #[test]
    fn names_fold_case_but_partition_ids_do_not() -> Result<()> {
        let a = PartitionKey::new("NS.example", "Hub", "$Default", "P1")?;
        let b = PartitionKey::new("ns.EXAMPLE", "hub", "$default", "P1")?;
        assert_eq!(a, b);
        assert_ne!(a, PartitionKey::new("ns.example", "hub", "$default", "p1")?);
        Ok(())
    }
}

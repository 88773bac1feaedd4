//! The legacy data: EventProcessorHost's `Lease` and `Checkpoint`. No I/O happens here.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::model::{self, MAX_NAME_LEN, MAX_OFFSET_LEN};

/// The offset EventProcessorHost uses for "the start of the stream": no event processed yet.
pub const START_OF_STREAM: &str = "-1";

/// A partition's lease, as EventProcessorHost's `Lease` has it.
///
/// A lease is the partition's ownership row, the same row the modern API claims: `owner` is its
/// `owner_id`, `token` its etag, and `epoch` its ownership generation. The serialized form uses
/// the snake_case keys of the Python lease blob.
///
/// ```
/// use eventhubs_checkpointstore_sqlite::legacy::Lease;
///
/// let lease = Lease::new("0");
/// assert_eq!((lease.owner, lease.token, lease.epoch), (None, None, 0));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Lease {
    /// The partition id (exact).
    pub partition_id: String,
    /// The host holding the lease; `None` when it is released (or was never acquired).
    pub owner: Option<String>,
    /// The lease's concurrency token: the etag of the stored row as this copy last saw it.
    /// Acquire, renew, release and update present it and rotate it; the copy passed to them
    /// learns the new one. A released lease read from the store has a token too: acquiring it
    /// needs one. `None` only on a lease that was never stored.
    pub token: Option<String>,
    /// The ownership generation: +1 on every acquire (including steals) and whenever a modern
    /// processor takes the partition from another owner or from released. Renewals, releases
    /// and checkpoints keep it; it never decreases.
    pub epoch: i64,
    /// Opaque state the host keeps with the lease. Stored by
    /// [`update_lease`](super::LeaseManager::update_lease) and
    /// [`update_checkpoint`](super::CheckpointManager::update_checkpoint).
    pub event_processor_context: Option<String>,
    /// When the store last wrote the lease (acquire, renew, release, update, or a modern
    /// claim), by the store's clock. Expiry counts from here.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_modified_time: Option<OffsetDateTime>,
}

impl Lease {
    /// A lease for `partition_id` that was never stored: no owner, no token, epoch 0.
    pub fn new(partition_id: impl Into<String>) -> Self {
        Lease {
            partition_id: partition_id.into(),
            ..Lease::default()
        }
    }

    /// True when nobody holds the lease at `now`: it is released, or it was not written for
    /// `lease_duration` or longer.
    ///
    /// ```
    /// use std::time::Duration;
    /// use eventhubs_checkpointstore_sqlite::legacy::Lease;
    /// use time::OffsetDateTime;
    ///
    /// let written = OffsetDateTime::UNIX_EPOCH;
    /// let lease = Lease {
    ///     owner: Some("host-a".into()),
    ///     last_modified_time: Some(written),
    ///     ..Lease::new("0")
    /// };
    /// let ttl = Duration::from_secs(30);
    /// assert!(!lease.is_expired_at(written + Duration::from_secs(29), ttl));
    /// assert!(lease.is_expired_at(written + Duration::from_secs(30), ttl));
    /// ```
    pub fn is_expired_at(&self, now: OffsetDateTime, lease_duration: Duration) -> bool {
        match (&self.owner, self.last_modified_time) {
            (Some(owner), Some(modified)) if !owner.is_empty() => now - modified >= lease_duration,
            _ => true,
        }
    }

    /// The owner and token a fenced operation presents; an error if this copy holds neither.
    pub(crate) fn held(&self) -> Result<(&str, &str)> {
        let owner = model::owner(self.owner.as_deref())?
            .ok_or_else(|| Error::invalid("lease.owner", "the lease is not held: acquire it"))?;
        let token = self.token()?.ok_or_else(|| {
            Error::invalid("lease.token", "the lease has no token: get or acquire it")
        })?;
        Ok((owner, token))
    }

    /// The token, checked; `None` for a missing or empty one.
    pub(crate) fn token(&self) -> Result<Option<&str>> {
        match self.token.as_deref() {
            None | Some("") => Ok(None),
            Some(t) => model::bounded("lease.token", t, MAX_NAME_LEN).map(Some),
        }
    }

    /// The context, checked.
    pub(crate) fn context(&self) -> Result<Option<&str>> {
        self.event_processor_context
            .as_deref()
            .map(|c| model::bounded("lease.event_processor_context", c, model::MAX_CONTEXT_LEN))
            .transpose()
    }
}

/// A partition's position, as EventProcessorHost's `Checkpoint` has it.
///
/// Unlike the modern [`Checkpoint`](crate::Checkpoint) both fields are always present: a new
/// checkpoint is at StartOfStream, offset [`START_OF_STREAM`] (`"-1"`) and sequence number 0.
///
/// Both APIs read and write the same rows. A StartOfStream checkpoint is stored as a
/// placeholder with no position, so the modern API does not list it (it must never make a
/// modern processor skip event 0). A position the modern API wrote with only one of the two
/// fields reads back here with the other at its StartOfStream default; a legacy host that
/// positions by offset then starts from the beginning for a sequence-number-only position,
/// which replays events but never skips one.
///
/// ```
/// use eventhubs_checkpointstore_sqlite::legacy::Checkpoint;
///
/// let fresh = Checkpoint::new("0");
/// assert_eq!((fresh.offset.as_str(), fresh.sequence_number), ("-1", 0));
/// assert!(fresh.is_start_of_stream());
/// assert!(!Checkpoint::at("0", "4096", 42).is_start_of_stream());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The partition id (exact).
    pub partition_id: String,
    /// The offset of the last processed event, or `"-1"` for StartOfStream. Opaque, verbatim.
    pub offset: String,
    /// The sequence number of the last processed event; 0 at StartOfStream.
    pub sequence_number: i64,
}

impl Default for Checkpoint {
    /// An empty partition id at StartOfStream.
    fn default() -> Self {
        Checkpoint::new("")
    }
}

impl Checkpoint {
    /// A checkpoint at StartOfStream: offset `"-1"`, sequence number 0.
    pub fn new(partition_id: impl Into<String>) -> Self {
        Checkpoint {
            partition_id: partition_id.into(),
            offset: START_OF_STREAM.to_owned(),
            sequence_number: 0,
        }
    }

    /// A checkpoint at the given position.
    pub fn at(
        partition_id: impl Into<String>,
        offset: impl Into<String>,
        sequence_number: i64,
    ) -> Self {
        Checkpoint {
            partition_id: partition_id.into(),
            offset: offset.into(),
            sequence_number,
        }
    }

    /// True at StartOfStream (offset `"-1"`): no event processed yet.
    pub fn is_start_of_stream(&self) -> bool {
        self.offset == START_OF_STREAM
    }

    /// The stored form: `(None, None)` for StartOfStream (the placeholder), else the pair.
    pub(crate) fn stored(&self) -> Result<(Option<&str>, Option<i64>)> {
        if self.is_start_of_stream() {
            // EPH writes "no event yet" as seq 0 (Python's PartitionContext as -1). Any other
            // number beside offset "-1" names two different positions: refuse to guess.
            if self.sequence_number > 0 {
                return Err(Error::invalid(
                    "checkpoint.sequence_number",
                    format!(
                        "is {} but offset \"-1\" is StartOfStream; give the event's offset",
                        self.sequence_number
                    ),
                ));
            }
            return Ok((None, None));
        }
        if self.offset.is_empty() {
            return Err(Error::invalid(
                "checkpoint.offset",
                "must not be empty; \"-1\" is StartOfStream",
            ));
        }
        let offset = model::bounded("checkpoint.offset", &self.offset, MAX_OFFSET_LEN)?;
        Ok((Some(offset), Some(self.sequence_number)))
    }

    /// Reads a stored row back; a missing field takes its StartOfStream default.
    pub(crate) fn from_stored(
        partition_id: String,
        offset: Option<String>,
        sequence_number: Option<i64>,
    ) -> Self {
        Checkpoint {
            partition_id,
            offset: offset.unwrap_or_else(|| START_OF_STREAM.to_owned()),
            sequence_number: sequence_number.unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_of_stream_is_stored_as_the_placeholder() -> Result<()> {
        assert_eq!(Checkpoint::new("0").stored()?, (None, None));
        assert_eq!(Checkpoint::at("0", "-1", -1).stored()?, (None, None));
        assert!(Checkpoint::at("0", "-1", 7).stored().is_err());
        assert!(Checkpoint::at("0", "", 7).stored().is_err());
        assert_eq!(
            Checkpoint::at("0", "12", 3).stored()?,
            (Some("12"), Some(3))
        );
        Ok(())
    }

    #[test]
    fn a_lease_without_an_owner_or_time_is_expired() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let ttl = Duration::from_secs(30);
        assert!(Lease::new("0").is_expired_at(now, ttl));
        let released = Lease {
            last_modified_time: Some(now),
            ..Lease::new("0")
        };
        assert!(released.is_expired_at(now, ttl));
        let held = Lease {
            owner: Some("a".into()),
            ..released
        };
        assert!(!held.is_expired_at(now, ttl));
    }
}

//! Feature `azure`: `SqliteCheckpointStore` as an `azure_messaging_eventhubs::CheckpointStore`,
//! so it drops into the official Rust `EventProcessor` in place of the Blob store.
//!
//! The trait impl reads the official models in place and builds them straight from the rows
//! (claims and lists go through the same code as ours, generic over the model; a checkpoint
//! write converts); our [`Error`] becomes an `azure_core::Error` that keeps it as its source.

use azure_core::error::ErrorKind;
use azure_core::http::Etag;
use azure_messaging_eventhubs::models;

use crate::checkpoint_store::CheckpointStore;
use crate::error::Error;
use crate::model::{Checkpoint, Ownership};
use crate::store::ops::{self, ClaimRequest};
use crate::store::SqliteCheckpointStore;

#[cfg_attr(docsrs, doc(cfg(feature = "azure")))]
impl From<models::Ownership> for Ownership {
    /// Lossless: the etag's text is kept as it is, quotes included.
    fn from(o: models::Ownership) -> Self {
        Ownership {
            fully_qualified_namespace: o.fully_qualified_namespace,
            event_hub_name: o.event_hub_name,
            consumer_group: o.consumer_group,
            partition_id: o.partition_id,
            owner_id: o.owner_id,
            etag: o.etag.map(String::from),
            last_modified_time: o.last_modified_time,
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "azure")))]
impl From<Ownership> for models::Ownership {
    /// Lossless: the etag's text becomes an [`Etag`] as it is.
    fn from(o: Ownership) -> Self {
        models::Ownership {
            fully_qualified_namespace: o.fully_qualified_namespace,
            event_hub_name: o.event_hub_name,
            consumer_group: o.consumer_group,
            partition_id: o.partition_id,
            owner_id: o.owner_id,
            etag: o.etag.map(Etag::from),
            last_modified_time: o.last_modified_time,
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "azure")))]
impl From<models::Checkpoint> for Checkpoint {
    fn from(c: models::Checkpoint) -> Self {
        Checkpoint {
            fully_qualified_namespace: c.fully_qualified_namespace,
            event_hub_name: c.event_hub_name,
            consumer_group: c.consumer_group,
            partition_id: c.partition_id,
            offset: c.offset,
            sequence_number: c.sequence_number,
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "azure")))]
impl From<Checkpoint> for models::Checkpoint {
    fn from(c: Checkpoint) -> Self {
        models::Checkpoint {
            fully_qualified_namespace: c.fully_qualified_namespace,
            event_hub_name: c.event_hub_name,
            consumer_group: c.consumer_group,
            partition_id: c.partition_id,
            offset: c.offset,
            sequence_number: c.sequence_number,
        }
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "azure")))]
impl From<Error> for azure_core::Error {
    /// Keeps our error as the source (get it back with `downcast_ref::<Error>()`) and picks the
    /// kind a caller of the official SDK checks for:
    ///
    /// | our variant | `ErrorKind` |
    /// |---|---|
    /// | `InvalidArgument`, `OwnershipLost`, `Conflict`, `Internal` | `Other` (the official stores report an empty name as `Other`) |
    /// | `Busy`, `ReadOnly`, `DiskFull`, `Io` | `Io` |
    /// | `NotADatabase`, `SchemaTooNew` | `DataConversion` (the file cannot be read as a store) |
    fn from(err: Error) -> Self {
        let kind = match &err {
            Error::InvalidArgument { .. }
            | Error::OwnershipLost { .. }
            | Error::Conflict { .. }
            | Error::Internal { .. } => ErrorKind::Other,
            Error::Busy { .. }
            | Error::ReadOnly { .. }
            | Error::DiskFull { .. }
            | Error::Io { .. } => ErrorKind::Io,
            Error::NotADatabase { .. } | Error::SchemaTooNew { .. } => ErrorKind::DataConversion,
        };
        azure_core::Error::new(kind, err)
    }
}

/// Azure Storage accepts an etag in If-Match with or without the quotes of its HTTP form, and
/// the Blob store hands out both (quoted from a claim, bare from a list). Accept both here too:
/// our etags are bare UUIDs, so `"<uuid>"` can only mean `<uuid>`.
fn unquote(etag: &str) -> &str {
    etag.strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or(etag)
}

impl ClaimRequest for models::Ownership {
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
        self.etag.as_ref().map(|e| unquote(e.as_ref()))
    }

    fn won(&self, owner: Option<&str>, etag: String, now: time::OffsetDateTime) -> Self {
        models::Ownership {
            fully_qualified_namespace: self.fully_qualified_namespace.clone(),
            event_hub_name: self.event_hub_name.clone(),
            consumer_group: self.consumer_group.clone(),
            partition_id: self.partition_id.clone(),
            owner_id: owner.map(ToOwned::to_owned),
            etag: Some(Etag::from(etag)),
            last_modified_time: Some(now),
        }
    }
}

impl ops::Listed for models::Ownership {
    fn partition_id(&self) -> &str {
        &self.partition_id
    }
}

impl ops::Listed for models::Checkpoint {
    fn partition_id(&self) -> &str {
        &self.partition_id
    }
}

/// The official trait, by the store's own code: a lost claim is left out of the result
/// (never an error, because `EventProcessor` stops on any claim error), every won claim has a
/// new etag and time, the three names match case-insensitively, and a release reads back as
/// `owner_id: None`. See the crate docs for the differences from the Blob store.
#[cfg_attr(docsrs, doc(cfg(feature = "azure")))]
#[async_trait::async_trait]
impl azure_messaging_eventhubs::CheckpointStore for SqliteCheckpointStore {
    async fn claim_ownership(
        &self,
        ownerships: &[models::Ownership],
    ) -> azure_core::Result<Vec<models::Ownership>> {
        Ok(self.claim(ownerships).await?)
    }

    async fn list_checkpoints(
        &self,
        namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> azure_core::Result<Vec<models::Checkpoint>> {
        let names = [namespace, event_hub_name, consumer_group].map(ToOwned::to_owned);
        let list = self.interact_read(move |_, c| {
            let [ns, hub, group] = &names;
            ops::list_checkpoints(c, (ns, hub, group), |r| models::Checkpoint {
                fully_qualified_namespace: ns.clone(),
                event_hub_name: hub.clone(),
                consumer_group: group.clone(),
                partition_id: r.partition_id.to_owned(),
                offset: r.offset.map(ToOwned::to_owned),
                sequence_number: r.sequence_number,
            })
        });
        Ok(list.await?)
    }

    async fn list_ownerships(
        &self,
        namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
    ) -> azure_core::Result<Vec<models::Ownership>> {
        let names = [namespace, event_hub_name, consumer_group].map(ToOwned::to_owned);
        let list = self.interact_read(move |_, c| {
            let [ns, hub, group] = &names;
            ops::list_ownerships(c, (ns, hub, group), |r| models::Ownership {
                fully_qualified_namespace: ns.clone(),
                event_hub_name: hub.clone(),
                consumer_group: group.clone(),
                partition_id: r.partition_id.to_owned(),
                owner_id: r.owner_id.map(ToOwned::to_owned),
                etag: Some(Etag::from(r.etag)),
                last_modified_time: Some(r.last_modified),
            })
        });
        Ok(list.await?)
    }

    async fn update_checkpoint(&self, checkpoint: models::Checkpoint) -> azure_core::Result<()> {
        Ok(CheckpointStore::update_checkpoint(self, checkpoint.into()).await?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn source() -> crate::error::Source {
        Arc::new(std::io::Error::other("disk says no"))
    }

    #[test]
    fn every_error_maps_to_a_fitting_kind_and_stays_the_source() {
        let cases = [
            (
                Error::invalid("partition_id", "must not be empty"),
                ErrorKind::Other,
            ),
            (
                Error::OwnershipLost {
                    partition_id: "0".into(),
                    reason: "it was released".into(),
                },
                ErrorKind::Other,
            ),
            (Error::internal("a store task panicked"), ErrorKind::Other),
            (
                Error::Busy {
                    path: None,
                    timeout: None,
                    source: source(),
                },
                ErrorKind::Io,
            ),
            (
                Error::ReadOnly {
                    path: None,
                    source: None,
                },
                ErrorKind::Io,
            ),
            (
                Error::DiskFull {
                    path: None,
                    source: source(),
                },
                ErrorKind::Io,
            ),
            (
                Error::Io {
                    path: None,
                    source: source(),
                },
                ErrorKind::Io,
            ),
            (
                Error::NotADatabase {
                    path: None,
                    reason: "wrong application id".into(),
                    source: None,
                },
                ErrorKind::DataConversion,
            ),
            (
                Error::SchemaTooNew {
                    path: None,
                    found: 9,
                    supported: 1,
                },
                ErrorKind::DataConversion,
            ),
        ];
        for (ours, kind) in cases {
            let message = ours.to_string();
            let variant = std::mem::discriminant(&ours);
            let inner_source = std::error::Error::source(&ours).map(ToString::to_string);
            let theirs = azure_core::Error::from(ours);
            assert_eq!(*theirs.kind(), kind, "{message}");
            assert_eq!(theirs.to_string(), message);
            let Some(back) = theirs.downcast_ref::<Error>() else {
                panic!("our error is not the source of {theirs}");
            };
            assert_eq!(std::mem::discriminant(back), variant);
            // The chain goes on below ours.
            assert_eq!(
                std::error::Error::source(back).map(ToString::to_string),
                inner_source
            );
        }
    }

    #[test]
    fn unquote_strips_one_pair_of_quotes_only() {
        assert_eq!(unquote("\"abc\""), "abc");
        assert_eq!(unquote("abc"), "abc");
        assert_eq!(unquote("\"\"abc\"\""), "\"abc\"");
        assert_eq!(unquote("\"abc"), "\"abc");
        assert_eq!(unquote("\""), "\"");
        assert_eq!(unquote("\"\""), "");
    }
}

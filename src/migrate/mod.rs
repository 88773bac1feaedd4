//! Moving positions into and out of a store: the JSON export format ([`export`]),
//! EventProcessorHost lease blobs ([`eph`]) and, with feature `blob`, Azure Blob Storage in
//! the official stores' layout (`blob`).
//!
//! Every import follows one skeleton, shared here: validate every row before the store is
//! touched, then, in one transaction, compare each row with what the store holds (a *plan*),
//! and only when applying, refuse the whole import on a conflict (unless told to overwrite)
//! or write it all and commit. A plan runs in a read transaction and writes nothing; an
//! apply runs in one `BEGIN IMMEDIATE` transaction, so it is all or nothing.
//!
//! This area depends on the core (model, store) and on nothing else of the crate.

#[cfg(feature = "blob")]
pub mod blob;
pub mod eph;
pub mod export;

use rusqlite::{Connection, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What an import does with a row that the store already holds with other contents.
///
/// ```
/// use eventhubs_checkpointstore_sqlite::migrate::OnConflict;
///
/// assert_eq!(OnConflict::default(), OnConflict::Refuse);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Refuse the whole import with [`Error::Conflict`] and write nothing. The default.
    #[default]
    Refuse,
    /// Replace the stored row with the imported one.
    Overwrite,
}

/// Whether an import only plans or also writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Run {
    /// Compare with the store in a read transaction; write nothing.
    Plan,
    /// Compare and write, in one write transaction.
    Apply,
}

/// A plan, as the shared skeleton needs to see it.
pub(crate) trait Plan {
    /// How many rows conflict with the store, and the first of them described; `None` when
    /// none does.
    fn conflicts(&self) -> Option<(usize, String)>;
}

/// The skeleton of every import. `plan` compares the (already validated) rows with the store
/// inside the transaction; when `run` is [`Run::Apply`], a conflict refuses the import (with
/// [`OnConflict::Refuse`]), otherwise `apply` writes the plan and the transaction commits.
pub(crate) fn run<P: Plan>(
    conn: &mut Connection,
    run: Run,
    on_conflict: OnConflict,
    plan: impl FnOnce(&Transaction<'_>) -> Result<P>,
    apply: impl FnOnce(&Transaction<'_>, &P) -> Result<()>,
) -> Result<P> {
    let tx = match run {
        Run::Plan => conn.transaction()?,
        Run::Apply => conn.transaction_with_behavior(TransactionBehavior::Immediate)?,
    };
    let planned = plan(&tx)?;
    if run == Run::Plan {
        // Dropping the read transaction rolls it back; it wrote nothing.
        return Ok(planned);
    }
    if on_conflict == OnConflict::Refuse {
        if let Some((count, first)) = planned.conflicts() {
            return Err(Error::Conflict { count, first });
        }
    }
    apply(&tx, &planned)?;
    tx.commit()?;
    Ok(planned)
}

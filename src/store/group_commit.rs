//! Group commit of checkpoint writes: concurrent writers share one transaction (and so one
//! fsync), without timers.
//!
//! A writer queues its write. If no one is committing, it becomes the *leader*: it takes every
//! queued write, commits them in one `BEGIN IMMEDIATE` transaction, replies to each writer, and
//! repeats while writes keep arriving. Writes that arrive during a commit simply wait for the
//! next one, so a lone writer commits at once and a busy store batches by itself.
//!
//! - Within a batch writes apply in arrival order, so the latest value per partition wins.
//! - A writer hears `Ok` only after the commit that holds its write has returned: with
//!   `synchronous=FULL`, after it is on disk.
//! - A fenced write is checked inside the batch's transaction. If its check fails it alone gets
//!   [`Error::OwnershipLost`] and is not written; the others go on. Any other failure fails the
//!   whole transaction, and every writer of the batch gets the error.
//! - Async writers lead on tokio's blocking pool and lead until the queue is empty. A blocking
//!   writer leads on its own thread only until its own write is done, then hands leadership to
//!   another blocking writer, so no caller's thread is held captive by others' writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::TransactionBehavior;
use tokio::sync::oneshot;

use super::ops;
use super::Inner;
use crate::error::{Error, Result};
use crate::model::PartitionKey;

/// One validated checkpoint write.
#[derive(Debug)]
pub(crate) struct Write {
    pub key: PartitionKey,
    pub offset: Option<String>,
    pub sequence_number: Option<i64>,
    /// Write only while this ownership is the partition's stored one.
    pub fence: Option<Fence>,
}

/// The ownership a fenced write depends on, checked inside the batch's transaction.
#[derive(Debug)]
pub(crate) struct Fence {
    pub owner_id: String,
    pub etag: String,
    /// Legacy writes also store the lease's `event_processor_context` (`Some(None)` clears it).
    pub context: Option<Option<String>>,
}

enum Msg {
    Done(Result<()>),
    /// Sent to a waiting blocking writer: the queue has writes and no leader; lead.
    Lead,
}

enum Reply {
    Async(oneshot::Sender<Result<()>>),
    Blocking(mpsc::Sender<Msg>),
}

impl Reply {
    fn done(self, result: Result<()>) {
        // A writer that stopped waiting (a dropped future) no longer needs its answer.
        let _ = match self {
            Reply::Async(tx) => tx.send(result).is_ok(),
            Reply::Blocking(tx) => tx.send(Msg::Done(result)).is_ok(),
        };
    }
}

struct Pending {
    id: u64,
    write: Write,
    reply: Reply,
}

#[derive(Default)]
struct Queue {
    pending: Vec<Pending>,
    leading: bool,
    next_id: u64,
}

/// The queue of checkpoint writes waiting for a commit, and whether someone is committing.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
    writes: AtomicU64,
    commits: AtomicU64,
}

/// How many checkpoint writes this store committed, in how many transactions. Their ratio is
/// the average group-commit batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Checkpoint writes committed (fenced writes that lost their ownership are not counted).
    pub writes: u64,
    /// Transactions that committed them.
    pub commits: u64,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats {
            writes: self.writes.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // No code panics while holding this lock; recover the queue rather than propagate.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a write; returns its id and whether the caller must now lead.
    fn enqueue(&self, write: Write, reply: Reply) -> (u64, bool) {
        let mut q = self.lock();
        let id = q.next_id;
        q.next_id += 1;
        q.pending.push(Pending { id, write, reply });
        let lead = !q.leading;
        q.leading = true;
        (id, lead)
    }
}

/// Writes `write` in the next group commit and resolves after that commit.
pub(crate) async fn submit(inner: &Arc<Inner>, write: Write) -> Result<()> {
    let (tx, rx) = oneshot::channel();
    let (_, must_lead) = inner.group.enqueue(write, Reply::Async(tx));
    if must_lead {
        let inner = Arc::clone(inner);
        let span = tracing::Span::current();
        // The JoinHandle is not awaited: the answer comes through `rx`, and a leader that
        // panicked answers everyone through its guard.
        drop(tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            lead(&inner, None);
        }));
    }
    rx.await
        .unwrap_or_else(|_| Err(Error::internal("the checkpoint committer stopped")))
}

/// Like [`submit`], on the calling thread.
pub(crate) fn submit_blocking(inner: &Arc<Inner>, write: Write) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    let (id, mut lead_now) = inner.group.enqueue(write, Reply::Blocking(tx));
    loop {
        if lead_now {
            lead(inner, Some(id));
        }
        match rx.recv() {
            Ok(Msg::Done(result)) => return result,
            Ok(Msg::Lead) => lead_now = true,
            Err(_) => return Err(Error::internal("the checkpoint committer stopped")),
        }
    }
}

/// Commits batches until the queue is empty or, with `until`, until that write is committed
/// and leadership could be handed to a waiting blocking writer.
fn lead(inner: &Inner, mut until: Option<u64>) {
    let mut guard = FailPendingOnPanic(inner, true);
    loop {
        let batch = {
            let mut q = inner.group.lock();
            if q.pending.is_empty() {
                q.leading = false;
                break;
            }
            // A write leaves the queue only into a batch this leader commits, so "not queued"
            // means "committed".
            if until.is_some_and(|id| q.pending.iter().all(|p| p.id != id)) {
                if hand_off(&q) {
                    break;
                }
                until = None;
            }
            std::mem::take(&mut q.pending)
        };
        commit(inner, batch);
    }
    guard.1 = false;
}

/// Asks the first waiting blocking writer to lead; false if there is none.
fn hand_off(q: &Queue) -> bool {
    q.pending.iter().any(|p| match &p.reply {
        Reply::Blocking(tx) => tx.send(Msg::Lead).is_ok(),
        Reply::Async(_) => false,
    })
}

/// Commits one batch in one transaction and answers every writer in it.
fn commit(inner: &Inner, batch: Vec<Pending>) {
    let mut fenced_out: Vec<Option<Error>> = Vec::with_capacity(batch.len());
    let outcome = (|| -> Result<()> {
        let mut conn = inner.pool.get()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for p in &batch {
            let w = &p.write;
            if let Some(f) = &w.fence {
                let context = f.context.as_ref().map(Option::as_deref);
                match ops::fence(&tx, &w.key, &f.owner_id, &f.etag, context) {
                    Ok(()) => {}
                    Err(lost @ Error::OwnershipLost { .. }) => {
                        fenced_out.push(Some(lost));
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            ops::write_checkpoint(&tx, &w.key, w.offset.as_deref(), w.sequence_number)?;
            fenced_out.push(None);
        }
        tx.commit()?;
        let written = fenced_out.iter().filter(|lost| lost.is_none()).count();
        inner
            .group
            .writes
            .fetch_add(written as u64, Ordering::Relaxed);
        inner.group.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })()
    .map_err(|e| e.at(inner.path.as_deref()));
    fenced_out.resize_with(batch.len(), || None);
    for (p, lost) in batch.into_iter().zip(fenced_out) {
        p.reply.done(match lost {
            Some(lost) => Err(lost),
            None => outcome.clone(),
        });
    }
}

/// If a leader unwinds, no writer may wait forever: fail what is queued and step down.
/// Disarmed (`.1 = false`) when the leader returns normally.
struct FailPendingOnPanic<'a>(&'a Inner, bool);

impl Drop for FailPendingOnPanic<'_> {
    fn drop(&mut self) {
        if !self.1 {
            return;
        }
        let mut q = self.0.group.lock();
        for p in q.pending.drain(..) {
            p.reply
                .done(Err(Error::internal("the checkpoint committer panicked")));
        }
        q.leading = false;
    }
}

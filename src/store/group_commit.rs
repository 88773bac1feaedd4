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
//! - Async writers never lead: the store's *committer thread* (started on the first async write,
//!   gone with the store) leads for them until the queue is empty. A blocking writer leads on its
//!   own thread only until its own write is done, then hands leadership to another blocking
//!   writer or to the committer thread, so no caller's thread is held captive by others' writes.
//!
//! One write at a time (a processor checkpointing in a loop) is the latency case. Two
//! cross-thread wake-ups per write (to the committer, and back to the writer's task) cost more
//! than a whole write with `synchronous=NORMAL` on a virtual machine, so both sides stay awake
//! for the options' `spin_wait`: the committer spins after its queue empties, and an async
//! writer alone in the queue polls for its answer, yielding to the runtime, before its task
//! sleeps. In a busy store the writers find a leader at work and sleep at once.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

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
    signal: Arc<Signal>,
}

/// Shared with the committer thread, which outlives no store: it holds only a weak handle.
#[derive(Default)]
struct Signal {
    /// Set with leadership handed to the committer thread.
    work: AtomicBool,
    /// Set when the store is dropped.
    closed: AtomicBool,
    thread: Mutex<Option<std::thread::Thread>>,
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.signal.closed.store(true, Ordering::Release);
        if let Some(thread) = &*self.signal.thread.lock().unwrap_or_else(|e| e.into_inner()) {
            thread.unpark();
        }
    }
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
    let answer = if must_lead {
        start_committer(inner);
        // Alone in the queue, this write is committed at once: wait for it awake.
        wait_awake(rx, inner.options.spin_wait()).await
    } else {
        rx.await
    };
    answer.unwrap_or_else(|_| Err(Error::internal("the checkpoint committer stopped")))
}

/// Like [`submit`], on the calling thread.
pub(crate) fn submit_blocking(inner: &Arc<Inner>, write: Write) -> Result<()> {
    let (tx, rx) = mpsc::channel();
    let (id, mut lead_now) = inner.group.enqueue(write, Reply::Blocking(tx));
    loop {
        if lead_now && lead(inner, Some(id)) {
            start_committer(inner);
        }
        match rx.recv() {
            Ok(Msg::Done(result)) => return result,
            Ok(Msg::Lead) => lead_now = true,
            Err(_) => return Err(Error::internal("the checkpoint committer stopped")),
        }
    }
}

/// Hands leadership to the store's committer thread, starting the thread on first use. If it
/// cannot be started, the queued writes fail with [`Error::Internal`] (nothing was written)
/// and the next write tries again.
fn start_committer(inner: &Arc<Inner>) {
    let signal = &inner.group.signal;
    signal.work.store(true, Ordering::Release);
    let mut thread = signal.thread.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(thread) = &*thread {
        thread.unpark();
        return;
    }
    let (store, signal, spin) = (
        Arc::downgrade(inner),
        Arc::clone(signal),
        inner.options.spin_wait(),
    );
    match std::thread::Builder::new()
        .name("eh-checkpoint-committer".into())
        .spawn(move || run_committer(&signal, &store, spin))
    {
        Ok(handle) => *thread = Some(handle.thread().clone()),
        Err(e) => {
            drop(thread);
            inner.group.signal.work.store(false, Ordering::Relaxed);
            let error = Error::Internal {
                message: "cannot start the checkpoint committer thread".to_owned(),
                source: Some(Arc::new(e)),
            };
            fail_queued(inner, &error);
        }
    }
}

/// The committer thread: leads whenever a writer hands it the queue, until the store is
/// dropped. It holds the store only while it commits.
fn run_committer(signal: &Signal, store: &Weak<Inner>, spin: Duration) {
    loop {
        if signal.work.swap(false, Ordering::Acquire) {
            let Some(inner) = store.upgrade() else { return };
            // A panic is answered by the leader's guard; the thread goes on serving.
            let _ = std::panic::catch_unwind(AssertUnwindSafe(|| lead(&inner, None)));
            continue;
        }
        if signal.closed.load(Ordering::Acquire) {
            return;
        }
        let deadline = Instant::now() + spin;
        while !signal.work.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::hint::spin_loop();
        }
        if !signal.work.load(Ordering::Acquire) {
            // An `unpark` before this `park` makes it return at once: no wake-up is lost.
            std::thread::park();
        }
    }
}

/// Awaits `answer`, which another thread completes. For the first `bound` its task wakes itself
/// after each poll, yielding to the runtime: the worker thread is neither blocked nor put to
/// sleep, so an answer that comes soon needs no wake-up. After that it waits as usual.
pub(super) async fn wait_awake<F: Future + Unpin>(mut answer: F, bound: Duration) -> F::Output {
    let deadline = Instant::now() + bound;
    std::future::poll_fn(|cx| {
        let poll = Pin::new(&mut answer).poll(cx);
        if poll.is_pending() && Instant::now() < deadline {
            cx.waker().wake_by_ref();
        }
        poll
    })
    .await
}

/// Commits batches until the queue is empty (and steps down) or, with `until`, until that
/// write is committed; then it hands leadership to a waiting blocking writer if there is one.
/// Returns true if writes are still queued and no one took them: leadership is still taken,
/// and the caller must hand it on.
fn lead(inner: &Inner, until: Option<u64>) -> bool {
    let mut guard = FailPendingOnPanic(inner, true);
    let needs_leader = loop {
        let batch = {
            let mut q = inner.group.lock();
            if q.pending.is_empty() {
                q.leading = false;
                break false;
            }
            // A write leaves the queue only into a batch this leader commits, so "not queued"
            // means "committed".
            if until.is_some_and(|id| q.pending.iter().all(|p| p.id != id)) {
                break !hand_off(&q);
            }
            std::mem::take(&mut q.pending)
        };
        commit(inner, batch);
    };
    guard.1 = false;
    needs_leader
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
        let mut conn = inner.checkout()?;
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
        fail_queued(
            self.0,
            &Error::internal("the checkpoint committer panicked"),
        );
    }
}

/// Answers every queued write with `error` and leaves the queue without a leader.
fn fail_queued(inner: &Inner, error: &Error) {
    let mut q = inner.group.lock();
    for p in q.pending.drain(..) {
        p.reply.done(Err(error.clone()));
    }
    q.leading = false;
}

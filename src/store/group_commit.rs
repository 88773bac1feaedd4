//! Group commit of checkpoint writes and claims: concurrent writers share one transaction (and
//! so one fsync), without timers.
//!
//! A writer queues its write (a checkpoint, or a whole `claim_ownership` call). If no one is committing, it becomes the *leader*: it takes every
//! queued write, commits them in one `BEGIN IMMEDIATE` transaction, replies to each writer, and
//! repeats while writes keep arriving. Writes that arrive during a commit simply wait for the
//! next one, so a lone writer commits at once and a busy store batches by itself.
//!
//! - Within a batch writes apply in arrival order, so the latest value per partition wins.
//! - A claim call is applied whole, at its place in the batch: each of its claims is decided on
//!   its own by `changes() == 1` of one statement, as in a transaction of its own, and its time
//!   is read from the clock inside the transaction, when its turn comes.
//! - The leader holds the store's writer lock (`wait.rs`) for each batch, so the group commit
//!   never meets a lock of another writer of this store.
//! - A writer hears `Ok` only after the commit that holds its write has returned: at
//!   `Durability::Full`, after an fsync of the `-wal` that began after that commit
//!   (`durable.rs`), outside the batch's locks, so other processes' writers commit meanwhile.
//!   With no more writes queued the leader makes it itself; with more queued it hands the
//!   batch to the store's *syncer thread* (started on first use, gone with the store) and
//!   commits the next batch while the fsync runs; one fsync of the syncer answers every batch
//!   handed to it before it began.
//! - A fenced write is checked inside the batch's transaction. If its check fails it alone gets
//!   [`Error::OwnershipLost`] and is not written; the others go on. Any other failure fails the
//!   whole transaction, and every writer of the batch gets the error.
//! - An async writer leads only alone, in place: on a multi-thread runtime, with the queue
//!   empty, commits too long to spin for (`Counters::spin`, e.g. an fsync each) and no other
//!   process contending, it yields once (so the writes its own task joins with it queue behind
//!   it), then commits on its own thread in `block_in_place` until its own write is done, like a
//!   blocking writer. Otherwise the store's *committer thread* (started on first use, gone with
//!   the store) leads for async writers until the queue is empty. A blocking writer leads on its
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
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use rusqlite::TransactionBehavior;
use tokio::sync::oneshot;

use super::ops::{self, ClaimOutcome, PackedClaims};
use super::{wait, Inner};
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

/// What the group commit does for one writer.
pub(crate) enum Job {
    Checkpoint(Write),
    /// One `claim_ownership` call.
    Claims(PackedClaims),
}

/// A committed job's answer.
pub(crate) enum Answer {
    Written,
    Claimed(ClaimOutcome),
}

enum Msg {
    /// The answer to the job with this id.
    Done(u64, Result<Answer>),
    /// Sent to a waiting blocking writer: the queue has writes and no leader; lead.
    Lead,
}

enum Reply {
    Async(oneshot::Sender<Result<Answer>>),
    Blocking(mpsc::Sender<Msg>),
}

impl Reply {
    fn done(self, id: u64, result: Result<Answer>) {
        // A writer that stopped waiting (a dropped future) no longer needs its answer.
        let _ = match self {
            Reply::Async(tx) => tx.send(result).is_ok(),
            Reply::Blocking(tx) => tx.send(Msg::Done(id, result)).is_ok(),
        };
    }
}

struct Pending {
    id: u64,
    job: Job,
    reply: Reply,
    /// When it was queued: its busy timeout runs from here.
    since: Instant,
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
    claims: AtomicU64,
    signal: Arc<Signal>,
    syncs: Arc<Syncs>,
    watch: Arc<Watch>,
}

/// Batches committed at `Durability::Full` but not yet on disk, for the store's syncer thread:
/// a leader with more writes queued hands its batch's fsync and answers here and commits the
/// next batch meanwhile; one fsync puts every batch handed so far on disk.
#[derive(Default)]
struct Syncs {
    state: Mutex<SyncState>,
    ready: Condvar,
}

#[derive(Default)]
struct SyncState {
    batches: Vec<Committed>,
    /// The syncer thread runs (it is started on first use, and ends with the store).
    running: bool,
    /// Set when the store is dropped.
    closed: bool,
}

/// A committed batch: each writer with its answer, and when its commit began.
struct Committed {
    answered: Vec<(Pending, Result<Answer>)>,
    started: Instant,
}

impl Syncs {
    fn lock(&self) -> MutexGuard<'_, SyncState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
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
        self.syncs.lock().closed = true;
        self.syncs.ready.notify_all();
        self.watch.close();
        self.signal.closed.store(true, Ordering::Release);
        if let Some(thread) = &*self.signal.thread.lock().unwrap_or_else(|e| e.into_inner()) {
            thread.unpark();
        }
    }
}

/// How many checkpoint writes and claim calls this store committed, in how many
/// transactions, and how often its connections waited for a lock. `writes / commits` is the
/// average group-commit batch.
///
/// `busy_waits` counts SQLite lock waits, which only another process (or another store on the
/// same file) can cause: the writers of one store queue in process instead, which
/// `lock_waits` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitStats {
    /// Checkpoint writes committed (fenced writes that lost their ownership are not counted).
    pub writes: u64,
    /// Transactions that committed them.
    pub commits: u64,
    /// `claim_ownership` calls committed (each in the transaction of its group-commit batch).
    pub claims: u64,
    /// Times a connection of this store met a SQLite lock held by another connection and waited
    /// (calls of its busy handler).
    pub busy_waits: u64,
    /// Times a writer of this store queued in process behind another writer of this store.
    pub lock_waits: u64,
    /// Times a writer of this store waited for a writer of another process (or of another store
    /// of this process on the same file) in the cross-process queue before its transaction. On
    /// Linux, on a local file system, writers of this crate queue there rather than on SQLite's
    /// lock; elsewhere they meet in the busy handler (`busy_waits`).
    pub gate_waits: u64,
    /// Times the store synced its `-wal` itself after a write, outside its locks: at
    /// [`Durability::Full`](crate::Durability::Full) on a file, at most once per transaction of
    /// the group commit (one fsync may cover several) and once per other write operation;
    /// otherwise zero.
    pub wal_syncs: u64,
    /// The time those syncs took, in all: `wal_sync_time / wal_syncs` is this store's mean
    /// fsync of its `-wal`, the part of a durable write's wait that is the disk's.
    pub wal_sync_time: Duration,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// The store's figures; `wal` is its `-wal` sync (`None` unless at `Durability::Full` on a
    /// file).
    pub(crate) fn stats(
        &self,
        counters: &wait::Counters,
        wal: Option<&super::durable::WalSync>,
    ) -> CommitStats {
        CommitStats {
            writes: self.writes.load(Ordering::Relaxed),
            commits: self.commits.load(Ordering::Relaxed),
            claims: self.claims.load(Ordering::Relaxed),
            busy_waits: counters.busy_waits.load(Ordering::Relaxed),
            gate_waits: counters.gate_waits.load(Ordering::Relaxed),
            lock_waits: counters.lock_waits.load(Ordering::Relaxed),
            wal_syncs: wal.map_or(0, super::durable::WalSync::syncs),
            wal_sync_time: wal.map_or(Duration::ZERO, super::durable::WalSync::sync_time),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // No code panics while holding this lock; recover the queue rather than propagate.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues jobs together (none can be committed before the last is queued), all answered
    /// on `reply`; returns their ids and whether the caller must now lead.
    fn enqueue_all(&self, jobs: Vec<Job>, reply: &mpsc::Sender<Msg>) -> (Vec<u64>, bool) {
        let mut q = self.lock();
        let mut ids = Vec::with_capacity(jobs.len());
        for job in jobs {
            let id = q.next_id;
            q.next_id += 1;
            q.pending.push(Pending {
                id,
                job,
                reply: Reply::Blocking(reply.clone()),
                since: Instant::now(),
            });
            ids.push(id);
        }
        let lead = !q.leading;
        q.leading = true;
        (ids, lead)
    }

    /// Queues a job; returns its id and whether the caller must now lead.
    fn enqueue(&self, job: Job, reply: Reply) -> (u64, bool) {
        let mut q = self.lock();
        let id = q.next_id;
        q.next_id += 1;
        q.pending.push(Pending {
            id,
            job,
            reply,
            since: Instant::now(),
        });
        let lead = !q.leading;
        q.leading = true;
        (id, lead)
    }
}

/// Writes `write` in the next group commit and resolves after that commit.
pub(crate) async fn submit(inner: &Arc<Inner>, write: Write) -> Result<()> {
    submit_job(inner, Job::Checkpoint(write)).await.map(|_| ())
}

/// Applies a claim call in the next group commit and resolves after that commit.
pub(crate) async fn submit_claims(
    inner: &Arc<Inner>,
    claims: PackedClaims,
) -> Result<ClaimOutcome> {
    claimed(submit_job(inner, Job::Claims(claims)).await)
}

/// Like [`submit_claims`], on the calling thread.
pub(crate) fn submit_claims_blocking(
    inner: &Arc<Inner>,
    claims: PackedClaims,
) -> Result<ClaimOutcome> {
    claimed(submit_job_blocking(inner, Job::Claims(claims)))
}

fn claimed(answer: Result<Answer>) -> Result<ClaimOutcome> {
    match answer? {
        Answer::Claimed(outcome) => Ok(outcome),
        Answer::Written => Err(Error::internal(
            "a claim was answered as a checkpoint write",
        )),
    }
}

async fn submit_job(inner: &Arc<Inner>, job: Job) -> Result<Answer> {
    let (tx, rx) = oneshot::channel();
    // A big claim call takes longer than the spin wait: spinning for it would only take a core
    // from the committer.
    let short = match &job {
        Job::Checkpoint(_) => true,
        Job::Claims(claims) => claims.len() <= SHORT_CLAIM,
    };
    let (id, must_lead) = inner.group.enqueue(job, Reply::Async(tx));
    let spin = inner.counters.spin(inner.options.spin_wait());
    let answer = if must_lead && spin.is_zero() && !inner.counters.contended() && super::in_place()
    {
        // Alone in the queue, on a multi-thread runtime, where spinning does not pay (commits
        // that wait for an fsync): commit it on this thread, as a blocking writer does, rather
        // than wake the committer and be woken by it; what arrives meanwhile goes to the
        // committer. Where commits are short, the committer and the writer wait for each other
        // awake, which costs less: in place there, a lone writer at NORMAL took 33-38 µs a
        // write against 16-17 (`load --writers 1`), and 32 concurrent writers halved their
        // throughput (each `block_in_place` moves the worker to another thread). Where another
        // process contends, the commit may wait up to the busy timeout, which the caller's
        // task must not spend blocked (and 4 processes' claim p99 at NORMAL went from 1.9 to
        // 5.5-7.4 ms in `steal`). One yield first: the futures the caller's task joins with
        // this one queue behind it and share its commit. A panic has failed the queue and
        // stepped down (`FailPendingOnPanic`).
        let unled = HandOnDrop(inner);
        tokio::task::yield_now().await;
        std::mem::forget(unled);
        let hand_on = tokio::task::block_in_place(|| {
            std::panic::catch_unwind(AssertUnwindSafe(|| lead(inner, Some(id)))).unwrap_or(false)
        });
        if hand_on {
            start_committer(inner);
        }
        rx.await
    } else if must_lead && short && !spin.is_zero() {
        start_committer(inner);
        // Alone in the queue, this write is committed at once: wait for it awake.
        wait_awake(rx, spin).await
    } else {
        if must_lead {
            start_committer(inner);
        }
        rx.await
    };
    answer.unwrap_or_else(|_| Err(Error::internal("the checkpoint committer stopped")))
}

/// Holds leadership taken by an async writer that is about to lead in place: if its future is
/// dropped first, the committer thread leads instead (`mem::forget` disarms it).
struct HandOnDrop<'a>(&'a Arc<Inner>);

impl Drop for HandOnDrop<'_> {
    fn drop(&mut self) {
        start_committer(self.0);
    }
}

/// The most claims in one call that an async caller waits for awake (see `wait_awake`).
const SHORT_CLAIM: usize = 32;

/// Like [`submit`], on the calling thread.
pub(crate) fn submit_blocking(inner: &Arc<Inner>, write: Write) -> Result<()> {
    submit_job_blocking(inner, Job::Checkpoint(write)).map(|_| ())
}

fn submit_job_blocking(inner: &Arc<Inner>, job: Job) -> Result<Answer> {
    let (tx, rx) = mpsc::channel();
    let (id, mut lead_now) = inner.group.enqueue(job, Reply::Blocking(tx));
    loop {
        if lead_now && lead(inner, Some(id)) {
            start_committer(inner);
        }
        match rx.recv() {
            Ok(Msg::Done(_, result)) => return result,
            Ok(Msg::Lead) => lead_now = true,
            Err(_) => return Err(Error::internal("the checkpoint committer stopped")),
        }
    }
}

/// Like [`submit_blocking`] for several writes queued at once, so that they share a commit;
/// one answer per write, in order.
pub(crate) fn submit_all_blocking(inner: &Arc<Inner>, writes: Vec<Write>) -> Vec<Result<()>> {
    if writes.is_empty() {
        return Vec::new();
    }
    let (tx, rx) = mpsc::channel();
    let jobs = writes.into_iter().map(Job::Checkpoint).collect();
    let (ids, mut lead_now) = inner.group.enqueue_all(jobs, &tx);
    drop(tx);
    let (first, last) = (ids[0], ids[ids.len() - 1]);
    let mut answers: Vec<Option<Result<()>>> = ids.iter().map(|_| None).collect();
    let mut left = ids.len();
    while left > 0 {
        // Leading until the last of them is committed commits them all: a batch takes the
        // whole queue.
        if lead_now && lead(inner, Some(last)) {
            start_committer(inner);
        }
        lead_now = false;
        match rx.recv() {
            Ok(Msg::Done(id, result)) => {
                if let Some(slot) = id
                    .checked_sub(first)
                    .and_then(|i| answers.get_mut(i as usize))
                {
                    if slot.is_none() {
                        left -= 1;
                    }
                    *slot = Some(result.map(|_| ()));
                }
            }
            Ok(Msg::Lead) => lead_now = true,
            Err(_) => break,
        }
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(Error::internal("the checkpoint committer stopped"))))
        .collect()
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
    let (store, signal, counters, spin) = (
        Arc::downgrade(inner),
        Arc::clone(signal),
        Arc::clone(&inner.counters),
        inner.options.spin_wait(),
    );
    match std::thread::Builder::new()
        .name("eh-checkpoint-committer".into())
        .spawn(move || run_committer(&signal, &store, &counters, spin))
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
/// dropped. It holds the store only while it commits. It spins after its queue empties while
/// spinning pays (`Counters::spin`: commits short, no other process contending).
fn run_committer(signal: &Signal, store: &Weak<Inner>, counters: &wait::Counters, spin: Duration) {
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
        let spin = counters.spin(spin);
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
fn lead(inner: &Arc<Inner>, until: Option<u64>) -> bool {
    let mut guard = FailPendingOnPanic(inner, true);
    let mut first = true;
    let needs_leader = loop {
        {
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
        }
        // Another process waits for the lock this leader just released: let it have a turn
        // before taking the lock again (wait.rs, HANDOFF_PAUSE).
        if !first && inner.counters.contended() {
            std::thread::sleep(wait::HANDOFF_PAUSE);
        }
        first = false;
        commit(inner, until.is_none());
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

/// Commits one batch in one transaction, holding the store's writer lock, and answers every
/// writer in it. The batch is every write queued once the transaction has its lock, so writes
/// that arrived while it waited for another process go in too.
///
/// The `committer` thread, which no caller waits on, waits for another process's turn in the
/// kernel's queue itself (`wait::GateWait::Watched`), woken by the kernel when the gate is
/// released: one wake-up fewer per turn than through the gate's helper thread (4 processes'
/// claim p99 at NORMAL 1.3-1.5 ms against 1.5-2.9 in `steal`). Meanwhile the store's watch
/// thread ([`Watch`]) answers [`Error::Busy`] to each queued writer whose busy timeout has
/// run out, as a bounded wait would have.
fn commit(inner: &Arc<Inner>, committer: bool) {
    let mut batch: Vec<Pending> = Vec::new();
    // Each job's own answer, valid only if the transaction commits.
    let mut answers: Vec<Result<Answer>> = Vec::new();
    let timeout = inner.options.busy_timeout();
    let started = Instant::now();
    // Whether the transaction took the batch: it may be empty (every queued writer timed out
    // while the committer waited for the gate), and what is queued after it is not in it.
    let mut taken = false;
    let body = |left: Duration| {
        let mut conn = inner.pool.get_timeout(left.max(Duration::from_millis(1)))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        batch = std::mem::take(&mut inner.group.lock().pending);
        taken = true;
        answers.reserve(batch.len());
        let (mut written, mut claims, mut checkpoints) = (0u64, 0u64, false);
        for p in &batch {
            match &p.job {
                Job::Checkpoint(w) => {
                    checkpoints = true;
                    if let Some(f) = &w.fence {
                        let context = f.context.as_ref().map(Option::as_deref);
                        match ops::fence(&tx, &w.key, &f.owner_id, &f.etag, context) {
                            Ok(()) => {}
                            Err(lost @ Error::OwnershipLost { .. }) => {
                                answers.push(Err(lost));
                                continue;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    ops::write_checkpoint(&tx, &w.key, w.offset.as_deref(), w.sequence_number)?;
                    written += 1;
                    answers.push(Ok(Answer::Written));
                }
                Job::Claims(c) => {
                    answers.push(Ok(Answer::Claimed(c.apply(&tx, inner.clock())?)));
                    claims += 1;
                }
            }
        }
        tx.commit()?;
        let group = &inner.group;
        group.writes.fetch_add(written, Ordering::Relaxed);
        group
            .commits
            .fetch_add(u64::from(checkpoints), Ordering::Relaxed);
        group.claims.fetch_add(claims, Ordering::Relaxed);
        Ok(())
    };
    let (counters, writer) = (&inner.counters, Some(&inner.writer));
    let outcome = if committer && inner.writer.has_gate() {
        let watch = &inner.group.watch;
        let start = || watch.start(inner);
        let stop = || watch.stop();
        let how = wait::GateWait::Watched {
            start: &start,
            stop: &stop,
        };
        wait::scope_with(counters, writer, how, timeout, body)
    } else {
        wait::scope_with(counters, writer, wait::GateWait::Bounded, timeout, body)
    }
    .map_err(|e| e.at(inner.path.as_deref()).waited(timeout));
    if !taken {
        // The transaction failed before it took the batch: the queued writes get its error.
        batch = std::mem::take(&mut inner.group.lock().pending);
    }
    let mut answers = answers.into_iter();
    let answered: Vec<(Pending, Result<Answer>)> = batch
        .into_iter()
        .map(|p| {
            let answer = match (&outcome, answers.next()) {
                (Ok(()), Some(answer)) => answer,
                (Err(e), _) => Err(e.clone()),
                (Ok(()), None) => Err(Error::internal("a committed job has no answer")),
            };
            (p, answer)
        })
        .collect();
    if outcome.is_err() || inner.wal_sync.is_none() {
        if outcome.is_ok() {
            inner.counters.note_commit(started.elapsed());
        }
        answer_all(answered, Ok(()));
        return;
    }
    // At `Durability::Full` the batch goes to disk before its writers hear of it, outside
    // every lock: the next writer, of this process or another, commits while this fsync runs
    // (`durable.rs`). With more writes queued, the syncer thread does it, so that the next
    // batch commits meanwhile too.
    let committed = Committed { answered, started };
    let committed = if inner.group.lock().pending.is_empty() {
        Some(committed)
    } else {
        hand_to_syncer(inner, committed)
    };
    if let Some(Committed { answered, started }) = committed {
        let synced = inner.sync_wal();
        if synced.is_ok() {
            // The time a writer waits for its answer, fsync included: what the spin wait is for.
            inner.counters.note_commit(started.elapsed());
        }
        answer_all(answered, synced);
    }
}

/// Answers every writer; `synced` is whether its commit is on disk (an error replaces each
/// successful answer: the write is committed but may not be on disk).
fn answer_all(answered: Vec<(Pending, Result<Answer>)>, synced: Result<()>) {
    for (p, answer) in answered {
        let answer = match (&synced, answer) {
            (Err(e), Ok(_)) => Err(e.clone()),
            (_, answer) => answer,
        };
        p.reply.done(p.id, answer);
    }
}

/// Gives `committed` to the store's syncer thread, starting it on first use; gives it back if
/// the thread cannot be started (or the store is closing), for the caller to sync.
fn hand_to_syncer(inner: &Inner, committed: Committed) -> Option<Committed> {
    let syncs = &inner.group.syncs;
    let mut state = syncs.lock();
    if state.closed {
        return Some(committed);
    }
    if !state.running {
        let Some(wal) = inner.wal_sync.clone() else {
            return Some(committed);
        };
        let (syncs_for_thread, counters) = (Arc::clone(syncs), Arc::clone(&inner.counters));
        let started = std::thread::Builder::new()
            .name("eh-checkpoint-sync".into())
            .spawn(move || run_syncer(&syncs_for_thread, &wal, &counters));
        if started.is_err() {
            return Some(committed);
        }
        state.running = true;
    }
    state.batches.push(committed);
    drop(state);
    syncs.ready.notify_one();
    None
}

/// The syncer thread: one fsync for every batch handed to it since the last, then their
/// answers; until the store is dropped and nothing is left.
fn run_syncer(syncs: &Syncs, wal: &super::durable::WalSync, counters: &wait::Counters) {
    loop {
        let batches = {
            let mut state = syncs.lock();
            while state.batches.is_empty() && !state.closed {
                state = syncs.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.batches.is_empty() {
                state.running = false;
                return;
            }
            std::mem::take(&mut state.batches)
        };
        let synced = wal.sync();
        for Committed { answered, started } in batches {
            if synced.is_ok() {
                counters.note_commit(started.elapsed());
            }
            answer_all(answered, synced.clone());
        }
    }
}

/// The watch over the queue while the committer waits for the gate past any deadline: a
/// thread of the store's (started on first use, gone with the store) that answers
/// [`Error::Busy`] to each queued writer once its busy timeout (from when it was queued) has
/// run out, from `start` to `stop`. Persistent, so that a wait for the gate costs no thread
/// start (and no join) in the committer's way.
#[derive(Default)]
struct Watch {
    state: Mutex<WatchState>,
    changed: Condvar,
}

#[derive(Default)]
struct WatchState {
    watching: bool,
    running: bool,
    closed: bool,
}

impl Watch {
    fn lock(&self) -> MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching `inner`'s queue, starting the thread on first use; false if it cannot.
    fn start(&self, inner: &Arc<Inner>) -> bool {
        let mut state = self.lock();
        if !state.running {
            let (store, watch) = (Arc::downgrade(inner), Arc::clone(&inner.group.watch));
            let timeout = inner.options.busy_timeout();
            let started = std::thread::Builder::new()
                .name("eh-checkpoint-watch".into())
                .spawn(move || watch.run(&store, timeout));
            if started.is_err() {
                return false;
            }
            state.running = true;
        }
        state.watching = true;
        drop(state);
        self.changed.notify_all();
        true
    }

    fn stop(&self) {
        let mut state = self.lock();
        if state.watching {
            state.watching = false;
            drop(state);
            self.changed.notify_all();
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The thread: waits to be started, then expires queued writers until stopped; until the
    /// store is dropped. It holds the store only while it watches.
    fn run(&self, store: &Weak<Inner>, timeout: Duration) {
        loop {
            let mut state = self.lock();
            while !state.watching && !state.closed {
                state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.closed {
                return;
            }
            drop(state);
            let Some(inner) = store.upgrade() else { return };
            loop {
                let next = inner.group.lock().pending.iter().map(|p| p.since).min();
                let until = next.unwrap_or_else(Instant::now) + timeout;
                let mut state = self.lock();
                loop {
                    let now = Instant::now();
                    if !state.watching || state.closed || now >= until {
                        break;
                    }
                    state = self
                        .changed
                        .wait_timeout(state, until - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                if !state.watching || state.closed {
                    break;
                }
                drop(state);
                expire_queued(&inner, timeout);
            }
        }
    }
}

/// Answers [`Error::Busy`] to each queued writer whose busy timeout has run out.
fn expire_queued(inner: &Inner, timeout: Duration) {
    let now = Instant::now();
    let expired: Vec<Pending> = {
        let mut q = inner.group.lock();
        let (expired, kept) = std::mem::take(&mut q.pending)
            .into_iter()
            .partition(|p| now.saturating_duration_since(p.since) >= timeout);
        q.pending = kept;
        expired
    };
    if expired.is_empty() {
        return;
    }
    let error = Error::Busy {
        path: None,
        timeout: Some(timeout),
        source: crate::error::message(wait::GATE_HELD),
    }
    .at(inner.path.as_deref());
    for p in expired {
        p.reply.done(p.id, Err(error.clone()));
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
        p.reply.done(p.id, Err(error.clone()));
    }
    q.leading = false;
}

//! Waiting for the write lock, in three places.
//!
//! - **In this process**, writers of one store queue on the store's [`WriterLock`], first come
//!   first served, before they begin a transaction: they never meet `SQLITE_BUSY` from each
//!   other. Every operation takes it unless it only reads (see `Inner::run`); the group commit
//!   takes it for each batch (claims and checkpoint writes).
//! - **Between processes**, the holder of the writer lock then takes the file's [`Gate`]
//!   (`gate.rs`, Linux, local file systems), where writers of this crate in other processes
//!   queue too.
//! - **On SQLite's lock**, held by a writer that takes no gate (another program, or anyone where
//!   there is no gate), a connection waits in
//!   [`on_busy`], the busy handler of every pooled connection. SQLite's own handler sleeps in
//!   steps of 1, 2, 5, 10 … 100 ms, which is long for transactions that take tens of
//!   microseconds; this one polls every [`FIRST_SLEEP`] for [`FINE_POLLS`] times, then doubles
//!   its sleep up to [`LONGEST_SLEEP`]. SQLite's locks are not fair: a process committing
//!   back to back takes the lock again before a sleeping waiter wakes. So while a store is
//!   [contended](Counters::contended), its committer pauses [`HANDOFF_PAUSE`] between batches
//!   and nobody of it waits awake (spins).
//!
//! The busy timeout is the total wait of one operation: it starts when the operation does, and
//! the time spent queued in process is taken off what is left for SQLite's lock. Every call of
//! the busy handler is counted (`CommitStats::busy_waits`), so that a test can tell that one
//! process's writers never waited on each other's SQLite locks.
//!
//! The handler is a plain function (rusqlite takes a `fn`), so it finds the operation's deadline
//! and counter in a thread-local [`Scope`], set around each operation on the thread that runs
//! it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::gate::{Gate, GateGuard};
use crate::error::{Error, Result};

/// The first sleep of the busy handler. Linux adds its timer slack (50 µs) to every sleep.
pub(crate) const FIRST_SLEEP: Duration = Duration::from_micros(20);

/// How many times the busy handler polls at [`FIRST_SLEEP`] before it starts doubling: about
/// a millisecond of fine polling, so that a waiter finds the gap another process leaves
/// between two of its commits (see [`HANDOFF_PAUSE`]).
pub(crate) const FINE_POLLS: i32 = 16;

/// How long a committer pauses between two batches while this store is contended by another
/// process: long enough for a waiter polling at [`FIRST_SLEEP`] to take the lock in between,
/// so that one process's back-to-back commits do not starve the others.
pub(crate) const HANDOFF_PAUSE: Duration = Duration::from_micros(50);

/// For how long after its last busy wait a store counts as contended by another process.
const CONTENDED_FOR: Duration = Duration::from_millis(20);

/// The clock of [`Counters::last_busy`]: the first time a store of this process looked at it.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The longest single sleep of the busy handler: short against the busy timeout, long against
/// a transaction, so that a waiter polls a few times per commit of another process.
pub(crate) const LONGEST_SLEEP: Duration = Duration::from_micros(500);

/// The total wait of a busy handler called outside an operation: the default busy timeout.
const FALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// The wait counters of one store, shared by its connections.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Calls of the busy handler: times a connection of this store met a SQLite lock.
    pub busy_waits: AtomicU64,
    /// Times a writer of this store queued behind another writer of this store.
    pub lock_waits: AtomicU64,
    /// Times a writer of this store waited at the file's cross-process gate.
    pub gate_waits: AtomicU64,
    /// When a connection of this store last met a SQLite lock: nanoseconds after [`epoch`],
    /// plus one (0: never).
    pub last_busy: AtomicU64,
    /// How long this store's recent group commits took, in microseconds: a moving average
    /// (each commit weighs 1/8), 0 before the first.
    pub recent_commit_us: AtomicU64,
}

impl Counters {
    /// Whether another process (or another store on the file) held a lock this store needed
    /// within the last [`CONTENDED_FOR`]. While it does, waiting awake (spinning) only takes
    /// CPU from the process that holds the lock, and a committer leaves a gap between batches.
    pub(crate) fn contended(&self) -> bool {
        let last = self.last_busy.load(Ordering::Relaxed);
        last != 0 && {
            let now = epoch().elapsed().as_nanos() as u64 + 1;
            now.saturating_sub(last) < CONTENDED_FOR.as_nanos() as u64
        }
    }

    /// How long a writer of this store waits awake for its commit, or its committer for the
    /// next write, before the thread sleeps: `spin` if that is at least twice what this
    /// store's recent commits took and no other process contends for the file; otherwise
    /// none. Waiting awake saves a wake-up (tens of microseconds on a virtual machine), which
    /// is most of a commit at `Durability::Normal`; a commit that takes longer than the spin
    /// (an fsync on most disks) gains nothing from it, and the spinning core is taken from
    /// the threads doing the work: a renewal of 32 at FULL took 1.8× plain rusqlite's time
    /// with a 250 µs spin on this project's machine and 1.05× without (BENCHMARKS.md).
    pub(crate) fn spin(&self, spin: Duration) -> Duration {
        let recent = Duration::from_micros(self.recent_commit_us.load(Ordering::Relaxed));
        if self.contended() || recent.saturating_mul(2) > spin {
            Duration::ZERO
        } else {
            spin
        }
    }

    /// The moving average of recent group commits (zero before the first).
    #[cfg(test)]
    pub(crate) fn recent_commit(&self) -> Duration {
        Duration::from_micros(self.recent_commit_us.load(Ordering::Relaxed))
    }

    /// Notes how long a group commit took.
    pub(crate) fn note_commit(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let old = self.recent_commit_us.load(Ordering::Relaxed);
        let new = if old == 0 {
            us.max(1)
        } else {
            old.saturating_mul(7).saturating_add(us) / 8
        };
        self.recent_commit_us.store(new, Ordering::Relaxed);
    }

    fn note_busy(&self) {
        self.last_busy
            .store(epoch().elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct LockState {
    held: bool,
    /// Tickets of the waiting writers, in arrival order: the front one goes next.
    queue: VecDeque<u64>,
    next_ticket: u64,
}

/// The in-process write lock of one store: first come, first served, with a deadline. Its
/// holder then takes the file's cross-process [`Gate`] (if the file has one).
#[derive(Debug, Default)]
pub(crate) struct WriterLock {
    state: Mutex<LockState>,
    released: Condvar,
    gate: Option<Arc<Gate>>,
}

/// Holds the [`WriterLock`] (and the gate) until dropped.
pub(crate) struct WriterGuard<'a>(&'a WriterLock, Option<GateGuard<'a>>);

impl WriterLock {
    fn lock_state(&self) -> MutexGuard<'_, LockState> {
        // No code panics while holding this mutex; recover the state rather than propagate.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether its holders take a cross-process gate too.
    pub(crate) fn has_gate(&self) -> bool {
        self.gate.is_some()
    }

    /// A writer lock whose holders also take `gate`.
    pub(crate) fn with_gate(gate: Option<Arc<Gate>>) -> WriterLock {
        WriterLock {
            gate,
            ..WriterLock::default()
        }
    }

    /// Takes the lock and then the gate, waiting in turn until `deadline` (the gate as `how`
    /// says); what was still held then if either was.
    fn acquire(
        &self,
        deadline: Instant,
        counters: &Counters,
        how: GateWait<'_>,
    ) -> Result<WriterGuard<'_>, Held> {
        let guard = self
            .acquire_here(deadline, counters)
            .ok_or(Held::HereLock)?;
        match &self.gate {
            None => Ok(guard),
            Some(gate) => {
                let waited = || {
                    counters.gate_waits.fetch_add(1, Ordering::Relaxed);
                    counters.note_busy();
                };
                let entered = match how {
                    GateWait::Bounded => gate.enter(deadline, waited),
                    GateWait::Watched { start, stop } => {
                        // Stopped however the wait ends.
                        struct Stop<'a>(&'a dyn Fn());
                        impl Drop for Stop<'_> {
                            fn drop(&mut self) {
                                (self.0)();
                            }
                        }
                        let _stop = Stop(stop);
                        gate.enter_blocking(deadline, waited, start)
                    }
                };
                match entered {
                    Some(g) => Ok(WriterGuard(self, g)),
                    None => Err(Held::Gate),
                }
            }
        }
    }

    /// Takes the in-process lock, waiting in turn until `deadline`; `None` if it is still
    /// held then.
    fn acquire_here(&self, deadline: Instant, counters: &Counters) -> Option<WriterGuard<'_>> {
        let mut state = self.lock_state();
        if !state.held && state.queue.is_empty() {
            state.held = true;
            return Some(WriterGuard(self, None));
        }
        counters.lock_waits.fetch_add(1, Ordering::Relaxed);
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push_back(ticket);
        loop {
            if !state.held && state.queue.front() == Some(&ticket) {
                state.queue.pop_front();
                state.held = true;
                return Some(WriterGuard(self, None));
            }
            let now = Instant::now();
            if now >= deadline {
                state.queue.retain(|t| *t != ticket);
                drop(state);
                // The next in line may be free to go now that this one left.
                self.released.notify_all();
                return None;
            }
            state = self
                .released
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Why a writer that waited for the gate past its busy timeout failed.
pub(crate) const GATE_HELD: &str =
    "a writer of another process held the write lock past the busy timeout";

/// How the holder of a [`WriterLock`] waits for the gate while another process holds it.
#[derive(Clone, Copy)]
pub(crate) enum GateWait<'a> {
    /// Until the operation's deadline: a helper thread blocks in the kernel's queue for it
    /// and wakes it when the lock is granted.
    Bounded,
    /// In the kernel's queue itself, woken by the kernel when the lock is released: one
    /// wake-up sooner, for every turn of every process. It may wait past any deadline, so only
    /// a thread that no caller waits on does this (the group commit's committer), while a
    /// watch answers the queued writers whose busy timeout runs out meanwhile. `start` starts
    /// that watch just before blocking (false if it cannot: then the wait is bounded, through
    /// the helper); `stop` stops it once the gate is taken (or the wait failed).
    Watched {
        start: &'a dyn Fn() -> bool,
        stop: &'a dyn Fn(),
    },
}

/// Which lock a writer could not take by its deadline.
#[derive(Debug)]
enum Held {
    HereLock,
    Gate,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        // The gate first: a writer of another process may go while this one wakes its own.
        drop(self.1.take());
        let mut state = self.0.lock_state();
        state.held = false;
        let waiting = !state.queue.is_empty();
        drop(state);
        // Every waiter checks whether it is first in line; with a handful of writers per
        // process that is cheaper than a handoff per waiter. A lone writer pays no wake-up.
        if waiting {
            self.0.released.notify_all();
        }
    }
}

/// What the busy handler needs to know about the operation running on its thread.
struct Scope {
    deadline: Instant,
    counters: Arc<Counters>,
    /// The address of the writer lock this thread holds, if any (a nested operation of the same
    /// store must not wait for itself).
    holds: Option<usize>,
}

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// Runs `f` as one operation with a total wait of `timeout`: holding `lock` (if given, queued
/// in process first), and with the busy handler counting into `counters` and giving up at the
/// deadline. `f` gets the time left.
///
/// # Errors
/// [`Error::Busy`] if `lock` is still held by another writer of the store at the deadline;
/// otherwise what `f` returns.
pub(crate) fn scope<T>(
    counters: &Arc<Counters>,
    lock: Option<&WriterLock>,
    timeout: Duration,
    f: impl FnOnce(Duration) -> Result<T>,
) -> Result<T> {
    scope_with(counters, lock, GateWait::Bounded, timeout, f)
}

/// [`scope`], waiting for the gate as `how` says.
pub(crate) fn scope_with<T>(
    counters: &Arc<Counters>,
    lock: Option<&WriterLock>,
    how: GateWait<'_>,
    timeout: Duration,
    f: impl FnOnce(Duration) -> Result<T>,
) -> Result<T> {
    let start = Instant::now();
    let deadline = start
        .checked_add(timeout)
        .unwrap_or_else(|| start + Duration::from_secs(86_400 * 365));
    let address = lock.map(|l| l as *const WriterLock as usize);
    let held_here = SCOPE.with(|s| {
        s.borrow()
            .as_ref()
            .is_some_and(|s| s.holds.is_some() && s.holds == address)
    });
    let _guard = match lock {
        Some(lock) if !held_here => Some(lock.acquire(deadline, counters, how).map_err(
            |held| Error::Busy {
                path: None,
                timeout: Some(timeout),
                source: crate::error::message(match held {
                    Held::HereLock => {
                        "another writer of this store held the write lock past the busy \
                             timeout"
                    }
                    Held::Gate => GATE_HELD,
                }),
            },
        )?),
        _ => None,
    };
    let previous = SCOPE.with(|s| {
        s.borrow_mut().replace(Scope {
            deadline,
            counters: Arc::clone(counters),
            holds: if held_here || lock.is_some() {
                address
            } else {
                None
            },
        })
    });
    // Restores the outer scope even if `f` unwinds.
    struct Restore(Option<Option<Scope>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                SCOPE.with(|s| *s.borrow_mut() = previous);
            }
        }
    }
    let _restore = Restore(Some(previous));
    f(deadline.saturating_duration_since(Instant::now()))
}

/// The busy handler of every pooled connection: `count` is how many times it was called for
/// this lock already. Sleeps a little longer each time, and gives up (`false`, so that the
/// statement fails with `SQLITE_BUSY`) once the operation's deadline has passed.
pub(crate) fn on_busy(count: i32) -> bool {
    SCOPE.with(|s| {
        let mut s = s.borrow_mut();
        let now = Instant::now();
        let deadline = match s.as_mut() {
            Some(scope) => {
                scope.counters.busy_waits.fetch_add(1, Ordering::Relaxed);
                scope.counters.note_busy();
                scope.deadline
            }
            // Not inside an operation (every use of a pooled connection is, so this is a
            // connection being set up): wait as long as the default busy timeout allows.
            None => {
                let since = FALLBACK_SINCE.with(|f| {
                    if count == 0 || f.get().is_none() {
                        f.set(Some(now));
                    }
                    f.get().unwrap_or(now)
                });
                since + FALLBACK_TIMEOUT
            }
        };
        drop(s);
        if now >= deadline {
            return false;
        }
        let step = FIRST_SLEEP
            .saturating_mul(1u32 << (count - FINE_POLLS + 1).clamp(0, 16))
            .min(LONGEST_SLEEP);
        std::thread::sleep(step.min(deadline - now));
        true
    })
}

thread_local! {
    static FALLBACK_SINCE: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[test]
    fn the_store_spins_only_while_its_commits_are_short_and_uncontended() {
        let spin = Duration::from_micros(250);
        let counters = Counters::default();
        assert_eq!(counters.spin(spin), spin, "before any commit, it spins");
        counters.note_commit(Duration::from_micros(20));
        assert_eq!(counters.spin(spin), spin, "commits of 20 µs: it spins");
        // A slower disk: the average follows, 1/8 per commit.
        for _ in 0..40 {
            counters.note_commit(Duration::from_micros(400));
        }
        assert_eq!(
            counters.spin(spin),
            Duration::ZERO,
            "commits of 400 µs outlast a spin of 250 µs: none"
        );
        for _ in 0..40 {
            counters.note_commit(Duration::from_micros(30));
        }
        assert_eq!(counters.spin(spin), spin, "short commits again: it spins");
        assert_eq!(counters.spin(Duration::ZERO), Duration::ZERO);
        counters.note_busy();
        assert_eq!(
            counters.spin(spin),
            Duration::ZERO,
            "another process holding the lock: none"
        );
    }

    #[test]
    fn a_busy_wait_makes_the_store_contended_for_a_while() {
        let counters = Arc::new(Counters::default());
        assert!(
            !counters.contended(),
            "a store that never waited is not contended"
        );
        // A busy-handler call inside an operation of this store notes the wait.
        let waited = scope(&counters, None, Duration::from_secs(1), |_| Ok(on_busy(0)));
        assert!(
            matches!(waited, Ok(true)),
            "the handler waits within the deadline"
        );
        assert_eq!(counters.busy_waits.load(Ordering::Relaxed), 1);
        assert!(counters.contended());
        std::thread::sleep(CONTENDED_FOR + Duration::from_millis(5));
        assert!(
            !counters.contended(),
            "the contention is forgotten after CONTENDED_FOR"
        );
    }

    #[test]
    fn the_lock_is_first_come_first_served_and_gives_up_at_the_deadline() {
        let lock = Arc::new(WriterLock::default());
        let counters = Arc::new(Counters::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = lock.acquire(far(), &counters, GateWait::Bounded);
        assert!(first.is_ok());
        // Held: a waiter with a short deadline gives up, and leaves the queue.
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(matches!(
            lock.acquire(soon, &counters, GateWait::Bounded),
            Err(Held::HereLock)
        ));
        assert!(lock.lock_state().queue.is_empty());
        let mut threads = Vec::new();
        for i in 0..4 {
            let (waiter, counters, order) = (lock.clone(), counters.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                let guard = waiter.acquire(far(), &counters, GateWait::Bounded);
                assert!(guard.is_ok());
                order.lock().unwrap_or_else(|e| e.into_inner()).push(i);
            }));
            // Let each one queue before the next.
            while lock.lock_state().queue.len() < i + 1 {
                std::thread::yield_now();
            }
        }
        drop(first);
        for t in threads {
            t.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
        assert_eq!(
            *order.lock().unwrap_or_else(|e| e.into_inner()),
            [0, 1, 2, 3]
        );
        assert_eq!(counters.lock_waits.load(Ordering::Relaxed), 5);
    }
}

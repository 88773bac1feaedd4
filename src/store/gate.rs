//! The cross-process writer queue: a write lock on one byte of the database file, taken after
//! the store's in-process writer lock (`wait::WriterLock`) and before `BEGIN IMMEDIATE`, and
//! released after the transaction.
//!
//! Without it, writers of several processes meet on SQLite's write lock, which does not wait:
//! a loser polls in the busy handler (`wait::on_busy`) and may sleep through the moments the
//! lock is free, while the process that holds it takes it again and again. A writer blocked on
//! this lock is woken by the kernel when it is released, so writers of this crate in several
//! processes take turns without polling. SQLite's lock stays the one that excludes: the gate
//! only orders our own writers before they ask for it, and a writer that does not take it
//! (another program, an older build) is still waited for in the busy handler.
//!
//! Invariants:
//! - **Beside SQLite's locks, never on them.** The lock is an open-file-description lock
//!   (`F_OFD_SETLK`) on [`GATE_BYTE`], past the bytes SQLite locks with `fcntl`: the two never
//!   overlap, so the gate can neither block nor release SQLite's locks, and a descriptor closed
//!   elsewhere in the process does not drop it. It is taken through the descriptor the store
//!   holds of its file (`files::Held`, opened for writing too for a store that writes), on a
//!   local file system ([`LOCAL`]), on Linux; elsewhere writers of several processes meet in
//!   the busy handler, as before.
//! - **Order.** Store writer lock, then gate, then SQLite's lock: nobody waits for the gate
//!   while holding SQLite's write lock, so the gate adds no deadlock.
//! - **One gate per file per process**, shared like the descriptor it locks (the lock belongs
//!   to the open file description, so two stores of one process on one file must not both
//!   think they hold it): the second store's writer waits for the first's in process. Found by
//!   process id too: a child of `fork` makes a gate of its own on a descriptor of its own.
//! - **The busy timeout is the total wait.** The blocking lock cannot time out, so a writer that
//!   must wait hands the blocking call to a helper thread and waits for it until its deadline.
//!   A writer that gives up leaves the helper to it: when the helper gets the lock and nobody
//!   waits for it any more, it releases it at once. The helper holds the gate (and so the
//!   descriptor) until then. The one exception is the group commit's committer thread, which
//!   no caller waits on: it blocks in the kernel's queue itself ([`Gate::enter_blocking`]),
//!   one wake-up sooner, while a watch thread answers `Busy` to each queued writer whose busy
//!   timeout runs out (`group_commit::Watch`).
//! - **Best effort.** If the lock fails with anything but "held", the gate turns itself off for
//!   the file and writers go straight to SQLite's lock, which is correct without it.

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::Instant;

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
use nix::{
    errno::Errno,
    fcntl::{fcntl, FcntlArg},
    libc,
};

use crate::files::{Held, Identity};

/// The gate of one file in this process.
#[derive(Debug)]
pub(crate) struct Gate {
    file: Arc<File>,
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// A writer of this process holds the lock.
    held: bool,
    /// A helper thread waits for the lock for this process.
    helper: bool,
    /// The helper got the lock and handed it to the waiting writers: the first to see it
    /// takes it.
    granted: bool,
    /// Writers of this process waiting for the gate.
    waiting: usize,
    /// The lock failed other than with "held": the gate is off.
    off: bool,
}

/// Holds the gate until dropped.
pub(crate) struct GateGuard<'a>(&'a Gate);

/// The local file systems the gate is used on (statfs `f_type`; network file systems forward
/// locks to a server, and emulate some kinds with others):
/// ext2/3/4, XFS, Btrfs, tmpfs, overlayfs, ZFS, F2FS, bcachefs, ramfs.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
const LOCAL: [u64; 9] = [
    0xEF53,
    0x5846_5342,
    0x9123_683E,
    0x0102_1994,
    0x794C_7630,
    0x2FC1_2FC1,
    0xF2F5_2010,
    0xCA45_1A4E,
    0x8584_58F6,
];

/// The gates of this process, by process id and file: a child of `fork` inherits the parent's,
/// whose state says what the parent's threads hold (threads the child does not have).
static GATES: Mutex<Vec<(u32, Identity, Weak<Gate>)>> = Mutex::new(Vec::new());

impl Gate {
    /// The gate of the file `held` holds, shared with every other store of this process on
    /// it; `None` where the gate cannot be used (see [`LOCAL`]).
    pub(crate) fn of(held: &Held) -> Option<Arc<Gate>> {
        if !usable(held) {
            return None;
        }
        let mut gates = GATES.lock().unwrap_or_else(|e| e.into_inner());
        gates.retain(|(_, _, g)| g.strong_count() > 0);
        let pid = std::process::id();
        if let Some(gate) = gates
            .iter()
            .find(|(p, id, _)| *p == pid && *id == held.identity())
            .and_then(|(_, _, g)| g.upgrade())
        {
            return Some(gate);
        }
        let gate = Arc::new(Gate {
            file: Arc::clone(held.file()),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        gates.push((pid, held.identity(), Arc::downgrade(&gate)));
        Some(gate)
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding this mutex; recover the state rather than propagate.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the gate, waiting until `deadline`: `Some(Some(guard))` if taken, `Some(None)` if
    /// the gate is off, `None` if another process (or store) still holds it then. `waited` is
    /// called once if this writer had to wait. A lock the helper got is always taken by a
    /// waiter: it is granted only while one waits, and a waiter looks for it before it looks
    /// at its deadline.
    pub(crate) fn enter(
        self: &Arc<Self>,
        deadline: Instant,
        waited: impl FnOnce(),
    ) -> Option<Option<GateGuard<'_>>> {
        let mut waited = Some(waited);
        let mut state = self.lock_state();
        loop {
            if state.off {
                return Some(None);
            }
            if !state.held {
                if state.granted {
                    state.granted = false;
                    state.held = true;
                    return Some(Some(GateGuard(self)));
                }
                if !state.helper {
                    match try_lock(&self.file) {
                        Ok(true) => {
                            state.held = true;
                            return Some(Some(GateGuard(self)));
                        }
                        Ok(false) => {
                            state.helper = true;
                            if !self.start_helper() {
                                state.helper = false;
                                state.off = true;
                                return Some(None);
                            }
                        }
                        Err(_) => {
                            state.off = true;
                            return Some(None);
                        }
                    }
                }
            }
            if let Some(waited) = waited.take() {
                waited();
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state.waiting += 1;
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            state.waiting -= 1;
        }
    }

    /// Like [`enter`](Self::enter), but if another process holds the lock, this thread waits
    /// in the kernel's queue itself (`wait::GateWait::Watched`), past `deadline` if it must,
    /// and is woken by the kernel: no helper thread passes the lock on. `start_watch` is called
    /// just before it blocks; if it returns false, or a writer of this process holds the gate
    /// or waits for it already, this waits as `enter` does.
    pub(crate) fn enter_blocking(
        self: &Arc<Self>,
        deadline: Instant,
        waited: impl FnOnce(),
        start_watch: &dyn Fn() -> bool,
    ) -> Option<Option<GateGuard<'_>>> {
        let mut state = self.lock_state();
        if state.off {
            return Some(None);
        }
        if state.held || state.granted || state.helper {
            drop(state);
            return self.enter(deadline, waited);
        }
        match try_lock(&self.file) {
            Ok(true) => {
                state.held = true;
                return Some(Some(GateGuard(self)));
            }
            Ok(false) => {}
            Err(_) => {
                state.off = true;
                return Some(None);
            }
        }
        // This process's turn is taken: its other writers wait for this one as for a holder.
        state.held = true;
        drop(state);
        if !start_watch() {
            self.step_back();
            return self.enter(deadline, waited);
        }
        waited();
        if lock(&self.file) {
            return Some(Some(GateGuard(self)));
        }
        self.lock_state().off = true;
        self.step_back();
        Some(None)
    }

    /// Gives up a turn taken without the lock, and wakes the writers waiting for it.
    fn step_back(&self) {
        self.lock_state().held = false;
        self.changed.notify_all();
    }

    /// Starts the thread that waits for the lock for this process; false if none can start.
    fn start_helper(self: &Arc<Self>) -> bool {
        let gate = Arc::clone(self);
        std::thread::Builder::new()
            .name("eh-checkpoint-gate".into())
            .spawn(move || gate.help())
            .is_ok()
    }

    /// The helper: waits for the lock, then hands the lock to a waiting writer, or releases it
    /// if every writer gave up meanwhile.
    fn help(&self) {
        let locked = lock(&self.file);
        let mut state = self.lock_state();
        state.helper = false;
        if !locked {
            state.off = true;
        } else if state.waiting > 0 && !state.held {
            state.granted = true;
        } else {
            unlock(&self.file);
        }
        drop(state);
        self.changed.notify_all();
    }
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock_state();
        state.held = false;
        // Released even with writers of this process waiting: a writer of another process
        // waiting for the lock is woken now and gets its turn.
        unlock(&self.0.file);
        let waiting = state.waiting > 0;
        drop(state);
        if waiting {
            self.0.changed.notify_all();
        }
    }
}

/// The byte of the database file the gate locks: past SQLite's lock bytes (the 512 from
/// 0x4000_0000, its "pending byte"), so that the gate's lock and SQLite's never overlap. A
/// lock is not data: the file need not be that long, and nothing is written there.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
const GATE_BYTE: i64 = 0x4000_1000;

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn range(kind: libc::c_short) -> libc::flock {
    libc::flock {
        l_type: kind,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: GATE_BYTE,
        l_len: 1,
        // Must be 0 for an open-file-description lock.
        l_pid: 0,
    }
}

/// Takes the lock, waiting as long as it takes (the helper thread's call).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn lock(file: &File) -> bool {
    let wanted = range(libc::F_WRLCK as libc::c_short);
    loop {
        match fcntl(file, FcntlArg::F_OFD_SETLKW(&wanted)) {
            Err(Errno::EINTR) => continue,
            other => return other.is_ok(),
        }
    }
}

/// Takes the lock without waiting: true if taken, false if held elsewhere.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn try_lock(file: &File) -> std::io::Result<bool> {
    let wanted = range(libc::F_WRLCK as libc::c_short);
    loop {
        match fcntl(file, FcntlArg::F_OFD_SETLK(&wanted)) {
            Ok(_) => return Ok(true),
            Err(Errno::EAGAIN | Errno::EACCES) => return Ok(false),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn unlock(file: &File) {
    // Unlocking a range this description locked cannot fail in a way worth reporting: the lock
    // goes with the descriptor at the latest.
    let _ = fcntl(
        file,
        FcntlArg::F_OFD_SETLK(&range(libc::F_UNLCK as libc::c_short)),
    );
}

/// Whether the gate can be used on `held`: opened for writing (the lock is a write lock), on a
/// local file system.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn usable(held: &Held) -> bool {
    held.writable()
        && rustix::fs::fstatfs(&**held.file()).is_ok_and(|s| LOCAL.contains(&(s.f_type as u64)))
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn usable(_: &Held) -> bool {
    false
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn lock(_: &File) -> bool {
    false
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn try_lock(_: &File) -> std::io::Result<bool> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn unlock(_: &File) {}

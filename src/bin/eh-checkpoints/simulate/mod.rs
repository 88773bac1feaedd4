//! `simulate`'s engine: N real processor processes share P partitions of one hub in the db
//! file. The parent starts them (`children.rs`), shows live progress (`progress.rs`),
//! optionally SIGKILLs one, stops them when every partition is checkpointed at its last
//! event, and then verifies what they reported (`state.rs`) against the store (`verify.rs`).
//! Each worker (`worker.rs`) balances as the official processors do (`balance.rs`) and reports
//! on stdout (`protocol.rs`). The command's arguments and output are in
//! `commands/simulate.rs`.

mod balance;
mod children;
mod progress;
mod protocol;
pub(crate) mod report;
mod state;
mod verify;
pub(crate) mod worker;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use clap::ValueEnum;
use eventhubs_checkpointstore_sqlite::{self as store, SqliteCheckpointStore};

use crate::commands::simulate::SimulateArgs;
use crate::{open, CliError, Global};
use balance::Strategy;
use children::{Msg, Workers};
use progress::Display;
use report::{KillReport, SimReport};
use state::State;

/// The group the simulation uses (and resets at the start) in the db file.
pub(crate) const SIM_NAMESPACE: &str = "simulate.eh-checkpoints.local";
/// The event hub of the simulation.
pub(crate) const SIM_HUB: &str = "simulated-hub";
/// The consumer group of the simulation.
pub(crate) const SIM_GROUP: &str = "$default";

/// How durably the simulation writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Durability {
    /// Every acknowledged write is fsynced (the store's default).
    Full,
    /// Survives a process crash; faster.
    Normal,
}

impl From<Durability> for store::Durability {
    fn from(d: Durability) -> Self {
        match d {
            Durability::Full => store::Durability::Full,
            Durability::Normal => store::Durability::Normal,
        }
    }
}

/// What every processor of a simulation does: the arguments `simulate` takes and passes on
/// to each `__worker` it starts.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub(crate) struct ProcessorArgs {
    /// Partitions of the simulated event hub.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub partitions: u32,
    /// Events per partition; the run ends when every partition is checkpointed at its last.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i64).range(1..=100_000_000))]
    pub events: i64,
    /// Events per second each owned partition processes.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Write a (fenced) checkpoint every K events.
    #[arg(long, short = 'k', default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
    pub checkpoint_every: i64,
    /// Load-balancing interval in milliseconds (the official processors use 10-30 s).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..))]
    pub interval_ms: u64,
    /// Ownership expiry in milliseconds; must exceed the interval (official: 60 s-2 min).
    #[arg(long, default_value_t = 2000)]
    pub expiry_ms: u64,
    /// How many partitions a load-balancing cycle may claim. Greedy by default here, so that
    /// the staggered start shows stealing; the official processors default to balanced.
    #[arg(long, value_enum, default_value_t = Strategy::Greedy)]
    pub strategy: Strategy,
    /// When a checkpoint counts as written (`full`: fsynced, the store's default).
    #[arg(long, value_enum, default_value_t = Durability::Full)]
    pub durability: Durability,
}

/// The command-line name clap gives an enum value.
fn value_name(v: &impl ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(String::new, |p| p.get_name().to_owned())
}

impl ProcessorArgs {
    /// These arguments as a command line that parses back to them (for a `__worker`).
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut arg = |name: &str, value: String| {
            args.push(format!("--{name}"));
            args.push(value);
        };
        arg("partitions", self.partitions.to_string());
        arg("events", self.events.to_string());
        arg("rate", self.rate.to_string());
        arg("checkpoint-every", self.checkpoint_every.to_string());
        arg("interval-ms", self.interval_ms.to_string());
        arg("expiry-ms", self.expiry_ms.to_string());
        arg("strategy", value_name(&self.strategy));
        arg("durability", value_name(&self.durability));
        args
    }

    /// Refuses combinations the value parsers cannot.
    fn validate(&self) -> Result<(), CliError> {
        if self.expiry_ms <= self.interval_ms {
            return Err(CliError::usage(
                "--expiry-ms must be greater than --interval-ms (as the official processors require)",
            ));
        }
        if !(self.rate > 0.0 && self.rate.is_finite()) {
            return Err(CliError::usage("--rate must be a positive number"));
        }
        Ok(())
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

/// Runs the simulation and returns its report (whose `ok` says whether every check passed).
pub(crate) fn run(g: &Global, args: &SimulateArgs) -> Result<SimReport, CliError> {
    let db = g.db.as_path();
    args.processor.validate()?;
    if args.kill_after.is_some() && args.processes < 2 {
        return Err(CliError::usage(
            "--kill-after needs --processes 2 or more: with one process, nobody takes over",
        ));
    }
    let exe = std::env::current_exe()
        .map_err(|e| CliError::runtime(format!("cannot find this program's path: {e}")))?;
    let options = g
        .options()
        .with_durability(args.processor.durability.into())
        .with_wal_preallocation(true);
    let store = open::or_create_with(db, options)?;
    // Held until the run ends: a second `simulate` on this database must not reset the
    // group under the first one's workers.
    let _lock = lock(db)?;
    // The simulation's own group starts empty on every run.
    store.blocking_delete_group(SIM_NAMESPACE, SIM_HUB, SIM_GROUP)?;

    let mut sim = Sim::new(g, args, exe);
    if let Err(e) = sim.drive(&store) {
        sim.display.multi.clear().ok();
        return Err(e);
    }
    let finished_at = Instant::now();
    sim.stop()?;
    sim.display.multi.clear().ok();
    for b in &sim.display.bars {
        b.finish_and_clear();
    }
    sim.display.total.finish_and_clear();
    let checks = verify::verify(&sim.state, &store)?;
    Ok(sim.report(checks, finished_at))
}

/// Takes an exclusive `flock` on the database file for the run, so that a second `simulate`
/// on it is refused. SQLite locks with `fcntl` byte ranges, which `flock` does not touch on
/// local file systems; the lock goes with the process, even on SIGKILL.
fn lock(db: &Path) -> Result<std::fs::File, CliError> {
    let file = std::fs::File::open(db)
        .map_err(|e| CliError::runtime(format!("cannot open `{}`: {e}", db.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(CliError::runtime(format!(
            "another `simulate` is running on `{}`; wait for it to end or use another --db",
            db.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(CliError::runtime(format!(
            "cannot lock `{}` for the simulation: {e}",
            db.display()
        ))),
    }
}

/// A running simulation, seen from the parent.
struct Sim<'a> {
    db: &'a Path,
    /// `--busy-timeout`, passed on to the workers.
    busy_timeout: Duration,
    args: &'a SimulateArgs,
    exe: PathBuf,
    names: Vec<String>,
    started: Instant,
    workers: Workers,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    state: State,
    display: Display,
    balanced_at: Option<Instant>,
    taken_over_at: Option<Instant>,
    rebalanced_at: Option<Instant>,
    complete_at: Option<Instant>,
    last_poll: Instant,
    /// When each acknowledgement arrived, for the checkpoints-per-second figure.
    ack_times: Vec<Instant>,
}

impl<'a> Sim<'a> {
    fn new(g: &'a Global, args: &'a SimulateArgs, exe: PathBuf) -> Sim<'a> {
        let p = &args.processor;
        let names: Vec<String> = (1..=args.processes).map(|i| format!("proc-{i}")).collect();
        let partitions: Vec<String> = (0..p.partitions).map(|p| p.to_string()).collect();
        let (tx, rx) = mpsc::channel();
        Sim {
            db: &g.db,
            busy_timeout: g.busy_timeout,
            args,
            exe,
            display: Display::new(&names, u64::from(p.partitions), p.events as u64),
            state: State::new(names.clone(), partitions, p.events),
            names,
            started: Instant::now(),
            workers: Workers::new(),
            tx,
            rx,
            balanced_at: None,
            taken_over_at: None,
            rebalanced_at: None,
            complete_at: None,
            last_poll: Instant::now(),
            ack_times: Vec::new(),
        }
    }

    /// Starts the workers and follows them until every partition is checkpointed at its last
    /// event (and, with `--kill-after`, the killed worker's partitions are taken over).
    fn drive(&mut self, store: &SqliteCheckpointStore) -> Result<(), CliError> {
        let timeout = Duration::from_secs_f64(self.args.timeout.max(1.0));
        loop {
            if self.start_next()? {
                continue;
            }
            children::drain(&self.rx, &mut self.state, Duration::from_millis(50));
            let now = Instant::now();
            self.ack_times.extend(std::iter::repeat_n(
                now,
                self.state.acks.len().saturating_sub(self.ack_times.len()),
            ));
            self.check_workers()?;
            self.note_milestones(now);
            self.kill_if_due(now)?;
            self.show_progress(now);
            self.poll_completion(store, now)?;
            let kill_done = self.args.kill_after.is_none() || self.taken_over_at.is_some();
            let all_started = self.workers.children.len() == self.names.len();
            if self.complete_at.is_some() && kill_done && all_started {
                return Ok(());
            }
            if now - self.started > timeout {
                // Slow is not wrong: a timeout is a runtime error, not a failed check.
                return Err(CliError::runtime(format!(
                    "the simulation did not finish within {} s (raise --timeout, or lower \
                     --events or --partitions)",
                    self.args.timeout
                )));
            }
        }
    }

    /// Starts the next worker if its turn has come; true if it did.
    fn start_next(&mut self) -> Result<bool, CliError> {
        let count = self.workers.children.len();
        let stagger = Duration::from_millis(self.args.stagger_ms);
        if count >= self.names.len() || self.started.elapsed() < stagger * count as u32 {
            return Ok(false);
        }
        children::spawn(
            &self.exe,
            self.db,
            self.busy_timeout,
            &self.args.processor,
            &self.names[count],
            &mut self.workers,
            &self.tx,
        )?;
        Ok(true)
    }

    /// Fails on a worker's error report, or on a live worker that ended.
    fn check_workers(&self) -> Result<(), CliError> {
        if let Some(e) = self.state.errors.first() {
            return Err(CliError::runtime(format!("a worker failed: {e}")));
        }
        if let Some(w) = (0..self.names.len()).find(|w| self.state.eof[*w] && self.state.live(*w)) {
            // A worker may only end when told to stop (or when killed).
            return Err(CliError::runtime(format!(
                "{} exited unexpectedly{}",
                self.names[w],
                self.workers.stderr_tail(w)
            )));
        }
        Ok(())
    }

    /// Notes when the workers first balanced, and after a kill when the victim's partitions
    /// were taken over and balanced again.
    fn note_milestones(&mut self, now: Instant) {
        if self.balanced_at.is_none() && self.state.balanced() {
            self.balanced_at = Some(now);
            self.display.note(&format!(
                "balanced after {:.2} s: every process holds its fair share",
                secs(now - self.started)
            ));
        }
        if let Some((_, at, _)) = &self.state.killed {
            if self.taken_over_at.is_none() && self.state.taken_over() {
                self.taken_over_at = Some(now);
                self.display.note(&format!(
                    "taken over {:.2} s after the kill: its partitions have live owners",
                    secs(now - *at)
                ));
            }
            if self.rebalanced_at.is_none() && self.taken_over_at.is_some() && self.state.balanced()
            {
                self.rebalanced_at = Some(now);
            }
        }
    }

    /// With `--kill-after`, SIGKILLs the worker holding the most partitions once it is due.
    fn kill_if_due(&mut self, now: Instant) -> Result<(), CliError> {
        let Some(after) = self.args.kill_after else {
            return Ok(());
        };
        if self.state.killed.is_some()
            || now - self.started < Duration::from_secs_f64(after.max(0.0))
        {
            return Ok(());
        }
        let names = &self.names;
        let holdings = self.state.holdings();
        let victim = (0..self.workers.children.len())
            .max_by_key(|w| holdings.get(names[*w].as_str()).copied().unwrap_or(0))
            .unwrap_or(0);
        let held: BTreeSet<String> = self
            .state
            .owner_of
            .iter()
            .filter(|(_, (_, o))| o.as_deref() == Some(names[victim].as_str()))
            .map(|(p, _)| p.clone())
            .collect();
        // `Child::kill` is SIGKILL on Unix: no release, no last checkpoint.
        self.workers.children[victim]
            .kill()
            .map_err(|e| CliError::runtime(format!("cannot kill {}: {e}", names[victim])))?;
        self.workers.stdins[victim] = None;
        self.display.note(&format!(
            "{:.2} s: killed {} (SIGKILL) holding {} partitions",
            secs(now - self.started),
            names[victim],
            held.len()
        ));
        self.display.bars[victim].set_message("killed");
        self.display.bars[victim].set_position(0);
        self.state.killed = Some((victim, now, held));
        Ok(())
    }

    /// Updates the bars: partitions and checkpoints per live worker, the total and the rate.
    fn show_progress(&self, now: Instant) {
        let holdings = self.state.holdings();
        for (w, bar) in self.display.bars.iter().enumerate() {
            if self.state.live(w) {
                bar.set_position(holdings.get(self.names[w].as_str()).copied().unwrap_or(0) as u64);
                let acked = self.state.acks.iter().filter(|a| a.worker == w).count();
                bar.set_message(format!("{acked} checkpoints"));
            }
        }
        let window = now
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(self.started);
        let rate = self
            .ack_times
            .iter()
            .rev()
            .take_while(|t| **t >= window)
            .count();
        let done_events: i64 = self.state.acked_max.values().map(|s| s + 1).sum();
        self.display.total.set_position(done_events.max(0) as u64);
        self.display.total.set_message(format!(
            "{rate} checkpoints/s  {:.1} s",
            (now - self.started).as_secs_f64()
        ));
    }

    /// Completion is read from the store: every partition checkpointed at its last event.
    fn poll_completion(
        &mut self,
        store: &SqliteCheckpointStore,
        now: Instant,
    ) -> Result<(), CliError> {
        if self.complete_at.is_some() || now - self.last_poll < Duration::from_millis(250) {
            return Ok(());
        }
        self.last_poll = now;
        let last = self.args.processor.events - 1;
        let finished = store
            .blocking_list_checkpoints(SIM_NAMESPACE, SIM_HUB, SIM_GROUP)?
            .iter()
            .filter(|c| c.sequence_number == Some(last))
            .count();
        if finished == self.state.partitions.len() {
            self.complete_at = Some(now);
        }
        Ok(())
    }

    /// Stops the live workers: each releases its partitions, reports them, and exits.
    fn stop(&mut self) -> Result<(), CliError> {
        let n = self.names.len();
        for (w, stdin) in self.workers.stdins.iter_mut().enumerate() {
            if let Some(mut s) = stdin.take() {
                if writeln!(s, "stop").is_err() && self.state.live(w) {
                    return Err(CliError::runtime(format!(
                        "cannot stop {}: it is gone",
                        self.names[w]
                    )));
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while !(0..n).all(|w| self.state.eof[w]) {
            if Instant::now() > deadline {
                return Err(CliError::runtime("the workers did not stop within 15 s"));
            }
            children::drain(&self.rx, &mut self.state, Duration::from_millis(50));
        }
        for w in 0..n {
            let status = self.workers.children[w].wait().map_err(|e| {
                CliError::runtime(format!("cannot wait for {}: {e}", self.names[w]))
            })?;
            if self.state.live(w) && (!status.success() || !self.state.done[w]) {
                return Err(CliError::runtime(format!(
                    "{} ended badly ({status}){}",
                    self.names[w],
                    self.workers.stderr_tail(w)
                )));
            }
        }
        if let Some(e) = self.state.errors.first() {
            return Err(CliError::runtime(format!("a worker failed: {e}")));
        }
        Ok(())
    }

    fn report(&self, checks: Vec<verify::CheckResult>, finished_at: Instant) -> SimReport {
        let (args, p, state, started) =
            (self.args, &self.args.processor, &self.state, self.started);
        SimReport {
            db: self.db.to_owned(),
            namespace: SIM_NAMESPACE,
            event_hub: SIM_HUB,
            consumer_group: SIM_GROUP,
            processes: args.processes,
            partitions: p.partitions,
            events_per_partition: p.events,
            checkpoint_every: p.checkpoint_every,
            interval_ms: p.interval_ms,
            expiry_ms: p.expiry_ms,
            strategy: value_name(&p.strategy),
            balanced_after_secs: self.balanced_at.map(|t| secs(t - started)),
            killed: state.killed.as_ref().map(|(w, at, set)| KillReport {
                process: self.names[*w].clone(),
                at_secs: secs(*at - started),
                partitions: set.len(),
                taken_over_after_secs: self.taken_over_at.map(|t| secs(t - *at)),
                rebalanced_after_secs: self.rebalanced_at.map(|t| secs(t - *at)),
            }),
            finished_after_secs: secs(finished_at - started),
            checkpoints_written: state.acks.len(),
            fenced_writes_refused: state.refused,
            claims_won: state.wins.len(),
            partitions_lost: state.lost,
            events_processed: state.processed_total,
            events_replayed: state.replayed_after_kill + state.replayed_other,
            events_replayed_after_takeover: state.replayed_after_kill,
            ok: checks.iter().all(|c| c.ok),
            checks,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Parse {
        #[command(flatten)]
        args: ProcessorArgs,
    }

    #[test]
    fn processor_args_pass_to_a_worker_unchanged() {
        let args = ProcessorArgs {
            partitions: 7,
            events: 12345,
            rate: 2.5,
            checkpoint_every: 3,
            interval_ms: 40,
            expiry_ms: 90,
            strategy: Strategy::Balanced,
            durability: Durability::Normal,
        };
        let line = std::iter::once("x".to_owned()).chain(args.to_args());
        let parsed = Parse::try_parse_from(line).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.args, args);
    }
}

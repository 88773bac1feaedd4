//! `simulate`: N real processor processes share P partitions of one hub in the db file. The
//! parent starts them (the hidden `__worker` subcommand of this same binary), shows live
//! progress, optionally SIGKILLs one, stops them when every partition is checkpointed at its
//! last event, and then verifies what they reported against the store.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventhubs_checkpointstore_sqlite::{SqliteCheckpointStore, StoreOptions};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::balance::{fair_share, Strategy};
use crate::protocol::Report;
use crate::{CliError, Durability, EXIT_CHECK_FAILED};

/// The group the simulation uses (and resets at the start) in the db file.
pub const SIM_NAMESPACE: &str = "simulate.eh-checkpoints.local";
/// The event hub of the simulation.
pub const SIM_HUB: &str = "simulated-hub";
/// The consumer group of the simulation.
pub const SIM_GROUP: &str = "$default";

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Processor processes to start.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub processes: u32,
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
    /// Start the processes this many milliseconds apart (0: all at once), so that later ones
    /// have to steal partitions from earlier ones.
    #[arg(long, default_value_t = 1000)]
    pub stagger_ms: u64,
    /// SIGKILL the process holding the most partitions this many seconds after the start.
    #[arg(long, value_name = "SECS")]
    pub kill_after: Option<f64>,
    /// How many partitions a load-balancing cycle may claim. Greedy by default here, so that
    /// the staggered start shows stealing; the official processors default to balanced.
    #[arg(long, value_enum, default_value_t = Strategy::Greedy)]
    pub strategy: Strategy,
    /// When a checkpoint counts as written (`full`: fsynced, the store's default).
    #[arg(long, value_enum, default_value_t = Durability::Full)]
    pub durability: Durability,
    /// Give up (and fail) after this many seconds.
    #[arg(long, default_value_t = 120.0, value_name = "SECS")]
    pub timeout: f64,
}

/// A line from a worker, or the end of its stdout.
enum Msg {
    Line(usize, String),
    Eof(usize),
}

/// The workers, killed and reaped when dropped so that no process outlives the parent's
/// error paths.
struct Workers {
    children: Vec<Child>,
    stdins: Vec<Option<ChildStdin>>,
    stderr: Vec<Arc<Mutex<String>>>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.children {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

#[derive(Debug, Clone)]
struct Win {
    worker: usize,
    partition: String,
    old: Option<String>,
    new: String,
    owner: Option<String>,
    nanos: i64,
}

#[derive(Debug, Clone)]
struct Ack {
    worker: usize,
    partition: String,
    seq: i64,
    etag: String,
    /// Arrival order; within one worker it is the order of its writes.
    order: usize,
}

/// Everything the parent learned from the reports.
struct State {
    names: Vec<String>,
    partitions: Vec<String>,
    events: i64,
    wins: Vec<Win>,
    acks: Vec<Ack>,
    refused: usize,
    lost: usize,
    /// Per partition, the events processed at least once.
    processed: HashMap<String, Ranges>,
    /// Events processed, counting repeats.
    processed_total: u64,
    replayed_after_kill: u64,
    replayed_other: u64,
    /// Current owner per partition from the latest claim: (store time, owner).
    owner_of: HashMap<String, (i64, Option<String>)>,
    /// Highest acknowledged checkpoint per partition.
    acked_max: HashMap<String, i64>,
    ready: Vec<bool>,
    done: Vec<bool>,
    eof: Vec<bool>,
    errors: Vec<String>,
    malformed: usize,
    killed: Option<(usize, Instant, BTreeSet<String>)>,
}

impl State {
    fn apply(&mut self, worker: usize, line: &str, now: Instant) {
        let Some(report) = Report::parse(line) else {
            self.malformed += 1;
            return;
        };
        match report {
            Report::Ready => self.ready[worker] = true,
            Report::Done => self.done[worker] = true,
            Report::Error(e) => self.errors.push(format!("{}: {e}", self.names[worker])),
            Report::Claim {
                partition,
                old_etag,
                new_etag,
                owner,
                nanos,
            } => {
                let cur = self.owner_of.entry(partition.clone()).or_insert((0, None));
                if nanos >= cur.0 {
                    *cur = (nanos, owner.clone());
                }
                self.wins.push(Win {
                    worker,
                    partition,
                    old: old_etag,
                    new: new_etag,
                    owner,
                    nanos,
                });
            }
            Report::Lost { .. } => self.lost += 1,
            Report::Refused { .. } => self.refused += 1,
            Report::Acked {
                partition,
                seq,
                etag,
            } => {
                let max = self.acked_max.entry(partition.clone()).or_insert(-1);
                *max = (*max).max(seq);
                let order = self.acks.len();
                self.acks.push(Ack {
                    worker,
                    partition,
                    seq,
                    etag,
                    order,
                });
            }
            Report::Processed {
                partition,
                from,
                to,
            } => {
                let after_kill = self
                    .killed
                    .as_ref()
                    .is_some_and(|(_, at, set)| now >= *at && set.contains(&partition));
                if from > to {
                    return;
                }
                self.processed_total += (to - from + 1) as u64;
                let replayed = self
                    .processed
                    .entry(partition)
                    .or_default()
                    .insert(from, to);
                if after_kill {
                    self.replayed_after_kill += replayed;
                } else {
                    self.replayed_other += replayed;
                }
            }
        }
    }

    /// Partitions per worker name, from the latest claims.
    fn holdings(&self) -> HashMap<&str, usize> {
        let mut h = HashMap::new();
        for (_, owner) in self.owner_of.values() {
            if let Some(o) = owner {
                *h.entry(o.as_str()).or_insert(0) += 1;
            }
        }
        h
    }

    fn live(&self, worker: usize) -> bool {
        self.killed.as_ref().is_none_or(|(k, _, _)| *k != worker)
    }

    /// Every partition owned by a live worker, each holding its fair share.
    fn balanced(&self) -> bool {
        let live: Vec<&str> = (0..self.names.len())
            .filter(|w| self.live(*w))
            .map(|w| self.names[w].as_str())
            .collect();
        let (min, max) = fair_share(self.partitions.len(), live.len());
        let h = self.holdings();
        let owned_by_live: usize = live.iter().map(|n| h.get(n).copied().unwrap_or(0)).sum();
        owned_by_live == self.partitions.len()
            && live.iter().all(|n| {
                let c = h.get(n).copied().unwrap_or(0);
                c >= min && c <= max
            })
    }

    /// After the kill: no partition is still held by the killed worker.
    fn taken_over(&self) -> bool {
        match &self.killed {
            Some((k, _, set)) => set.iter().all(|p| {
                self.owner_of
                    .get(p)
                    .is_some_and(|(_, o)| o.as_deref().is_some_and(|o| o != self.names[*k]))
            }),
            None => false,
        }
    }
}

/// A set of events as sorted, disjoint, non-adjacent inclusive ranges: what one partition's
/// processing covered, in memory proportional to the number of ownership changes rather than
/// to the number of events.
#[derive(Debug, Clone, Default)]
struct Ranges(Vec<(i64, i64)>);

impl Ranges {
    /// Adds `from..=to` and returns how many of its events were already in the set.
    fn insert(&mut self, from: i64, to: i64) -> u64 {
        let mut overlap = 0;
        let (mut lo, mut hi) = (from, to);
        let mut kept = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < from - 1 || a > to + 1 {
                kept.push((a, b));
            } else {
                overlap += (b.min(to) - a.max(from) + 1).max(0) as u64;
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        kept.push((lo, hi));
        kept.sort_unstable();
        self.0 = kept;
        overlap
    }

    /// How many events of `from..=to` are not in the set.
    fn missing(&self, from: i64, to: i64) -> u64 {
        let wanted = (to - from + 1).max(0) as u64;
        let covered: u64 = self
            .0
            .iter()
            .map(|&(a, b)| (b.min(to) - a.max(from) + 1).max(0) as u64)
            .sum();
        wanted - covered.min(wanted)
    }

    #[cfg(test)]
    fn of(ranges: &[(i64, i64)]) -> Ranges {
        let mut r = Ranges::default();
        for &(a, b) in ranges {
            r.insert(a, b);
        }
        r
    }
}

/// The final report, printed as a table or as JSON.
#[derive(Debug, Serialize)]
pub struct SimReport {
    pub db: PathBuf,
    pub namespace: &'static str,
    pub event_hub: &'static str,
    pub consumer_group: &'static str,
    pub processes: u32,
    pub partitions: u32,
    pub events_per_partition: i64,
    pub checkpoint_every: i64,
    pub interval_ms: u64,
    pub expiry_ms: u64,
    pub strategy: &'static str,
    pub balanced_after_secs: Option<f64>,
    pub killed: Option<KillReport>,
    pub finished_after_secs: f64,
    pub checkpoints_written: usize,
    pub fenced_writes_refused: usize,
    pub claims_won: usize,
    pub partitions_lost: usize,
    pub events_processed: u64,
    pub events_replayed: u64,
    pub events_replayed_after_takeover: u64,
    pub checks: Vec<CheckResult>,
    pub ok: bool,
}

#[derive(Debug, Serialize)]
pub struct KillReport {
    pub process: String,
    pub at_secs: f64,
    pub partitions: usize,
    pub taken_over_after_secs: Option<f64>,
    pub rebalanced_after_secs: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct CheckResult {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &'static str, problems: Vec<String>, ok_detail: String) -> CheckResult {
    match problems.first() {
        None => CheckResult {
            name,
            ok: true,
            detail: ok_detail,
        },
        Some(first) => CheckResult {
            name,
            ok: false,
            detail: format!("{} problem(s), first: {first}", problems.len()),
        },
    }
}

/// Starts one worker process and the threads that read its stdout and stderr.
fn spawn_worker(
    exe: &Path,
    db: &Path,
    args: &SimulateArgs,
    name: &str,
    workers: &mut Workers,
    tx: &Sender<Msg>,
) -> Result<(), CliError> {
    let i = workers.children.len();
    let mut cmd = Command::new(exe);
    cmd.arg("--db")
        .arg(db)
        .arg("__worker")
        .args(["--id", name])
        .args(["--namespace", SIM_NAMESPACE, "--hub", SIM_HUB])
        .args(["--group", SIM_GROUP])
        .args(["--partitions", &args.partitions.to_string()])
        .args(["--events", &args.events.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .args(["--checkpoint-every", &args.checkpoint_every.to_string()])
        .args(["--interval-ms", &args.interval_ms.to_string()])
        .args(["--expiry-ms", &args.expiry_ms.to_string()])
        .args(["--strategy", strategy_name(args.strategy)])
        .args(["--durability", durability_name(args.durability)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::runtime(format!("cannot start a worker process: {e}")))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let sink = Arc::new(Mutex::new(String::new()));
    workers.children.push(child);
    workers.stdins.push(stdin);
    workers.stderr.push(Arc::clone(&sink));
    let stdout = stdout.ok_or_else(|| CliError::runtime("a worker has no stdout"))?;
    let tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    if tx.send(Msg::Line(i, l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Msg::Eof(i));
    });
    if let Some(mut stderr) = stderr {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            if let Ok(mut s) = sink.lock() {
                s.push_str(&text);
            }
        });
    }
    Ok(())
}

struct Display {
    multi: MultiProgress,
    bars: Vec<ProgressBar>,
    total: ProgressBar,
}

impl Display {
    fn new(names: &[String], partitions: u64, events: u64) -> Display {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let style = ProgressStyle::with_template(
            "{prefix:>8} {bar:32.cyan/blue} {pos:>3} partitions  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("█▉▊▋▌▍▎▏ ");
        let bars = names
            .iter()
            .map(|n| {
                let b = multi.add(ProgressBar::new(partitions));
                b.set_style(style.clone());
                b.set_prefix(n.clone());
                b
            })
            .collect();
        let total = multi.add(ProgressBar::new(partitions * events));
        total.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} {bar:32.green/white} {percent:>3}% of events checkpointed  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        total.set_prefix("total");
        Display { multi, bars, total }
    }

    /// A line above the bars, or on stderr when no bars are drawn (not a terminal).
    fn note(&self, line: &str) {
        if self.multi.is_hidden() {
            eprintln!("{line}");
        } else {
            let _ = self.multi.println(line);
        }
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 100.0).round() / 100.0
}

/// Runs the simulation and returns its report (whose `ok` says whether every check passed).
pub fn run(db: &Path, args: &SimulateArgs) -> Result<SimReport, CliError> {
    if args.expiry_ms <= args.interval_ms {
        return Err(CliError::usage(
            "--expiry-ms must be greater than --interval-ms (as the official processors require)",
        ));
    }
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        return Err(CliError::usage("--rate must be a positive number"));
    }
    let exe = std::env::current_exe()
        .map_err(|e| CliError::runtime(format!("cannot find this program's path: {e}")))?;
    let options = StoreOptions::new().with_durability(args.durability.into());
    let store = SqliteCheckpointStore::open_with(db, options).map_err(CliError::from)?;
    // The simulation's own group starts empty on every run.
    store
        .blocking_delete_group(SIM_NAMESPACE, SIM_HUB, SIM_GROUP)
        .map_err(CliError::from)?;

    let names: Vec<String> = (1..=args.processes).map(|i| format!("proc-{i}")).collect();
    let partitions: Vec<String> = (0..args.partitions).map(|p| p.to_string()).collect();
    let started = Instant::now();
    let mut workers = Workers {
        children: Vec::new(),
        stdins: Vec::new(),
        stderr: Vec::new(),
    };
    let (tx, rx) = mpsc::channel();
    let n = names.len();
    let stagger = Duration::from_millis(args.stagger_ms);
    let mut state = State {
        names: names.clone(),
        partitions: partitions.clone(),
        events: args.events,
        wins: Vec::new(),
        acks: Vec::new(),
        refused: 0,
        lost: 0,
        processed: HashMap::new(),
        processed_total: 0,
        replayed_after_kill: 0,
        replayed_other: 0,
        owner_of: HashMap::new(),
        acked_max: HashMap::new(),
        ready: vec![false; n],
        done: vec![false; n],
        eof: vec![false; n],
        errors: Vec::new(),
        malformed: 0,
        killed: None,
    };
    let display = Display::new(&names, u64::from(args.partitions), args.events as u64);
    let mut balanced_at: Option<Instant> = None;
    let mut taken_over_at: Option<Instant> = None;
    let mut rebalanced_at: Option<Instant> = None;
    let mut complete_at: Option<Instant> = None;
    let mut last_poll = Instant::now();
    let mut ack_times: Vec<Instant> = Vec::new();
    let timeout = Duration::from_secs_f64(args.timeout.max(1.0));

    let outcome: Result<(), CliError> = loop {
        // Start the next process when its turn has come.
        let started_count = workers.children.len();
        if started_count < n && started.elapsed() >= stagger * started_count as u32 {
            if let Err(e) = spawn_worker(&exe, db, args, &names[started_count], &mut workers, &tx) {
                break Err(e);
            }
            continue;
        }
        if let Err(e) = drain(&rx, &mut state, Duration::from_millis(50)) {
            break Err(e);
        }
        let now = Instant::now();
        ack_times.extend(std::iter::repeat_n(
            now,
            state.acks.len().saturating_sub(ack_times.len()),
        ));
        if let Some(e) = state.errors.first() {
            break Err(CliError::runtime(format!("a worker failed: {e}")));
        }
        if let Some(w) = (0..n).find(|w| state.eof[*w] && state.live(*w)) {
            // A worker may only end when told to stop (or when killed).
            break Err(CliError::runtime(format!(
                "{} exited unexpectedly{}",
                names[w],
                stderr_tail(&workers, w)
            )));
        }
        if balanced_at.is_none() && state.balanced() {
            balanced_at = Some(now);
            display.note(&format!(
                "balanced after {:.2} s: every process holds its fair share",
                secs(now - started)
            ));
        }
        if let (Some(after), None) = (args.kill_after, &state.killed) {
            if now - started >= Duration::from_secs_f64(after.max(0.0)) {
                let holdings = state.holdings();
                let victim = (0..workers.children.len())
                    .max_by_key(|w| holdings.get(names[*w].as_str()).copied().unwrap_or(0))
                    .unwrap_or(0);
                let held: BTreeSet<String> = state
                    .owner_of
                    .iter()
                    .filter(|(_, (_, o))| o.as_deref() == Some(names[victim].as_str()))
                    .map(|(p, _)| p.clone())
                    .collect();
                // `Child::kill` is SIGKILL on Unix: no release, no last checkpoint.
                workers.children[victim].kill().map_err(|e| {
                    CliError::runtime(format!("cannot kill {}: {e}", names[victim]))
                })?;
                workers.stdins[victim] = None;
                display.note(&format!(
                    "{:.2} s: killed {} (SIGKILL) holding {} partitions",
                    secs(now - started),
                    names[victim],
                    held.len()
                ));
                display.bars[victim].set_message("killed");
                display.bars[victim].set_position(0);
                state.killed = Some((victim, now, held));
            }
        }
        if let Some((_, at, _)) = &state.killed {
            if taken_over_at.is_none() && state.taken_over() {
                taken_over_at = Some(now);
                display.note(&format!(
                    "taken over {:.2} s after the kill: its partitions have live owners",
                    secs(now - *at)
                ));
            }
            if rebalanced_at.is_none() && taken_over_at.is_some() && state.balanced() {
                rebalanced_at = Some(now);
            }
        }
        // Progress.
        let holdings = state.holdings();
        for (w, bar) in display.bars.iter().enumerate() {
            if state.live(w) {
                bar.set_position(holdings.get(names[w].as_str()).copied().unwrap_or(0) as u64);
                let acked = state.acks.iter().filter(|a| a.worker == w).count();
                bar.set_message(format!("{acked} checkpoints"));
            }
        }
        let window = now.checked_sub(Duration::from_secs(1)).unwrap_or(started);
        let rate = ack_times.iter().rev().take_while(|t| **t >= window).count();
        let done_events: i64 = state.acked_max.values().map(|s| s + 1).sum();
        display.total.set_position(done_events.max(0) as u64);
        display.total.set_message(format!(
            "{rate} checkpoints/s  {:.1} s",
            (now - started).as_secs_f64()
        ));
        // Completion is read from the store: every partition checkpointed at its last event.
        if complete_at.is_none() && now - last_poll >= Duration::from_millis(250) {
            last_poll = now;
            let checkpoints = store
                .blocking_list_checkpoints(SIM_NAMESPACE, SIM_HUB, SIM_GROUP)
                .map_err(CliError::from)?;
            let finished = checkpoints
                .iter()
                .filter(|c| c.sequence_number == Some(args.events - 1))
                .count();
            if finished == partitions.len() {
                complete_at = Some(now);
            }
        }
        let kill_done = args.kill_after.is_none() || taken_over_at.is_some();
        if complete_at.is_some() && kill_done && workers.children.len() == n {
            break Ok(());
        }
        if now - started > timeout {
            break Err(CliError::check(format!(
                "the simulation did not finish within {} s",
                args.timeout
            )));
        }
    };
    if let Err(e) = outcome {
        display.multi.clear().ok();
        return Err(e);
    }
    let finished_at = Instant::now();

    // Stop the live workers: each releases its partitions, reports them, and exits.
    for (w, stdin) in workers.stdins.iter_mut().enumerate() {
        if let Some(mut s) = stdin.take() {
            if writeln!(s, "stop").is_err() && state.live(w) {
                return Err(CliError::runtime(format!(
                    "cannot stop {}: it is gone",
                    names[w]
                )));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(0..n).all(|w| state.eof[w]) {
        if Instant::now() > deadline {
            return Err(CliError::runtime("the workers did not stop within 15 s"));
        }
        drain(&rx, &mut state, Duration::from_millis(50))?;
    }
    for (w, c) in workers.children.iter_mut().enumerate() {
        let status = c
            .wait()
            .map_err(|e| CliError::runtime(format!("cannot wait for {}: {e}", names[w])))?;
        if state.live(w) && (!status.success() || !state.done[w]) {
            return Err(CliError::runtime(format!(
                "{} ended badly ({status}){}",
                names[w],
                stderr_tail(&workers, w)
            )));
        }
    }
    if let Some(e) = state.errors.first() {
        return Err(CliError::runtime(format!("a worker failed: {e}")));
    }
    display.multi.clear().ok();
    for b in &display.bars {
        b.finish_and_clear();
    }
    display.total.finish_and_clear();

    let checks = verify(&state, &store)?;
    let ok = checks.iter().all(|c| c.ok);
    let processed = state.processed_total;
    let report = SimReport {
        db: db.to_owned(),
        namespace: SIM_NAMESPACE,
        event_hub: SIM_HUB,
        consumer_group: SIM_GROUP,
        processes: args.processes,
        partitions: args.partitions,
        events_per_partition: args.events,
        checkpoint_every: args.checkpoint_every,
        interval_ms: args.interval_ms,
        expiry_ms: args.expiry_ms,
        strategy: strategy_name(args.strategy),
        balanced_after_secs: balanced_at.map(|t| secs(t - started)),
        killed: state.killed.as_ref().map(|(w, at, set)| KillReport {
            process: names[*w].clone(),
            at_secs: secs(*at - started),
            partitions: set.len(),
            taken_over_after_secs: taken_over_at.map(|t| secs(t - *at)),
            rebalanced_after_secs: rebalanced_at.map(|t| secs(t - *at)),
        }),
        finished_after_secs: secs(finished_at - started),
        checkpoints_written: state.acks.len(),
        fenced_writes_refused: state.refused,
        claims_won: state.wins.len(),
        partitions_lost: state.lost,
        events_processed: processed,
        events_replayed: state.replayed_after_kill + state.replayed_other,
        events_replayed_after_takeover: state.replayed_after_kill,
        checks,
        ok,
    };
    Ok(report)
}

/// Applies every message that arrives within `wait` (at least one wait, then what is queued).
fn drain(rx: &Receiver<Msg>, state: &mut State, wait: Duration) -> Result<(), CliError> {
    let mut first = true;
    loop {
        let msg = if first {
            first = false;
            match rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => return Ok(()),
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        } else {
            match rx.try_recv() {
                Ok(m) => m,
                Err(_) => return Ok(()),
            }
        };
        let now = Instant::now();
        match msg {
            Msg::Line(w, line) => state.apply(w, &line, now),
            Msg::Eof(w) => state.eof[w] = true,
        }
    }
}

fn stderr_tail(workers: &Workers, w: usize) -> String {
    let text = workers.stderr[w]
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        let tail: String = text
            .chars()
            .rev()
            .take(500)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!(": {tail}")
    }
}

fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::Balanced => "balanced",
        Strategy::Greedy => "greedy",
    }
}

fn durability_name(d: Durability) -> &'static str {
    match d {
        Durability::Full => "full",
        Durability::Normal => "normal",
    }
}

/// The checks, from the reports and the final state of the store.
///
/// 1. One owner per ownership generation: a generation is identified by the etag a claim
///    presents (none for the first). Every (partition, presented etag) must have exactly one
///    winning claim.
/// 2. The claims of a partition form one chain from its creation to the etag the store holds
///    now: each claim presents the etag the previous one produced. A killed worker may have
///    won a claim it never reported, so one gap per partition is allowed after a kill.
/// 3. Every acknowledged checkpoint was written under the writer's own ownership: its etag
///    is one that the same worker won.
/// 4. No acknowledged checkpoint went backwards: ordered by store history, that is by the
///    position of their fencing etag in the partition's chain and then by the order in which
///    the one owner of that generation wrote them, the sequence numbers never decrease; and
///    the store's final checkpoint is not below the last acknowledged one.
/// 5. Every event from 0 up to the partition's final checkpoint was processed at least once,
///    and the final checkpoint is the last event.
fn verify(state: &State, store: &SqliteCheckpointStore) -> Result<Vec<CheckResult>, CliError> {
    let final_owners = store
        .blocking_list_ownerships(SIM_NAMESPACE, SIM_HUB, SIM_GROUP)
        .map_err(CliError::from)?;
    let final_checkpoints = store
        .blocking_list_checkpoints(SIM_NAMESPACE, SIM_HUB, SIM_GROUP)
        .map_err(CliError::from)?;
    let killed = state.killed.is_some();
    let victim = state.killed.as_ref().map(|(w, _, _)| &state.names[*w]);
    let mut checks = Vec::new();

    // 1.
    let mut winners: HashMap<(&str, Option<&str>), Vec<&Win>> = HashMap::new();
    for w in &state.wins {
        winners
            .entry((w.partition.as_str(), w.old.as_deref()))
            .or_default()
            .push(w);
    }
    let problems: Vec<String> = winners
        .iter()
        .filter(|(_, ws)| ws.len() > 1)
        .map(|((p, old), ws)| {
            format!(
                "partition {p}, generation {}: won by {}",
                old.unwrap_or("(create)"),
                ws.iter()
                    .map(|w| state.names[w.worker].as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        })
        .collect();
    checks.push(check(
        "one owner per ownership generation",
        problems,
        format!(
            "{} claims won, each (partition, etag) exactly once",
            state.wins.len()
        ),
    ));

    // 2.
    let mut chain_index: HashMap<(&str, &str), usize> = HashMap::new();
    let mut problems = Vec::new();
    let mut generations = 0;
    for p in &state.partitions {
        let mut by_old: HashMap<Option<&str>, &Win> = HashMap::new();
        for w in state.wins.iter().filter(|w| &w.partition == p) {
            by_old.insert(w.old.as_deref(), w);
        }
        let produced: HashSet<&str> = state
            .wins
            .iter()
            .filter(|w| &w.partition == p)
            .map(|w| w.new.as_str())
            .collect();
        let mut orphans: Vec<&Win> = by_old
            .iter()
            .filter(|(old, _)| old.is_some_and(|o| !produced.contains(o)))
            .map(|(_, w)| *w)
            .collect();
        orphans.sort_by_key(|w| w.nanos);
        let mut gaps = 0;
        let mut at: Option<&str> = None;
        let mut index = 0;
        let mut last: Option<&str> = None;
        loop {
            let next = match by_old.get(&at) {
                Some(w) => *w,
                None => match orphans.get(gaps) {
                    Some(w) if killed && gaps == 0 => {
                        gaps += 1;
                        *w
                    }
                    _ => break,
                },
            };
            chain_index.insert((p.as_str(), next.new.as_str()), index);
            index += 1;
            last = Some(next.new.as_str());
            at = Some(next.new.as_str());
            if index > state.wins.len() {
                break;
            }
        }
        generations += index;
        let on_chain = state.wins.iter().filter(|w| &w.partition == p).count();
        if index != on_chain {
            problems.push(format!(
                "partition {p}: {} of its {on_chain} claims are not on one chain",
                on_chain.saturating_sub(index)
            ));
        }
        let stored = final_owners.iter().find(|o| &o.partition_id == p);
        let stored_etag = stored.and_then(|o| o.etag.as_deref());
        // The killed worker may have won a last claim it never reported.
        let unreported_last = killed
            && gaps == 0
            && stored.and_then(|o| o.owner_id.as_deref()) == victim.map(|v| v.as_str());
        if stored_etag != last && !unreported_last {
            let stored = stored_etag;
            problems.push(format!(
                "partition {p}: the store's etag {} is not the last claim's {}",
                stored.unwrap_or("(none)"),
                last.unwrap_or("(none)")
            ));
        }
    }
    checks.push(check(
        "claims form one chain per partition, ending at the stored etag",
        problems,
        format!("{generations} claims on {} chains", state.partitions.len()),
    ));

    // 3.
    // (partition, etag) -> the worker that won it, if it won it as the owner.
    let won_by: HashMap<(&str, &str), usize> = state
        .wins
        .iter()
        .filter(|w| w.owner.as_deref() == Some(state.names[w.worker].as_str()))
        .map(|w| ((w.partition.as_str(), w.new.as_str()), w.worker))
        .collect();
    let problems: Vec<String> = state
        .acks
        .iter()
        .filter(|a| won_by.get(&(a.partition.as_str(), a.etag.as_str())) != Some(&a.worker))
        .map(|a| {
            format!(
                "{} acknowledged checkpoint {} of partition {} under etag {} it never won",
                state.names[a.worker], a.seq, a.partition, a.etag
            )
        })
        .collect();
    checks.push(check(
        "every acknowledged checkpoint was fenced by its writer's own claim",
        problems,
        format!("{} acknowledged fenced writes", state.acks.len()),
    ));

    // 4.
    let mut problems = Vec::new();
    for p in &state.partitions {
        let mut acks: Vec<(usize, usize, i64)> = state
            .acks
            .iter()
            .filter(|a| &a.partition == p)
            .map(|a| {
                let idx = chain_index
                    .get(&(a.partition.as_str(), a.etag.as_str()))
                    .copied()
                    .unwrap_or(usize::MAX);
                (idx, a.order, a.seq)
            })
            .collect();
        acks.sort();
        for pair in acks.windows(2) {
            if pair[1].2 < pair[0].2 {
                problems.push(format!(
                    "partition {p}: checkpoint {} acknowledged after {}",
                    pair[1].2, pair[0].2
                ));
            }
        }
        let stored = final_checkpoints
            .iter()
            .find(|c| &c.partition_id == p)
            .and_then(|c| c.sequence_number);
        if let Some((_, _, last)) = acks.last() {
            if stored.is_none_or(|s| s < *last) {
                problems.push(format!(
                    "partition {p}: the store ends at {stored:?}, below the acknowledged {last}"
                ));
            }
        }
    }
    checks.push(check(
        "acknowledged checkpoints never went backwards",
        problems,
        format!(
            "{} acknowledged writes in store order, non-decreasing on every partition",
            state.acks.len()
        ),
    ));

    // 5.
    let mut problems = Vec::new();
    let mut covered = 0u64;
    for p in &state.partitions {
        let stored = final_checkpoints
            .iter()
            .find(|c| &c.partition_id == p)
            .and_then(|c| c.sequence_number)
            .unwrap_or(-1);
        if stored != state.events - 1 {
            problems.push(format!(
                "partition {p}: final checkpoint {stored}, expected {}",
                state.events - 1
            ));
        }
        let missing = state
            .processed
            .get(p)
            .map_or((stored + 1).max(0) as u64, |r| r.missing(0, stored));
        if missing > 0 {
            problems.push(format!(
                "partition {p}: {missing} events up to {stored} were never processed"
            ));
        }
        covered += (stored + 1).max(0) as u64;
    }
    checks.push(check(
        "every event up to the final checkpoint processed at least once",
        problems,
        format!("{covered} events on {} partitions", state.partitions.len()),
    ));
    Ok(checks)
}

/// Prints the report for people.
pub fn print(report: &SimReport) {
    let r = report;
    println!(
        "simulate: {} processes, {} partitions x {} events, a checkpoint every {} events",
        r.processes, r.partitions, r.events_per_partition, r.checkpoint_every
    );
    println!(
        "          load balancing every {} ms, ownership expiry {} ms, {} claiming",
        r.interval_ms, r.expiry_ms, r.strategy
    );
    println!(
        "store:    {} (group {}/{}/{})",
        r.db.display(),
        r.namespace,
        r.event_hub,
        r.consumer_group
    );
    println!();
    let t = |s: Option<f64>| s.map_or("never".to_owned(), |s| format!("{s:.2} s"));
    println!("balanced after             {}", t(r.balanced_after_secs));
    if let Some(k) = &r.killed {
        println!(
            "killed                     {} at {:.2} s (SIGKILL, holding {} partitions)",
            k.process, k.at_secs, k.partitions
        );
        println!(
            "taken over after           {} (its partitions claimed by live processes)",
            t(k.taken_over_after_secs)
        );
        println!(
            "rebalanced after           {} (after the kill)",
            t(k.rebalanced_after_secs)
        );
    }
    println!("finished after             {:.2} s", r.finished_after_secs);
    println!();
    println!("checkpoints written        {}", r.checkpoints_written);
    println!(
        "fenced writes refused      {} (stale owners kept out)",
        r.fenced_writes_refused
    );
    println!(
        "claims won                 {} (renewals and releases included)",
        r.claims_won
    );
    println!("events processed           {}", r.events_processed);
    println!(
        "events replayed            {} ({} after the takeover, {} after steals while balancing)",
        r.events_replayed,
        r.events_replayed_after_takeover,
        r.events_replayed - r.events_replayed_after_takeover
    );
    println!();
    for c in &r.checks {
        println!(
            "{}  {}: {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    println!();
    if r.ok {
        println!("all checks passed");
    } else {
        println!("SOME CHECKS FAILED (exit code {EXIT_CHECK_FAILED})");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eventhubs_checkpointstore_sqlite::migrate::export::StoreExport;
    use eventhubs_checkpointstore_sqlite::migrate::OnConflict;

    /// One partition, three events: proc-1 creates the ownership and checkpoints event 0,
    /// proc-2 steals it and checkpoints event 2; the store ends at etag e2, sequence 2.
    fn scenario() -> (State, SqliteCheckpointStore) {
        let win = |worker: usize, old: Option<&str>, new: &str, nanos: i64| Win {
            worker,
            partition: "0".into(),
            old: old.map(Into::into),
            new: new.into(),
            owner: Some(format!("proc-{}", worker + 1)),
            nanos,
        };
        let ack = |worker: usize, seq: i64, etag: &str, order: usize| Ack {
            worker,
            partition: "0".into(),
            seq,
            etag: etag.into(),
            order,
        };
        let state = State {
            names: vec!["proc-1".into(), "proc-2".into()],
            partitions: vec!["0".into()],
            events: 3,
            wins: vec![win(0, None, "e1", 1), win(1, Some("e1"), "e2", 2)],
            acks: vec![ack(0, 0, "e1", 0), ack(1, 2, "e2", 1)],
            refused: 0,
            lost: 0,
            processed: HashMap::from([("0".to_owned(), Ranges::of(&[(0, 2), (1, 1)]))]),
            processed_total: 4,
            replayed_after_kill: 0,
            replayed_other: 1,
            owner_of: HashMap::new(),
            acked_max: HashMap::new(),
            ready: vec![true; 2],
            done: vec![true; 2],
            eof: vec![true; 2],
            errors: vec![],
            malformed: 0,
            killed: None,
        };
        let store = SqliteCheckpointStore::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
        let json = format!(
            r#"{{"format":"eh-checkpoints-export","format_version":1,"schema_version":1,
            "ownerships":[{{"namespace":"{SIM_NAMESPACE}","event_hub":"{SIM_HUB}",
              "consumer_group":"{SIM_GROUP}","partition_id":"0","owner_id":"proc-2",
              "etag":"e2","last_modified":"2026-01-01T00:00:00Z","epoch":2}}],
            "checkpoints":[{{"namespace":"{SIM_NAMESPACE}","event_hub":"{SIM_HUB}",
              "consumer_group":"{SIM_GROUP}","partition_id":"0","offset":"256",
              "sequence_number":2}}]}}"#
        );
        let export = StoreExport::from_json(&json).unwrap_or_else(|e| panic!("{e}"));
        store
            .blocking_import(&export, OnConflict::Refuse)
            .unwrap_or_else(|e| panic!("{e}"));
        (state, store)
    }

    fn failed(state: &State, store: &SqliteCheckpointStore) -> Vec<&'static str> {
        verify(state, store)
            .unwrap_or_else(|e| panic!("{}", e.message))
            .into_iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn ranges_count_repeats_and_gaps() {
        let mut r = Ranges::default();
        assert_eq!(r.insert(0, 9), 0);
        assert_eq!(r.insert(20, 29), 0);
        assert_eq!(r.missing(0, 29), 10);
        assert_eq!(r.insert(5, 24), 10, "5..=9 and 20..=24 were seen");
        assert_eq!(r.insert(30, 30), 0, "adjacent ranges merge");
        assert_eq!(r.0, [(0, 30)]);
        assert_eq!(r.missing(0, 30), 0);
        assert_eq!(r.missing(0, 31), 1);
    }

    #[test]
    fn a_consistent_history_passes_every_check() {
        let (state, store) = scenario();
        assert!(failed(&state, &store).is_empty());
    }

    #[test]
    fn each_violation_fails_its_check() {
        let (mut s, store) = scenario();
        s.wins.push(Win {
            worker: 0,
            new: "e3".into(),
            ..s.wins[1].clone()
        });
        assert!(failed(&s, &store).contains(&"one owner per ownership generation"));

        let (mut s, store) = scenario();
        s.wins[1].old = Some("unknown".into());
        assert_eq!(
            failed(&s, &store),
            ["claims form one chain per partition, ending at the stored etag"]
        );

        let (mut s, store) = scenario();
        s.acks.push(Ack {
            worker: 0,
            ..s.acks[1].clone()
        });
        assert_eq!(
            failed(&s, &store),
            ["every acknowledged checkpoint was fenced by its writer's own claim"]
        );

        let (mut s, store) = scenario();
        s.acks.push(Ack {
            seq: 1,
            order: 2,
            ..s.acks[1].clone()
        });
        assert_eq!(
            failed(&s, &store),
            ["acknowledged checkpoints never went backwards"]
        );

        let (mut s, store) = scenario();
        s.processed
            .insert("0".into(), Ranges::of(&[(0, 0), (2, 2)]));
        assert_eq!(
            failed(&s, &store),
            ["every event up to the final checkpoint processed at least once"]
        );
    }
}

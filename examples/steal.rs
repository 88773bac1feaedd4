//! Contention workload (feature `azure`): tasks keep stealing each other's partitions through
//! the official `azure_messaging_eventhubs::CheckpointStore` trait, in one process or several.
//!
//! ```text
//! cargo run --release --features azure --example steal -- [--tasks 8] [--partitions 32]
//!     [--rounds 50] [--processes 1] [--durability full|normal] [--db PATH]
//!     [--spin-wait-us 250] [--plain]
//! ```
//! The partitions are claimed by a seed owner first. Then, in each round, each task lists the
//! ownerships and makes 4 claim calls of one partition each, with the etag it listed, owner
//! `p<process>-t<task>`: partitions `(3·task + i + 7·round) mod partitions`, so that neighbouring
//! tasks compete for one partition per round and every partition keeps changing hands. Prints
//! the claim calls, how many won, their throughput (calls per second of the whole run), the
//! p50/p99/max latency of one claim call, and the store's busy waits (SQLite lock waits: zero in
//! one process), in-process lock waits, cross-process gate waits, claim calls committed and
//! `-wal` fsyncs (at FULL: how many claims share one fsync) with their mean duration (the
//! disk's part of a claim's wait).
//!
//! `--processes N` starts N copies of this program on one file (N × tasks claimers), which
//! begin together; the figures are over all of them. `--plain` runs the baseline instead: one
//! plain rusqlite connection per process behind a mutex (benches/common/plain_store.rs).

#[path = "../benches/common/plain_store.rs"]
mod plain_store;

use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use azure_messaging_eventhubs::models::Ownership;
use azure_messaging_eventhubs::CheckpointStore;
use eventhubs_checkpointstore_sqlite::{Durability, SqliteCheckpointStore, StoreOptions};

const NS: &str = "steal.servicebus.windows.net";
const HUB: &str = "hub";
const GROUP: &str = "$Default";

#[derive(Clone)]
struct Args {
    tasks: usize,
    partitions: usize,
    rounds: usize,
    processes: usize,
    durability: Durability,
    db: Option<PathBuf>,
    plain: bool,
    spin_wait: Option<Duration>,
    /// Set in a child process: its index and the Unix time (ms) at which to begin.
    child: Option<(usize, u128)>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        tasks: 8,
        partitions: 32,
        rounds: 50,
        processes: 1,
        durability: Durability::Full,
        db: None,
        plain: false,
        spin_wait: None,
        child: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--tasks" => args.tasks = number(value()?)?,
            "--partitions" => args.partitions = number(value()?)?,
            "--rounds" => args.rounds = number(value()?)?,
            "--processes" => args.processes = number(value()?)?,
            "--db" => args.db = Some(PathBuf::from(value()?)),
            "--plain" => args.plain = true,
            "--spin-wait-us" => {
                args.spin_wait = Some(Duration::from_micros(number(value()?)? as u64));
            }
            "--durability" => {
                args.durability = match value()?.as_str() {
                    "full" => Durability::Full,
                    "normal" => Durability::Normal,
                    other => return Err(format!("unknown durability {other}")),
                }
            }
            "--child" => {
                let index = number(value()?)?;
                let start = value()?.parse::<u128>().map_err(|e| format!("{e}"))?;
                args.child = Some((index, start));
            }
            "-h" | "--help" => {
                return Err("usage: steal [--tasks N] [--partitions N] [--rounds N] \
                     [--processes N] [--durability full|normal] [--db PATH] \
                     [--spin-wait-us US] [--plain]"
                    .into())
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.tasks == 0 || args.partitions == 0 || args.processes == 0 {
        return Err("--tasks, --partitions and --processes must be at least 1".into());
    }
    Ok(args)
}

fn fail(message: String) -> ! {
    eprintln!("{message}");
    std::process::exit(1)
}

fn ownership(partition: usize, owner: &str, etag: Option<azure_core::http::Etag>) -> Ownership {
    Ownership {
        fully_qualified_namespace: NS.into(),
        event_hub_name: HUB.into(),
        consumer_group: GROUP.into(),
        partition_id: partition.to_string(),
        owner_id: Some(owner.into()),
        etag,
        last_modified_time: None,
    }
}

/// What one process measured.
#[derive(Default)]
struct Measured {
    latencies_us: Vec<u64>,
    won: usize,
    elapsed: Duration,
    busy_waits: u64,
    lock_waits: u64,
    gate_waits: u64,
    claims: u64,
    wal_syncs: u64,
    /// The time the `-wal` fsyncs took, in all (µs).
    wal_sync_us: u64,
}

enum Store {
    Ours(SqliteCheckpointStore),
    Plain(plain_store::PlainStore),
}

impl Store {
    fn open(args: &Args, path: &Path, create: bool) -> Arc<Store> {
        Arc::new(if args.plain {
            match plain_store::PlainStore::open(path, args.durability, create) {
                Ok(s) => Store::Plain(s),
                Err(e) => fail(format!("cannot open {}: {e}", path.display())),
            }
        } else {
            let mut options = StoreOptions::new().with_durability(args.durability);
            if let Some(spin_wait) = args.spin_wait {
                options = options.with_spin_wait(spin_wait);
            }
            match SqliteCheckpointStore::open_with(path, options) {
                Ok(s) => Store::Ours(s),
                Err(e) => fail(format!("cannot open {}: {e}", path.display())),
            }
        })
    }

    fn official(&self) -> &dyn CheckpointStore {
        match self {
            Store::Ours(s) => s,
            Store::Plain(s) => s,
        }
    }
}

/// One task's rounds; returns its claim latencies (µs) and how many claims won.
async fn task(store: Arc<Store>, args: Args, process: usize, t: usize) -> (Vec<u64>, usize) {
    let owner = format!("p{process}-t{t}");
    let (mut latencies, mut won) = (Vec::with_capacity(args.rounds * 4), 0);
    for round in 0..args.rounds {
        let listed = match store.official().list_ownerships(NS, HUB, GROUP).await {
            Ok(l) => l,
            Err(e) => fail(format!("list failed: {e}")),
        };
        for i in 0..4 {
            let p = (3 * t + i + 7 * round) % args.partitions;
            let etag = listed
                .iter()
                .find(|o| o.partition_id == p.to_string())
                .and_then(|o| o.etag.clone());
            let started = Instant::now();
            match store
                .official()
                .claim_ownership(&[ownership(p, &owner, etag)])
                .await
            {
                Ok(w) => won += w.len(),
                Err(e) => fail(format!("claim failed: {e}")),
            }
            latencies.push(started.elapsed().as_micros() as u64);
        }
    }
    (latencies, won)
}

/// Runs this process's tasks against the file.
fn run_here(args: &Args, path: &Path, process: usize, start_at: Option<u128>) -> Measured {
    let store = Store::open(args, path, false);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => fail(format!("cannot start a runtime: {e}")),
    };
    if let Some(at) = start_at {
        let now = unix_ms();
        if at > now {
            std::thread::sleep(Duration::from_millis((at - now) as u64));
        }
    }
    let started = Instant::now();
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..args.tasks)
            .map(|t| tokio::spawn(task(Arc::clone(&store), args.clone(), process, t)))
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            match t.await {
                Ok(r) => results.push(r),
                Err(e) => fail(format!("a task panicked: {e}")),
            }
        }
        results
    });
    let mut measured = Measured {
        elapsed: started.elapsed(),
        ..Measured::default()
    };
    for (latencies, won) in results {
        measured.latencies_us.extend(latencies);
        measured.won += won;
    }
    if let Store::Ours(s) = &*store {
        let stats = s.commit_stats();
        measured.busy_waits = stats.busy_waits;
        measured.lock_waits = stats.lock_waits;
        measured.gate_waits = stats.gate_waits;
        measured.claims = stats.claims;
        measured.wal_syncs = stats.wal_syncs;
        measured.wal_sync_us = stats.wal_sync_time.as_micros() as u64;
    }
    measured
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Creates the file and claims every partition for a seed owner.
fn seed(args: &Args, path: &Path) {
    let store = Store::open(args, path, true);
    let runtime = match tokio::runtime::Builder::new_current_thread().build() {
        Ok(r) => r,
        Err(e) => fail(format!("cannot start a runtime: {e}")),
    };
    let all: Vec<_> = (0..args.partitions)
        .map(|p| ownership(p, "seed", None))
        .collect();
    match runtime.block_on(store.official().claim_ownership(&all)) {
        Ok(won) if won.len() == args.partitions => {}
        Ok(won) => fail(format!("seeding won {} of {}", won.len(), args.partitions)),
        Err(e) => fail(format!("seeding failed: {e}")),
    }
}

/// Starts `processes` children on the file and gathers what they measured.
fn run_children(args: &Args, path: &Path) -> Measured {
    let exe = std::env::current_exe().unwrap_or_else(|e| fail(format!("no executable: {e}")));
    let start_at = unix_ms() + 300 + 100 * args.processes as u128;
    let children: Vec<_> = (0..args.processes)
        .map(|i| {
            let mut cmd = Command::new(&exe);
            cmd.args(["--tasks", &args.tasks.to_string()])
                .args(["--partitions", &args.partitions.to_string()])
                .args(["--rounds", &args.rounds.to_string()])
                .args(["--child", &i.to_string(), &start_at.to_string()])
                .arg("--db")
                .arg(path)
                .args([
                    "--durability",
                    match args.durability {
                        Durability::Full => "full",
                        _ => "normal",
                    },
                ])
                .stdout(Stdio::piped());
            if args.plain {
                cmd.arg("--plain");
            }
            if let Some(spin_wait) = args.spin_wait {
                cmd.args(["--spin-wait-us", &spin_wait.as_micros().to_string()]);
            }
            cmd.spawn()
                .unwrap_or_else(|e| fail(format!("cannot start a child: {e}")))
        })
        .collect();
    let mut all = Measured::default();
    for mut child in children {
        let Some(out) = child.stdout.take() else {
            fail("a child has no stdout".into())
        };
        for line in std::io::BufReader::new(out).lines() {
            let line = line.unwrap_or_default();
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|w| w.parse().ok())
                .collect();
            match (line.split_whitespace().next(), v.as_slice()) {
                (Some("LAT"), [l]) => all.latencies_us.push(*l),
                (Some("DONE"), [_, won, elapsed, busy, lock, gate, claims, syncs, sync_us]) => {
                    all.won += *won as usize;
                    all.elapsed = all.elapsed.max(Duration::from_micros(*elapsed));
                    all.busy_waits += busy;
                    all.lock_waits += lock;
                    all.gate_waits += gate;
                    all.claims += claims;
                    all.wal_syncs += syncs;
                    all.wal_sync_us += sync_us;
                }
                _ => fail(format!("a child said: {line}")),
            }
        }
        match child.wait() {
            Ok(status) if status.success() => {}
            Ok(status) => fail(format!("a child failed: {status}")),
            Err(e) => fail(format!("a child was lost: {e}")),
        }
    }
    all
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args = parse().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    if let (Some((index, start_at)), Some(db)) = (args.child, &args.db) {
        let m = run_here(&args, db, index, Some(start_at));
        let mut out = String::new();
        for l in &m.latencies_us {
            out.push_str(&format!("LAT {l}\n"));
        }
        out.push_str(&format!(
            "DONE {} {} {} {} {} {} {} {} {}\n",
            m.latencies_us.len(),
            m.won,
            m.elapsed.as_micros(),
            m.busy_waits,
            m.lock_waits,
            m.gate_waits,
            m.claims,
            m.wal_syncs,
            m.wal_sync_us
        ));
        let _ = std::io::stdout().write_all(out.as_bytes());
        return;
    }
    let dir = std::env::temp_dir().join(format!("eh-steal-{}", std::process::id()));
    let path = match &args.db {
        Some(p) => p.clone(),
        None => {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                fail(format!("cannot create {}: {e}", dir.display()));
            }
            dir.join("steal.db")
        }
    };
    seed(&args, &path);
    let mut m = if args.processes == 1 {
        run_here(&args, &path, 0, None)
    } else {
        run_children(&args, &path)
    };
    if args.db.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    m.latencies_us.sort_unstable();
    let calls = m.latencies_us.len();
    let seconds = m.elapsed.as_secs_f64().max(1e-9);
    let mut out = String::new();
    out.push_str(&format!(
        "{} processes {} tasks {} partitions {} rounds {} durability {:?}\n",
        if args.plain {
            "plain rusqlite:"
        } else {
            "store:"
        },
        args.processes,
        args.tasks,
        args.partitions,
        args.rounds,
        args.durability
    ));
    out.push_str(&format!(
        "claim calls {calls}  won {}  throughput {:.0} calls/s  in {:.3} s\n",
        m.won,
        calls as f64 / seconds,
        seconds
    ));
    out.push_str(&format!(
        "claim latency p50 {} µs  p99 {} µs  max {} µs\n",
        percentile(&m.latencies_us, 0.50),
        percentile(&m.latencies_us, 0.99),
        m.latencies_us.last().copied().unwrap_or(0)
    ));
    if !args.plain {
        out.push_str(&format!(
            "busy waits {}  in-process lock waits {}  cross-process gate waits {}\n",
            m.busy_waits, m.lock_waits, m.gate_waits
        ));
        out.push_str(&format!(
            "claims committed {}  -wal fsyncs {} (mean {} µs)\n",
            m.claims,
            m.wal_syncs,
            m.wal_sync_us / m.wal_syncs.max(1)
        ));
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
}

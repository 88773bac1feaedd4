//! Load generator: concurrent checkpoint writers on one store file, without criterion.
//!
//! ```text
//! cargo run --release --example load -- [--writers 32] [--partitions 32]
//!     [--durability full|normal] [--seconds 5] [--db PATH] [--spin-wait-us 250] [--plain]
//! ```
//! Each writer owns `partitions / writers` partitions (at least one) and updates them in turn
//! as fast as the store answers. Prints throughput, p50/p99/max latency, the average
//! group-commit batch and the process's peak RSS.
//!
//! `--plain` runs the baseline instead: the same updates through one plain rusqlite connection
//! (WAL, the same `synchronous`, the store's schema and SQL), shared by the writers, each update
//! its own `BEGIN IMMEDIATE` transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventhubs_checkpointstore_sqlite::{
    Checkpoint, CheckpointStore, CommitStats, Durability, SqliteCheckpointStore, StoreOptions,
};

struct Args {
    writers: usize,
    partitions: usize,
    durability: Durability,
    seconds: f64,
    db: Option<String>,
    spin_wait: Option<Duration>,
    plain: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        writers: 32,
        partitions: 32,
        durability: Durability::Full,
        seconds: 5.0,
        db: None,
        spin_wait: None,
        plain: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--writers" => args.writers = value()?.parse().map_err(|e| format!("{e}"))?,
            "--partitions" => args.partitions = value()?.parse().map_err(|e| format!("{e}"))?,
            "--seconds" => args.seconds = value()?.parse().map_err(|e| format!("{e}"))?,
            "--db" => args.db = Some(value()?),
            "--spin-wait-us" => {
                let us = value()?.parse().map_err(|e| format!("{e}"))?;
                args.spin_wait = Some(Duration::from_micros(us));
            }
            "--plain" => args.plain = true,
            "--durability" => {
                args.durability = match value()?.as_str() {
                    "full" => Durability::Full,
                    "normal" => Durability::Normal,
                    other => return Err(format!("unknown durability {other}")),
                }
            }
            "-h" | "--help" => {
                return Err("usage: load [--writers N] [--partitions N] \
                     [--durability full|normal] [--seconds S] [--db PATH] \
                     [--spin-wait-us US] [--plain]"
                    .into())
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.writers == 0 || args.partitions == 0 {
        return Err("--writers and --partitions must be at least 1".into());
    }
    Ok(args)
}

/// Peak resident set size of this process, from /proc (Linux); None elsewhere.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let dir = tempfile_dir();
    let path = args
        .db
        .clone()
        .unwrap_or_else(|| format!("{}/load.db", dir.display()));
    if args.plain {
        plain(&args, &path);
        if args.db.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return;
    }
    let mut options = StoreOptions::new().with_durability(args.durability);
    if let Some(spin_wait) = args.spin_wait {
        options = options.with_spin_wait(spin_wait);
    }
    let store = match SqliteCheckpointStore::open_with(&path, options) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("cannot open {path}: {e}");
            std::process::exit(1);
        }
    };
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..args.writers {
        let store = Arc::clone(&store);
        let mine: Vec<usize> = (0..args.partitions)
            .filter(|p| p % args.writers == w)
            .collect();
        let mine = if mine.is_empty() {
            vec![w % args.partitions]
        } else {
            mine
        };
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut seq = 0i64;
            while Instant::now() < deadline {
                for p in &mine {
                    seq += 1;
                    let t = Instant::now();
                    let result = store
                        .update_checkpoint(Checkpoint {
                            fully_qualified_namespace: "load.servicebus.windows.net".into(),
                            event_hub_name: "hub".into(),
                            consumer_group: "$default".into(),
                            partition_id: p.to_string(),
                            offset: Some((seq * 256).to_string()),
                            sequence_number: Some(seq),
                        })
                        .await;
                    result?;
                    latencies.push(t.elapsed());
                }
            }
            Ok::<_, eventhubs_checkpointstore_sqlite::Error>(latencies)
        });
    }
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(l)) => latencies.extend(l),
            Ok(Err(e)) => {
                eprintln!("a write failed: {e}");
                std::process::exit(1);
            }
            Err(e) => {
                eprintln!("a writer panicked: {e}");
                std::process::exit(1);
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    report(&args, elapsed, latencies, Some(store.commit_stats()));
    if args.db.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn report(args: &Args, elapsed: f64, mut latencies: Vec<Duration>, stats: Option<CommitStats>) {
    use std::fmt::Write as _;
    use std::io::Write as _;
    latencies.sort_unstable();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} writers {} partitions {} durability {:?} duration {:.1} s",
        if args.plain {
            "plain rusqlite:"
        } else {
            "store:"
        },
        args.writers,
        args.partitions,
        args.durability,
        elapsed
    );
    let _ = writeln!(
        out,
        "updates {}  throughput {:.0}/s",
        latencies.len(),
        latencies.len() as f64 / elapsed
    );
    let _ = writeln!(
        out,
        "latency p50 {:.1} µs  p99 {:.1} µs  max {:.1} µs",
        percentile(&latencies, 0.50).as_secs_f64() * 1e6,
        percentile(&latencies, 0.99).as_secs_f64() * 1e6,
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e6)
    );
    let _ = match stats {
        Some(stats) => writeln!(
            out,
            "commits {}  average batch {:.1}",
            stats.commits,
            stats.writes as f64 / stats.commits.max(1) as f64
        ),
        None => writeln!(out, "commits {}  average batch 1.0", latencies.len()),
    };
    let _ = match peak_rss_mib() {
        Some(mib) => writeln!(out, "peak RSS {mib:.1} MiB"),
        None => writeln!(out, "peak RSS unknown (no /proc/self/status)"),
    };
    // A closed pipe (`| head`) is not an error of the load run.
    let _ = std::io::stdout().write_all(out.as_bytes());
}

/// The partitions writer `w` of `writers` updates: every `writers`-th one, at least one.
fn partitions_of(w: usize, args: &Args) -> Vec<usize> {
    let mine: Vec<usize> = (0..args.partitions)
        .filter(|p| p % args.writers == w)
        .collect();
    if mine.is_empty() {
        vec![w % args.partitions]
    } else {
        mine
    }
}

/// The baseline: one plain rusqlite connection shared by all writers.
fn plain(args: &Args, path: &str) {
    let conn = match rusqlite::Connection::open(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot open {path}: {e}");
            std::process::exit(1);
        }
    };
    let sync = match args.durability {
        Durability::Full => "FULL",
        _ => "NORMAL",
    };
    let setup = conn
        .pragma_update(None, "journal_mode", "WAL")
        .and_then(|()| conn.pragma_update(None, "synchronous", sync))
        .and_then(|()| conn.execute_batch(include_str!("../schema.sql")));
    if let Err(e) = setup {
        eprintln!("cannot set up {path}: {e}");
        std::process::exit(1);
    }
    let conn = std::sync::Mutex::new(conn);
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let latencies: Vec<Duration> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.writers)
            .map(|w| {
                let (conn, mine) = (&conn, partitions_of(w, args));
                s.spawn(move || {
                    let mut latencies = Vec::new();
                    let mut seq = 0i64;
                    while Instant::now() < deadline {
                        for p in &mine {
                            seq += 1;
                            let t = Instant::now();
                            let mut c = conn.lock().unwrap_or_else(|e| e.into_inner());
                            if let Err(e) = plain_update(&mut c, *p, seq) {
                                eprintln!("a write failed: {e}");
                                std::process::exit(1);
                            }
                            drop(c);
                            latencies.push(t.elapsed());
                        }
                    }
                    latencies
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    report(args, started.elapsed().as_secs_f64(), latencies, None);
}

const UPSERT: &str = "\
    INSERT INTO checkpoint \
        (namespace, event_hub, consumer_group, partition_id, event_offset, sequence_number) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
    ON CONFLICT (namespace, event_hub, consumer_group, partition_id) DO UPDATE \
    SET event_offset = excluded.event_offset, sequence_number = excluded.sequence_number";

fn plain_update(
    conn: &mut rusqlite::Connection,
    partition: usize,
    seq: i64,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.prepare_cached(UPSERT)?.execute(rusqlite::params![
        "load.servicebus.windows.net",
        "hub",
        "$default",
        partition.to_string(),
        (seq * 256).to_string(),
        seq
    ])?;
    tx.commit()
}

/// A private scratch directory for the default database file.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("eh-load-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

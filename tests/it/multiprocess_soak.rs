//! 8 processes of 4 workers each (2 on the blocking API, 2 async tasks on the trait) claim,
//! steal and checkpoint on one file for a while. Then:
//! - no (partition, etag) has two winners, and each partition's wins form one chain that ends
//!   at the stored ownership;
//! - no acknowledged checkpoint is lost: each worker's own partition holds exactly its newest
//!   acknowledged sequence number, so a write that failed (busy) did not land either;
//! - fenced checkpoints on the contended partitions: the stored one is the newest acknowledged
//!   one, in the order of the ownership chain;
//! - a busy timeout comes back as `Error::Busy`: half the processes use a 20 ms busy timeout,
//!   and the parent holds the write lock for 150 ms every second, so they get busy errors,
//!   and the checks above prove that none of them was a silent loss or a silent write.
//!
//! `EHCS_SOAK_SECS` sets the duration (default 6 s, or 30 s with `EHCS_HEAVY=1`),
//! `EHCS_SOAK_PROCS` the number of processes (default 8). The throughput is printed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use eventhubs_checkpointstore_sqlite::{Error, Ownership, SqliteCheckpointStore, StoreOptions};

const WORKER_ENV: &str = "EHCS_SOAK_WORKER";
const TEST: &str = "multiprocess_soak::processes_and_tasks_soak_one_file_without_losing_a_write";
const WORKERS: usize = 4;
const CONTENDED: usize = 16;

fn contended() -> Vec<String> {
    (0..CONTENDED).map(|p| p.to_string()).collect()
}

/// A subset per round, so that workers collide on some partitions and not others.
fn pick(round: u64, seed: u64) -> Vec<String> {
    contended()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !(*i as u64 * 7 + round * 13 + seed * 29).is_multiple_of(3))
        .map(|(_, p)| p)
        .collect()
}

/// Impatient processes (odd ones) give up after 20 ms and so see busy errors.
fn busy_timeout(process: usize) -> Duration {
    if process % 2 == 1 {
        Duration::from_millis(20)
    } else {
        Duration::from_secs(30)
    }
}

#[test]
fn processes_and_tasks_soak_one_file_without_losing_a_write() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        return process(&spec);
    }
    let secs = size("EHCS_SOAK_SECS", 6, 30);
    let processes = size("EHCS_SOAK_PROCS", 8, 8) as usize;
    let (dir, path, store) =
        file_store_with(StoreOptions::new().with_busy_timeout(Duration::from_secs(30)));
    let go = dir.path().join("go");
    let mut children: Vec<_> = (0..processes)
        .map(|p| {
            reexec(
                TEST,
                WORKER_ENV,
                &format!("{}|{p}|{}|{secs}", path.display(), go.display()),
            )
            .spawn()
            .unwrap()
        })
        .collect();
    // Read every worker's output as it comes: a full pipe would stall the worker.
    let readers: Vec<_> = children
        .iter_mut()
        .map(|child| {
            let mut stdout = child.stdout.take().unwrap();
            std::thread::spawn(move || {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
                text
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(&go, b"go").unwrap();
    let started = Instant::now();
    // Hold the write lock now and then, longer than the impatient processes wait.
    let mut locker = rusqlite::Connection::open(&path).unwrap();
    let mut holds = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_millis(850));
        locker.busy_timeout(Duration::from_secs(30)).unwrap();
        let tx = locker
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        tx.rollback().unwrap();
        holds += 1;
    }
    drop(locker);

    let mut log = Log::default();
    for (p, (mut child, reader)) in children.into_iter().zip(readers).enumerate() {
        let status = child.wait().unwrap();
        let out = reader.join().unwrap();
        assert!(status.success(), "process {p} failed ({status}): {out}");
        for line in out.lines() {
            log.record(line);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let wal_kib = std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len() / 1024);

    check_single_winner(&log.wins, &store);
    log.check_own_checkpoints(&store);
    log.check_fenced_checkpoints(&store);
    let s = &log.stats;
    assert!(
        s.busy > 0,
        "the impatient processes must have met the held lock"
    );
    let ok_ops = s.claim_calls + s.checkpoints + s.fenced;
    println!(
        "SUMMARY multiprocess_soak: {processes} processes x {WORKERS} workers for {elapsed:.1} s: \
         {} claim calls ({} wins), {} checkpoints, {} fenced checkpoints ({} refused as lost), \
         {} busy errors ({holds} lock holds); {:.0} acknowledged operations/s; \
         -wal {wal_kib} KiB at the end",
        s.claim_calls,
        log.wins.len(),
        s.checkpoints,
        s.fenced,
        s.lost,
        s.busy,
        ok_ops as f64 / elapsed
    );
    drop(store);
    assert_eq!(integrity_check(&path), "ok");
}

#[derive(Default, Debug)]
struct Stats {
    claim_calls: u64,
    checkpoints: u64,
    fenced: u64,
    lost: u64,
    busy: u64,
}

/// Everything the workers printed.
#[derive(Default)]
struct Log {
    wins: Vec<Win>,
    /// Own partition -> newest acknowledged sequence number.
    own: HashMap<String, i64>,
    /// (contended partition, etag it was fenced by, sequence number, offset) of every
    /// acknowledged fenced checkpoint.
    fenced: Vec<(String, String, i64, String)>,
    stats: Stats,
}

impl Log {
    fn record(&mut self, line: &str) {
        if let Some(win) = Win::parse(line) {
            self.wins.push(win);
            return;
        }
        let Some(at) = line.find("SOAK ") else { return };
        let f: Vec<&str> = line[at + 5..].split(' ').collect();
        match f.as_slice() {
            ["CP", partition, seq] => {
                let seq = seq.parse().unwrap();
                let newest = self.own.entry(partition.to_string()).or_insert(seq);
                *newest = (*newest).max(seq);
            }
            ["FENCED", partition, etag, seq, offset] => self.fenced.push((
                partition.to_string(),
                etag.to_string(),
                seq.parse().unwrap(),
                offset.to_string(),
            )),
            ["STATS", claims, checkpoints, fenced, lost, busy] => {
                self.stats.claim_calls += claims.parse::<u64>().unwrap();
                self.stats.checkpoints += checkpoints.parse::<u64>().unwrap();
                self.stats.fenced += fenced.parse::<u64>().unwrap();
                self.stats.lost += lost.parse::<u64>().unwrap();
                self.stats.busy += busy.parse::<u64>().unwrap();
            }
            other => panic!("unexpected worker line {other:?}"),
        }
    }

    /// Each worker is the only writer of its own partition, with growing sequence numbers:
    /// the stored one is exactly its newest `Ok`. Lower would be a lost write; higher, a write
    /// that reported an error but landed.
    fn check_own_checkpoints(&self, store: &SqliteCheckpointStore) {
        let stored = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
        for (partition, &seq) in &self.own {
            let found = stored.iter().find(|c| &c.partition_id == partition);
            assert_eq!(
                found.and_then(|c| c.sequence_number),
                Some(seq),
                "{partition}: the stored checkpoint is not the newest acknowledged one"
            );
        }
        assert!(
            self.own.len() >= WORKERS,
            "workers must get checkpoints done"
        );
    }

    /// A fenced write with etag e can only land while e is the stored etag, so the writes of
    /// a partition are ordered by the position of their etag in its ownership chain (and by
    /// sequence number under one etag, which only its winner holds). The stored checkpoint
    /// must be the last acknowledged one in that order.
    fn check_fenced_checkpoints(&self, store: &SqliteCheckpointStore) {
        let next: HashMap<(&str, Option<&str>), &Win> = self
            .wins
            .iter()
            .map(|w| ((w.partition.as_str(), w.replaced.as_deref()), w))
            .collect();
        let mut position: HashMap<(&str, &str), usize> = HashMap::new();
        for partition in contended() {
            let mut link: Option<&str> = None;
            let mut n = 0;
            while let Some(w) = next.get(&(partition.as_str(), link)) {
                position.insert((w.partition.as_str(), w.etag.as_str()), n);
                link = Some(&w.etag);
                n += 1;
            }
        }
        let stored = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
        for partition in contended() {
            let newest = self
                .fenced
                .iter()
                .filter(|f| f.0 == partition)
                .max_by_key(|f| {
                    let at = position
                        .get(&(f.0.as_str(), f.1.as_str()))
                        .unwrap_or_else(|| panic!("a fenced write used an etag never won: {f:?}"));
                    (*at, f.2)
                });
            let found = stored.iter().find(|c| c.partition_id == partition);
            assert_eq!(
                found.and_then(|c| c.offset.as_deref()),
                newest.map(|f| f.3.as_str()),
                "partition {partition}: stored fenced checkpoint"
            );
        }
    }
}

/// One worker process: `WORKERS` workers until the deadline, then a STATS line each.
fn process(spec: &str) {
    let f: Vec<&str> = spec.split('|').collect();
    let (path, id, go, secs) = (
        f[0],
        f[1].parse::<usize>().unwrap(),
        f[2],
        f[3].parse::<u64>().unwrap(),
    );
    let options = StoreOptions::new().with_busy_timeout(busy_timeout(id));
    let store = SqliteCheckpointStore::open_with(path, options).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::path::Path::new(go).exists() {
        assert!(Instant::now() < deadline, "no start signal");
        std::thread::sleep(Duration::from_millis(1));
    }
    let until = Instant::now() + Duration::from_secs(secs);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    let mut threads = Vec::new();
    for w in 0..WORKERS {
        let store = store.clone();
        let me = format!("p{id}w{w}");
        let seed = (id * WORKERS + w) as u64;
        if w < 2 {
            // A blocking worker runs on a thread of its own.
            threads.push(std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap()
                    .block_on(work(Api::Blocking, &store, &me, seed, until))
            }));
        } else {
            tasks.push(
                runtime.spawn(async move { work(Api::Async, &store, &me, seed, until).await }),
            );
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    runtime.block_on(async {
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// Counts a busy error, and fails the worker on any other.
fn busy_or_panic(stats: &mut Stats, what: &str, err: Error) {
    assert!(err.is_busy(), "{what}: {err:?}");
    stats.busy += 1;
}

async fn work(api: Api, store: &SqliteCheckpointStore, me: &str, seed: u64, until: Instant) {
    let own = format!("own-{me}");
    let mut stats = Stats::default();
    let mut seq = 0;
    let mut round = 0;
    while Instant::now() < until {
        round += 1;
        match api.steal_round(store, me, &pick(round, seed)).await {
            Ok(wins) => {
                stats.claim_calls += 1;
                for win in &wins {
                    report(&win.to_line());
                }
                // Write a fenced checkpoint for a couple of the partitions just won.
                for win in wins.iter().take(2) {
                    seq += 1;
                    let offset = format!("{me}#{seq}");
                    let held = Ownership {
                        etag: Some(win.etag.clone()),
                        ..claim(&win.partition, Some(me), None)
                    };
                    let cp = checkpoint(&win.partition, Some(&offset), Some(seq));
                    match api.update_fenced(store, cp, &held).await {
                        Ok(()) => {
                            stats.fenced += 1;
                            report(&format!(
                                "SOAK FENCED {} {} {seq} {offset}",
                                win.partition, win.etag
                            ));
                        }
                        Err(Error::OwnershipLost { .. }) => stats.lost += 1,
                        Err(e) => busy_or_panic(&mut stats, "fenced checkpoint", e),
                    }
                }
            }
            Err(e) => busy_or_panic(&mut stats, "claim", e),
        }
        seq += 1;
        match api
            .update(store, checkpoint(&own, Some(&seq.to_string()), Some(seq)))
            .await
        {
            Ok(()) => {
                stats.checkpoints += 1;
                report(&format!("SOAK CP {own} {seq}"));
            }
            Err(e) => busy_or_panic(&mut stats, "checkpoint", e),
        }
    }
    report(&format!(
        "SOAK STATS {} {} {} {} {}",
        stats.claim_calls, stats.checkpoints, stats.fenced, stats.lost, stats.busy
    ));
}

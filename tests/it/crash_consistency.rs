//! A writer process is SIGKILLed at random moments, again and again. After every kill the file
//! passes `integrity_check`, every write the writer heard `Ok` for is there (with its own value
//! or a later one), and no claim batch is half-applied.
//!
//! The writer is this test binary run again with `WORKER_ENV` set. It runs two writers, one on
//! the blocking API and one on the async trait, each with partitions of its own, and prints a
//! line for every acknowledged write:
//! - `ACK CP <partition> <sequence number>`: a checkpoint with offset = the sequence number;
//! - `ACK CLAIM <writer> <owner tag> <etag>…`: a claim of all the writer's partitions, in one
//!   call, by the owner `<owner tag>`.
//!
//! Sequence numbers grow per partition (across cycles too), and owner tags sort in the order
//! they were written, so "a later value" is well defined for both.
//!
//! `EHCS_CRASH_CYCLES` sets the number of kills (default 25, or 200 with `EHCS_HEAVY=1`);
//! `EHCS_SEED` replays the kill times of an earlier run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use eventhubs_checkpointstore_sqlite::{
    Durability, Ownership, SqliteCheckpointStore, StoreOptions,
};

const WORKER_ENV: &str = "EHCS_CRASH_WORKER";
const TEST: &str =
    "crash_consistency::killed_writers_lose_no_acknowledged_write_and_never_half_apply_a_claim";

/// Writers in the child, and partitions per writer.
const WRITERS: usize = 2;
const PARTS: usize = 4;

/// Sequence numbers of cycle `c` start at `c * CYCLE_SPAN`, so they keep growing across cycles.
const CYCLE_SPAN: i64 = 1_000_000_000;

fn partition(writer: usize, k: usize) -> String {
    format!("w{writer}-{k}")
}

fn options(durability: Durability) -> StoreOptions {
    StoreOptions::new()
        .with_durability(durability)
        .with_busy_timeout(Duration::from_secs(60))
}

#[test]
fn killed_writers_lose_no_acknowledged_write_and_never_half_apply_a_claim() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        return worker(&spec);
    }
    let cycles = size("EHCS_CRASH_CYCLES", 25, 200);
    let mut rng = Rng::from_env(TEST);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let mut acked = Acked::default();
    let started = Instant::now();
    let (mut writes, mut silent_cycles) = (0, 0);
    for cycle in 0..cycles {
        // Even cycles write with FULL durability, odd ones with NORMAL: both promise that an
        // `Ok` survives a crash of the process.
        let durability = if cycle % 2 == 0 { "full" } else { "normal" };
        let mut child = reexec(
            TEST,
            WORKER_ENV,
            &format!("{}|{cycle}|{durability}", path.display()),
        )
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(|l| l.ok())
                .collect::<Vec<_>>()
        });
        // Kill anywhere from during start-up and open to deep into the write loop.
        std::thread::sleep(Duration::from_millis(rng.below(0..300)));
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "cycle {cycle}: the writer exited by itself ({status}): {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        let before = acked.count;
        for line in &lines {
            acked.record(line);
        }
        writes += acked.count - before;
        if acked.count == before {
            silent_cycles += 1;
        }
        // Check half the cycles on a copy, so that the next writer starts on the file exactly
        // as the crash left it (with its -wal), and the other half in place.
        if cycle % 2 == 1 {
            let copy = tempfile::tempdir().unwrap();
            for suffix in ["", "-wal", "-shm"] {
                let from = format!("{}{suffix}", path.display());
                if Path::new(&from).exists() {
                    std::fs::copy(&from, copy.path().join(format!("store.db{suffix}"))).unwrap();
                }
            }
            acked.check(&copy.path().join("store.db"), cycle);
        } else {
            acked.check(&path, cycle);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "SUMMARY crash_consistency: {cycles} kills survived, {writes} acknowledged writes \
         checked ({} claim batches of {PARTS} partitions, the rest checkpoints), \
         {silent_cycles} kills before the first acknowledgement, {secs:.1} s",
        acked.claim_batches
    );
    assert!(
        writes > cycles,
        "the writer must get writes done between kills"
    );
}

/// What the writers were told was written: the newest acknowledged value of each.
#[derive(Default)]
struct Acked {
    /// Partition -> highest acknowledged sequence number.
    checkpoints: HashMap<String, i64>,
    /// Writer -> (owner tag, etags) of its newest acknowledged claim batch.
    claims: HashMap<usize, (String, Vec<String>)>,
    count: u64,
    claim_batches: u64,
}

impl Acked {
    fn record(&mut self, line: &str) {
        let Some(at) = line.find("ACK ") else { return };
        let fields: Vec<&str> = line[at + 4..].split(' ').collect();
        match fields.as_slice() {
            ["CP", partition, seq] => {
                let seq: i64 = seq.parse().unwrap();
                let newest = self.checkpoints.entry(partition.to_string()).or_default();
                *newest = (*newest).max(seq);
            }
            ["CLAIM", writer, tag, etags @ ..] if etags.len() == PARTS => {
                let entry = self.claims.entry(writer.parse().unwrap()).or_default();
                if *tag > entry.0.as_str() {
                    *entry = (
                        tag.to_string(),
                        etags.iter().map(|e| e.to_string()).collect(),
                    );
                }
                self.claim_batches += 1;
            }
            // A line cut short by the kill: its write may or may not have committed, and it
            // was never fully acknowledged.
            _ => return,
        }
        self.count += 1;
    }

    fn check(&self, path: &Path, cycle: u64) {
        let integrity = integrity_check(path);
        assert_eq!(integrity, "ok", "cycle {cycle}: integrity_check");
        let store = SqliteCheckpointStore::open(path)
            .unwrap_or_else(|e| panic!("cycle {cycle}: reopen after the kill: {e:?}"));
        let checkpoints = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
        for (partition, &acked) in &self.checkpoints {
            let stored = checkpoints
                .iter()
                .find(|c| &c.partition_id == partition)
                .unwrap_or_else(|| panic!("cycle {cycle}: checkpoint {partition} lost"));
            let seq = stored.sequence_number.unwrap();
            assert!(
                seq >= acked,
                "cycle {cycle}: {partition} went back from acknowledged {acked} to {seq}"
            );
            assert_eq!(
                stored.offset.as_deref(),
                Some(seq.to_string().as_str()),
                "cycle {cycle}: {partition}: offset and sequence number come from one write"
            );
        }
        let ownerships = store.blocking_list_ownerships(NS, HUB, GROUP).unwrap();
        for writer in 0..WRITERS {
            let rows: Vec<&Ownership> = (0..PARTS)
                .filter_map(|k| {
                    ownerships
                        .iter()
                        .find(|o| o.partition_id == partition(writer, k))
                })
                .collect();
            let Some((tag, etags)) = self.claims.get(&writer) else {
                // Nothing acknowledged yet: a batch is there whole or not at all.
                assert!(
                    rows.is_empty() || rows.len() == PARTS,
                    "cycle {cycle}: writer {writer}: half a claim batch: {rows:?}"
                );
                continue;
            };
            assert_eq!(
                rows.len(),
                PARTS,
                "cycle {cycle}: writer {writer}: claimed partitions lost"
            );
            let owner = rows[0].owner_id.as_deref().unwrap();
            for row in &rows {
                assert_eq!(
                    row.owner_id.as_deref(),
                    Some(owner),
                    "cycle {cycle}: writer {writer}: half a claim batch: {rows:?}"
                );
                assert_eq!(
                    row.last_modified_time, rows[0].last_modified_time,
                    "cycle {cycle}: writer {writer}: one batch, one time stamp"
                );
            }
            assert!(
                owner >= tag.as_str(),
                "cycle {cycle}: writer {writer}: claim went back from {tag} to {owner}"
            );
            if owner == tag {
                let stored: Vec<&str> = rows.iter().map(|r| r.etag.as_deref().unwrap()).collect();
                assert_eq!(stored, *etags, "cycle {cycle}: writer {writer}: etags");
            }
        }
    }
}

/// The child: writes until it is killed.
fn worker(spec: &str) {
    let mut fields = spec.split('|');
    let (path, cycle, durability) = (
        fields.next().unwrap().to_owned(),
        fields.next().unwrap().parse::<i64>().unwrap(),
        fields.next().unwrap(),
    );
    let durability = if durability == "full" {
        Durability::Full
    } else {
        Durability::Normal
    };
    let store = SqliteCheckpointStore::open_with(&path, options(durability)).unwrap();
    let threads: Vec<_> = [Api::Blocking, Api::Async]
        .into_iter()
        .enumerate()
        .map(|(writer, api)| {
            let store = store.clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(write_forever(api, &store, writer, cycle));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// One writer: a claim batch over all its partitions every fifth step, and checkpoints
/// (fenced by the batch's ownership every other time) in between.
async fn write_forever(api: Api, store: &SqliteCheckpointStore, writer: usize, cycle: i64) {
    let mut held: Vec<Ownership> = Vec::new();
    for i in 0.. {
        if i % 5 == 0 {
            let tag = format!("w{writer}-{cycle:06}-{i:09}");
            let listed = api.list(store).await.unwrap();
            let requests: Vec<Ownership> = (0..PARTS)
                .map(|k| {
                    let p = partition(writer, k);
                    let etag = listed
                        .iter()
                        .find(|o| o.partition_id == p)
                        .and_then(|o| o.etag.as_deref());
                    claim(&p, Some(&tag), etag)
                })
                .collect();
            held = api.claim(store, &requests).await.unwrap();
            assert_eq!(held.len(), PARTS, "the only writer of a partition wins it");
            let etags: Vec<&str> = held.iter().map(|o| o.etag.as_deref().unwrap()).collect();
            report(&format!("ACK CLAIM {writer} {tag} {}", etags.join(" ")));
        } else {
            let k = i as usize % PARTS;
            let seq = cycle * CYCLE_SPAN + i;
            let cp = checkpoint(&partition(writer, k), Some(&seq.to_string()), Some(seq));
            if i % 2 == 0 {
                api.update_fenced(store, cp, &held[k]).await.unwrap();
            } else {
                api.update(store, cp).await.unwrap();
            }
            report(&format!("ACK CP {} {seq}", partition(writer, k)));
        }
    }
}

//! Many openers creating one new store at the same moment: real processes (this test binary
//! run again as workers, and the `eh-checkpoints` binary), each with several threads, on a
//! missing file and on an empty one. Every opener succeeds, one schema results, every write is
//! there, and no opener gives up before its busy timeout.
//!
//! `EHCS_CREATION_ROUNDS` sets the rounds (default 50, 300 with `EHCS_HEAVY=1`);
//! `EHCS_CREATION_PROCESSES` the processes per round (default 8).
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use eventhubs_checkpointstore_sqlite::{SqliteCheckpointStore, StoreOptions, APPLICATION_ID};

const WORKER_ENV: &str = "EHCS_CREATION_WORKER";
const THREADS: usize = 2;

/// A worker: opens the store at the path in `WORKER_ENV` from `THREADS` threads at once, each
/// writing one checkpoint, and prints one line per thread: `ok` or `err <error chain>`.
fn worker(spec: &str) {
    let (path, who) = spec.split_once('|').unwrap();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (path, partition) = (path.to_owned(), format!("{who}-{t}"));
            std::thread::spawn(move || {
                let started = Instant::now();
                let options = StoreOptions::new().with_busy_timeout(Duration::from_secs(10));
                let result = SqliteCheckpointStore::open_with(&path, options).and_then(|s| {
                    s.blocking_update_checkpoint(&checkpoint(&partition, Some("1"), Some(1)))
                });
                match result {
                    Ok(()) => "ok".to_owned(),
                    Err(e) => format!("err after {:?}: {}", started.elapsed(), chain(&e)),
                }
            })
        })
        .collect();
    for t in threads {
        report(&t.join().unwrap());
    }
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

/// Starts `processes` commands made by `command` as close together as possible, and returns
/// the failures among their output lines (and exit statuses).
fn race(processes: usize, command: impl Fn(usize) -> Command) -> (usize, Vec<String>) {
    let children: Vec<_> = (0..processes)
        .map(|i| {
            let mut c = command(i);
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            c.spawn().unwrap()
        })
        .collect();
    let mut calls = 0;
    let mut failures = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        for line in stdout.lines() {
            if line == "ok" {
                calls += 1;
            } else if line.starts_with("err") {
                calls += 1;
                failures.push(line.to_owned());
            }
        }
        if !out.status.success() {
            failures.push(format!(
                "exit {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    (calls, failures)
}

/// The store at `path` has our one schema and a checkpoint of every one of `partitions`.
fn one_store_with(path: &Path, partitions: &[String]) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let app: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(app, APPLICATION_ID);
    assert_eq!(version, SqliteCheckpointStore::supported_schema_version());
    drop(conn);
    let store = SqliteCheckpointStore::open(path).unwrap();
    let mut stored: Vec<String> = store
        .blocking_list_checkpoints(NS, HUB, GROUP)
        .unwrap()
        .into_iter()
        .map(|c| c.partition_id)
        .collect();
    stored.sort();
    let mut expected = partitions.to_vec();
    expected.sort();
    assert_eq!(stored, expected);
}

#[test]
fn many_processes_and_threads_create_one_new_store_together() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        return worker(&spec);
    }
    let rounds = size("EHCS_CREATION_ROUNDS", 50, 300) as usize;
    let processes = size("EHCS_CREATION_PROCESSES", 8, 8) as usize;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (mut calls, mut failures) = (0, Vec::new());
    for round in 0..rounds {
        let path = dir.path().join(format!("round-{round}.db"));
        // Every other round starts from an empty database (what `sqlite3 x.db 'pragma
        // journal_mode=wal;'` leaves: no tables, text encoding 0), the others from no file.
        if round % 2 == 1 {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let _: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .unwrap();
        }
        let (c, f) = race(processes, |i| {
            let spec = format!("{}|p{i}", path.display());
            let mut command = reexec(
                "concurrent_creation::many_processes_and_threads_create_one_new_store_together",
                WORKER_ENV,
                &spec,
            );
            command.env_remove("EHCS_HEAVY");
            command
        });
        calls += c;
        failures.extend(f.into_iter().map(|f| format!("round {round}: {f}")));
        let partitions: Vec<String> = (0..processes)
            .flat_map(|i| (0..THREADS).map(move |t| format!("p{i}-{t}")))
            .collect();
        if failures.is_empty() {
            one_store_with(&path, &partitions);
        }
    }
    println!(
        "SUMMARY concurrent creation: {processes} processes x {THREADS} threads x {rounds} \
         rounds = {calls} opens, {} failures, {:?}",
        failures.len(),
        started.elapsed()
    );
    assert_eq!(calls, rounds * processes * THREADS, "{failures:?}");
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
}

#[test]
#[cfg(feature = "cli")]
fn many_cli_processes_set_a_checkpoint_in_one_new_store_together() {
    let rounds = size("EHCS_CREATION_ROUNDS", 50, 300) as usize / 4;
    let processes = size("EHCS_CREATION_PROCESSES", 8, 8) as usize;
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for round in 0..rounds {
        let path = dir.path().join(format!("cli-{round}.db"));
        let (_, f) = race(processes, |i| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_eh-checkpoints"));
            command
                .arg("--db")
                .arg(&path)
                .args(["checkpoints", "set", "--namespace", NS, "--hub", HUB])
                .args(["--group", GROUP, "--partition", &format!("p{i}")])
                .args(["--sequence-number", "1"])
                .stdin(Stdio::null());
            command
        });
        failures.extend(f.into_iter().map(|f| format!("round {round}: {f}")));
        if failures.is_empty() {
            let partitions: Vec<String> = (0..processes).map(|i| format!("p{i}")).collect();
            one_store_with(&path, &partitions);
        }
    }
    println!(
        "SUMMARY concurrent creation (CLI): {processes} processes x {rounds} rounds, {} failures",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
}

//! Many tasks, and many OS processes, keep stealing the same partitions with the etags they
//! listed. Every (partition, replaced etag) must have exactly one winner.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use eventhubs_checkpointstore_sqlite::{SqliteCheckpointStore, StoreOptions};

const PARTITIONS: usize = 32;

fn partitions() -> Vec<String> {
    (0..PARTITIONS).map(|p| p.to_string()).collect()
}

/// A random-ish subset per round, so contenders collide on some partitions and not others.
fn pick(round: usize, seed: usize) -> Vec<String> {
    partitions()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !(i * 7 + round * 13 + seed * 29).is_multiple_of(3))
        .map(|(_, p)| p)
        .collect()
}

fn options() -> StoreOptions {
    StoreOptions::new().with_busy_timeout(Duration::from_secs(60))
}

#[test]
fn tasks_stealing_the_same_partitions_have_one_winner_per_etag() {
    let (_dir, _path, store) = file_store_with(options());
    let rounds = 40;
    let mut handles = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        handles.push(std::thread::spawn(move || {
            let me = format!("task-{t}");
            let mut wins = Vec::new();
            for round in 0..rounds {
                wins.extend(steal_round(&store, &me, &pick(round, t)).unwrap());
            }
            wins
        }));
    }
    let wins: Vec<Win> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(
        wins.len() > PARTITIONS,
        "contenders must actually steal: {}",
        wins.len()
    );
    check_single_winner(&wins, &store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_tasks_stealing_through_the_trait_have_one_winner_per_etag() {
    use eventhubs_checkpointstore_sqlite::CheckpointStore;
    let (_dir, _path, store) = file_store_with(options());
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8usize {
        let store = store.clone();
        tasks.spawn(async move {
            let me = format!("task-{t}");
            let mut wins = Vec::new();
            for round in 0..25 {
                let listed = store.list_ownerships(NS, HUB, GROUP).await.unwrap();
                let requests: Vec<_> = pick(round, t)
                    .iter()
                    .map(|p| {
                        let etag = listed
                            .iter()
                            .find(|o| &o.partition_id == p)
                            .and_then(|o| o.etag.clone());
                        claim(p, Some(&me), etag.as_deref())
                    })
                    .collect();
                for w in store.claim_ownership(&requests).await.unwrap() {
                    let r = requests
                        .iter()
                        .find(|r| r.partition_id == w.partition_id)
                        .unwrap();
                    wins.push(Win {
                        partition: w.partition_id,
                        replaced: r.etag.clone(),
                        etag: w.etag.unwrap(),
                        owner: me.clone(),
                    });
                }
            }
            wins
        });
    }
    let mut wins = Vec::new();
    while let Some(w) = tasks.join_next().await {
        wins.extend(w.unwrap());
    }
    assert!(wins.len() > PARTITIONS);
    check_single_winner(&wins, &store);
}

/// Set in a child process: the store file to contend on, and the worker's number.
const WORKER_ENV: &str = "EHCS_CONTENTION_WORKER";

/// Both the parent test and, re-executed with `WORKER_ENV` set, each worker process.
#[test]
fn processes_stealing_the_same_partitions_have_one_winner_per_etag() {
    if let Ok(spec) = std::env::var(WORKER_ENV) {
        let mut fields = spec.split('|');
        let (path, id, go) = (
            fields.next().unwrap(),
            fields.next().unwrap(),
            fields.next().unwrap(),
        );
        let store = SqliteCheckpointStore::open_with(path, options()).unwrap();
        let me = format!("proc-{id}");
        // Start together, so that the processes really contend.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !std::path::Path::new(go).exists() {
            assert!(std::time::Instant::now() < deadline, "no start signal");
            std::thread::sleep(Duration::from_millis(1));
        }
        for round in 0..300 {
            for w in steal_round(&store, &me, &pick(round, id.parse().unwrap())).unwrap() {
                println!("{}", w.to_line());
            }
        }
        return;
    }
    let (dir, path, store) = file_store_with(options());
    let go = dir.path().join("go");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "contention::processes_stealing_the_same_partitions_have_one_winner_per_etag",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(
                    WORKER_ENV,
                    format!("{}|{i}|{}", path.display(), go.display()),
                )
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(&go, b"go").unwrap();
    let mut wins = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "a worker failed: {out:?}");
        wins.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(Win::parse),
        );
    }
    let owners: std::collections::HashSet<&str> = wins.iter().map(|w| w.owner.as_str()).collect();
    assert_eq!(owners.len(), 4, "every process must have won something");
    check_single_winner(&wins, &store);
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

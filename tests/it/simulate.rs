//! `eh-checkpoints simulate` at small sizes: real worker processes, a SIGKILL, a takeover,
//! and the run's own verification, which must pass.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use eventhubs_checkpointstore_sqlite::SqliteCheckpointStore;
use serde_json::Value;

/// A small, fast simulation (a few seconds).
const SMALL: [&str; 18] = [
    "--processes",
    "3",
    "--partitions",
    "6",
    "--events",
    "300",
    "--rate",
    "200",
    "--checkpoint-every",
    "10",
    "--interval-ms",
    "100",
    "--expiry-ms",
    "400",
    "--stagger-ms",
    "100",
    "--durability",
    "normal",
];

fn simulate(db: &Path, extra: &[&str]) -> (i32, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_eh-checkpoints"))
        .args(["--db", db.to_str().unwrap(), "--json", "simulate"])
        .args(SMALL)
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

/// Worker processes of this database still running, from /proc (Linux).
fn leftover_workers(db: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let needle = db.to_str().unwrap();
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains("__worker") && c.contains(needle))
        .collect()
}

fn assert_checks_pass(report: &Value) {
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 5);
    for c in checks {
        assert_eq!(c["ok"], true, "check failed: {c}");
    }
    assert_eq!(report["ok"], true);
}

#[test]
fn a_killed_process_is_taken_over_and_every_check_passes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sim.db");
    let started = Instant::now();
    let (code, report, stderr) = simulate(&db, &["--kill-after", "0.8"]);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_checks_pass(&report);
    let killed = &report["killed"];
    assert!(killed["partitions"].as_u64().unwrap() > 0, "{killed}");
    let takeover = killed["taken_over_after_secs"].as_f64().unwrap();
    assert!(takeover > 0.0, "{killed}");
    assert!(report["balanced_after_secs"].as_f64().is_some(), "{report}");
    assert!(report["checkpoints_written"].as_u64().unwrap() >= 6 * 30);
    assert!(report["events_processed"].as_u64().unwrap() >= 6 * 300);
    assert!(started.elapsed().as_secs() < 30);
    assert!(
        leftover_workers(&db).is_empty(),
        "{:?}",
        leftover_workers(&db)
    );

    // Every survivor released its partitions on the way out, the taken-over ones included.
    let store = SqliteCheckpointStore::open(&db).unwrap();
    let owners = store
        .blocking_list_ownerships("simulate.eh-checkpoints.local", "simulated-hub", "$default")
        .unwrap();
    assert_eq!(owners.len(), 6);
    assert!(owners.iter().all(|o| o.owner_id.is_none()), "{owners:?}");
    let checkpoints = store
        .blocking_list_checkpoints("simulate.eh-checkpoints.local", "simulated-hub", "$default")
        .unwrap();
    assert!(checkpoints.iter().all(|c| c.sequence_number == Some(299)));
    drop(store);

    // A second run on the same file starts its group afresh (and passes again).
    let (code, report, stderr) = simulate(&db, &["--stagger-ms", "0"]);
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_checks_pass(&report);
    assert!(report["killed"].is_null());
    assert_eq!(report["events_replayed_after_takeover"], 0);
    assert!(leftover_workers(&db).is_empty());
}

#[test]
fn human_output_shows_the_timeline_and_the_checks() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sim.db");
    let out = Command::new(env!("CARGO_BIN_EXE_eh-checkpoints"))
        .args(["--db", db.to_str().unwrap(), "simulate"])
        .args(SMALL)
        .args([
            "--partitions",
            "3",
            "--events",
            "100",
            "--kill-after",
            "0.3",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "balanced after",
        "killed ",
        "taken over after",
        "checkpoints written",
        "events replayed",
        "ok    one owner per ownership generation",
        "all checks passed",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    // Without a terminal, no progress bars: only plain milestone lines on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\u{1b}'), "no terminal escapes: {stderr}");
    assert!(stderr.contains("killed proc-"), "{stderr}");
}

#[test]
fn a_run_that_fails_leaves_no_worker_behind() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sim.db");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_eh-checkpoints"))
        .args(["--db", db.to_str().unwrap(), "simulate"])
        .args(SMALL)
        .args(["--events", "100000", "--timeout", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Too slow is a runtime error (1), not a violation found by the checks (5).
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not finish within 1 s"), "{stderr}");
    assert!(started.elapsed().as_secs() < 15);
    assert!(
        leftover_workers(&db).is_empty(),
        "{:?}",
        leftover_workers(&db)
    );
}

#[test]
fn a_second_simulate_on_the_same_database_is_refused_while_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sim.db");
    // Created first, so that this test's reads never meet a half-created file.
    drop(SqliteCheckpointStore::open(&db).unwrap());
    let mut first = Command::new(env!("CARGO_BIN_EXE_eh-checkpoints"))
        .args(["--db", db.to_str().unwrap(), "--json", "simulate"])
        .args(SMALL)
        .args(["--events", "600", "--timeout", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first run's workers hold partitions.
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed().as_secs() < 20,
            "the first run never started"
        );
        if let Some(status) = first.try_wait().unwrap() {
            panic!("the first run ended early ({status})");
        }
        {
            let owned = SqliteCheckpointStore::open(&db)
                .and_then(|s| {
                    s.blocking_list_ownerships(
                        "simulate.eh-checkpoints.local",
                        "simulated-hub",
                        "$default",
                    )
                })
                .map(|o| o.iter().filter(|o| o.owner_id.is_some()).count())
                // Busy while the workers write: look again.
                .unwrap_or(0);
            if owned > 0 {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = Command::new(env!("CARGO_BIN_EXE_eh-checkpoints"))
        .args(["--db", db.to_str().unwrap(), "simulate"])
        .args(SMALL)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another `simulate` is running"), "{stderr}");
    // The first run was left alone: it finishes and every check passes.
    let out = first.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_checks_pass(&report);
    assert!(leftover_workers(&db).is_empty());
}

//! `eh-checkpoints`, run as a user runs it: the real binary on temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use eventhubs_checkpointstore_sqlite::SqliteCheckpointStore;
use serde_json::Value;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Runs the program in `dir` (so that a default `--db` would land there).
fn run_in(dir: &Path, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_eh-checkpoints"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run eh-checkpoints");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs the program on the database `db`.
fn run(db: &Path, args: &[&str]) -> Out {
    let mut all = vec!["--db", db.to_str().unwrap()];
    all.extend_from_slice(args);
    run_in(db.parent().unwrap(), &all)
}

fn ok(out: &Out) {
    assert_eq!(
        out.code, 0,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
}

fn fails(out: &Out, code: i32, says: &str) {
    assert_eq!(
        out.code, code,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr.contains(says),
        "stderr should say {says:?}: {}",
        out.stderr
    );
}

/// A store file with two groups: the default one (partitions 0-2, 0 and 1 owned, a
/// checkpoint on 0 and 1) and another (one ownership).
fn seeded() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let s = SqliteCheckpointStore::open(&db).unwrap();
    s.blocking_claim_ownership(&[
        claim("0", Some("proc-a"), None),
        claim("1", Some("proc-b"), None),
        claim("2", None, None),
        claim_in(
            "other.example",
            "orders",
            "audit",
            "0",
            Some("proc-c"),
            None,
        ),
    ])
    .unwrap();
    s.blocking_update_checkpoint(&checkpoint("0", Some("1000"), Some(10)))
        .unwrap();
    s.blocking_update_checkpoint(&checkpoint("1", Some("2000"), Some(20)))
        .unwrap();
    // Closed for good before a test reads or damages the file: a pool still held by an r2d2
    // worker closes a moment later, and its checkpoint of the WAL would change the file then
    // (seen on tmpfs: "[\"ownership\", \"list\"] changed the file").
    drop(s);
    wait_closed(&db);
    (dir, db)
}

const SCOPE: [&str; 6] = ["--namespace", NS, "--hub", HUB, "--group", GROUP];

fn with_scope<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut v = args.to_vec();
    v.extend_from_slice(&SCOPE);
    v
}

fn fixtures(dialect: &str) -> String {
    format!(
        "{}/tests/fixtures/eph/{dialect}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn help_documents_the_commands_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &["--help"]);
    ok(&out);
    for needle in [
        "simulate",
        "ownership",
        "checkpoints",
        "export",
        "import-eph",
        "check",
        "backup",
        "Exit codes",
        "3  the database is missing",
        "5  a check failed",
    ] {
        assert!(out.stdout.contains(needle), "help lacks {needle:?}");
    }
    assert!(!out.stdout.contains("__worker"), "the worker is hidden");
    assert!(!dir.path().join("eh-checkpoints.db").exists());
}

#[test]
fn bad_arguments_exit_2_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["frobnicate"][..],
        &[
            "checkpoints",
            "set",
            "--partition",
            "0",
            "--sequence-number",
            "1",
        ],
        &[
            "checkpoints",
            "set",
            "--namespace",
            "n",
            "--hub",
            "h",
            "--group",
            "g",
            "--partition",
            "0",
        ],
        &["simulate", "--processes", "0"],
        &["simulate", "--interval-ms", "500", "--expiry-ms", "400"],
        &["import-eph", "somewhere"],
        &["ownership", "list", "--bogus"],
    ] {
        let out = run_in(dir.path(), args);
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(!out.stderr.is_empty(), "{args:?} says why");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// The commands that must never create or change a database file.
fn read_only_commands(dir: &Path) -> Vec<Vec<String>> {
    let backup = dir.join("backup.db").display().to_string();
    let export = dir.join("export.json").display().to_string();
    [
        vec!["ownership", "list"],
        with_scope(&["ownership", "list"]),
        vec!["ownership", "release", "--yes"],
        vec!["checkpoints", "list"],
        vec!["checkpoints", "delete", "--yes"],
        vec!["export"],
        vec!["check"],
        vec!["backup", &backup],
        vec!["export", "--output", &export],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect()
}

fn run_strings(db: &Path, args: &[String]) -> Out {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(db, &args)
}

#[test]
fn a_missing_database_is_an_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("missing.db");
    for args in read_only_commands(dir.path()) {
        let out = run_strings(&db, &args);
        fails(&out, 3, "no database at");
        assert!(!db.exists(), "{args:?} created the database");
    }
    // The default path too, in the working directory.
    let out = run_in(dir.path(), &["check"]);
    fails(&out, 3, "eh-checkpoints.db");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Every command, the writing ones included, refuses `db` and leaves it byte-identical.
fn refused_untouched(db: &Path, code: i32, says: &str) {
    let before = std::fs::read(db).unwrap();
    let dir = db.parent().unwrap();
    let export_file = dir.join("in.json");
    std::fs::write(
        &export_file,
        r#"{"format":"eh-checkpoints-export","format_version":1,"schema_version":1,"ownerships":[],"checkpoints":[]}"#,
    )
    .unwrap();
    let mut commands = read_only_commands(dir);
    let writing: Vec<Vec<String>> = vec![
        with_scope(&[
            "checkpoints",
            "set",
            "--partition",
            "0",
            "--sequence-number",
            "1",
        ])
        .into_iter()
        .map(String::from)
        .collect(),
        vec!["import".into(), export_file.display().to_string()],
        vec![
            "import-eph".into(),
            fixtures("dotnet"),
            "--apply".into(),
            "--namespace".into(),
            "n".into(),
            "--hub".into(),
            "h".into(),
            "--group".into(),
            "g".into(),
        ],
        vec!["simulate".into(), "--processes".into(), "1".into()],
    ];
    commands.extend(writing);
    for args in commands {
        let out = run_strings(db, &args);
        fails(&out, code, says);
        assert!(
            std::fs::read(db).unwrap() == before,
            "{args:?} changed the file"
        );
    }
    assert!(!dir.join("backup.db").exists());
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("notes.db");
    let text: Vec<u8> = (0..8192u32)
        .map(|i| b"not a database\n"[i as usize % 15])
        .collect();
    std::fs::write(&db, text).unwrap();
    refused_untouched(&db, 3, "is not a checkpoint store database");
}

#[test]
fn another_applications_database_is_refused_and_left_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(conn);
    refused_untouched(&db, 3, "another application");
}

/// A store whose first page (the schema) is overwritten after its 100-byte header.
fn corrupt_store() -> (tempfile::TempDir, PathBuf) {
    let (dir, db) = seeded();
    let mut bytes = std::fs::read(&db).unwrap();
    for b in &mut bytes[100..4096] {
        *b = 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();
    (dir, db)
}

#[test]
fn a_corrupt_store_is_refused_and_left_byte_identical() {
    let (_dir, db) = corrupt_store();
    refused_untouched(&db, 3, "not a checkpoint store database");
}

#[test]
fn an_empty_file_is_not_turned_into_a_store_by_reading_commands() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.db");
    std::fs::write(&db, b"").unwrap();
    for args in read_only_commands(dir.path()) {
        let out = run_strings(&db, &args);
        fails(&out, 3, "empty file");
        assert_eq!(std::fs::metadata(&db).unwrap().len(), 0);
    }
}

#[test]
fn check_reports_health_and_finds_damage() {
    let (dir, db) = seeded();
    let out = run(&db, &["check"]);
    ok(&out);
    let version = format!(
        "schema version  {}",
        eventhubs_checkpointstore_sqlite::SqliteCheckpointStore::supported_schema_version()
    );
    for needle in [
        "integrity       ok",
        version.as_str(),
        "WAL size",
        "ownerships      4 (3 owned, 1 released)",
        "checkpoints     2",
    ] {
        assert!(out.stdout.contains(needle), "{needle:?} in {}", out.stdout);
    }
    let json = run(&db, &["--json", "check"]).json();
    assert_eq!(json["integrity"], serde_json::json!(["ok"]));
    assert_eq!(json["rows"]["groups"], 2);

    // Damage a table page (not the schema page): the store opens, the check fails.
    let damaged = dir.path().join("damaged.db");
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() >= 3 * 4096, "the store has table pages");
    for b in &mut bytes[4096..3 * 4096] {
        *b = 0x5A;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    let out = run(&damaged, &["check"]);
    assert_eq!(out.code, 5, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("integrity       FAILED"),
        "{}",
        out.stdout
    );
    assert_eq!(std::fs::read(&damaged).unwrap(), bytes, "check only reads");
}

#[test]
fn ownership_list_summarises_all_groups_or_details_one() {
    let (_dir, db) = seeded();
    let out = run(&db, &["ownership", "list"]);
    ok(&out);
    assert!(
        out.stdout.contains("myns.servicebus.windows.net  hub"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("other.example"), "{}", out.stdout);
    assert!(out.stdout.contains("2 group(s)"), "{}", out.stdout);
    let groups = run(&db, &["--json", "ownership", "list", "--hub", "ORDERS"]).json();
    assert_eq!(
        groups.as_array().unwrap().len(),
        1,
        "the hub matches case-insensitively"
    );
    assert_eq!(groups[0]["consumer_group"], "audit");
    assert_eq!(groups[0]["owned"], 1);

    let out = run(&db, &with_scope(&["ownership", "list"]));
    ok(&out);
    assert!(
        out.stdout.contains("proc-a") && out.stdout.contains("(released)"),
        "{}",
        out.stdout
    );
    let rows = run(&db, &with_scope(&["--json", "ownership", "list"])).json();
    let owners: Vec<_> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["owner_id"].clone())
        .collect();
    assert_eq!(
        owners,
        [Value::from("proc-a"), Value::from("proc-b"), Value::Null]
    );
}

#[test]
fn ownership_release_asks_for_yes_then_releases_only_what_was_asked() {
    let (_dir, db) = seeded();
    // Partition 0 exists in both groups: unscoped, both would go.
    let out = run(&db, &["ownership", "release", "--partition", "0"]);
    fails(&out, 2, "would release 2 owned partition(s) in 2 group(s)");
    let out = run(
        &db,
        &with_scope(&["ownership", "release", "--partition", "0"]),
    );
    fails(&out, 2, "would release 1 owned partition(s) in 1 group(s)");
    let s = SqliteCheckpointStore::open(&db).unwrap();
    assert_eq!(
        owners(&s)[0].1.as_deref(),
        Some("proc-a"),
        "nothing released yet"
    );
    let out = run(
        &db,
        &with_scope(&["ownership", "release", "--partition", "0", "--yes"]),
    );
    ok(&out);
    assert!(out.stdout.contains("released"), "{}", out.stdout);
    let now: Vec<_> = owners(&s).into_iter().map(|o| o.1).collect();
    assert_eq!(now, [None, Some("proc-b".into()), None]);
    // By owner, across all groups.
    let out = run(
        &db,
        &[
            "--json",
            "ownership",
            "release",
            "--owner",
            "proc-c",
            "--yes",
        ],
    );
    ok(&out);
    let json = out.json();
    assert_eq!(json[0]["consumer_group"], "audit");
    assert_eq!(json[0]["released"], true);
    let left = s
        .blocking_groups()
        .unwrap()
        .iter()
        .map(|g| g.owned)
        .sum::<u64>();
    assert_eq!(left, 1, "only proc-b still owns a partition");
}

#[test]
fn checkpoints_set_list_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("new.db");
    // `set` creates the database.
    let out = run(
        &db,
        &with_scope(&[
            "checkpoints",
            "set",
            "--partition",
            "3",
            "--offset",
            "77",
            "--sequence-number",
            "7",
        ]),
    );
    ok(&out);
    let out = run(&db, &with_scope(&["checkpoints", "list"]));
    ok(&out);
    assert!(
        out.stdout.contains("3          77      7"),
        "{}",
        out.stdout
    );
    // Replacing a different position needs --yes.
    let out = run(
        &db,
        &with_scope(&[
            "checkpoints",
            "set",
            "--partition",
            "3",
            "--sequence-number",
            "9",
        ]),
    );
    fails(&out, 2, "pass --yes");
    let out = run(
        &db,
        &with_scope(&[
            "checkpoints",
            "set",
            "--partition",
            "3",
            "--sequence-number",
            "9",
            "--yes",
        ]),
    );
    ok(&out);
    let list = run(&db, &with_scope(&["--json", "checkpoints", "list"])).json();
    assert_eq!(list[0]["sequence_number"], 9);
    assert_eq!(list[0]["offset"], Value::Null);
    run(
        &db,
        &with_scope(&[
            "checkpoints",
            "set",
            "--partition",
            "4",
            "--sequence-number",
            "1",
        ]),
    );
    // The summary counts both.
    let summary = run(&db, &["--json", "checkpoints", "list"]).json();
    assert_eq!(summary[0]["checkpoints"], 2);
    // Delete: --yes, then one partition, then the rest.
    let out = run(&db, &["checkpoints", "delete"]);
    fails(&out, 2, "would delete 2 checkpoint row(s) in 1 group(s)");
    let out = run(
        &db,
        &with_scope(&["checkpoints", "delete", "--partition", "3", "--yes"]),
    );
    ok(&out);
    let list = run(&db, &with_scope(&["--json", "checkpoints", "list"])).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let out = run(&db, &["checkpoints", "delete", "--yes"]);
    ok(&out);
    assert!(
        out.stdout.contains("1 checkpoint row(s) deleted"),
        "{}",
        out.stdout
    );
    let out = run(&db, &["checkpoints", "list"]);
    assert!(out.stdout.contains("no groups"), "{}", out.stdout);
}

#[test]
fn export_then_import_reproduces_the_store_exactly() {
    let (dir, db) = seeded();
    let out = run(&db, &["export"]);
    ok(&out);
    let exported = out.stdout.clone();
    assert!(exported.contains("\"format\": \"eh-checkpoints-export\""));
    let file = dir.path().join("export.json");
    ok(&run(&db, &["export", "--output", file.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), exported);

    let copy = dir.path().join("copy.db");
    // A dry run against a missing database creates nothing.
    let out = run(&copy, &["import", file.to_str().unwrap(), "--dry-run"]);
    ok(&out);
    assert!(out.stdout.contains("ownerships: 4 new"), "{}", out.stdout);
    assert!(!copy.exists());
    let out = run(&copy, &["import", file.to_str().unwrap()]);
    ok(&out);
    let again = run(&copy, &["export"]);
    assert_eq!(again.stdout, exported, "the round trip is exact");
    // Importing the same file again changes nothing.
    let out = run(&copy, &["import", file.to_str().unwrap()]);
    ok(&out);
    assert!(out.stdout.contains("4 unchanged"), "{}", out.stdout);
}

#[test]
fn a_conflicting_import_is_refused_whole_unless_overwrite() {
    let (dir, db) = seeded();
    let exported = run(&db, &["export"]).stdout;
    let changed = exported
        .replacen("\"sequence_number\": 10", "\"sequence_number\": 11", 1)
        .replacen("\"owner_id\": \"proc-b\"", "\"owner_id\": \"proc-z\"", 1);
    assert_ne!(changed, exported);
    let file = dir.path().join("changed.json");
    std::fs::write(&file, &changed).unwrap();
    let out = run(&db, &["import", file.to_str().unwrap()]);
    fails(&out, 4, "2 row(s) conflict");
    assert!(
        out.stdout
            .contains("conflict: ownership myns.servicebus.windows.net/hub/$default/1"),
        "{}",
        out.stdout
    );
    assert_eq!(
        run(&db, &["export"]).stdout,
        exported,
        "nothing was written"
    );
    let out = run(&db, &["import", file.to_str().unwrap(), "--overwrite"]);
    ok(&out);
    assert_eq!(run(&db, &["export"]).stdout, changed);
    // Invalid input: nothing written, exit 2.
    let bad = changed.replacen("\"partition_id\": \"0\"", "\"partition_id\": \"\"", 1);
    std::fs::write(&file, bad).unwrap();
    let out = run(&db, &["import", file.to_str().unwrap(), "--overwrite"]);
    fails(&out, 2, "must not be empty");
    assert_eq!(run(&db, &["export"]).stdout, changed);
    // From stdin, via `-`.
    let child = Command::new(env!("CARGO_BIN_EXE_eh-checkpoints"))
        .args(["--db", db.to_str().unwrap(), "import", "-", "--dry-run"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .as_ref()
        .unwrap()
        .write_all(changed.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 conflict(s)"));
}

fn eph_scope(path: &str) -> Vec<&str> {
    vec![
        "import-eph",
        path,
        "--namespace",
        NS,
        "--hub",
        HUB,
        "--group",
        GROUP,
    ]
}

#[test]
fn import_eph_of_each_dialect_is_a_dry_run_until_apply() {
    for (dialect, second) in [("dotnet", 911736), ("python", 4411), ("java", 2048)] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("eph.db");
        let path = fixtures(dialect);
        let out = run(&db, &eph_scope(&path));
        ok(&out);
        assert!(
            out.stdout.contains("would write 2 checkpoint(s)"),
            "{dialect}: {}",
            out.stdout
        );
        assert!(
            out.stdout.contains("skipped: no offset"),
            "{dialect}: {}",
            out.stdout
        );
        assert!(out.stdout.contains(dialect), "the dialect is shown");
        assert!(!db.exists(), "{dialect}: a dry run creates nothing");
        let mut apply = eph_scope(&path);
        apply.push("--apply");
        let out = run(&db, &apply);
        ok(&out);
        assert!(
            out.stdout.contains("wrote 2 checkpoint(s)"),
            "{}",
            out.stdout
        );
        let list = run(&db, &with_scope(&["--json", "checkpoints", "list"])).json();
        let got: Vec<(Value, Value)> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["partition_id"].clone(), c["sequence_number"].clone()))
            .collect();
        assert_eq!(
            got,
            [("0".into(), 960180.into()), ("1".into(), second.into())],
            "{dialect}"
        );
        // A single file works too, and JSON says what happens to it.
        let single = format!("{path}/2");
        let json = run(&db, &[&["--json"][..], &eph_scope(&single)].concat()).json();
        assert_eq!(json[0]["action"], "skip");
    }
}

#[test]
fn import_eph_refuses_conflicts_and_bad_files() {
    let (dir, db) = seeded();
    // The seeded store has other positions for partitions 0 and 1.
    let mut apply = eph_scope(&fixtures("java"))
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    apply.push("--apply".into());
    let before = run(&db, &["export"]).stdout;
    let out = run_strings(&db, &apply);
    fails(&out, 4, "2 row(s) conflict");
    assert_eq!(run(&db, &["export"]).stdout, before);
    // With --json: the plan, each conflict named, as one document; exit 4.
    let mut json_apply = vec!["--json".to_owned()];
    json_apply.extend(apply.iter().cloned());
    let out = run_strings(&db, &json_apply);
    assert_eq!(out.code, 4, "{}", out.stderr);
    let rows = out.json();
    assert_eq!(rows[0]["action"], "conflict", "{rows}");
    assert_eq!(rows[0]["current"]["sequence_number"], 10, "{rows}");
    assert_eq!(run(&db, &["export"]).stdout, before);
    // A dry run exits as the real run would: refused for its conflicts, nothing written.
    let dry = run(&db, &eph_scope(&fixtures("java")));
    fails(&dry, 4, "2 row(s) conflict");
    assert!(dry.stdout.contains("CONFLICT"), "{}", dry.stdout);
    assert_eq!(run(&db, &["export"]).stdout, before);
    apply.push("--overwrite".into());
    ok(&run_strings(&db, &apply));
    let list = run(&db, &with_scope(&["--json", "checkpoints", "list"])).json();
    assert_eq!(list[0]["sequence_number"], 960180);

    let bad = dir.path().join("leases");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("0"), r#"{"PartitionId":"0","partition_id":"0"}"#).unwrap();
    let out = run(&db, &eph_scope(bad.to_str().unwrap()));
    fails(&out, 2, "mixes the key styles");
}

#[test]
fn backup_makes_a_checked_copy_and_never_overwrites() {
    let (dir, db) = seeded();
    let dest = dir.path().join("backup.db");
    let out = run(&db, &["backup", dest.to_str().unwrap()]);
    ok(&out);
    assert!(out.stdout.contains("quick check ok"), "{}", out.stdout);
    assert_eq!(run(&dest, &["export"]).stdout, run(&db, &["export"]).stdout);
    let before = std::fs::read(&dest).unwrap();
    let out = run(&db, &["backup", dest.to_str().unwrap()]);
    fails(&out, 2, "already exists");
    assert_eq!(std::fs::read(&dest).unwrap(), before);
}

// --- issue 12: what a careless or hostile user hits -------------------------------------

/// Runs the program on `db` with stdout connected to `stdout`.
fn spawn_with_stdout(db: &Path, args: &[&str], stdout: Stdio) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_eh-checkpoints"))
        .arg("--db")
        .arg(db)
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn stderr_of(child: std::process::Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_quietly_and_a_full_one_is_an_error() {
    use std::io::{BufRead, BufReader};
    let (_dir, db) = seeded();
    // Far more JSON than a pipe buffers (64 KiB), so the writer must meet the closed pipe.
    let s = SqliteCheckpointStore::open(&db).unwrap();
    let many: Vec<_> = (0..3000)
        .map(|p| claim(&format!("p{p}"), Some("proc-z"), None))
        .collect();
    s.blocking_claim_ownership(&many).unwrap();
    drop(s);
    // `--json ownership list ... | head -1`
    let mut child = spawn_with_stdout(
        &db,
        &with_scope(&["--json", "ownership", "list"]),
        Stdio::piped(),
    );
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first.trim(), "[");
    let (code, stderr) = stderr_of(child);
    assert_eq!(code, 0, "a closed pipe is not an error: {stderr}");
    assert!(stderr.is_empty(), "nothing said about it: {stderr}");
    // `check | true`: the reader is gone before anything is written.
    let mut child = spawn_with_stdout(&db, &["check"], Stdio::piped());
    drop(child.stdout.take());
    let (code, stderr) = stderr_of(child);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // `check > /dev/full`: an error, exit 1.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let child = spawn_with_stdout(&db, &["check"], Stdio::from(full));
    let (code, stderr) = stderr_of(child);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot write to stdout"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn exit_3_is_only_for_the_database() {
    let (dir, db) = seeded();
    // A lease path that does not exist is a bad argument, as an import file is.
    let missing = dir.path().join("no-such-leases");
    let out = run(&db, &eph_scope(missing.to_str().unwrap()));
    fails(&out, 2, "no-such-leases");
    // A backup destination that cannot be written is a runtime I/O error.
    let dest = dir.path().join("no-such-dir").join("b.db");
    let out = run(&db, &["backup", dest.to_str().unwrap()]);
    fails(&out, 1, "no-such-dir");
    // The database itself: still 3.
    let out = run(&dir.path().join("gone.db"), &["check"]);
    fails(&out, 3, "no database at");
    // ... and a database that cannot be created (its directory is missing): 3.
    let out = run_in(
        dir.path(),
        &with_scope(&[
            "--db",
            dir.path().join("no-dir").join("x.db").to_str().unwrap(),
            "checkpoints",
            "set",
            "--partition",
            "0",
            "--sequence-number",
            "1",
        ]),
    );
    fails(&out, 3, "no-dir");
    // --kill-after needs someone to take over.
    let fresh = dir.path().join("sim.db");
    let out = run(
        &fresh,
        &["simulate", "--processes", "1", "--kill-after", "1"],
    );
    fails(&out, 2, "--kill-after needs --processes 2");
    assert!(!fresh.exists(), "refused before creating the database");
}

#[test]
fn names_from_the_database_reach_the_terminal_escaped() {
    let (_dir, db) = seeded();
    let ns = "evil\u{1b}]0;pwned\u{7}.example";
    let hub = "hub\r\nfake line";
    let group = "g\u{9b}31m\u{202e}x";
    let owner = "owner\u{1b}[2J";
    let s = SqliteCheckpointStore::open(&db).unwrap();
    s.blocking_claim_ownership(&[claim_in(ns, hub, group, "0", Some(owner), None)])
        .unwrap();
    s.blocking_update_checkpoint(&eventhubs_checkpointstore_sqlite::Checkpoint {
        fully_qualified_namespace: ns.into(),
        event_hub_name: hub.into(),
        consumer_group: group.into(),
        partition_id: "0\u{8}".into(),
        offset: Some("1\u{7}".into()),
        sequence_number: Some(1),
    })
    .unwrap();
    drop(s);
    let raw = |out: &Out| {
        out.stdout
            .chars()
            .filter(|c| (c.is_control() && *c != '\n') || ('\u{202a}'..='\u{202e}').contains(c))
            .count()
    };
    let scope = ["--namespace", ns, "--hub", hub, "--group", group];
    for args in [
        vec!["ownership", "list"],
        vec!["checkpoints", "list"],
        [&["ownership", "list"][..], &scope].concat(),
        [&["checkpoints", "list"][..], &scope].concat(),
    ] {
        let out = run(&db, &args);
        ok(&out);
        assert_eq!(raw(&out), 0, "{args:?} printed raw control characters");
        assert!(
            out.stdout.contains("\\u{1b}") || out.stdout.contains("\\u{7}"),
            "{args:?} shows them escaped: {}",
            out.stdout
        );
        assert!(!out.stdout.contains("\nfake line"), "{}", out.stdout);
    }
    let out = run(
        &db,
        &[&["checkpoints", "delete", "--yes"][..], &scope].concat(),
    );
    ok(&out);
    assert_eq!(raw(&out), 0, "{}", out.stdout);
    // JSON keeps the names exact (serde escapes them).
    let json = run(&db, &["--json", "ownership", "list"]).json();
    assert!(json
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["namespace"] == ns.to_lowercase() && g["event_hub"] == hub.to_lowercase()));
}

#[test]
fn json_errors_are_json_on_stdout_with_the_exit_code() {
    let (dir, db) = seeded();
    let error = |out: &Out, code: i32| {
        assert_eq!(out.code, code, "{}\n{}", out.stdout, out.stderr);
        let json = out.json();
        assert_eq!(json["error"]["exit_code"], code, "{json}");
        assert!(json["error"]["message"].as_str().unwrap().len() > 5);
    };
    error(
        &run(&dir.path().join("missing.db"), &["--json", "check"]),
        3,
    );
    error(&run(&db, &["--json", "ownership", "release"]), 2);
    error(&run(&db, &["--json", "frobnicate"]), 2);
    error(
        &run(&db, &["--json", "checkpoints", "set", "--partition", "0"]),
        2,
    );
    // A dry run says so in JSON too; a conflicting import is one JSON document, exit 4.
    let file = dir.path().join("export.json");
    std::fs::write(&file, run(&db, &["export"]).stdout).unwrap();
    let copy = dir.path().join("copy.db");
    let out = run(
        &copy,
        &["--json", "import", file.to_str().unwrap(), "--dry-run"],
    );
    ok(&out);
    let json = out.json();
    assert_eq!(
        (json["dry_run"].clone(), json["written"].clone()),
        (true.into(), false.into())
    );
    assert_eq!(json["new_ownerships"], 4);
    assert!(!copy.exists());
    let out = run(&copy, &["--json", "import", file.to_str().unwrap()]);
    ok(&out);
    assert_eq!(out.json()["written"], true);
    // One set of field names: the export's.
    let rows = run(&db, &with_scope(&["--json", "checkpoints", "list"])).json();
    assert_eq!(rows[0]["namespace"], NS);
    assert_eq!(rows[0]["event_hub"], HUB);
    let rows = run(&db, &with_scope(&["--json", "ownership", "list"])).json();
    assert_eq!(rows[0]["namespace"], NS);
    assert!(rows[0]["last_modified"].is_string(), "{rows}");
    let groups = run(&db, &["--json", "ownership", "list"]).json();
    assert_eq!(groups[0]["event_hub"], HUB);
}

#[test]
fn a_busy_database_names_the_file_and_the_timeout() {
    let (_dir, db) = seeded();
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let started = std::time::Instant::now();
    let out = run(
        &db,
        &with_scope(&[
            "--busy-timeout",
            "300",
            "checkpoints",
            "set",
            "--partition",
            "7",
            "--sequence-number",
            "1",
        ]),
    );
    let waited = started.elapsed();
    holder.execute_batch("ROLLBACK").unwrap();
    fails(&out, 1, "is busy");
    assert!(out.stderr.contains("store.db"), "{}", out.stderr);
    assert!(out.stderr.contains("300 ms"), "{}", out.stderr);
    assert!(
        waited >= std::time::Duration::from_millis(300),
        "waited {waited:?}"
    );
}

#[test]
fn flags_are_named_offsets_may_be_negative_and_nothing_to_do_is_not_an_error() {
    let (dir, db) = seeded();
    // A negative offset is a value, not a flag; an empty one is no offset.
    let set = |offset: &str| {
        run(
            &db,
            &with_scope(&["checkpoints", "set", "--partition", "5", "--offset", offset]),
        )
    };
    ok(&set("-1"));
    let list = run(&db, &with_scope(&["--json", "checkpoints", "list"])).json();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["partition_id"] == "5" && c["offset"] == "-1"));
    fails(&set(""), 2, "no offset");
    // Validation errors name the flag.
    let out = run(
        &db,
        &[
            "checkpoints",
            "set",
            "--namespace",
            "",
            "--hub",
            "h",
            "--group",
            "g",
            "--partition",
            "0",
            "--sequence-number",
            "1",
        ],
    );
    fails(&out, 2, "--namespace must not be empty");
    let out = run(
        &db,
        &[
            "import-eph",
            &fixtures("dotnet"),
            "--namespace",
            "n",
            "--hub",
            "",
            "--group",
            "g",
        ],
    );
    fails(&out, 2, "--hub must not be empty");
    // Matching nothing: said so, exit 0, with or without --yes.
    let before = run(&db, &["export"]).stdout;
    for args in [
        &["ownership", "release", "--owner", "nobody"][..],
        &["ownership", "release", "--owner", "nobody", "--yes"],
    ] {
        let out = run(&db, args);
        ok(&out);
        assert!(out.stdout.contains("nothing to release"), "{}", out.stdout);
    }
    for args in [
        &["checkpoints", "delete", "--partition", "99"][..],
        &["checkpoints", "delete", "--group", "nope", "--yes"],
    ] {
        let out = run(&db, args);
        ok(&out);
        assert!(out.stdout.contains("nothing to delete"), "{}", out.stdout);
    }
    assert_eq!(run(&db, &["export"]).stdout, before, "nothing changed");
    // Ownership times in the future are imported, with a warning.
    let export = before.replacen(
        &before[before.find("\"last_modified\": \"").unwrap() + 18..][..4],
        "2100",
        1,
    );
    let file = dir.path().join("future.json");
    std::fs::write(&file, export).unwrap();
    let copy = dir.path().join("copy.db");
    let out = run(&copy, &["import", file.to_str().unwrap()]);
    ok(&out);
    assert!(
        out.stderr
            .contains("1 ownership(s) were last modified in the future"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_command_preallocates_no_wal_but_a_processors_open_does() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let short = eventhubs_checkpointstore_sqlite::StoreOptions::new().with_wal_preallocation(false);
    drop(SqliteCheckpointStore::open_with(&db, short).unwrap());
    // Another connection keeps the file open, so that the -wal outlives the command.
    let other = rusqlite::Connection::open(&db).unwrap();
    other
        .query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
        .unwrap();
    let wal_len = || {
        std::fs::metadata(format!("{}-wal", db.display()))
            .unwrap()
            .len()
    };
    let set = ["checkpoints", "set", "--partition", "0", "--offset", "1"];
    ok(&run(&db, &with_scope(&set)));
    assert!(
        wal_len() < 1 << 20,
        "the command left a {}-byte -wal",
        wal_len()
    );
    // The library's default, for a processor: SQLite's first 1000 frames of 4 KiB, at once.
    drop(SqliteCheckpointStore::open(&db).unwrap());
    assert_eq!(wal_len(), EXTENDED_WAL);
}

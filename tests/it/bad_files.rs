//! Bad files: files that are not SQLite, other applications' databases, newer schemas,
//! directories in place of the file, damaged files, stale `-wal` files, read-only files and
//! directories, and files locked past the busy timeout. Each gets its own clear error and is
//! never written, except the stale `-wal`, which is recovered.
//!
//! `EHCS_DAMAGE_CASES` sets the number of randomly damaged files and of random byte strings
//! tried (default 200, or 5000 with `EHCS_HEAVY=1`); `EHCS_SEED` replays a run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use eventhubs_checkpointstore_sqlite::{Error, SqliteCheckpointStore, StoreOptions};

const PAGE: usize = 4096;

/// A closed store with 300 checkpoints and ownerships: a WAL-mode file of some 30 pages.
fn filled_store() -> (tempfile::TempDir, PathBuf) {
    let (dir, path, store) = file_store();
    for i in 0..300 {
        let p = i.to_string();
        store
            .blocking_update_checkpoint(&checkpoint(&p, Some(&"7".repeat(100)), Some(i)))
            .unwrap();
        store
            .blocking_claim_ownership(&[claim(&p, Some("owner"), None)])
            .unwrap();
    }
    drop(store);
    wait_closed(&path);
    (dir, path)
}

/// The error and every source below it, as one line.
fn chain(err: &Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

fn corrupt(e: &Error) -> bool {
    matches!(e, Error::NotADatabase { reason, .. } if reason.starts_with("it is corrupt"))
}

#[test]
fn a_truncated_database_is_refused_untouched() {
    let (dir, path) = filled_store();
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8 * PAGE);
    for cut in [
        50,
        100,
        PAGE,
        3 * PAGE + 17,
        bytes.len() / 2,
        bytes.len() - PAGE,
    ] {
        let truncated = dir.path().join(format!("cut-{cut}.db"));
        std::fs::write(&truncated, &bytes[..cut]).unwrap();
        let err = refused_untouched(&truncated, corrupt);
        let shown = chain(&err);
        assert!(shown.contains("is truncated"), "cut at {cut}: {shown}");
        assert!(
            shown.contains(&format!("cut-{cut}.db")),
            "names the file: {shown}"
        );
    }
}

#[test]
fn damaged_b_tree_pages_are_refused_untouched() {
    let (dir, path) = filled_store();
    let bytes = std::fs::read(&path).unwrap();
    let pages = bytes.len() / PAGE;
    // Every page after the first is a b-tree page of one of the two tables (nothing was ever
    // deleted, so there are no free pages). An invalid page type makes each one unreadable.
    for page in 1..pages {
        let mut damaged = bytes.clone();
        damaged[page * PAGE] = 0xff;
        let file = dir.path().join(format!("page-{page}.db"));
        std::fs::write(&file, &damaged).unwrap();
        let err = refused_untouched(&file, corrupt);
        assert!(
            chain(&err).contains("malformed") || chain(&err).contains("integrity check"),
            "page {page}: {}",
            chain(&err)
        );
    }
    // With the check on open turned off (to inspect a damaged file), the same file opens.
    let file = dir.path().join("page-1.db");
    let options = StoreOptions::new().with_check_on_open(false);
    SqliteCheckpointStore::open_with(&file, options).expect("opens without the check");
    // Cell pointers that point outside their page.
    let mut damaged = bytes.clone();
    for page in 1..pages {
        damaged[page * PAGE + 8] ^= 0xff;
    }
    let file = dir.path().join("cells.db");
    std::fs::write(&file, &damaged).unwrap();
    refused_untouched(&file, corrupt);
}

/// What opening and reading a damaged file came to.
#[derive(Debug, Default)]
struct Outcomes {
    refused_at_open: u64,
    refused_on_read: u64,
    read: u64,
}

/// Opens `file` (holding `bytes`) and reads both lists. Every failure must be one of the
/// errors that name a bad file and nothing may panic. A refused file must stay as it was; an
/// accepted one may only have had its header changed (a store in rollback-journal mode is
/// switched to WAL mode), never its pages, and no write may wait in its -wal.
///
/// Each case gets a file of its own, removed afterwards, so that no case meets what another
/// left behind.
fn open_damaged(dir: &Path, bytes: &[u8], outcomes: &mut Outcomes) {
    let n = outcomes.refused_at_open + outcomes.refused_on_read + outcomes.read;
    let path = dir.join(format!("case-{n}.db"));
    std::fs::write(&path, bytes).unwrap();
    let file = path.as_path();
    let bad_file = |e: &Error| {
        matches!(
            e,
            Error::NotADatabase { .. } | Error::SchemaTooNew { .. } | Error::ReadOnly { .. }
        )
    };
    match SqliteCheckpointStore::open(file) {
        Err(e) => {
            assert!(bad_file(&e), "{e:?}");
            assert!(read_bytes(file) == bytes, "a refused file was written");
            outcomes.refused_at_open += 1;
        }
        Ok(store) => {
            let lists = store
                .blocking_list_checkpoints(NS, HUB, GROUP)
                .and_then(|_| store.blocking_list_ownerships(NS, HUB, GROUP));
            match lists {
                Err(e) => {
                    assert!(bad_file(&e), "{e:?}");
                    outcomes.refused_on_read += 1;
                }
                Ok(_) => outcomes.read += 1,
            }
            drop(store);
            // The last connection removes the -wal, or, where the damage keeps it from doing
            // so, leaves it empty: nothing written is waiting in it.
            let wal = file.with_extension("db-wal");
            if let Ok(meta) = std::fs::metadata(&wal) {
                assert_eq!(meta.len(), 0, "writes are waiting in the -wal");
            }
            let after = read_bytes(file);
            assert!(
                after.len() == bytes.len() && after[100..] == bytes[100..],
                "opening and reading wrote to the pages of the file"
            );
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

#[test]
fn randomly_damaged_files_never_panic_and_are_never_written() {
    let (dir, path) = filled_store();
    let bytes = std::fs::read(&path).unwrap();
    let cases = size("EHCS_DAMAGE_CASES", 200, 5000);
    let mut rng = Rng::from_env("randomly_damaged_files");
    let mut outcomes = Outcomes::default();
    for _ in 0..cases {
        let mut damaged = bytes.clone();
        for _ in 0..rng.below(1..17) {
            // Mostly the b-tree pages, sometimes the header page.
            let from = if rng.below(0..10) == 0 {
                0
            } else {
                PAGE as u64
            };
            let at = rng.below(from..damaged.len() as u64) as usize;
            damaged[at] ^= rng.below(1..256) as u8;
        }
        open_damaged(dir.path(), &damaged, &mut outcomes);
    }
    println!("SUMMARY randomly_damaged_files: {cases} files: {outcomes:?}");
    assert!(outcomes.refused_at_open > 0);
}

/// Each byte of the 100-byte header (page size, format numbers, counters, the schema format,
/// the application id, the schema version...) set to other values, one at a time.
#[test]
fn every_damaged_header_field_is_refused_or_harmless() {
    let (dir, path) = filled_store();
    let bytes = std::fs::read(&path).unwrap();
    let mut outcomes = Outcomes::default();
    for at in 0..100 {
        for value in [0x00, 0x01, 0x05, 0x7f, 0x80, 0xff, bytes[at] ^ 0x01] {
            if value == bytes[at] {
                continue;
            }
            let mut damaged = bytes.clone();
            damaged[at] = value;
            open_damaged(dir.path(), &damaged, &mut outcomes);
        }
    }
    println!("SUMMARY damaged_header: {outcomes:?}");
}

/// The stable-Rust twin of the `open_bytes` fuzz target: any bytes at all (but none: an empty
/// file is a new store) are refused with a bad-file error, without a panic or a write.
#[test]
fn arbitrary_bytes_as_a_database_are_refused_untouched() {
    let (dir, path) = filled_store();
    let real_header = std::fs::read(&path).unwrap()[..100].to_vec();
    let cases = size("EHCS_DAMAGE_CASES", 200, 5000);
    let mut rng = Rng::from_env("arbitrary_bytes");
    let mut outcomes = Outcomes::default();
    for case in 0..cases {
        let len = rng.below(1..3 * PAGE as u64) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        // A third of the files start like a SQLite file, a third like one of ours.
        let prefix: &[u8] = match case % 3 {
            0 => b"SQLite format 3\0",
            1 => &real_header,
            _ => b"",
        };
        let n = prefix.len().min(len);
        bytes[..n].copy_from_slice(&prefix[..n]);
        open_damaged(dir.path(), &bytes, &mut outcomes);
    }
    println!("SUMMARY arbitrary_bytes: {cases} files: {outcomes:?}");
    assert_eq!(outcomes.read, 0, "random bytes are never a store");
}

/// Copies `files` (names under `from`) to a new directory.
fn copy_aside(from: &Path, files: &[&str]) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for name in files {
        std::fs::copy(from.join(name), to.path().join(name)).unwrap();
    }
    to
}

fn stored_checkpoints(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("SELECT count(*) FROM checkpoint", [], |r| r.get(0))
        .unwrap_or(0)
}

#[test]
fn a_stale_wal_left_by_a_crash_is_recovered() {
    let (dir, _path, store) = file_store();
    for i in 0..50 {
        store
            .blocking_update_checkpoint(&checkpoint(&i.to_string(), Some("x"), Some(i)))
            .unwrap();
    }
    store
        .blocking_claim_ownership(&[claim("0", Some("a"), None), claim("1", Some("b"), None)])
        .unwrap();
    let checkpoints = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
    let ownerships = store.blocking_list_ownerships(NS, HUB, GROUP).unwrap();
    // Copy the files while the store is open and its writes are in the -wal only, as a crash
    // would leave them.
    let db_only = copy_aside(dir.path(), &["store.db"]);
    let with_wal = copy_aside(dir.path(), &["store.db", "store.db-wal"]);
    let with_shm = copy_aside(dir.path(), &["store.db", "store.db-wal", "store.db-shm"]);
    let torn = copy_aside(dir.path(), &["store.db", "store.db-wal"]);
    drop(store);
    assert_eq!(
        stored_checkpoints(&db_only.path().join("store.db")),
        0,
        "the writes must be in the -wal only, or this test recovers nothing"
    );

    for copy in [&with_wal, &with_shm] {
        let path = copy.path().join("store.db");
        let reopened = SqliteCheckpointStore::open(&path).unwrap();
        assert_eq!(
            reopened.blocking_list_checkpoints(NS, HUB, GROUP).unwrap(),
            checkpoints
        );
        assert_eq!(
            reopened.blocking_list_ownerships(NS, HUB, GROUP).unwrap(),
            ownerships
        );
        reopened
            .blocking_update_checkpoint(&checkpoint("new", Some("y"), Some(1)))
            .unwrap();
        drop(reopened);
        assert_eq!(integrity_check(&path), "ok");
    }

    // A -wal whose last frame was torn by the crash: the last transaction (the claim of two
    // partitions, whose commit never returned) is dropped whole; the rest is recovered. The
    // -wal was extended in zeros at open, so its frames end before the file does: the tear
    // zeroes the last 100 bytes of the last frame, as a torn write into those zeros leaves it.
    let wal = torn.path().join("store.db-wal");
    let mut bytes = std::fs::read(&wal).unwrap();
    let end = frames_end(&bytes);
    assert!(end < bytes.len(), "the -wal was not extended at open");
    bytes[end - 100..end].fill(0);
    std::fs::write(&wal, &bytes).unwrap();
    let path = torn.path().join("store.db");
    let reopened = SqliteCheckpointStore::open(&path).unwrap();
    assert_eq!(
        reopened.blocking_list_checkpoints(NS, HUB, GROUP).unwrap(),
        checkpoints
    );
    assert!(owners(&reopened).is_empty(), "the torn claim is gone whole");
    drop(reopened);
    assert_eq!(integrity_check(&path), "ok");
}

/// Where the frames of the `-wal` in `wal` end: after the last frame, counted from the
/// 32-byte header, that carries the header's salts (SQLite's WAL format).
fn frames_end(wal: &[u8]) -> usize {
    let page = u32::from_be_bytes(wal[8..12].try_into().unwrap()) as usize;
    let salts = &wal[16..24];
    let mut end = 32;
    while end + 24 + page <= wal.len() && &wal[end + 8..end + 16] == salts {
        end += 24 + page;
    }
    end
}

/// Ways to make a directory read-only, tried in turn: a read-only bind mount and `chattr +i`
/// (both work as root, who ignores permission bits), and `chmod 0555` (for everyone else).
const READ_ONLY_WAYS: [&str; 3] = ["read-only bind mount", "chattr +i", "chmod 0555"];

fn run(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes `dir` read-only in the given way; returns whether that worked (a file can no longer
/// be created in it).
fn make_dir_read_only(dir: &Path, way: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let d = dir.to_str().unwrap();
    let done = match way {
        "read-only bind mount" => {
            run("mount", &["--bind", d, d]) && {
                run("mount", &["-o", "remount,ro,bind", d]) || {
                    run("umount", &[d]);
                    false
                }
            }
        }
        "chattr +i" => run("chattr", &["+i", d]),
        _ => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).is_ok(),
    };
    let probe = dir.join("probe");
    if done && std::fs::File::create(&probe).is_ok() {
        // Not enough here (root ignores permission bits): undo and try another way.
        std::fs::remove_file(&probe).unwrap();
        undo_read_only(dir, way);
        return false;
    }
    done
}

fn undo_read_only(dir: &Path, way: &str) {
    use std::os::unix::fs::PermissionsExt;
    let d = dir.to_str().unwrap();
    match way {
        "read-only bind mount" => assert!(run("umount", &[d]), "umount {d}"),
        "chattr +i" => assert!(run("chattr", &["-i", d]), "chattr -i {d}"),
        _ => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap(),
    }
}

#[test]
fn a_store_in_a_read_only_directory_is_refused_untouched() {
    let mut tried = Vec::new();
    for way in READ_ONLY_WAYS {
        let (dir, path) = filled_store();
        let before = read_bytes(&path);
        if !make_dir_read_only(dir.path(), way) {
            continue;
        }
        let result = SqliteCheckpointStore::open(&path);
        let listing: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        undo_read_only(dir.path(), way);
        let err = result.expect_err("a read-only directory must be refused");
        assert!(matches!(err, Error::ReadOnly { .. }), "{way}: {err:?}");
        assert!(err.to_string().ends_with("is read-only"), "{way}: {err}");
        assert!(read_bytes(&path) == before, "{way}: the file was written");
        assert_eq!(listing, ["store.db"], "{way}: no file may appear");
        // Once the directory is writable again, the store opens with its data.
        let store = SqliteCheckpointStore::open(&path).unwrap();
        assert_eq!(
            store
                .blocking_list_checkpoints(NS, HUB, GROUP)
                .unwrap()
                .len(),
            300
        );
        tried.push(way);
    }
    println!("read-only directory made by: {tried:?}");
    assert!(
        !tried.is_empty(),
        "no way to make a directory read-only worked"
    );
}

const LOCK_ENV: &str = "EHCS_LOCK_HOLDER";
const LOCK_TEST: &str =
    "bad_files::a_file_locked_by_another_process_past_the_busy_timeout_is_a_busy_error";

/// Another process that takes a lock on the file and holds it until `release` exists.
struct LockHolder {
    child: std::process::Child,
    release: PathBuf,
}

impl LockHolder {
    /// `how`: `exclusive` (no one may even read) or `write` (the write lock).
    fn start(path: &Path, how: &str) -> LockHolder {
        let release = path.with_extension(format!("release-{how}"));
        let mut child = reexec(
            LOCK_TEST,
            LOCK_ENV,
            &format!("{}|{how}|{}", path.display(), release.display()),
        )
        .spawn()
        .unwrap();
        let locked = std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .lines()
            .map_while(|l| l.ok())
            .any(|l| l.contains("LOCKED"));
        assert!(locked, "the lock holder failed");
        LockHolder { child, release }
    }

    fn release(mut self) {
        std::fs::write(&self.release, b"").unwrap();
        assert!(self.child.wait().unwrap().success());
    }
}

/// The lock holder's side.
fn hold_lock(spec: &str) {
    let f: Vec<&str> = spec.split('|').collect();
    let conn = rusqlite::Connection::open(f[0]).unwrap();
    if f[1] == "exclusive" {
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
    } else {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    }
    conn.execute("DELETE FROM checkpoint", []).unwrap();
    report("LOCKED");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !Path::new(f[2]).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Give the lock up without writing anything.
    conn.execute_batch("ROLLBACK").unwrap();
}

#[test]
fn a_file_locked_by_another_process_past_the_busy_timeout_is_a_busy_error() {
    if let Ok(spec) = std::env::var(LOCK_ENV) {
        return hold_lock(&spec);
    }
    let (_dir, path) = filled_store();
    let options = StoreOptions::new().with_busy_timeout(Duration::from_millis(300));

    // An exclusive lock: not even the checks of the open can read the file.
    let before = read_bytes(&path);
    let holder = LockHolder::start(&path, "exclusive");
    let started = Instant::now();
    let err = SqliteCheckpointStore::open_with(&path, options.clone()).unwrap_err();
    assert!(err.is_busy(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "`{}` is busy: gave up after the busy timeout of 300ms",
            path.display()
        )
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "it must wait first"
    );
    holder.release();
    assert!(
        read_bytes(&path) == before,
        "the refused open wrote nothing"
    );

    // The write lock: the open (which only reads) succeeds, the first write is busy and
    // writes nothing, and once the lock is gone the write succeeds.
    let holder = LockHolder::start(&path, "write");
    let store = SqliteCheckpointStore::open_with(&path, options).unwrap();
    let started = Instant::now();
    let err = store
        .blocking_update_checkpoint(&checkpoint("0", Some("new"), Some(1000)))
        .unwrap_err();
    assert!(err.is_busy(), "{err:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "it must wait first"
    );
    let err = store
        .blocking_claim_ownership(&[claim("new", Some("a"), None)])
        .unwrap_err();
    assert!(err.is_busy(), "{err:?}");
    holder.release();
    let stored = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
    assert_eq!(stored.len(), 300, "the holder's delete was rolled back");
    assert_eq!(
        stored[0].sequence_number,
        Some(0),
        "the busy write wrote nothing"
    );
    assert!(!owners(&store).iter().any(|o| o.0 == "new"));
    store
        .blocking_update_checkpoint(&checkpoint("0", Some("new"), Some(1000)))
        .unwrap();
}

/// The header's text encoding (bytes 56..60) may only be 1, 2 or 3 (UTF-8, UTF-16le,
/// UTF-16be). SQLite reads another value as UTF-8 at first and then fails later reads with a
/// generic error ("attached databases must use the same text encoding"); the fuzzer found a
/// file where that reached the caller as `Internal`.
#[test]
fn a_header_with_an_unknown_text_encoding_is_refused_untouched() {
    let (dir, path) = filled_store();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[56..60], [0, 0, 0, 1], "a store is UTF-8");
    for encoding in [0u32, 4, 8, 0x0100_0001, u32::MAX] {
        let mut damaged = bytes.clone();
        damaged[56..60].copy_from_slice(&encoding.to_be_bytes());
        let file = dir.path().join(format!("encoding-{encoding}.db"));
        std::fs::write(&file, &damaged).unwrap();
        let err = SqliteCheckpointStore::open(&file).unwrap_err();
        assert!(corrupt(&err), "encoding {encoding}: {err:?}");
        assert!(
            chain(&err).contains("text encoding"),
            "encoding {encoding}: {}",
            chain(&err)
        );
        assert!(read_bytes(&file) == damaged, "a refused file was written");
    }
    // The fuzzer's file itself.
    let found = include_bytes!("../../fuzz/seeds/open_bytes/text-encoding-8");
    let file = dir.path().join("fuzz-text-encoding.db");
    std::fs::write(&file, found).unwrap();
    let err = SqliteCheckpointStore::open(&file).unwrap_err();
    assert!(corrupt(&err), "{err:?}");
    assert!(read_bytes(&file) == found, "a refused file was written");
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    let text = "these are my notes, not a database\n".repeat(200);
    std::fs::write(&path, text).unwrap();
    let err = refused_untouched(&path, |e| matches!(e, Error::NotADatabase { .. }));
    let message = err.to_string();
    assert!(
        message.contains("notes.db"),
        "the message names the file: {message}"
    );
}

/// SQLite's unix VFS reports a file of one byte as empty and would write a new database over
/// it (found by `arbitrary_bytes_…` with the seed 1796233978099199805: a file holding "S").
#[test]
fn a_file_of_one_byte_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    for byte in [b'S', b'x', 0] {
        let path = dir.path().join(format!("one-{byte}.db"));
        std::fs::write(&path, [byte]).unwrap();
        let err = refused_untouched(&path, |e| matches!(e, Error::NotADatabase { .. }));
        assert!(err.to_string().contains("single byte"), "{err}");
        let err = SqliteCheckpointStore::open_read_only(&path).unwrap_err();
        assert!(matches!(err, Error::NotADatabase { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), [byte]);
    }
}

#[test]
fn another_applications_sqlite_database_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    let err = refused_untouched(&path, |e| matches!(e, Error::NotADatabase { .. }));
    assert!(err.to_string().contains("another application"), "{err}");
}

#[test]
fn a_store_from_a_newer_schema_version_is_refused_and_untouched() {
    let (_dir, path, store) = file_store();
    store
        .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap();
    drop(store);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let err = refused_untouched(&path, |e| {
        matches!(e, Error::SchemaTooNew { found: 99, .. })
    });
    assert_eq!(
        err.to_string(),
        format!(
            "`{}` has schema version 99, newer than the supported {}",
            path.display(),
            SqliteCheckpointStore::supported_schema_version()
        )
    );
}

#[test]
fn a_directory_is_refused_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteCheckpointStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let shown = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(shown.contains("is a directory"), "{shown}");
    assert!(shown.contains(&dir.path().display().to_string()), "{shown}");
}

#[cfg(unix)]
#[test]
fn a_wal_or_shm_that_is_not_a_regular_file_is_named_and_nothing_is_touched() {
    let (dir, path) = filled_store();
    let before = std::fs::read(&path).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::write(&elsewhere, b"someone else's bytes").unwrap();
    /// Puts something that is not a regular file at the side file (first), maybe a link to the
    /// second.
    type Make = fn(&Path, &Path);
    let cases: [(&str, &str, Make); 4] = [
        ("-wal", "is a symbolic link", |side, to| {
            std::os::unix::fs::symlink(to, side).unwrap()
        }),
        ("-shm", "is a symbolic link", |side, _| {
            std::os::unix::fs::symlink("missing", side).unwrap()
        }),
        ("-wal", "is a directory", |side, _| {
            std::fs::create_dir(side).unwrap()
        }),
        ("-shm", "is a named pipe (FIFO)", |side, _| {
            assert!(run("mkfifo", &[side.to_str().unwrap()]), "mkfifo")
        }),
    ];
    for (suffix, what, make) in cases {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        make(&side, &elsewhere);
        for read_only in [false, true] {
            let err = if read_only {
                SqliteCheckpointStore::open_read_only(&path)
            } else {
                SqliteCheckpointStore::open(&path)
            }
            .expect_err("an odd side file must be refused");
            let shown = chain(&err);
            assert!(matches!(err, Error::Io { .. }), "{shown}");
            assert!(
                shown.contains(&format!("{}` {what}", side.display())),
                "{suffix} {what}, read-only {read_only}: {shown}"
            );
            assert!(!shown.contains("read-only"), "{shown}");
        }
        let kind = std::fs::symlink_metadata(&side).unwrap().file_type();
        if kind.is_dir() {
            std::fs::remove_dir(&side).unwrap();
        } else {
            std::fs::remove_file(&side).unwrap();
        }
    }
    assert_eq!(std::fs::read(&elsewhere).unwrap(), b"someone else's bytes");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // Moved aside, the store opens.
    let store = SqliteCheckpointStore::open(&path).unwrap();
    assert_eq!(stored_checkpoints_of(&store), 300);
}

fn stored_checkpoints_of(store: &SqliteCheckpointStore) -> usize {
    store
        .blocking_list_checkpoints(NS, HUB, GROUP)
        .unwrap()
        .len()
}

#[test]
fn a_missing_parent_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteCheckpointStore::open(dir.path().join("no/such/dir/store.db")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

/// Makes a file unwritable: `chmod 0444`, and where that is not enough (root ignores
/// permission bits) `chattr +i`. Returns a guard that undoes both.
#[cfg(unix)]
fn make_read_only(path: &Path) -> impl Drop + '_ {
    use std::os::unix::fs::PermissionsExt;
    struct Undo<'a>(&'a Path);
    impl Drop for Undo<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(self.0)
                .status();
            let _ = std::fs::set_permissions(self.0, std::fs::Permissions::from_mode(0o600));
        }
    }
    let writable = || std::fs::OpenOptions::new().write(true).open(path).is_ok();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let guard = Undo(path);
    if writable() {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .expect("chattr must be installed to test read-only files as root");
        assert!(status.success(), "chattr +i failed on {}", path.display());
    }
    assert!(
        !writable(),
        "the file must really be unwritable for this test to mean anything"
    );
    guard
}

#[cfg(unix)]
#[test]
fn a_read_only_file_is_refused_with_a_read_only_error() {
    let (_dir, path, store) = file_store();
    store
        .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap();
    drop(store);
    wait_closed(&path);
    let before = read_bytes(&path);
    let _guard = make_read_only(&path);
    let err = SqliteCheckpointStore::open(&path).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    assert!(err.to_string().ends_with("is read-only"), "{err}");
    assert!(
        read_bytes(&path) == before,
        "the file must stay byte-identical"
    );
}

#[test]
fn a_lock_held_past_the_busy_timeout_is_a_busy_error_and_nothing_is_written() {
    let options = StoreOptions::new().with_busy_timeout(Duration::from_millis(200));
    let (_dir, path, store) = file_store_with(options);
    let mut other = rusqlite::Connection::open(&path).unwrap();
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();

    let started = Instant::now();
    let err = store
        .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap_err();
    assert!(err.is_busy(), "{err:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "it must wait first"
    );
    let err = store
        .blocking_claim_ownership(&[claim("0", Some("a"), None)])
        .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "`{}` is busy: gave up after the busy timeout of 200ms",
            path.display()
        )
    );

    lock.rollback().unwrap();
    assert!(store
        .blocking_list_checkpoints(NS, HUB, GROUP)
        .unwrap()
        .is_empty());
    assert!(owners(&store).is_empty());
    // Once the lock is gone the same writes succeed.
    store
        .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap();
}

//! A full disk, or a full file size limit: writes fail with `Error::DiskFull`, the file stays
//! consistent and readable with every earlier write intact, and writes succeed again once
//! there is space.
//!
//! Two ways to run out of space:
//! - a 1 MiB tmpfs mounted for the test (as root); where mounting is not permitted, this test
//!   says so and runs the file size limit variant instead, so it never passes silently;
//! - a file size limit (`prlimit --fsize`, with SIGXFSZ ignored so that writes fail with
//!   EFBIG instead of killing the process) on a writer process: this test binary run again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use eventhubs_checkpointstore_sqlite::{Error, SqliteCheckpointStore};

/// A tmpfs of `size_kib` KiB, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_kib: u32) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// The checkpoints a test was told were written: partition -> (offset, sequence number).
type Acked = BTreeMap<String, (String, i64)>;

/// Writes some data that must survive what follows.
fn write_earlier_data(store: &SqliteCheckpointStore, acked: &mut Acked) {
    for i in 0..20 {
        let p = format!("early-{i}");
        store
            .blocking_update_checkpoint(&checkpoint(&p, Some(&i.to_string()), Some(i)))
            .unwrap();
        acked.insert(p, (i.to_string(), i));
    }
    store
        .blocking_claim_ownership(&[claim("0", Some("early"), None)])
        .unwrap();
}

/// Writes checkpoints with 4 KiB offsets until a write fails, and returns that error. Each
/// write that succeeded (and that `on_ack` heard of) is in `acked`.
fn fill(store: &SqliteCheckpointStore, acked: &mut Acked, on_ack: impl Fn(&str, i64)) -> Error {
    let offset = "f".repeat(4000);
    for i in 0..100_000 {
        let p = format!("fill-{i}");
        match store.blocking_update_checkpoint(&checkpoint(&p, Some(&offset), Some(i))) {
            Ok(()) => {
                on_ack(&p, i);
                acked.insert(p, (offset.clone(), i));
            }
            Err(e) => return e,
        }
    }
    panic!("100000 writes of 4 KiB and the space never ran out");
}

/// Every acknowledged checkpoint is stored exactly as written.
fn check_intact(store: &SqliteCheckpointStore, acked: &Acked) {
    let stored: BTreeMap<String, (String, i64)> = store
        .blocking_list_checkpoints(NS, HUB, GROUP)
        .unwrap()
        .into_iter()
        .map(|c| {
            (
                c.partition_id,
                (c.offset.unwrap(), c.sequence_number.unwrap()),
            )
        })
        .collect();
    for (p, value) in acked {
        assert_eq!(
            stored.get(p),
            Some(value),
            "{p}: an acknowledged write is lost"
        );
    }
    assert_eq!(
        owners(store)[0].1.as_deref(),
        Some("early"),
        "the earlier claim is intact"
    );
}

/// The error a full disk must give.
fn check_full_error(err: &Error, path: &Path) {
    assert!(matches!(err, Error::DiskFull { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("no space left for `{}`", path.display())
    );
}

#[test]
fn a_full_file_system_is_a_clear_error_and_the_store_recovers() {
    let fs = match Tmpfs::mount(1024) {
        Ok(fs) => fs,
        Err(why) => {
            println!("cannot mount a tmpfs ({why}): testing a file size limit instead");
            return file_size_limit_scenario();
        }
    };
    // Room is made for the store by deleting this later.
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![0u8; 256 * 1024]).unwrap();
    let path = fs.path().join("store.db");
    let store = SqliteCheckpointStore::open(&path).unwrap();
    // The open's extension of the new -wal to 4 MiB did not fit: it was cut back to what
    // SQLite had written, the space left to the store's writes.
    let wal = std::fs::metadata(format!("{}-wal", path.display())).unwrap();
    assert!(wal.len() < 64 * 1024, "the -wal kept {} bytes", wal.len());
    let mut acked = Acked::new();
    write_earlier_data(&store, &mut acked);

    let err = fill(&store, &mut acked, |_, _| {});
    check_full_error(&err, &path);
    let claim_err =
        store.blocking_claim_ownership(&[claim("0", Some("late"), owners(&store)[0].2.as_deref())]);
    assert!(
        matches!(claim_err, Ok(_) | Err(Error::DiskFull { .. })),
        "a claim on a full disk: {claim_err:?}"
    );
    let claim_took = claim_err.is_ok_and(|won| won.len() == 1);

    // Full, the file is consistent and readable, by this store and by a new one.
    assert_eq!(integrity_check(&path), "ok");
    if !claim_took {
        check_intact(&store, &acked);
    }
    let reader = SqliteCheckpointStore::open(&path).unwrap();
    assert_eq!(
        reader
            .blocking_list_checkpoints(NS, HUB, GROUP)
            .unwrap()
            .len(),
        acked.len()
    );
    drop(reader);

    // Space again: writes succeed.
    std::fs::remove_file(&filler).unwrap();
    store
        .blocking_update_checkpoint(&checkpoint("after", Some("1"), Some(1)))
        .unwrap();
    acked.insert("after".into(), ("1".into(), 1));
    let stored = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
    assert!(stored.iter().any(|c| c.partition_id == "after"));
    drop(store);
    assert_eq!(integrity_check(&path), "ok");
    println!(
        "SUMMARY disk_full tmpfs: full after {} checkpoints of 4 KiB, recovered",
        acked.len() - 21
    );
}

const LIMITED_ENV: &str = "EHCS_FSIZE_WRITER";
const LIMITED_TEST: &str = "disk_full::a_file_size_limit_is_a_clear_error_and_the_store_recovers";

/// The file size limit of the writer: unaligned, so that the write that crosses it is cut
/// short (SQLite's "full") rather than refused at a page boundary.
const LIMIT: u64 = 300_001;

#[test]
fn a_file_size_limit_is_a_clear_error_and_the_store_recovers() {
    if let Ok(path) = std::env::var(LIMITED_ENV) {
        return limited_writer(Path::new(&path));
    }
    file_size_limit_scenario();
}

fn file_size_limit_scenario() {
    let (_dir, path, store) = file_store();
    let mut acked = Acked::new();
    write_earlier_data(&store, &mut acked);
    drop(store);

    // `trap '' XFSZ` ignores SIGXFSZ, and an ignored signal stays ignored across exec.
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; exec prlimit --fsize=\"$0\":unlimited -- \"$@\"",
            &LIMIT.to_string(),
        ])
        .arg(exe)
        .args(["--exact", LIMITED_TEST, "--nocapture", "--test-threads=1"])
        .env(LIMITED_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the limited writer failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("RECOVERED"), "{stdout}");
    for line in stdout.lines() {
        if let Some(at) = line.find("ACK ") {
            let f: Vec<&str> = line[at + 4..].split(' ').collect();
            acked.insert(f[0].to_owned(), ("f".repeat(4000), f[1].parse().unwrap()));
        }
    }
    acked.insert("after".into(), ("1".into(), 1));
    assert_eq!(integrity_check(&path), "ok");
    let store = SqliteCheckpointStore::open(&path).unwrap();
    check_intact(&store, &acked);
    println!(
        "SUMMARY disk_full file size limit: full after {} checkpoints of 4 KiB, recovered",
        acked.len() - 21
    );
}

/// The writer under a file size limit: fills the store, checks the error and the file, lifts
/// its own limit and writes again.
fn limited_writer(path: &Path) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let fsize = limits
        .lines()
        .find(|l| l.starts_with("Max file size"))
        .unwrap();
    assert!(
        fsize.contains(&LIMIT.to_string()),
        "the file size limit is not in force: {fsize}"
    );
    let store = SqliteCheckpointStore::open(path).unwrap();
    let mut acked = Acked::new();
    let err = fill(&store, &mut acked, |p, i| report(&format!("ACK {p} {i}")));
    check_full_error(&err, path);
    assert_eq!(integrity_check(path), "ok");
    let listed = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
    assert_eq!(
        listed.len(),
        acked.len() + 20,
        "earlier data and every acknowledged write"
    );

    let raised = Command::new("prlimit")
        .args([
            "--pid",
            &std::process::id().to_string(),
            "--fsize=unlimited",
        ])
        .status()
        .unwrap();
    assert!(raised.success(), "prlimit could not lift the limit");
    store
        .blocking_update_checkpoint(&checkpoint("after", Some("1"), Some(1)))
        .unwrap();
    report("RECOVERED");
}

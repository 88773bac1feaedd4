//! What a careless or hostile path does to `open`, `open_read_only`, `blocking_backup_to` and
//! `create_new_file`: anything but a regular file (a FIFO, a device) is refused before SQLite
//! sees it and nothing is created beside it; symlinks are followed to a regular file and
//! refused otherwise; an empty SQLite database is adopted; URI-looking names are plain paths;
//! a backup or export never overwrites or deletes what it did not create; a store that cannot
//! be written can still be read, leaving nothing behind; `check` reports the WAL as found.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use eventhubs_checkpointstore_sqlite::{
    create_new_file, Error, SqliteCheckpointStore, StoreOptions, APPLICATION_ID,
};

/// Runs `f` on a thread of its own, and fails if it has not returned within 10 s (a FIFO that
/// is opened blocks forever).
fn within_10s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} did not return within 10 s"))
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Which of `path`'s `-wal`, `-shm` and `-journal` exist.
fn side_files(path: &Path) -> Vec<String> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| format!("{}{s}", path.display()))
        .filter(|p| Path::new(p).exists())
        .collect()
}

fn not_regular(err: &Error, kind: &str) -> bool {
    matches!(err, Error::NotADatabase { reason, .. }
        if *reason == format!("it is {kind}, not a regular file"))
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

/// A closed store at `dir/name` with one checkpoint.
fn closed_store(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let store = SqliteCheckpointStore::open(&path).unwrap();
    store
        .blocking_update_checkpoint(&checkpoint("0", Some("100"), Some(7)))
        .unwrap();
    drop(store);
    wait_closed_at(&path);
    path
}

/// Waits until the store's `-wal` is gone (its last connection closed).
fn wait_closed_at(path: &Path) {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal.exists() {
        assert!(Instant::now() < deadline, "{} never closed", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_fifo_is_refused_at_once_and_nothing_is_created_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.db");
    mkfifo(&fifo);
    for read_only in [false, true] {
        let path = fifo.clone();
        let err = within_10s("open on a FIFO", move || {
            if read_only {
                SqliteCheckpointStore::open_read_only(&path).unwrap_err()
            } else {
                SqliteCheckpointStore::open(&path).unwrap_err()
            }
        });
        assert!(not_regular(&err, "a named pipe (FIFO)"), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "`{}` is not a checkpoint store database: it is a named pipe (FIFO), not a \
                 regular file",
                fifo.display()
            )
        );
    }
    // A symlink to it is refused the same way.
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let err = within_10s("open on a symlink to a FIFO", move || {
        SqliteCheckpointStore::open(&link).unwrap_err()
    });
    assert!(not_regular(&err, "a named pipe (FIFO)"), "{err:?}");
    assert_eq!(names(dir.path()), ["link.db", "pipe.db"]);
}

#[cfg(feature = "cli")]
#[test]
fn every_cli_command_on_a_fifo_ends_at_once_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.db");
    mkfifo(&fifo);
    let commands: [&[&str]; 5] = [
        &["check"],
        &["checkpoints", "list"],
        &["ownership", "list"],
        &["export"],
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
            "--sequence-number",
            "1",
        ],
    ];
    for args in commands {
        let mut child = Command::new(env!("CARGO_BIN_EXE_eh-checkpoints"))
            .arg("--db")
            .arg(&fifo)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                panic!("{args:?} on a FIFO did not end within 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(3), "{args:?}: {stderr}");
        assert!(
            stderr.contains("a named pipe (FIFO), not a regular file"),
            "{stderr}"
        );
    }
    assert_eq!(names(dir.path()), ["pipe.db"]);
}

#[test]
fn character_devices_are_refused_and_nothing_is_created_beside_them() {
    for dev in ["/dev/null", "/dev/zero"] {
        let dev = Path::new(dev);
        let before = side_files(dev);
        for read_only in [false, true] {
            let err = if read_only {
                SqliteCheckpointStore::open_read_only(dev).unwrap_err()
            } else {
                SqliteCheckpointStore::open(dev).unwrap_err()
            };
            assert!(not_regular(&err, "a character device"), "{err:?}");
        }
        assert_eq!(
            side_files(dev),
            before,
            "nothing new beside {}",
            dev.display()
        );
    }
}

#[test]
fn a_block_device_is_refused_before_it_is_opened() {
    // A block device node of a loop device that is not set up: refused from its `stat`, so
    // not even opened. Making the node needs root (CAP_MKNOD).
    let dir = tempfile::tempdir().unwrap();
    let node = dir.path().join("disk.db");
    let made = Command::new("mknod")
        .arg(&node)
        .args(["b", "7", "250"])
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        println!("SKIP a_block_device_is_refused_before_it_is_opened: mknod needs root");
        return;
    }
    let err = SqliteCheckpointStore::open(&node).unwrap_err();
    assert!(not_regular(&err, "a block device"), "{err:?}");
    assert_eq!(names(dir.path()), ["disk.db"]);
}

#[test]
fn a_symlink_is_followed_to_a_regular_file_and_its_wal_is_beside_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let real = closed_store(dir.path(), "real.db");
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let store = SqliteCheckpointStore::open(&link).unwrap();
    assert_eq!(store.path(), Some(link.as_path()));
    assert_eq!(
        store
            .blocking_list_checkpoints(NS, HUB, GROUP)
            .unwrap()
            .len(),
        1
    );
    store
        .blocking_update_checkpoint(&checkpoint("1", Some("5"), Some(5)))
        .unwrap();
    assert!(Path::new(&format!("{}-wal", real.display())).exists());
    assert!(!Path::new(&format!("{}-wal", link.display())).exists());
    let report = store.blocking_check().unwrap();
    assert!(report.wal_size.unwrap() > 0, "the WAL beside the real file");
    drop(store);
    wait_closed_at(&real);
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());

    // A symlink to nothing is refused, and nothing is created where it points.
    let dangling = dir.path().join("dangling.db");
    std::os::unix::fs::symlink(dir.path().join("missing.db"), &dangling).unwrap();
    let err = SqliteCheckpointStore::open(&dangling).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(
        err.source_text().contains("symlink to a missing file"),
        "{err:?}"
    );
    assert!(!dir.path().join("missing.db").exists());
}

/// The error and its sources, as one line.
trait SourceText {
    fn source_text(&self) -> String;
}

impl SourceText for Error {
    fn source_text(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text += &format!(": {s}");
            source = s.source();
        }
        text
    }
}

#[test]
fn an_empty_sqlite_database_is_adopted_as_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    // What `sqlite3 empty.db 'pragma journal_mode=wal;'` leaves: a header with text
    // encoding 0 and no tables.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    drop(conn);
    assert_eq!(&read_bytes(&path)[56..60], &[0, 0, 0, 0], "text encoding 0");

    let store = SqliteCheckpointStore::open(&path).unwrap();
    store
        .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let app: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .unwrap();
    assert_eq!(app, APPLICATION_ID);
    drop(conn);

    // Only damage is corrupt: a store whose text encoding was zeroed is refused untouched.
    let damaged = closed_store(dir.path(), "damaged.db");
    let mut bytes = read_bytes(&damaged);
    bytes[56..60].copy_from_slice(&[0, 0, 0, 0]);
    std::fs::write(&damaged, &bytes).unwrap();
    let err = SqliteCheckpointStore::open(&damaged).unwrap_err();
    assert!(
        matches!(&err, Error::NotADatabase { reason, .. } if reason == "it is corrupt"),
        "{err:?}"
    );
    assert_eq!(read_bytes(&damaged), bytes, "refused untouched");

    // An empty database opened read-only is named for what it is.
    let fresh = dir.path().join("fresh.db");
    let conn = rusqlite::Connection::open(&fresh).unwrap();
    let _: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .unwrap();
    drop(conn);
    let err = SqliteCheckpointStore::open_read_only(&fresh).unwrap_err();
    assert!(
        matches!(&err, Error::NotADatabase { reason, .. } if reason.contains("empty database")),
        "{err:?}"
    );
}

/// The names a careless user gives that SQLite would read as URIs, or as URI syntax.
const URI_LOOKING: [&str; 6] = [
    "file:x.db",
    "file:y.db?mode=memory",
    "file:z.db?vfs=memdb",
    "a?b=c.db",
    "d#e.db",
    "f%41g.db",
];

const URI_ENV: &str = "EHCS_URI_WORKER";

#[test]
fn uri_looking_paths_are_plain_paths() {
    if let Ok(name) = std::env::var(URI_ENV) {
        // A worker, in the directory: opens the relative name, writes, and lists.
        let store = SqliteCheckpointStore::open(&name).unwrap();
        store
            .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
            .unwrap();
        drop(store);
        let read = SqliteCheckpointStore::open_read_only(&name).unwrap();
        assert_eq!(
            read.blocking_list_checkpoints(NS, HUB, GROUP)
                .unwrap()
                .len(),
            1
        );
        drop(read);
        // Closed before the process exits, which would leave the -wal as a crash does.
        wait_closed_at(&std::fs::canonicalize(&name).unwrap());
        return report("ok");
    }
    for name in URI_LOOKING {
        // Relative (as `--db file:x.db` is), in a worker process started in the directory.
        let dir = tempfile::tempdir().unwrap();
        let out = reexec(
            "hostile_paths::uri_looking_paths_are_plain_paths",
            URI_ENV,
            name,
        )
        .current_dir(dir.path())
        .output()
        .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ok"),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            names(dir.path()),
            [name],
            "{name}: one file, named as given"
        );
        assert_store_with_one_checkpoint(&dir.path().join(name));

        // Absolute.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        let store = SqliteCheckpointStore::open(&path).unwrap();
        store
            .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
            .unwrap();
        drop(store);
        wait_closed_at(&path);
        assert_eq!(names(dir.path()), [name], "{name}");
        assert_store_with_one_checkpoint(&path);
    }
}

/// The file at `path` (read with SQLite's URIs off) is a store with one checkpoint.
fn assert_store_with_one_checkpoint(path: &Path) {
    let conn = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .unwrap();
    let app: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .unwrap();
    assert_eq!(app, APPLICATION_ID, "{}", path.display());
    let n: i64 = conn
        .query_row("SELECT count(*) FROM checkpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "{}", path.display());
}

#[test]
fn a_backup_never_overwrites_or_deletes_what_it_did_not_create() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = closed_store(dir.path(), "store.db");
    let store = SqliteCheckpointStore::open(&path).unwrap();

    // A file at the destination: refused, unchanged.
    let existing = dir.path().join("existing");
    std::fs::write(&existing, b"precious").unwrap();
    let err = store.blocking_backup_to(&existing).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { field: "dest", .. }),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious");

    // A symlink to a file: refused, the symlink and its file kept as they were.
    let link = dir.path().join("link-to-existing");
    std::os::unix::fs::symlink(&existing, &link).unwrap();
    let err = store.blocking_backup_to(&link).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { field: "dest", .. }),
        "{err:?}"
    );
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(std::fs::read(&existing).unwrap(), b"precious");

    // A symlink to nothing: refused and kept; nothing is created where it points.
    let dangling = dir.path().join("dangling");
    let target = dir.path().join("target.db");
    std::os::unix::fs::symlink(&target, &dangling).unwrap();
    let err = store.blocking_backup_to(&dangling).unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { field: "dest", .. }),
        "{err:?}"
    );
    assert!(std::fs::symlink_metadata(&dangling).unwrap().is_symlink());
    assert!(!target.exists(), "nothing created through the symlink");

    // A new destination: the store's mode, a store with the rows.
    let fresh = dir.path().join("backup.db");
    store.blocking_backup_to(&fresh).unwrap();
    let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "private: {mode:o}");
    assert_store_with_one_checkpoint(&fresh);

    // A destination that cannot be created (a missing directory): an error, nothing removed.
    let err = store
        .blocking_backup_to(dir.path().join("missing").join("b.db"))
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

#[test]
fn create_new_file_is_exclusive_and_private() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.json");
    create_new_file(&path, 0o600)
        .unwrap()
        .write_all(b"{}")
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    let err = create_new_file(&path, 0o600).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path: Some(p), .. } if p == &path),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"{}");
    let dangling = dir.path().join("dangling");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
    create_new_file(&dangling, 0o600).unwrap_err();
    assert!(std::fs::symlink_metadata(&dangling).unwrap().is_symlink());
    assert!(!dir.path().join("nowhere").exists());
}

/// Makes `path` unwritable even for root (`chattr +i`; `chmod` where chattr is missing),
/// and undoes it when dropped.
struct Immutable(PathBuf, bool);

impl Immutable {
    fn set(path: &Path) -> Immutable {
        let chattr = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !chattr {
            use std::os::unix::fs::PermissionsExt;
            let mode = if path.is_dir() { 0o555 } else { 0o444 };
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Immutable(path.to_owned(), chattr)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        if self.1 {
            let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        }
    }
}

/// Everything a read-only command needs, on `store`, into `out` (a writable directory).
fn inspect_everything(store: &SqliteCheckpointStore, out: &Path) {
    assert!(store.is_read_only());
    assert_eq!(
        store
            .blocking_list_checkpoints(NS, HUB, GROUP)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.blocking_groups().unwrap().len(), 1);
    let report = store.blocking_check().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(store.blocking_export().unwrap().checkpoints.len(), 1);
    let backup = out.join(format!("backup-{}.db", uuid_like()));
    store.blocking_backup_to(&backup).unwrap();
    assert_store_with_one_checkpoint(&backup);
    let err = store
        .blocking_update_checkpoint(&checkpoint("9", Some("9"), Some(9)))
        .unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[test]
fn an_unwritable_store_file_can_be_inspected_and_nothing_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = closed_store(dir.path(), "store.db");
    let before = read_bytes(&path);
    let _guard = Immutable::set(&path);
    let err = SqliteCheckpointStore::open(&path).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err:?}");
    let store = SqliteCheckpointStore::open_read_only(&path).unwrap();
    inspect_everything(&store, out.path());
    drop(store);
    assert_eq!(names(dir.path()), ["store.db"], "no -wal or -shm left");
    assert_eq!(read_bytes(&path), before);
}

#[test]
fn a_store_in_an_unwritable_directory_can_be_inspected_and_nothing_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = closed_store(dir.path(), "store.db");
    let before = read_bytes(&path);
    let _guard = Immutable::set(dir.path());
    let store = SqliteCheckpointStore::open_read_only(&path).unwrap();
    inspect_everything(&store, out.path());
    drop(store);
    assert_eq!(names(dir.path()), ["store.db"], "no -wal or -shm left");
    assert_eq!(read_bytes(&path), before);
}

#[test]
fn a_read_only_open_of_a_writable_store_leaves_nothing_behind_and_sees_writers() {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = closed_store(dir.path(), "store.db");
    let store = SqliteCheckpointStore::open_read_only(&path).unwrap();
    inspect_everything(&store, out.path());
    // A writer elsewhere is seen.
    let writer = SqliteCheckpointStore::open(&path).unwrap();
    writer
        .blocking_update_checkpoint(&checkpoint("1", Some("2"), Some(2)))
        .unwrap();
    assert_eq!(
        store
            .blocking_list_checkpoints(NS, HUB, GROUP)
            .unwrap()
            .len(),
        2
    );
    drop(writer);
    drop(store);
    wait_closed_at(&path);
    assert_eq!(names(dir.path()), ["store.db"], "no -wal or -shm left");
    let err = SqliteCheckpointStore::open_read_only(dir.path().join("missing.db")).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(!dir.path().join("missing.db").exists(), "never created");
}

#[test]
fn check_reports_the_wal_as_found_before_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.db");
    let store = SqliteCheckpointStore::open(&live).unwrap();
    for i in 0..200 {
        store
            .blocking_update_checkpoint(&checkpoint(&i.to_string(), Some("1"), Some(i)))
            .unwrap();
    }
    // A copy of the file and its WAL while the writer has them open: what a crash leaves.
    let copy = tempfile::tempdir().unwrap();
    let crashed = copy.path().join("crashed.db");
    std::fs::copy(&live, &crashed).unwrap();
    let wal = std::fs::copy(
        format!("{}-wal", live.display()),
        format!("{}-wal", crashed.display()),
    )
    .unwrap();
    assert!(wal > 0);
    drop(store);
    let options = StoreOptions::new().with_check_on_open(false);
    let recovered = SqliteCheckpointStore::open_with(&crashed, options).unwrap();
    let report = recovered.blocking_check().unwrap();
    assert_eq!(report.wal_size_at_open, Some(wal), "{report:?}");
    assert!(report.is_ok());
    assert_eq!(report.rows.unwrap().checkpoints, 200);
}

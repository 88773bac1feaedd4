//! What reading a folder of EPH lease files says about it: what it skipped and why, where the
//! leases are when pointed at the container root, every bad file at once, and the decisions
//! on a UTF-8 byte order mark (read, noted), a key given twice and a file named for another
//! partition than it holds (both refused).

use std::path::Path;

use eventhubs_checkpointstore_sqlite::migrate::eph::{read_eph_leases, scan_eph_leases};
use eventhubs_checkpointstore_sqlite::Error;

fn lease(dir: &Path, name: &str, json: &str) {
    std::fs::write(dir.join(name), json).unwrap();
}

fn reason(err: Error) -> String {
    match err {
        Error::InvalidArgument {
            field: "lease",
            reason,
        } => reason,
        other => panic!("not a lease error: {other:?}"),
    }
}

#[test]
fn the_container_root_is_refused_and_the_group_folder_named() {
    let root = tempfile::tempdir().unwrap();
    let group = root.path().join("$Default");
    std::fs::create_dir(&group).unwrap();
    for p in 0..4 {
        lease(
            &group,
            &p.to_string(),
            &format!(r#"{{"PartitionId":"{p}","Offset":"1"}}"#),
        );
    }
    let err = reason(read_eph_leases(root.path()).unwrap_err());
    assert!(err.contains("no lease files directly in"), "{err}");
    assert!(
        err.contains(&format!("`{}` (4 files)", group.display())),
        "{err}"
    );
    assert_eq!(read_eph_leases(&group).unwrap().len(), 4);
}

#[test]
fn skipped_entries_are_listed_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    lease(dir.path(), "0", r#"{"PartitionId":"0","Offset":"1"}"#);
    lease(dir.path(), ".hidden", "ignored");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("0"), dir.path().join("link")).unwrap();
    let scan = scan_eph_leases(dir.path()).unwrap();
    assert_eq!(scan.leases.len(), 1);
    let skipped: Vec<(String, &str)> = scan
        .skipped
        .iter()
        .map(|s| {
            let name = s.path.file_name().unwrap().to_string_lossy().into_owned();
            (name, s.reason.as_str())
        })
        .collect();
    assert_eq!(
        skipped,
        [
            (".hidden".to_owned(), "hidden"),
            ("link".to_owned(), "symlink"),
            ("sub".to_owned(), "subfolder"),
        ]
    );
}

#[test]
fn every_bad_file_is_named_at_once() {
    let dir = tempfile::tempdir().unwrap();
    lease(dir.path(), "0", r#"{"PartitionId":"0","Offset":"1"}"#);
    lease(dir.path(), "1", "garbage");
    lease(dir.path(), "2", r#"{"PartitionId":"2","Offset":true}"#);
    let err = reason(read_eph_leases(dir.path()).unwrap_err());
    assert!(err.starts_with("2 files are not usable leases"), "{err}");
    assert!(err.contains("/1`: not JSON"), "{err}");
    assert!(err.contains("/2`: `Offset`"), "{err}");
}

#[test]
fn a_bom_is_read_and_noted_a_repeated_key_and_a_misnamed_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0"),
        b"\xEF\xBB\xBF{\"PartitionId\":\"0\",\"Offset\":\"7\"}",
    )
    .unwrap();
    let scan = scan_eph_leases(dir.path()).unwrap();
    assert_eq!(scan.leases[0].lease.offset.as_deref(), Some("7"));
    assert_eq!(scan.notes.len(), 1);
    assert!(
        scan.notes[0].contains("byte order mark"),
        "{:?}",
        scan.notes
    );

    let dir = tempfile::tempdir().unwrap();
    lease(
        dir.path(),
        "0",
        r#"{"PartitionId":"0","Offset":"1","Offset":"9"}"#,
    );
    let err = reason(read_eph_leases(dir.path()).unwrap_err());
    assert!(err.contains("the key `Offset` appears twice"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    lease(dir.path(), "3", r#"{"PartitionId":"5","Offset":"1"}"#);
    let err = reason(read_eph_leases(dir.path()).unwrap_err());
    assert!(
        err.contains("named for partition `3` but holds partition `5`"),
        "{err}"
    );
    // A name that is not a partition number (`lease-a.json`) is no mismatch.
    let dir = tempfile::tempdir().unwrap();
    lease(
        dir.path(),
        "lease-a.json",
        r#"{"PartitionId":"5","Offset":"1"}"#,
    );
    assert_eq!(read_eph_leases(dir.path()).unwrap().len(), 1);
}

//! Store-wide administration: groups, deletes, the integrity report and the online backup.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use eventhubs_checkpointstore_sqlite::migrate::export::{
    ExportedCheckpoint, StoreExport, EXPORT_FORMAT, EXPORT_FORMAT_VERSION,
};
use eventhubs_checkpointstore_sqlite::migrate::OnConflict;
use eventhubs_checkpointstore_sqlite::{Error, SqliteCheckpointStore};

fn seeded() -> SqliteCheckpointStore {
    let s = SqliteCheckpointStore::open_in_memory().unwrap();
    s.blocking_claim_ownership(&[
        claim("0", Some("a"), None),
        claim("1", Some("b"), None),
        claim("2", None, None),
        claim_in("other.ns", "Hub2", "G", "7", Some("c"), None),
    ])
    .unwrap();
    s.blocking_update_checkpoint(&checkpoint("0", Some("10"), Some(1)))
        .unwrap();
    s.blocking_update_checkpoint(&checkpoint("5", None, Some(50)))
        .unwrap();
    s
}

#[test]
fn groups_are_listed_sorted_with_their_counts_and_lowercase_names() {
    let s = seeded();
    let groups = s.blocking_groups().unwrap();
    let names: Vec<_> = groups
        .iter()
        .map(|g| {
            (
                g.fully_qualified_namespace.as_str(),
                g.event_hub_name.as_str(),
                g.consumer_group.as_str(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("myns.servicebus.windows.net", "hub", "$default"),
            ("other.ns", "hub2", "g")
        ]
    );
    let g = &groups[0];
    assert_eq!(
        (g.ownerships, g.owned, g.checkpoints, g.placeholders),
        (3, 2, 2, 0)
    );
    assert_eq!((groups[1].ownerships, groups[1].checkpoints), (1, 0));
}

#[test]
fn deletes_remove_checkpoints_but_never_ownership() {
    let s = seeded();
    assert!(s.blocking_delete_checkpoint(NS, HUB, GROUP, "0").unwrap());
    assert!(!s.blocking_delete_checkpoint(NS, HUB, GROUP, "0").unwrap());
    assert_eq!(
        s.blocking_list_checkpoints(NS, HUB, GROUP).unwrap().len(),
        1
    );
    assert_eq!(s.blocking_delete_checkpoints(NS, "HUB", GROUP).unwrap(), 1);
    assert!(s
        .blocking_list_checkpoints(NS, HUB, GROUP)
        .unwrap()
        .is_empty());
    assert_eq!(owners(&s).len(), 3, "ownership is untouched");
    assert!(matches!(
        s.blocking_delete_checkpoint(NS, HUB, GROUP, ""),
        Err(Error::InvalidArgument { .. })
    ));
    // delete_group removes both tables' rows of that group only.
    assert_eq!(s.blocking_delete_group(NS, HUB, GROUP).unwrap(), (3, 0));
    assert!(owners(&s).is_empty());
    assert_eq!(s.blocking_groups().unwrap().len(), 1);
}

#[test]
fn check_reports_a_healthy_file_with_its_counts_and_wal() {
    let (_dir, path, s) = file_store();
    s.blocking_claim_ownership(&[claim("0", Some("a"), None)])
        .unwrap();
    s.blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap();
    let r = s.blocking_check().unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(r.integrity, ["ok"]);
    assert_eq!(r.path.as_deref(), Some(path.as_path()));
    assert_eq!(
        r.schema_version,
        SqliteCheckpointStore::supported_schema_version()
    );
    assert_eq!(
        r.application_id,
        eventhubs_checkpointstore_sqlite::APPLICATION_ID
    );
    assert_eq!(r.journal_mode, "wal");
    assert!(r.wal_size.unwrap() > 0, "the writes are still in the WAL");
    assert!(r.file_size.unwrap() > 0);
    let rows = r.rows.unwrap();
    assert_eq!((rows.groups, rows.ownerships, rows.checkpoints), (1, 1, 1));
}

#[test]
fn backup_copies_everything_and_never_overwrites() {
    let (dir, _path, s) = file_store();
    s.blocking_claim_ownership(&[claim("0", Some("a"), None)])
        .unwrap();
    s.blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
        .unwrap();
    let dest = dir.path().join("copy.db");
    let report = s.blocking_backup_to(&dest).unwrap();
    assert_eq!(report.path, dest);
    assert!(report.pages > 0 && report.bytes > 0);
    let copy = SqliteCheckpointStore::open(&dest).unwrap();
    assert_eq!(
        copy.blocking_export().unwrap(),
        s.blocking_export().unwrap()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(copy);
    // Closed, the copy's -wal is checkpointed into it (the open started one: durable.rs).
    wait_closed(&dest);
    let before = read_bytes(&dest);
    let again = s.blocking_backup_to(&dest);
    assert!(
        matches!(again, Err(Error::InvalidArgument { field: "dest", .. })),
        "{again:?}"
    );
    assert_eq!(read_bytes(&dest), before);
}

/// Two partitions always written together (an import is one transaction), so any consistent
/// snapshot shows them equal.
fn pair(seq: i64) -> StoreExport {
    let cp = |p: &str| ExportedCheckpoint {
        namespace: NS.into(),
        event_hub: HUB.into(),
        consumer_group: "$default".into(),
        partition_id: p.into(),
        offset: Some(seq.to_string()),
        sequence_number: Some(seq),
    };
    StoreExport {
        format: EXPORT_FORMAT.into(),
        format_version: EXPORT_FORMAT_VERSION,
        schema_version: 1,
        ownerships: vec![],
        checkpoints: vec![cp("0"), cp("1")],
    }
}

#[test]
fn backup_is_one_consistent_snapshot_while_another_process_writes() {
    let (dir, path, s) = file_store();
    s.blocking_import(&pair(0), OnConflict::Overwrite).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        // A second store handle on the same file: another connection, as another process.
        let other = SqliteCheckpointStore::open(&path).unwrap();
        std::thread::spawn(move || {
            let mut i = 1;
            while !stop.load(Ordering::SeqCst) {
                other
                    .blocking_import(&pair(i), OnConflict::Overwrite)
                    .unwrap();
                i += 1;
            }
            i
        })
    };
    for n in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let dest = dir.path().join(format!("snap{n}.db"));
        s.blocking_backup_to(&dest).unwrap();
        let copy = SqliteCheckpointStore::open(&dest).unwrap();
        assert!(copy.blocking_check().unwrap().is_ok());
        let cps = copy.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
        assert_eq!(cps.len(), 2);
        assert_eq!(
            cps[0].sequence_number, cps[1].sequence_number,
            "a backup mixed two transactions"
        );
    }
    stop.store(true, Ordering::SeqCst);
    let writes = writer.join().unwrap();
    assert!(writes > 1, "the writer kept writing during the backups");
}

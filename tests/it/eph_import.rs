//! EventProcessorHost lease blobs of the three dialects become checkpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::path::PathBuf;

use common::*;
use eventhubs_checkpointstore_sqlite::migrate::eph::{
    read_eph_leases, EphAction, EphDialect, EphLease,
};
use eventhubs_checkpointstore_sqlite::migrate::OnConflict;
use eventhubs_checkpointstore_sqlite::{Error, SqliteCheckpointStore};

fn fixtures(dialect: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/eph/{dialect}"))
}

fn invalid(json: &str) -> String {
    match EphLease::parse(json.as_bytes(), None) {
        Err(Error::InvalidArgument { field, reason }) => {
            assert_eq!(field, "lease");
            reason
        }
        other => panic!("expected invalid for {json}, got {other:?}"),
    }
}

#[test]
fn each_dialect_is_recognised_from_its_fixture_files() {
    for (dir, dialect, second_seq) in [
        ("dotnet", EphDialect::DotNet, 911736),
        ("python", EphDialect::Python, 4411),
        ("java", EphDialect::Java, 2048),
    ] {
        let files = read_eph_leases(fixtures(dir)).unwrap();
        let ids: Vec<_> = files
            .iter()
            .map(|f| f.lease.partition_id.as_str())
            .collect();
        assert_eq!(ids, ["0", "1", "2"], "{dir}");
        assert!(files.iter().all(|f| f.lease.dialect == dialect), "{dir}");
        assert_eq!(
            files[0].lease.position(),
            Ok(("8591964920", Some(960180))),
            "{dir}"
        );
        assert_eq!(files[1].lease.sequence_number, Some(second_seq), "{dir}");
        assert!(files[2].lease.position().is_err(), "{dir}: no offset");
    }
}

#[test]
fn offsets_may_be_numbers_and_the_file_name_names_the_partition() {
    let l = EphLease::parse(br#"{"offset":4096,"sequenceNumber":"64"}"#, Some("7")).unwrap();
    assert_eq!(l.dialect, EphDialect::Java);
    assert_eq!(l.partition_id, "7");
    assert_eq!(l.position(), Ok(("4096", Some(64))));
    let start = EphLease::parse(br#"{"PartitionId":"0","Offset":"-1"}"#, None).unwrap();
    assert!(start
        .position()
        .unwrap_err()
        .contains("start of the stream"));
    let empty = EphLease::parse(br#"{"PartitionId":"0","Offset":""}"#, None).unwrap();
    assert_eq!(empty.offset, None);
}

#[test]
fn malformed_leases_are_refused_with_a_reason() {
    assert!(invalid("[1]").contains("not a JSON object"));
    assert!(invalid("{").contains("not JSON"));
    assert!(invalid(r#"{"offset":"1"}"#).contains("not an EventProcessorHost lease"));
    assert!(invalid(r#"{"PartitionId":"0","partition_id":"0"}"#).contains("mixes"));
    assert!(invalid(r#"{"PartitionId":"0","SequenceNumber":1.5}"#).contains("SequenceNumber"));
    assert!(invalid(r#"{"PartitionId":"0","Offset":true}"#).contains("Offset"));
    assert!(invalid(r#"{"SequenceNumber":1}"#).contains("no `PartitionId`"));
}

#[test]
fn a_directory_with_a_bad_file_or_a_repeated_partition_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0"), r#"{"PartitionId":"0","Offset":"1"}"#).unwrap();
    std::fs::write(dir.path().join(".hidden"), "ignored").unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    assert_eq!(read_eph_leases(dir.path()).unwrap().len(), 1);
    std::fs::write(
        dir.path().join("0.json"),
        r#"{"PartitionId":"0","Offset":"2"}"#,
    )
    .unwrap();
    let err = read_eph_leases(dir.path()).unwrap_err().to_string();
    assert!(err.contains("appears twice"), "{err}");
    std::fs::remove_file(dir.path().join("0.json")).unwrap();
    std::fs::write(dir.path().join("1"), "garbage").unwrap();
    let err = read_eph_leases(dir.path()).unwrap_err().to_string();
    assert!(err.contains("/1`") && err.contains("not JSON"), "{err}");
    let missing = read_eph_leases(dir.path().join("nope")).unwrap_err();
    assert!(matches!(missing, Error::Io { .. }), "{missing:?}");
}

#[test]
fn import_writes_positions_skips_the_rest_and_refuses_conflicts() {
    let s = SqliteCheckpointStore::open_in_memory().unwrap();
    let leases: Vec<_> = read_eph_leases(fixtures("dotnet"))
        .unwrap()
        .into_iter()
        .map(|f| f.lease)
        .collect();
    // A legacy placeholder is no position: replacing it is no conflict.
    s.blocking_import(
        &eventhubs_checkpointstore_sqlite::migrate::export::StoreExport::from_json(&format!(
            r#"{{"format":"eh-checkpoints-export","format_version":1,"schema_version":1,
            "ownerships":[],"checkpoints":[{{"namespace":"{NS}","event_hub":"{HUB}",
            "consumer_group":"{GROUP}","partition_id":"0","offset":null,"sequence_number":null}}]}}"#
        ))
        .unwrap(),
        OnConflict::Refuse,
    )
    .unwrap();
    let plan = s
        .blocking_plan_import_eph(NS, HUB, GROUP, &leases, OnConflict::Refuse)
        .unwrap();
    assert!(matches!(plan[0].action, EphAction::New));
    assert!(matches!(plan[2].action, EphAction::Skip { .. }));
    assert!(s
        .blocking_list_checkpoints(NS, HUB, GROUP)
        .unwrap()
        .is_empty());
    let done = s
        .blocking_import_eph(NS, HUB, GROUP, &leases, OnConflict::Refuse)
        .unwrap();
    assert_eq!(done.len(), 3);
    let cps = s.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
    let got: Vec<_> = cps
        .iter()
        .map(|c| {
            (
                c.partition_id.as_str(),
                c.offset.as_deref(),
                c.sequence_number,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("0", Some("8591964920"), Some(960180)),
            ("1", Some("12896067888"), Some(911736))
        ]
    );
    // The same leases again: nothing to do.
    let again = s
        .blocking_import_eph(NS, HUB, GROUP, &leases, OnConflict::Refuse)
        .unwrap();
    assert!(matches!(again[0].action, EphAction::Same));
    // Another position for partition 1: refused whole without overwrite.
    let mut other = leases.clone();
    other[1].sequence_number = Some(5);
    let err = s
        .blocking_import_eph(NS, HUB, GROUP, &other, OnConflict::Refuse)
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { count: 1, .. }), "{err:?}");
    assert_eq!(s.blocking_list_checkpoints(NS, HUB, GROUP).unwrap(), cps);
    let replaced = s
        .blocking_import_eph(NS, HUB, GROUP, &other, OnConflict::Overwrite)
        .unwrap();
    assert!(matches!(replaced[1].action, EphAction::Replace { .. }));
    assert_eq!(
        s.blocking_list_checkpoints(NS, HUB, GROUP).unwrap()[1].sequence_number,
        Some(5)
    );
    assert_eq!(owners(&s).len(), 0, "ownership is not imported");
}

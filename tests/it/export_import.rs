//! The export format: an exact round trip, validation before any write, and conflicts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::*;
use eventhubs_checkpointstore_sqlite::migrate::export::StoreExport;
use eventhubs_checkpointstore_sqlite::migrate::OnConflict;
use eventhubs_checkpointstore_sqlite::{Error, SqliteCheckpointStore};

/// A hand-written export with every kind of row: owned, released, a position with both
/// fields, one with only a sequence number, and a legacy placeholder.
const SAMPLE: &str = r#"{
  "format": "eh-checkpoints-export",
  "format_version": 1,
  "schema_version": SCHEMA,
  "ownerships": [
    {
      "namespace": "a.example",
      "event_hub": "hub",
      "consumer_group": "$default",
      "partition_id": "2",
      "owner_id": "proc-1",
      "etag": "e-2",
      "last_modified": "2026-01-01T00:00:00.123456789Z",
      "epoch": 3,
      "event_processor_context": "{\"lastEvent\":42}"
    },
    {
      "namespace": "a.example",
      "event_hub": "hub",
      "consumer_group": "$default",
      "partition_id": "10",
      "owner_id": null,
      "etag": "e-10",
      "last_modified": "2026-01-01T00:00:01Z",
      "epoch": 0
    }
  ],
  "checkpoints": [
    {
      "namespace": "a.example",
      "event_hub": "hub",
      "consumer_group": "$default",
      "partition_id": "2",
      "offset": "4096",
      "sequence_number": 64
    },
    {
      "namespace": "a.example",
      "event_hub": "hub",
      "consumer_group": "$default",
      "partition_id": "10",
      "offset": null,
      "sequence_number": 7
    },
    {
      "namespace": "b.example",
      "event_hub": "hub",
      "consumer_group": "legacy",
      "partition_id": "0",
      "offset": null,
      "sequence_number": null
    }
  ]
}
"#;

/// The sample as this build exports it: `schema_version` is the build's.
fn sample() -> String {
    SAMPLE.replace(
        "SCHEMA",
        &SqliteCheckpointStore::supported_schema_version().to_string(),
    )
}

fn store() -> SqliteCheckpointStore {
    SqliteCheckpointStore::open_in_memory().unwrap()
}

#[test]
fn an_import_exports_again_byte_for_byte() {
    let s = store();
    let plan = s
        .blocking_import(
            &StoreExport::from_json(&sample()).unwrap(),
            OnConflict::Refuse,
        )
        .unwrap();
    assert_eq!((plan.new_ownerships, plan.new_checkpoints), (2, 3));
    assert_eq!(s.blocking_export().unwrap().to_json().unwrap(), sample());
    // The placeholder is kept but is no position for the modern API.
    assert!(s
        .blocking_list_checkpoints("b.example", "hub", "legacy")
        .unwrap()
        .is_empty());
    let listed = s
        .blocking_list_ownerships("a.example", "hub", "$Default")
        .unwrap();
    assert_eq!(
        listed[0].last_modified_time.unwrap().nanosecond(),
        123456789
    );
    assert_eq!(listed[1].owner_id, None);
}

#[test]
fn a_live_store_round_trips_exactly() {
    let (_dir, _path, a) = file_store();
    a.blocking_claim_ownership(&[claim("0", Some("x"), None), claim("1", None, None)])
        .unwrap();
    a.blocking_update_checkpoint(&checkpoint("0", Some("abc"), Some(i64::MAX)))
        .unwrap();
    let export = a.blocking_export().unwrap();
    let b = store();
    b.blocking_import(&export, OnConflict::Refuse).unwrap();
    assert_eq!(b.blocking_export().unwrap(), export);
    // Importing the same rows again changes nothing and is no conflict.
    let again = b.blocking_import(&export, OnConflict::Refuse).unwrap();
    assert_eq!((again.same_ownerships, again.same_checkpoints), (2, 1));
    assert!(again.conflicts.is_empty());
}

#[test]
fn conflicts_are_refused_whole_unless_overwrite() {
    let s = store();
    s.blocking_import(
        &StoreExport::from_json(&sample()).unwrap(),
        OnConflict::Refuse,
    )
    .unwrap();
    let before = s.blocking_export().unwrap();
    let mut changed = before.clone();
    changed.checkpoints[0].sequence_number = Some(1);
    changed.ownerships[0].owner_id = Some("proc-9".into());
    // A new row, placed where the export's order puts it.
    let new_row = eventhubs_checkpointstore_sqlite::migrate::export::ExportedCheckpoint {
        partition_id: "99".into(),
        ..changed.checkpoints[0].clone()
    };
    changed.checkpoints.insert(2, new_row);
    let plan = s.blocking_plan_import(&changed).unwrap();
    assert_eq!(plan.conflicts.len(), 2, "{:?}", plan.conflicts);
    assert_eq!(plan.new_checkpoints, 1);
    match s.blocking_import(&changed, OnConflict::Refuse) {
        Err(Error::Conflict { count, first }) => {
            assert_eq!(count, 2);
            assert!(first.contains("a.example/hub/$default/2"), "{first}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(s.blocking_export().unwrap(), before, "nothing was written");
    s.blocking_import(&changed, OnConflict::Overwrite).unwrap();
    assert_eq!(s.blocking_export().unwrap(), changed);
}

#[test]
fn invalid_rows_are_refused_before_anything_is_written() {
    let good = StoreExport::from_json(&sample()).unwrap();
    let mut cases = Vec::new();
    let mut e = good.clone();
    e.checkpoints[2].partition_id = String::new();
    cases.push((e, "checkpoints", "entry 2"));
    let mut e = good.clone();
    e.ownerships[1].etag = String::new();
    cases.push((e, "ownerships", "entry 1"));
    let mut e = good.clone();
    e.ownerships[1].epoch = -1;
    cases.push((e, "ownerships", "epoch"));
    // Names match case-insensitively, so this is the same row twice.
    let mut e = good.clone();
    let mut dup = e.checkpoints[0].clone();
    dup.namespace = "A.EXAMPLE".into();
    e.checkpoints.push(dup);
    cases.push((e, "checkpoints", "appears twice"));
    for (export, field, says) in cases {
        let s = store();
        match s.blocking_import(&export, OnConflict::Overwrite) {
            Err(Error::InvalidArgument { field: f, reason }) => {
                assert_eq!(f, field);
                assert!(reason.contains(says), "{reason}");
            }
            other => panic!("expected invalid, got {other:?}"),
        }
        assert!(
            s.blocking_groups().unwrap().is_empty(),
            "nothing was written"
        );
    }
}

#[test]
fn unknown_formats_versions_and_fields_are_refused() {
    for (json, says) in [
        ("not json", "not a store export"),
        (
            &sample().replace("\"format_version\": 1", "\"format_version\": 2") as &str,
            "format version 2",
        ),
        (
            &sample().replace("eh-checkpoints-export", "something-else"),
            "`format`",
        ),
        (
            &sample().replace("\"epoch\": 0", "\"epoch\": 0, \"extra\": 1"),
            "unknown field",
        ),
    ] {
        match StoreExport::from_json(json) {
            Err(Error::InvalidArgument { reason, .. }) => {
                assert!(reason.contains(says), "{reason}")
            }
            other => panic!("expected invalid, got {other:?}"),
        }
    }
}

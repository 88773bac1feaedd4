//! Any bytes as an export document: parsed or refused with `InvalidArgument`; a parsed one is
//! imported whole (importing it again finds nothing to change) or refused with
//! `InvalidArgument` or `Conflict` without a write. Never a panic.
#![no_main]

use eventhubs_checkpointstore_sqlite::migrate::{export::StoreExport, OnConflict};
use eventhubs_checkpointstore_sqlite::{Checkpoint, Error, SqliteCheckpointStore};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let export = match StoreExport::from_json(&text) {
        Ok(export) => export,
        Err(e) => {
            assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
            return;
        }
    };
    let store = SqliteCheckpointStore::open_in_memory().expect("in-memory store");
    // A row of its own, so that an import can conflict with it.
    store
        .blocking_update_checkpoint(&Checkpoint {
            fully_qualified_namespace: "ns".into(),
            event_hub_name: "hub".into(),
            consumer_group: "$default".into(),
            partition_id: "0".into(),
            offset: Some("1".into()),
            sequence_number: Some(1),
        })
        .expect("seed row");
    let before = store.blocking_export().expect("export");
    let on_conflict = if data.first().is_some_and(|b| b % 2 == 0) {
        OnConflict::Overwrite
    } else {
        OnConflict::Refuse
    };
    match store.blocking_import(&export, on_conflict) {
        Ok(_) => {
            let again = store.blocking_plan_import(&export).expect("plan the same import");
            assert!(again.conflicts.is_empty(), "{:?}", again.conflicts);
        }
        Err(e @ (Error::InvalidArgument { .. } | Error::Conflict { .. })) => {
            let after = store.blocking_export().expect("export");
            assert!(after == before, "a refused import wrote: {e}");
        }
        Err(e) => panic!("{e:?}"),
    }
});

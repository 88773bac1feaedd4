//! Any bytes as an EventProcessorHost lease blob: parsed or refused with `InvalidArgument`; a
//! parsed one imports its position exactly (or nothing, if it has none) or is refused with
//! `InvalidArgument` without a write. Never a panic.
#![no_main]

use eventhubs_checkpointstore_sqlite::migrate::{eph::EphLease, OnConflict};
use eventhubs_checkpointstore_sqlite::{Checkpoint, Error, SqliteCheckpointStore};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lease = match EphLease::parse(data, Some("7")) {
        Ok(lease) => lease,
        Err(e) => {
            assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
            return;
        }
    };
    let store = SqliteCheckpointStore::open_in_memory().expect("in-memory store");
    let imported = store.blocking_import_eph("ns", "hub", "$Default", std::slice::from_ref(&lease),OnConflict::Refuse);
    let stored = store
        .blocking_list_checkpoints("ns", "hub", "$Default")
        .expect("list");
    match imported {
        Ok(_) => match lease.position() {
            Ok((offset, seq)) => {
                let expected = Checkpoint {
                    fully_qualified_namespace: "ns".into(),
                    event_hub_name: "hub".into(),
                    consumer_group: "$Default".into(),
                    partition_id: lease.partition_id.clone(),
                    offset: Some(offset.to_owned()),
                    sequence_number: seq,
                };
                assert_eq!(stored, [expected]);
            }
            Err(_) => assert!(stored.is_empty(), "a lease without a position wrote"),
        },
        Err(e) => {
            assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
            assert!(stored.is_empty(), "a refused import wrote");
        }
    }
});

//! Any bytes as a store file: opening them never panics, and a file that is refused is
//! refused with a bad-file error and left byte for byte as it was.
#![no_main]

use eventhubs_checkpointstore_sqlite::{Error, SqliteCheckpointStore};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // An empty file is a new store, which the open rightly initialises.
    if data.is_empty() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fuzz.db");
    std::fs::write(&path, data).expect("write the input");
    match SqliteCheckpointStore::open(&path) {
        Err(Error::NotADatabase { .. } | Error::SchemaTooNew { .. } | Error::ReadOnly { .. }) => {
            let after = std::fs::read(&path).expect("read the input back");
            assert!(after == data, "a refused file was written");
        }
        Err(e) => panic!("a bad file must get a bad-file error, not {e:?}"),
        // The input was an empty database or a valid store: reading it must work or fail
        // with a bad-file error (the damage may only show in the rows).
        Ok(store) => {
            for result in [
                store
                    .blocking_list_ownerships("ns", "hub", "group")
                    .map(drop),
                store
                    .blocking_list_checkpoints("ns", "hub", "group")
                    .map(drop),
            ] {
                assert!(
                    matches!(result, Ok(()) | Err(Error::NotADatabase { .. })),
                    "{result:?}"
                );
            }
        }
    }
});

//! A large import through `StoreExport::read_validated` and `blocking_import_validated`:
//! parsed straight into rows as it is read, progress reported through every phase up to the
//! row count, the same rows and the same errors as the import of a parsed export.

use eventhubs_checkpointstore_sqlite::migrate::export::StoreExport;
use eventhubs_checkpointstore_sqlite::migrate::OnConflict;
use eventhubs_checkpointstore_sqlite::SqliteCheckpointStore;

use crate::common::*;

#[test]
fn a_large_import_streams_and_reports_progress_to_the_end() {
    let source = SqliteCheckpointStore::open_in_memory().unwrap();
    let rows = 20_000;
    for i in 0..rows {
        source
            .blocking_update_checkpoint(&checkpoint(&i.to_string(), Some("1"), Some(i)))
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.json");
    std::fs::write(&file, source.blocking_export().unwrap().to_json().unwrap()).unwrap();

    let reader = std::io::BufReader::new(std::fs::File::open(&file).unwrap());
    let expected = StoreExport::from_reader(reader).unwrap();
    let reader = std::io::BufReader::new(std::fs::File::open(&file).unwrap());
    let validated = StoreExport::read_validated(reader).unwrap();
    assert_eq!(validated.checkpoints(), rows as usize);
    let target = SqliteCheckpointStore::open(dir.path().join("store.db")).unwrap();
    let plan = target.blocking_plan_import_validated(&validated).unwrap();
    assert_eq!(plan.new_checkpoints, rows as usize);
    let mut seen: Vec<(&'static str, usize, usize)> = Vec::new();
    let plan = target
        .blocking_import_validated(&validated, OnConflict::Refuse, &mut |p| {
            seen.push((p.phase, p.done, p.total))
        })
        .unwrap();
    assert_eq!(plan.new_checkpoints, rows as usize);
    for phase in ["comparing", "writing"] {
        let calls: Vec<_> = seen.iter().filter(|s| s.0 == phase).collect();
        assert!(calls.len() > 2, "{phase}: {calls:?}");
        assert!(
            calls.windows(2).all(|w| w[0].1 <= w[1].1),
            "{phase} never goes back"
        );
        let last = calls.last().unwrap();
        assert_eq!((last.1, last.2), (rows as usize, rows as usize), "{phase}");
    }
    assert_eq!(target.blocking_export().unwrap(), expected);

    // Bad input through the reader is the same clear error as through `from_json`, and a bad
    // entry the same error as `blocking_import` gives, naming the entry.
    let err = StoreExport::from_reader(&b"{\"format\": 1"[..]).unwrap_err();
    assert!(err.to_string().contains("not a store export"), "{err}");
    let err = StoreExport::read_validated(&b"{\"format\": 1"[..]).unwrap_err();
    assert!(err.to_string().contains("not a store export"), "{err}");
    let mut bad = expected.clone();
    bad.checkpoints[7].partition_id = String::new();
    let from_import = target.blocking_plan_import(&bad).unwrap_err().to_string();
    let streamed = StoreExport::read_validated(bad.to_json().unwrap().as_bytes())
        .unwrap_err()
        .to_string();
    assert_eq!(streamed, from_import);
    assert!(streamed.contains("entry 7"), "{streamed}");
    let mut twice = expected.clone();
    twice.checkpoints.push(twice.checkpoints[0].clone());
    let err = StoreExport::read_validated(twice.to_json().unwrap().as_bytes()).unwrap_err();
    assert!(err.to_string().contains("appears twice"), "{err}");
}

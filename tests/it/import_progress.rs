//! A large import through `StoreExport::from_reader` and `blocking_import_with_progress`:
//! parsed as it is read, progress reported through every phase up to the row count, and the
//! same rows as the borrowed import.

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
    let export = StoreExport::from_reader(reader).unwrap();
    let expected = export.clone();
    let target = SqliteCheckpointStore::open(dir.path().join("store.db")).unwrap();
    let mut seen: Vec<(&'static str, usize, usize)> = Vec::new();
    let plan = target
        .blocking_import_with_progress(export, OnConflict::Refuse, &mut |p| {
            seen.push((p.phase, p.done, p.total))
        })
        .unwrap();
    assert_eq!(plan.new_checkpoints, rows as usize);
    for phase in ["validating", "comparing", "writing"] {
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

    // Bad input through the reader is the same clear error as through `from_json`.
    let err = StoreExport::from_reader(&b"{\"format\": 1"[..]).unwrap_err();
    assert!(err.to_string().contains("not a store export"), "{err}");
}

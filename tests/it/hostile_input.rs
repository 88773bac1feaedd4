//! Any text as a name, id, owner or offset, and any sequence number, including the i64
//! limits: each is stored and returned exactly, or refused with `Error::InvalidArgument`
//! naming the field, never a panic, and a refused request writes nothing.
//! Fixed hostile names (odd characters, names over the limits) are checked one by one too.
//!
//! Also damaged export documents and EventProcessorHost lease blobs (the stable twins of the
//! `import_json` and `eph_lease` fuzz targets).
//!
//! `EHCS_HOSTILE_CASES` sets the cases per property (default 256, or 5000 with
//! `EHCS_HEAVY=1`); `EHCS_SEED` replays the damaged documents of a run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::*;
use eventhubs_checkpointstore_sqlite::migrate::eph::EphLease;
use eventhubs_checkpointstore_sqlite::migrate::export::StoreExport;
use eventhubs_checkpointstore_sqlite::migrate::OnConflict;
use eventhubs_checkpointstore_sqlite::{
    Checkpoint, Error, Ownership, SqliteCheckpointStore, MAX_NAME_LEN, MAX_OFFSET_LEN,
};
use proptest::prelude::*;

/// Pieces of text that have broken stores before: quotes, LIKE wildcards, SQL, escapes,
/// NUL, control characters, right-to-left marks, non-ASCII and 4-byte characters.
const FRAGMENTS: &[&str] = &[
    "'",
    "\"",
    "%",
    "_",
    "\\",
    "\0",
    ";",
    "--",
    "/*",
    "*/",
    "' OR '1'='1",
    "DROP TABLE ownership;",
    "ü",
    "パーティション",
    "🦀",
    "\u{202e}",
    " ",
    "\t",
    "\n",
    "\r",
    "NULL",
    "$Default",
    "%_%",
    "Ä",
    "\u{feff}",
    "\u{7f}",
];

/// Text of exactly `n` bytes, ASCII or two-byte characters.
fn sized(n: usize, wide: bool) -> String {
    if wide {
        "é".repeat(n / 2) + if n % 2 == 1 { "x" } else { "" }
    } else {
        "x".repeat(n)
    }
}

fn hostile_text(limit: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just(String::new()),
        4 => prop::collection::vec(any::<char>(), 1..40).prop_map(String::from_iter),
        4 => prop::collection::vec(prop::sample::select(FRAGMENTS), 1..6)
            .prop_map(|parts| parts.concat()),
        2 => (
            prop::sample::select(vec![limit - 1, limit, limit + 1, 1 << 20]),
            any::<bool>()
        )
            .prop_map(|(n, wide)| sized(n, wide)),
    ]
}

fn sequence_number() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MIN + 1),
        Just(-1),
        Just(0),
        Just(i64::MAX - 1),
        Just(i64::MAX),
        any::<i64>(),
    ]
}

/// Whether the store must accept `value` as a name or id.
fn valid_name(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_NAME_LEN && !value.contains('\0')
}

/// Asserts `result` is the refusal of `field`, with a message in the house style.
fn refused<T: std::fmt::Debug>(result: Result<T, Error>, field: &str) {
    match result {
        Err(Error::InvalidArgument { field: f, reason }) => {
            assert_eq!(f, field);
            let shown = format!("invalid argument `{f}`: {reason}");
            assert!(!shown.ends_with('.'), "{shown}");
        }
        other => panic!("expected `{field}` to be refused, got {other:?}"),
    }
}

/// ASCII upper case: names match case-insensitively (ASCII only).
fn shout(s: &str) -> String {
    s.to_ascii_uppercase()
}

fn config() -> ProptestConfig {
    ProptestConfig::with_cases(size("EHCS_HOSTILE_CASES", 256, 5000) as u32)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_names_are_stored_exactly_or_refused(
        ns in hostile_text(MAX_NAME_LEN),
        hub in hostile_text(MAX_NAME_LEN),
        group in hostile_text(MAX_NAME_LEN),
        partition in hostile_text(MAX_NAME_LEN),
        owner in hostile_text(MAX_NAME_LEN),
    ) {
        let store = SqliteCheckpointStore::open_in_memory().unwrap();
        let request = claim_in(&ns, &hub, &group, &partition, Some(&owner), None);
        let cp = Checkpoint {
            offset: Some("1".into()),
            sequence_number: Some(1),
            ..Checkpoint::default()
        };
        let cp = Checkpoint {
            fully_qualified_namespace: ns.clone(),
            event_hub_name: hub.clone(),
            consumer_group: group.clone(),
            partition_id: partition.clone(),
            ..cp
        };
        let names = [
            ("fully_qualified_namespace", &ns),
            ("event_hub_name", &hub),
            ("consumer_group", &group),
            ("partition_id", &partition),
        ];
        if let Some((field, _)) = names.iter().find(|(_, v)| !valid_name(v)) {
            refused(store.blocking_claim_ownership(&[request]), field);
            refused(store.blocking_update_checkpoint(&cp), field);
            return Ok(());
        }
        let owner_ok = owner.is_empty() || valid_name(&owner);
        if !owner_ok {
            refused(store.blocking_claim_ownership(&[request]), "owner_id");
            prop_assert!(store.blocking_list_ownerships(&ns, &hub, &group).unwrap().is_empty());
        } else {
            let won = store.blocking_claim_ownership(&[request]).unwrap();
            prop_assert_eq!(won.len(), 1);
            // Listed with the caller's spelling, and found by any ASCII case of the names.
            for (n, h, g) in [(ns.clone(), hub.clone(), group.clone()), (shout(&ns), shout(&hub), shout(&group))] {
                let listed = store.blocking_list_ownerships(&n, &h, &g).unwrap();
                prop_assert_eq!(listed.len(), 1);
                let expected = Ownership {
                    fully_qualified_namespace: n,
                    event_hub_name: h,
                    consumer_group: g,
                    ..won[0].clone()
                };
                prop_assert_eq!(&listed[0], &expected);
                prop_assert_eq!(&listed[0].partition_id, &partition);
                prop_assert_eq!(listed[0].owner_id.as_deref(), (!owner.is_empty()).then_some(owner.as_str()));
            }
        }
        store.blocking_update_checkpoint(&cp).unwrap();
        prop_assert_eq!(store.blocking_list_checkpoints(&ns, &hub, &group).unwrap(), vec![cp]);
    }

    #[test]
    fn any_offset_and_sequence_number_round_trip_or_are_refused(
        offset in prop::option::of(hostile_text(MAX_OFFSET_LEN)),
        seq in prop::option::of(sequence_number()),
        fenced in any::<bool>(),
    ) {
        let store = SqliteCheckpointStore::open_in_memory().unwrap();
        let held = store
            .blocking_claim_ownership(&[claim("0", Some("me"), None)])
            .unwrap()
            .remove(0);
        let cp = checkpoint("0", offset.as_deref(), seq);
        let result = if fenced {
            store.blocking_update_checkpoint_fenced(&cp, &held)
        } else {
            store.blocking_update_checkpoint(&cp)
        };
        let stored = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
        match &offset {
            None if seq.is_none() => refused(result, "checkpoint"),
            Some(o) if o.len() > MAX_OFFSET_LEN || o.contains('\0') => refused(result, "offset"),
            _ => {
                result.unwrap();
                prop_assert_eq!(stored, vec![cp]);
                return Ok(());
            }
        }
        prop_assert!(stored.is_empty(), "a refused checkpoint wrote {:?}", stored);
    }
}

#[test]
fn sequence_numbers_at_the_i64_limits_survive_a_reopen() {
    let (_dir, path, store) = file_store();
    let limits = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    for (i, seq) in limits.iter().enumerate() {
        store
            .blocking_update_checkpoint(&checkpoint(
                &i.to_string(),
                Some(&seq.to_string()),
                Some(*seq),
            ))
            .unwrap();
    }
    drop(store);
    let store = SqliteCheckpointStore::open(&path).unwrap();
    let stored: Vec<Option<i64>> = store
        .blocking_list_checkpoints(NS, HUB, GROUP)
        .unwrap()
        .into_iter()
        .map(|c| c.sequence_number)
        .collect();
    assert_eq!(stored, limits.map(Some));
}

/// Damages a JSON document: half the time its bytes (a flipped byte, a cut, a JSON token
/// inserted, the end cut off), half the time its values (a value replaced by a hostile one, a
/// key removed, an array entry repeated), which keeps it JSON and so reaches the validation.
fn mutate(doc: &[u8], rng: &mut common::Rng) -> Vec<u8> {
    if rng.below(0..2) == 0 {
        mutate_bytes(doc, rng)
    } else {
        let mut value: serde_json::Value = serde_json::from_slice(doc).unwrap();
        for _ in 0..rng.below(1..4) {
            mutate_value(&mut value, rng);
        }
        serde_json::to_vec(&value).unwrap()
    }
}

fn mutate_bytes(doc: &[u8], rng: &mut common::Rng) -> Vec<u8> {
    const TOKENS: &[&str] = &[
        "\"",
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "null",
        "-1",
        "0",
        "1e400",
        "9223372036854775808",
        "\"\"",
        "\"\\u0000\"",
        "true",
        "\"x\"",
        "\"\\ud800\"",
    ];
    let mut out = doc.to_vec();
    for _ in 0..rng.below(1..3) {
        let at = rng.below(0..out.len() as u64 + 1) as usize;
        match rng.below(0..10) {
            0..=2 if at < out.len() => out[at] ^= rng.below(1..256) as u8,
            3 | 4 => {
                let end = (at + rng.below(1..8) as usize).min(out.len());
                out.drain(at..end);
            }
            5..=8 => {
                let token = TOKENS[rng.below(0..TOKENS.len() as u64) as usize];
                out.splice(at..at, token.bytes());
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// A hostile JSON value: strings that broke stores before, lengths at and over the limits,
/// integers at and past the i64 limits, and values of the wrong type.
fn hostile_value(rng: &mut common::Rng) -> serde_json::Value {
    use serde_json::json;
    match rng.below(0..12) {
        0 => json!(null),
        1 => json!(""),
        2 => json!(FRAGMENTS[rng.below(0..FRAGMENTS.len() as u64) as usize]),
        3 => json!("x".repeat(MAX_NAME_LEN + rng.below(0..2) as usize)),
        4 => json!("9".repeat(MAX_OFFSET_LEN + rng.below(0..2) as usize)),
        5 => json!(i64::MAX),
        6 => json!(i64::MIN),
        7 => json!(u64::MAX),
        8 => json!(-1.5),
        9 => json!(true),
        10 => json!({"partition_id": "0"}),
        _ => json!([1, "2"]),
    }
}

fn mutate_value(value: &mut serde_json::Value, rng: &mut common::Rng) {
    use serde_json::Value;
    match value {
        Value::Object(map) if !map.is_empty() => {
            let key = map
                .keys()
                .nth(rng.below(0..map.len() as u64) as usize)
                .unwrap()
                .clone();
            match rng.below(0..6) {
                0 => drop(map.remove(&key)),
                1 => drop(map.insert(key, hostile_value(rng))),
                _ => mutate_value(map.get_mut(&key).unwrap(), rng),
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let at = rng.below(0..items.len() as u64) as usize;
            match rng.below(0..5) {
                0 => {
                    let copy = items[at].clone();
                    items.push(copy);
                }
                1 => drop(items.remove(at)),
                _ => mutate_value(&mut items[at], rng),
            }
        }
        // Mostly keep the type, so that the document still parses and its rows are validated.
        Value::String(text) if rng.below(0..4) > 0 => {
            *text = match hostile_value(rng) {
                Value::String(hostile) => hostile,
                _ => String::new(),
            }
        }
        Value::Number(n) if rng.below(0..4) > 0 => {
            *n = [i64::MIN, -1, 0, 1, i64::MAX][rng.below(0..5) as usize].into()
        }
        leaf => *leaf = hostile_value(rng),
    }
}

/// The stable twin of the `import_json` fuzz target: a damaged export is refused with
/// `InvalidArgument` (or `Conflict`) and writes nothing, or is imported whole, so that
/// importing it again finds nothing to change.
#[test]
fn damaged_exports_are_imported_whole_or_refused_without_a_write() {
    let source = SqliteCheckpointStore::open_in_memory().unwrap();
    source
        .blocking_claim_ownership(&[claim("0", Some("a"), None), claim("1", None, None)])
        .unwrap();
    source
        .blocking_update_checkpoint(&checkpoint("0", Some("4096"), Some(i64::MAX)))
        .unwrap();
    source
        .blocking_update_checkpoint(&checkpoint("2", None, Some(-1)))
        .unwrap();
    let doc = source.blocking_export().unwrap().to_json().unwrap();
    let cases = size("EHCS_HOSTILE_CASES", 256, 5000);
    let mut rng = common::Rng::from_env("damaged_exports");
    let (mut parsed, mut imported) = (0, 0);
    for case in 0..cases {
        let bytes = mutate(doc.as_bytes(), &mut rng);
        let text = String::from_utf8_lossy(&bytes);
        let export = match StoreExport::from_json(&text) {
            Ok(export) => export,
            Err(e) => {
                assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
                continue;
            }
        };
        parsed += 1;
        // Half the cases import into a store that already holds other rows.
        let store = SqliteCheckpointStore::open_in_memory().unwrap();
        if case % 2 == 0 {
            store
                .blocking_update_checkpoint(&checkpoint("0", Some("1"), Some(1)))
                .unwrap();
        }
        let before = store.blocking_export().unwrap();
        match store.blocking_import(
            &export,
            if case % 4 < 2 {
                OnConflict::Overwrite
            } else {
                OnConflict::Refuse
            },
        ) {
            Ok(_) => {
                imported += 1;
                let again = store.blocking_plan_import(&export).unwrap();
                assert!(again.conflicts.is_empty(), "{:?}", again.conflicts);
            }
            Err(e @ (Error::InvalidArgument { .. } | Error::Conflict { .. })) => {
                assert_eq!(
                    store.blocking_export().unwrap(),
                    before,
                    "a refused import wrote: {e}"
                );
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    println!("SUMMARY damaged_exports: {cases} documents, {parsed} parsed, {imported} imported");
}

/// The stable twin of the `eph_lease` fuzz target: a damaged EventProcessorHost lease blob
/// (of each dialect) is parsed or refused with `InvalidArgument`, and a parsed one imports
/// its position exactly or is refused without a write.
#[test]
fn damaged_eph_leases_are_parsed_or_refused() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eph");
    let mut docs = Vec::new();
    for dialect in ["dotnet", "java", "python"] {
        for entry in std::fs::read_dir(fixtures.join(dialect)).unwrap() {
            docs.push(std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
    let cases = size("EHCS_HOSTILE_CASES", 256, 5000);
    let mut rng = common::Rng::from_env("damaged_eph_leases");
    let (mut parsed, mut imported) = (0, 0);
    for case in 0..cases {
        let doc = &docs[case as usize % docs.len()];
        let bytes = mutate(doc, &mut rng);
        let lease = match EphLease::parse(&bytes, Some("7")) {
            Ok(lease) => lease,
            Err(e) => {
                assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
                continue;
            }
        };
        parsed += 1;
        let store = SqliteCheckpointStore::open_in_memory().unwrap();
        match store.blocking_import_eph(
            NS,
            HUB,
            GROUP,
            std::slice::from_ref(&lease),
            OnConflict::Refuse,
        ) {
            Ok(_) => {
                let stored = store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap();
                match lease.position() {
                    Ok((offset, seq)) => {
                        imported += 1;
                        assert_eq!(stored, [checkpoint(&lease.partition_id, Some(offset), seq)]);
                    }
                    Err(_) => assert!(stored.is_empty(), "a lease without a position wrote"),
                }
            }
            Err(e) => {
                assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
                assert!(store
                    .blocking_list_checkpoints(NS, HUB, GROUP)
                    .unwrap()
                    .is_empty());
            }
        }
    }
    println!("SUMMARY damaged_eph_leases: {cases} documents, {parsed} parsed, {imported} imported");
}

#[test]
fn odd_names_are_stored_and_returned_exactly() {
    let store = SqliteCheckpointStore::open_in_memory().unwrap();
    let odd = [
        "'; DROP TABLE ownership; --",
        "100%_match",
        "quote\"s and 'apostrophes'",
        "ünïcödé/パーティション",
        " leading and trailing ",
        &"x".repeat(MAX_NAME_LEN),
    ];
    for (i, name) in odd.iter().enumerate() {
        let owner = name.to_string();
        let request = claim_in(name, name, name, name, Some(&owner), None);
        let won = store.blocking_claim_ownership(&[request]).unwrap();
        assert_eq!(won.len(), 1, "case {i}");
        let listed = store.blocking_list_ownerships(name, name, name).unwrap();
        assert_eq!(listed.len(), 1, "case {i}: exactly its own row");
        assert_eq!(listed[0].partition_id, *name);
        assert_eq!(listed[0].owner_id.as_deref(), Some(owner.as_str()));
    }
    // `%` and `_` are not wildcards: a group named like a pattern sees only itself.
    assert!(store
        .blocking_list_ownerships("100%", "100%", "100%")
        .unwrap()
        .is_empty());
}

#[test]
fn names_and_offsets_over_the_limit_or_with_nul_are_refused_clearly() {
    let store = SqliteCheckpointStore::open_in_memory().unwrap();
    let huge = "n".repeat(1024 * 1024);
    let cases = [
        (
            claim_in(&huge, HUB, GROUP, "0", Some("a"), None),
            "fully_qualified_namespace",
        ),
        (
            claim_in(NS, HUB, GROUP, &huge, Some("a"), None),
            "partition_id",
        ),
        (claim("0", Some(&huge), None), "owner_id"),
        (claim("0", Some("a"), Some(&huge)), "etag"),
        (
            claim_in(NS, "h\0ub", GROUP, "0", Some("a"), None),
            "event_hub_name",
        ),
        (claim("0", Some("a\0b"), None), "owner_id"),
    ];
    for (request, field) in cases {
        match store.blocking_claim_ownership(&[request]) {
            Err(Error::InvalidArgument { field: f, reason }) => {
                assert_eq!(f, field);
                assert!(
                    reason.contains("limit") || reason.contains("NUL"),
                    "{reason}"
                );
            }
            other => panic!("expected invalid {field}, got {other:?}"),
        }
    }
    let long_offset = "9".repeat(MAX_OFFSET_LEN + 1);
    let err = store
        .blocking_update_checkpoint(&checkpoint("0", Some(&long_offset), Some(1)))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                field: "offset",
                ..
            }
        ),
        "{err}"
    );
    let fits = "9".repeat(MAX_OFFSET_LEN);
    store
        .blocking_update_checkpoint(&checkpoint("0", Some(&fits), Some(1)))
        .unwrap();
    assert_eq!(
        store.blocking_list_checkpoints(NS, HUB, GROUP).unwrap()[0]
            .offset
            .as_deref(),
        Some(fits.as_str())
    );
    assert!(
        owners(&store).is_empty(),
        "no refused claim may have written"
    );
}

//! Any text as a name, id, owner or offset, and any sequence number, including the i64
//! limits: each is stored and returned exactly, or refused with `Error::InvalidArgument`
//! naming the field, never a panic, and a refused request writes nothing.
//! (Fixed hostile names are in `busy_and_hostile_input.rs`.)
//!
//! `EHCS_HOSTILE_CASES` sets the cases per property (default 256, or 5000 with
//! `EHCS_HEAVY=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
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

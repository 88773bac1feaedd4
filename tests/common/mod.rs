//! Shared helpers for the integration tests: names, builders and a controllable clock.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use eventhubs_checkpointstore_sqlite::{
    Checkpoint, Clock, Ownership, SqliteCheckpointStore, StoreOptions,
};
use time::OffsetDateTime;

pub const NS: &str = "myns.servicebus.windows.net";
pub const HUB: &str = "hub";
pub const GROUP: &str = "$Default";

/// A claim request in the default group.
pub fn claim(partition: &str, owner: Option<&str>, etag: Option<&str>) -> Ownership {
    claim_in(NS, HUB, GROUP, partition, owner, etag)
}

pub fn claim_in(
    ns: &str,
    hub: &str,
    group: &str,
    partition: &str,
    owner: Option<&str>,
    etag: Option<&str>,
) -> Ownership {
    Ownership {
        fully_qualified_namespace: ns.into(),
        event_hub_name: hub.into(),
        consumer_group: group.into(),
        partition_id: partition.into(),
        owner_id: owner.map(Into::into),
        etag: etag.map(Into::into),
        last_modified_time: None,
    }
}

/// A checkpoint in the default group.
pub fn checkpoint(partition: &str, offset: Option<&str>, seq: Option<i64>) -> Checkpoint {
    Checkpoint {
        fully_qualified_namespace: NS.into(),
        event_hub_name: HUB.into(),
        consumer_group: GROUP.into(),
        partition_id: partition.into(),
        offset: offset.map(Into::into),
        sequence_number: seq,
    }
}

/// A clock that only moves when told to; starts at 2026-01-01T00:00:00Z.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(ManualClock(AtomicI64::new(1_767_225_600)))
    }
    pub fn advance_secs(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
    pub fn now(&self) -> OffsetDateTime {
        self.now_utc()
    }
}

impl Clock for ManualClock {
    fn now_utc(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(self.0.load(Ordering::SeqCst))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// A store in a fresh file under a temp dir that lives as long as the returned guard.
pub fn file_store() -> (tempfile::TempDir, PathBuf, SqliteCheckpointStore) {
    file_store_with(StoreOptions::default())
}

pub fn file_store_with(
    options: StoreOptions,
) -> (tempfile::TempDir, PathBuf, SqliteCheckpointStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let store = SqliteCheckpointStore::open_with(&path, options).expect("open store");
    (dir, path, store)
}

/// (partition, owner, etag) of each listed ownership, for comparing whole states.
pub fn owners(store: &SqliteCheckpointStore) -> Vec<(String, Option<String>, Option<String>)> {
    store
        .blocking_list_ownerships(NS, HUB, GROUP)
        .expect("list ownerships")
        .into_iter()
        .map(|o| (o.partition_id, o.owner_id, o.etag))
        .collect()
}

pub fn read_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read file")
}

/// One successful claim as its claimant saw it: the etag it replaced (None for a create) and
/// the etag it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Win {
    pub partition: String,
    pub replaced: Option<String>,
    pub etag: String,
    pub owner: String,
}

impl Win {
    /// `WIN partition replaced-or-"-" etag owner`: one line, for workers in other processes.
    pub fn to_line(&self) -> String {
        format!(
            "WIN {} {} {} {}",
            self.partition,
            self.replaced.as_deref().unwrap_or("-"),
            self.etag,
            self.owner
        )
    }

    /// Parses a line made by [`Win::to_line`]; the test harness may print its own text
    /// before it on the same line.
    pub fn parse(line: &str) -> Option<Win> {
        let at = line.find("WIN ")?;
        let mut f = line[at + 4..].split(' ');
        let (partition, replaced, etag, owner) = (f.next()?, f.next()?, f.next()?, f.next()?);
        Some(Win {
            partition: partition.into(),
            replaced: (replaced != "-").then(|| replaced.into()),
            etag: etag.into(),
            owner: owner.into(),
        })
    }
}

/// Checks that every (partition, replaced etag) has exactly one winner, that each partition's
/// wins form one unbroken chain from its creation, and that the chain ends at what the store
/// holds now, with the owner its claimant believes it has.
pub fn check_single_winner(wins: &[Win], store: &SqliteCheckpointStore) {
    use std::collections::HashMap;
    let mut next: HashMap<(&str, Option<&str>), &Win> = HashMap::new();
    for w in wins {
        if let Some(other) = next.insert((&w.partition, w.replaced.as_deref()), w) {
            panic!("two winners replaced the same etag: {other:?} and {w:?}");
        }
    }
    let stored = store
        .blocking_list_ownerships(NS, HUB, GROUP)
        .expect("list");
    for o in &stored {
        let mut link: Option<&str> = None;
        let mut last: Option<&Win> = None;
        let mut length = 0;
        while let Some(w) = next.get(&(o.partition_id.as_str(), link)) {
            length += 1;
            last = Some(w);
            link = Some(&w.etag);
        }
        let count = wins
            .iter()
            .filter(|w| w.partition == o.partition_id)
            .count();
        assert_eq!(
            length, count,
            "partition {}: wins do not form one chain",
            o.partition_id
        );
        let last = last.expect("every stored partition was created by a recorded win");
        assert_eq!(
            o.etag.as_deref(),
            Some(last.etag.as_str()),
            "chain end != stored etag"
        );
        assert_eq!(
            o.owner_id.as_deref(),
            Some(last.owner.as_str()),
            "owner disagrees"
        );
    }
    let partitions: std::collections::HashSet<&str> =
        wins.iter().map(|w| w.partition.as_str()).collect();
    assert_eq!(
        partitions.len(),
        stored.len(),
        "a won partition is missing from the store"
    );
}

/// One contender's round: list, then claim every partition of `partitions` it does not hold,
/// creating missing ones and stealing the rest with the etags it listed.
pub fn steal_round(
    store: &SqliteCheckpointStore,
    me: &str,
    partitions: &[String],
) -> eventhubs_checkpointstore_sqlite::Result<Vec<Win>> {
    let listed = store.blocking_list_ownerships(NS, HUB, GROUP)?;
    let requests: Vec<Ownership> = partitions
        .iter()
        .filter_map(|p| match listed.iter().find(|o| &o.partition_id == p) {
            Some(o) if o.owner_id.as_deref() == Some(me) => None,
            Some(o) => Some(claim(p, Some(me), o.etag.as_deref())),
            None => Some(claim(p, Some(me), None)),
        })
        .collect();
    let won = store.blocking_claim_ownership(&requests)?;
    Ok(won
        .into_iter()
        .map(|w| {
            let request = requests
                .iter()
                .find(|r| r.partition_id == w.partition_id)
                .expect("a win answers a request");
            Win {
                partition: w.partition_id,
                replaced: request.etag.clone(),
                etag: w.etag.unwrap_or_default(),
                owner: me.to_owned(),
            }
        })
        .collect())
}

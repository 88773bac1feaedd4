//! Shared helpers for the integration tests: names, builders and a controllable clock.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use eventhubs_checkpointstore_sqlite::{
    Checkpoint, CheckpointStore, Clock, Error, Ownership, Result, SqliteCheckpointStore,
    StoreOptions,
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

/// Asserts that opening `path` fails with an error accepted by `expected`, and that the file's
/// bytes are the same afterwards.
pub fn refused_untouched(path: &Path, expected: impl Fn(&Error) -> bool) -> Error {
    let before = read_bytes(path);
    let err = SqliteCheckpointStore::open(path).expect_err("the open must fail");
    assert!(expected(&err), "unexpected error: {err:?}");
    assert!(
        read_bytes(path) == before,
        "the file must stay byte-identical"
    );
    assert!(
        !path.with_extension("db-wal").exists(),
        "no -wal may be created"
    );
    err
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
    let requests = steal_requests(&listed, me, partitions);
    let won = store.blocking_claim_ownership(&requests)?;
    Ok(wins_of(&requests, won, me))
}

/// The requests of a [`steal_round`] from what was listed: every partition of `partitions`
/// that `me` does not hold, created if missing and stolen with the listed etag otherwise.
pub fn steal_requests(listed: &[Ownership], me: &str, partitions: &[String]) -> Vec<Ownership> {
    partitions
        .iter()
        .filter_map(|p| match listed.iter().find(|o| &o.partition_id == p) {
            Some(o) if o.owner_id.as_deref() == Some(me) => None,
            Some(o) => Some(claim(p, Some(me), o.etag.as_deref())),
            None => Some(claim(p, Some(me), None)),
        })
        .collect()
}

/// The [`Win`]s of a claim call: each successful claim with the etag its request replaced.
pub fn wins_of(requests: &[Ownership], won: Vec<Ownership>, me: &str) -> Vec<Win> {
    won.into_iter()
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
        .collect()
}

/// True when the heavy variants of the stress tests were asked for (`EHCS_HEAVY=1`).
pub fn heavy() -> bool {
    std::env::var("EHCS_HEAVY").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// A size for a stress test: the number in the environment variable `var` if set, else
/// `heavy` under `EHCS_HEAVY=1`, else `moderate`.
pub fn size(var: &str, moderate: u64, heavy_size: u64) -> u64 {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var} must be a number, not {v:?}")),
        Err(_) if heavy() => heavy_size,
        Err(_) => moderate,
    }
}

/// A small deterministic random number generator (xorshift64*), so that every random test
/// prints its seed and can be replayed with `EHCS_SEED`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded from `EHCS_SEED` if set, else from the clock; prints the seed either way.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("EHCS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        println!("{test}: EHCS_SEED={seed}");
        Rng::new(seed)
    }

    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `range` (which must not be empty).
    pub fn below(&mut self, range: std::ops::Range<u64>) -> u64 {
        range.start + self.next_u64() % (range.end - range.start)
    }
}

/// `PRAGMA integrity_check` of the file, through a connection of its own.
pub fn integrity_check(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).expect("open for integrity_check");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

/// This test binary, to be run again as a worker of the test `test`: the worker finds
/// `value` in the environment variable `env`. Its stdout is piped to the caller.
pub fn reexec(test: &str, env: &str, value: &str) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().expect("current exe"));
    command
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(env, value)
        .stdout(std::process::Stdio::piped());
    command
}

/// Writes one line to stdout and flushes it, so that a parent reading the pipe sees every
/// line printed before the process was killed.
pub fn report(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("write to stdout");
    out.flush().expect("flush stdout");
}

/// Which of the store's two APIs a worker uses: the `blocking_*` methods or the async trait.
/// The blocking calls run on the worker's own thread, even inside an async fn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Blocking,
    Async,
}

impl Api {
    pub async fn list(self, store: &SqliteCheckpointStore) -> Result<Vec<Ownership>> {
        match self {
            Api::Blocking => store.blocking_list_ownerships(NS, HUB, GROUP),
            Api::Async => CheckpointStore::list_ownerships(store, NS, HUB, GROUP).await,
        }
    }

    pub async fn list_checkpoints(self, store: &SqliteCheckpointStore) -> Result<Vec<Checkpoint>> {
        match self {
            Api::Blocking => store.blocking_list_checkpoints(NS, HUB, GROUP),
            Api::Async => CheckpointStore::list_checkpoints(store, NS, HUB, GROUP).await,
        }
    }

    pub async fn claim(
        self,
        store: &SqliteCheckpointStore,
        requests: &[Ownership],
    ) -> Result<Vec<Ownership>> {
        match self {
            Api::Blocking => store.blocking_claim_ownership(requests),
            Api::Async => CheckpointStore::claim_ownership(store, requests).await,
        }
    }

    pub async fn update(self, store: &SqliteCheckpointStore, checkpoint: Checkpoint) -> Result<()> {
        match self {
            Api::Blocking => store.blocking_update_checkpoint(&checkpoint),
            Api::Async => CheckpointStore::update_checkpoint(store, checkpoint).await,
        }
    }

    pub async fn update_fenced(
        self,
        store: &SqliteCheckpointStore,
        checkpoint: Checkpoint,
        ownership: &Ownership,
    ) -> Result<()> {
        match self {
            Api::Blocking => store.blocking_update_checkpoint_fenced(&checkpoint, ownership),
            Api::Async => store.update_checkpoint_fenced(checkpoint, ownership).await,
        }
    }

    /// [`steal_round`] through this API.
    pub async fn steal_round(
        self,
        store: &SqliteCheckpointStore,
        me: &str,
        partitions: &[String],
    ) -> Result<Vec<Win>> {
        let listed = self.list(store).await?;
        let requests = steal_requests(&listed, me, partitions);
        let won = self.claim(store, &requests).await?;
        Ok(wins_of(&requests, won, me))
    }
}

/// Waits until the last connection to the store at `path` has closed, which checkpoints the
/// `-wal` into the file and removes it. Right after `open`, an r2d2 worker thread can still
/// hold the pool for a moment, so a store dropped at once may close its file a moment later.
pub fn wait_closed(path: &Path) {
    let wal = path.with_extension("db-wal");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while wal.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the store at {} never closed",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The names of this process's threads (`/proc/self/task/*/comm`, 15 characters at most;
/// Linux).
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .collect()
}

/// The `-wal` a store at `Full` gives a new file: SQLite's 1000 frames (its
/// `wal_autocheckpoint`) of a 4 KiB page and its 24-byte header, after the 32-byte header.
pub const EXTENDED_WAL: u64 = 32 + 1000 * (4096 + 24);

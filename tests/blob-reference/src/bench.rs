//! `--bench`: the official `BlobCheckpointStore` on Azurite against our `SqliteCheckpointStore`,
//! timed side by side in one process (BENCHMARKS.md, target 3c).
//!
//! ```text
//! blob-reference --bench ACCOUNT_URL [--partitions N] [--rounds R]
//! ```
//!
//! Each round gives each store a fresh place — the Blob store a new container, ours a new file
//! in a new temp dir, opened with the default options (`Durability::Full`) — and times, on the
//! partitions `0..N` of one (namespace, hub, group) shaped as in `benches/ownership.rs`:
//!
//! 1. `claim_ownership` of N partitions, without etags, in one call;
//! 2. `claim_ownership` of the N ownerships the claim returned (renewal with their etags);
//! 3. `list_ownerships` of the N;
//! 4. N `update_checkpoint` calls, one after the other;
//! 5. `list_checkpoints` of the N.
//!
//! The two stores alternate within a round (Blob first). Every answer is checked — every claim
//! won, renewals got new etags, lists return exactly the N partitions with what was written —
//! and the run fails if one is not. Setup (creating the container or file) and cleanup are not
//! timed. The median and minimum over the rounds are printed per operation and store, with the
//! ratio Blob / ours.

use std::collections::HashMap;
use std::error::Error;
use std::time::{Duration, Instant};

use azure_messaging_eventhubs::models as blob_models;
use azure_messaging_eventhubs::CheckpointStore as _;
use azure_messaging_eventhubs_checkpointstore_blob::BlobCheckpointStore;
use azure_storage_blob::BlobContainerClient;
use eventhubs_checkpointstore_sqlite as ours;
use eventhubs_checkpointstore_sqlite::CheckpointStore as _;

type BoxError = Box<dyn Error>;

/// The names of `benches/common/mod.rs`, so that the figures are comparable.
const NS: &str = "bench.servicebus.windows.net";
const HUB: &str = "hub";
const GROUP: &str = "$default";
const OWNER: &str = "me";

const OPS: [&str; 5] = [
    "claim N, no etags (one call)",
    "renew N, etags from the claim",
    "list N ownerships",
    "update N checkpoints (N calls)",
    "list N checkpoints",
];

/// The time of each of [`OPS`] in one round.
type Round = [Duration; 5];

/// An ownership as either store returns it, reduced to what the checks need.
struct Owned {
    partition: String,
    owner: Option<String>,
    /// Without surrounding quotes: the Blob store quotes an etag from a claim, not from a list.
    etag: Option<String>,
}

/// A checkpoint as either store returns it.
struct Position {
    partition: String,
    offset: Option<String>,
    sequence_number: Option<i64>,
}

/// The offset and sequence number written for partition `p`, as `benches/common::checkpoint`.
fn position(p: usize) -> (String, i64) {
    let seq = p as i64;
    ((seq * 128).to_string(), seq)
}

/// What the round needs of a store: building its requests (untimed), the four calls (timed),
/// and reading its answers back (untimed).
trait Store {
    type Ownership: Clone;
    type Checkpoint;
    fn request(partition: usize) -> Self::Ownership;
    fn checkpoint(partition: usize) -> Self::Checkpoint;
    fn owned(o: &Self::Ownership) -> Owned;
    fn position(c: &Self::Checkpoint) -> Position;
    async fn claim(&self, requests: &[Self::Ownership]) -> Result<Vec<Self::Ownership>, BoxError>;
    async fn list_ownerships(&self) -> Result<Vec<Self::Ownership>, BoxError>;
    async fn update_checkpoint(&self, checkpoint: Self::Checkpoint) -> Result<(), BoxError>;
    async fn list_checkpoints(&self) -> Result<Vec<Self::Checkpoint>, BoxError>;
}

struct Blob(std::sync::Arc<BlobCheckpointStore>);

impl Store for Blob {
    type Ownership = blob_models::Ownership;
    type Checkpoint = blob_models::Checkpoint;

    fn request(partition: usize) -> Self::Ownership {
        blob_models::Ownership {
            fully_qualified_namespace: NS.into(),
            event_hub_name: HUB.into(),
            consumer_group: GROUP.into(),
            partition_id: partition.to_string(),
            owner_id: Some(OWNER.into()),
            ..Default::default()
        }
    }
    fn checkpoint(partition: usize) -> Self::Checkpoint {
        let (offset, seq) = position(partition);
        blob_models::Checkpoint {
            fully_qualified_namespace: NS.into(),
            event_hub_name: HUB.into(),
            consumer_group: GROUP.into(),
            partition_id: partition.to_string(),
            offset: Some(offset),
            sequence_number: Some(seq),
        }
    }
    fn owned(o: &Self::Ownership) -> Owned {
        Owned {
            partition: o.partition_id.clone(),
            owner: o.owner_id.clone(),
            etag: o
                .etag
                .as_ref()
                .map(|e| e.as_ref().trim_matches('"').to_owned()),
        }
    }
    fn position(c: &Self::Checkpoint) -> Position {
        Position {
            partition: c.partition_id.clone(),
            offset: c.offset.clone(),
            sequence_number: c.sequence_number,
        }
    }
    async fn claim(&self, requests: &[Self::Ownership]) -> Result<Vec<Self::Ownership>, BoxError> {
        Ok(self.0.claim_ownership(requests).await?)
    }
    async fn list_ownerships(&self) -> Result<Vec<Self::Ownership>, BoxError> {
        Ok(self.0.list_ownerships(NS, HUB, GROUP).await?)
    }
    async fn update_checkpoint(&self, checkpoint: Self::Checkpoint) -> Result<(), BoxError> {
        Ok(self.0.update_checkpoint(checkpoint).await?)
    }
    async fn list_checkpoints(&self) -> Result<Vec<Self::Checkpoint>, BoxError> {
        Ok(self.0.list_checkpoints(NS, HUB, GROUP).await?)
    }
}

struct Sqlite(ours::SqliteCheckpointStore);

impl Store for Sqlite {
    type Ownership = ours::Ownership;
    type Checkpoint = ours::Checkpoint;

    fn request(partition: usize) -> Self::Ownership {
        ours::Ownership {
            fully_qualified_namespace: NS.into(),
            event_hub_name: HUB.into(),
            consumer_group: GROUP.into(),
            partition_id: partition.to_string(),
            owner_id: Some(OWNER.into()),
            ..Default::default()
        }
    }
    fn checkpoint(partition: usize) -> Self::Checkpoint {
        let (offset, seq) = position(partition);
        ours::Checkpoint {
            fully_qualified_namespace: NS.into(),
            event_hub_name: HUB.into(),
            consumer_group: GROUP.into(),
            partition_id: partition.to_string(),
            offset: Some(offset),
            sequence_number: Some(seq),
        }
    }
    fn owned(o: &Self::Ownership) -> Owned {
        Owned {
            partition: o.partition_id.clone(),
            owner: o.owner_id.clone(),
            etag: o.etag.clone(),
        }
    }
    fn position(c: &Self::Checkpoint) -> Position {
        Position {
            partition: c.partition_id.clone(),
            offset: c.offset.clone(),
            sequence_number: c.sequence_number,
        }
    }
    async fn claim(&self, requests: &[Self::Ownership]) -> Result<Vec<Self::Ownership>, BoxError> {
        Ok(self.0.claim_ownership(requests).await?)
    }
    async fn list_ownerships(&self) -> Result<Vec<Self::Ownership>, BoxError> {
        Ok(self.0.list_ownerships(NS, HUB, GROUP).await?)
    }
    async fn update_checkpoint(&self, checkpoint: Self::Checkpoint) -> Result<(), BoxError> {
        Ok(self.0.update_checkpoint(checkpoint).await?)
    }
    async fn list_checkpoints(&self) -> Result<Vec<Self::Checkpoint>, BoxError> {
        Ok(self.0.list_checkpoints(NS, HUB, GROUP).await?)
    }
}

/// Checks that `got` holds each partition of `0..n` exactly once, owned by [`OWNER`] and with
/// an etag, and returns the etags by partition. With `before`, every etag must differ from the
/// one there (a renewal changes it); with `same_as`, every etag must equal the one there (a
/// list shows the last write).
fn check_owned(
    what: &str,
    got: &[Owned],
    n: usize,
    before: Option<&HashMap<String, String>>,
    same_as: Option<&HashMap<String, String>>,
) -> Result<HashMap<String, String>, String> {
    if got.len() != n {
        return Err(format!(
            "{what}: {} ownerships returned, not {n}",
            got.len()
        ));
    }
    let mut etags = HashMap::with_capacity(n);
    for o in got {
        let in_range = o.partition.parse::<usize>().is_ok_and(|p| p < n);
        if !in_range || o.owner.as_deref() != Some(OWNER) {
            return Err(format!(
                "{what}: partition {:?} owned by {:?}",
                o.partition, o.owner
            ));
        }
        let etag = match o.etag.as_deref() {
            Some(e) if !e.is_empty() => e.to_owned(),
            _ => return Err(format!("{what}: partition {} has no etag", o.partition)),
        };
        if before.is_some_and(|b| b.get(&o.partition) == Some(&etag)) {
            return Err(format!("{what}: partition {} kept its etag", o.partition));
        }
        if same_as.is_some_and(|s| s.get(&o.partition) != Some(&etag)) {
            return Err(format!(
                "{what}: partition {} has etag {etag}, not the last one written",
                o.partition
            ));
        }
        if etags.insert(o.partition.clone(), etag).is_some() {
            return Err(format!("{what}: partition {} twice", o.partition));
        }
    }
    Ok(etags)
}

/// Checks that `got` holds each partition of `0..n` exactly once, with what was written.
fn check_positions(got: &[Position], n: usize) -> Result<(), String> {
    if got.len() != n {
        return Err(format!("list checkpoints: {} returned, not {n}", got.len()));
    }
    let mut seen = vec![false; n];
    for c in got {
        let p = match c.partition.parse::<usize>() {
            Ok(p) if p < n && !seen[p] => p,
            _ => return Err(format!("list checkpoints: partition {:?}", c.partition)),
        };
        seen[p] = true;
        let (offset, seq) = position(p);
        if c.offset.as_deref() != Some(offset.as_str()) || c.sequence_number != Some(seq) {
            return Err(format!(
                "list checkpoints: partition {p} has offset {:?} and sequence number {:?}",
                c.offset, c.sequence_number
            ));
        }
    }
    Ok(())
}

/// One round on a fresh store: the five operations, timed and checked.
async fn round<S: Store>(store: &S, n: usize) -> Result<Round, BoxError> {
    let requests: Vec<S::Ownership> = (0..n).map(S::request).collect();
    let start = Instant::now();
    let claimed = store.claim(&requests).await?;
    let claim = start.elapsed();
    let view: Vec<Owned> = claimed.iter().map(S::owned).collect();
    let first = check_owned("claim", &view, n, None, None)?;

    let start = Instant::now();
    let renewed = store.claim(&claimed).await?;
    let renew = start.elapsed();
    let view: Vec<Owned> = renewed.iter().map(S::owned).collect();
    let current = check_owned("renew", &view, n, Some(&first), None)?;

    let start = Instant::now();
    let listed = store.list_ownerships().await?;
    let list_ownerships = start.elapsed();
    let view: Vec<Owned> = listed.iter().map(S::owned).collect();
    check_owned("list ownerships", &view, n, None, Some(&current))?;

    let checkpoints: Vec<S::Checkpoint> = (0..n).map(S::checkpoint).collect();
    let start = Instant::now();
    for c in checkpoints {
        store.update_checkpoint(c).await?;
    }
    let update = start.elapsed();

    let start = Instant::now();
    let listed = store.list_checkpoints().await?;
    let list_checkpoints = start.elapsed();
    let view: Vec<Position> = listed.iter().map(S::position).collect();
    check_positions(&view, n)?;

    Ok([claim, renew, list_ownerships, update, list_checkpoints])
}

async fn blob_round(account_url: &str, name: &str, n: usize) -> Result<Round, BoxError> {
    let url = crate::container_url(account_url, name)?;
    let container = BlobContainerClient::new(url.clone(), None, None)?;
    container.create(None).await?;
    let store = Blob(BlobCheckpointStore::new(BlobContainerClient::new(
        url, None, None,
    )?));
    let timed = round(&store, n).await;
    // Not timed; keeps Azurite's (in-memory) metadata from growing over the rounds.
    container.delete(None).await?;
    timed
}

async fn sqlite_round(n: usize) -> Result<Round, BoxError> {
    let dir = tempfile::tempdir()?;
    let store = Sqlite(ours::SqliteCheckpointStore::open(
        dir.path().join("checkpoints.db"),
    )?);
    let timed = round(&store, n).await;
    drop(store);
    timed
}

struct Args {
    account_url: String,
    partitions: usize,
    rounds: usize,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut account_url = None;
    let (mut partitions, mut rounds) = (1024, 5);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut number = |flag: &str| -> Result<usize, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .filter(|&v: &usize| v > 0)
                .ok_or_else(|| format!("{flag} needs a positive number"))
        };
        match arg.as_str() {
            "--partitions" => partitions = number("--partitions")?,
            "--rounds" => rounds = number("--rounds")?,
            a if !a.starts_with('-') && account_url.is_none() => account_url = Some(a.to_owned()),
            a => return Err(format!("unexpected argument {a:?}")),
        }
    }
    Ok(Args {
        account_url: account_url.ok_or("ACCOUNT_URL is missing")?,
        partitions,
        rounds,
    })
}

/// The median (the mean of the middle two for an even count) and the minimum.
fn median_min(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    let mid = times.len() / 2;
    let median = if times.len().is_multiple_of(2) {
        (times[mid - 1] + times[mid]) / 2
    } else {
        times[mid]
    };
    (median, times[0])
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn ratio(blob: Duration, ours: Duration) -> String {
    let r = blob.as_secs_f64() / ours.as_secs_f64();
    if r < 10.0 {
        format!("{r:.1}x")
    } else {
        format!("{r:.0}x")
    }
}

/// Runs `--bench` with the arguments after it.
pub async fn main(args: &[String]) -> Result<(), BoxError> {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("blob-reference --bench: {e}");
            eprintln!("usage: blob-reference --bench ACCOUNT_URL [--partitions N] [--rounds R]");
            std::process::exit(2);
        }
    };
    let n = args.partitions;
    println!(
        "Blob store (azure_messaging_eventhubs_checkpointstore_blob 0.9.0) on Azurite at {}\n\
         vs SqliteCheckpointStore (default options: Durability::Full) in a new file under {}.\n\
         {n} partitions, rounds: {}; each round on a fresh container and a fresh file.\n\
         Per round, in ms: {}.",
        args.account_url,
        std::env::temp_dir().display(),
        args.rounds,
        OPS.join(" / ")
    );
    let stamp = crate::stamp_millis()?;
    let mut blob: Vec<Round> = Vec::new();
    let mut sqlite: Vec<Round> = Vec::new();
    for r in 1..=args.rounds {
        let name = format!("bench-{stamp}-{r}");
        let b = blob_round(&args.account_url, &name, n)
            .await
            .map_err(|e| format!("Blob store, round {r}: {e}"))?;
        let s = sqlite_round(n)
            .await
            .map_err(|e| format!("SqliteCheckpointStore, round {r}: {e}"))?;
        let line = |t: &Round| t.map(ms).join(" / ");
        println!("round {r}: blob {} ms", line(&b));
        println!("round {r}: ours {} ms", line(&s));
        blob.push(b);
        sqlite.push(s);
    }

    println!("\nall times in ms; ratio = Blob / ours");
    println!(
        "{:<32} {:>11} {:>11} {:>11} {:>11} {:>8} {:>8}",
        format!("operation (N = {n})"),
        "blob med",
        "blob min",
        "ours med",
        "ours min",
        "ratio",
        "(min)"
    );
    for (i, op) in OPS.iter().enumerate() {
        let (bm, bmin) = median_min(blob.iter().map(|t| t[i]).collect());
        let (sm, smin) = median_min(sqlite.iter().map(|t| t[i]).collect());
        println!(
            "{op:<32} {:>11} {:>11} {:>11} {:>11} {:>8} {:>8}",
            ms(bm),
            ms(bmin),
            ms(sm),
            ms(smin),
            ratio(bm, sm),
            ratio(bmin, smin)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(p: &str, owner: &str, etag: &str) -> Owned {
        Owned {
            partition: p.into(),
            owner: Some(owner.into()),
            etag: Some(etag.into()),
        }
    }

    #[test]
    fn check_owned_fails_loudly() {
        let good = [owned("0", OWNER, "a"), owned("1", OWNER, "b")];
        let etags = check_owned("t", &good, 2, None, None).unwrap();
        assert!(check_owned("t", &good[..1], 2, None, None).is_err());
        let twice = [owned("0", OWNER, "a"), owned("0", OWNER, "b")];
        assert!(check_owned("t", &twice, 2, None, None).is_err());
        let other = [owned("0", OWNER, "a"), owned("1", "you", "b")];
        assert!(check_owned("t", &other, 2, None, None).is_err());
        let outside = [owned("0", OWNER, "a"), owned("2", OWNER, "b")];
        assert!(check_owned("t", &outside, 2, None, None).is_err());
        let empty = [owned("0", OWNER, "a"), owned("1", OWNER, "")];
        assert!(check_owned("t", &empty, 2, None, None).is_err());
        assert!(check_owned("t", &good, 2, Some(&etags), None).is_err());
        assert!(check_owned("t", &good, 2, None, Some(&etags)).is_ok());
        let renewed = [owned("0", OWNER, "c"), owned("1", OWNER, "b")];
        assert!(check_owned("t", &renewed, 2, Some(&etags), None).is_err());
        assert!(check_owned("t", &renewed, 2, None, Some(&etags)).is_err());
    }

    #[test]
    fn check_positions_fails_loudly() {
        let at = |p: usize| {
            let (offset, seq) = position(p);
            Position {
                partition: p.to_string(),
                offset: Some(offset),
                sequence_number: Some(seq),
            }
        };
        assert!(check_positions(&[at(0), at(1)], 2).is_ok());
        assert!(check_positions(&[at(0)], 2).is_err());
        assert!(check_positions(&[at(0), at(0)], 2).is_err());
        let mut wrong = at(1);
        wrong.sequence_number = Some(7);
        assert!(check_positions(&[at(0), wrong], 2).is_err());
    }

    #[test]
    fn args_and_medians() {
        let a = |s: &[&str]| parse(&s.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let p = a(&["http://x/acct"]).unwrap();
        assert_eq!(
            (p.account_url.as_str(), p.partitions, p.rounds),
            ("http://x/acct", 1024, 5)
        );
        let p = a(&["--rounds", "3", "u", "--partitions", "16"]).unwrap();
        assert_eq!((p.partitions, p.rounds), (16, 3));
        assert!(a(&[]).is_err());
        assert!(a(&["u", "--rounds", "0"]).is_err());
        assert!(a(&["u", "v"]).is_err());
        let d = Duration::from_millis;
        assert_eq!(median_min(vec![d(5), d(1), d(3)]), (d(3), d(1)));
        assert_eq!(median_min(vec![d(4), d(2)]), (d(3), d(2)));
    }
}

//! Store against plain rusqlite, call by call (feature `azure`): a sequential checkpoint write
//! (targets 2a and 2b) and the lists, claims and renewals of BENCHMARKS.md's target 4, through the crate's own `CheckpointStore` trait and through the
//! official `azure_messaging_eventhubs::CheckpointStore`, each call of the store followed by
//! the same call of the baseline (`benches/common/plain_store.rs`), so that both meet the same
//! moments of a noisy disk and CPU. Prints the median of each and their ratio.
//!
//! ```text
//! cargo run --release --features azure --example pairs -- [--rounds 300] [--durability full|normal]
//! ```
//! `PAIRS_ONLY=list` runs only the workloads whose name contains "list".
//! criterion (benches/ownership.rs, benches/official.rs) times each function in its own
//! seconds; on a shared machine whose fsync time drifts by 2× within a minute, that drift
//! lands in the ratio. Here it cancels out.

#[path = "../benches/common/plain_store.rs"]
mod plain_store;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Instant;

use eventhubs_checkpointstore_sqlite::{
    Checkpoint, Durability, Ownership, SqliteCheckpointStore, StoreOptions,
};
use plain_store::PlainStore;

const NS: &str = "pairs.servicebus.windows.net";
const HUB: &str = "hub";
const GROUP: &str = "$default";

type Own = dyn eventhubs_checkpointstore_sqlite::CheckpointStore;
type Official = dyn azure_messaging_eventhubs::CheckpointStore;

/// One timed call: makes the requests, then returns the call of the store given by index
/// (0 ours, 1 plain) as a future.
type Call<'a> = Box<dyn FnMut(usize) -> Pin<Box<dyn Future<Output = ()> + 'a>> + 'a>;

fn fail(message: String) -> ! {
    eprintln!("{message}");
    std::process::exit(1)
}

fn ownerships(n: usize, group: &str) -> Vec<Ownership> {
    (0..n)
        .map(|p| Ownership {
            fully_qualified_namespace: NS.into(),
            event_hub_name: HUB.into(),
            consumer_group: group.into(),
            partition_id: p.to_string(),
            owner_id: Some("me".into()),
            etag: None,
            last_modified_time: None,
        })
        .collect()
}

fn official(o: &[Ownership]) -> Vec<azure_messaging_eventhubs::models::Ownership> {
    o.iter()
        .map(|o| azure_messaging_eventhubs::models::Ownership {
            fully_qualified_namespace: o.fully_qualified_namespace.clone(),
            event_hub_name: o.event_hub_name.clone(),
            consumer_group: o.consumer_group.clone(),
            partition_id: o.partition_id.clone(),
            owner_id: o.owner_id.clone(),
            ..Default::default()
        })
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `call` on both stores `rounds` times, alternating which goes first, and prints the
/// medians (µs) and the ratio.
async fn pair(name: &str, rounds: usize, mut call: Call<'_>) {
    if let Ok(only) = std::env::var("PAIRS_ONLY") {
        if !name.contains(&only) {
            return;
        }
    }
    let mut times = [Vec::new(), Vec::new()];
    for round in 0..rounds + 5 {
        for k in 0..2 {
            let which = (k + round) % 2;
            // The requests are made by `call`, untimed; the call itself is the future.
            let future = call(which);
            let t = Instant::now();
            future.await;
            if round >= 5 {
                times[which].push(t.elapsed().as_secs_f64() * 1e6);
            }
        }
    }
    let [a, b] = &mut times;
    let (ours, plain) = (median(a), median(b));
    println!(
        "{name:36} store {ours:9.1} µs  plain {plain:9.1} µs  ratio {:.2}",
        ours / plain
    );
}

fn main() {
    let mut rounds = 300usize;
    let mut durability = Durability::Full;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| fail(format!("{flag} needs a value")));
        match flag.as_str() {
            "--rounds" => {
                rounds = value
                    .parse()
                    .unwrap_or_else(|e| fail(format!("--rounds: {e}")))
            }
            "--durability" => {
                durability = match value.as_str() {
                    "full" => Durability::Full,
                    "normal" => Durability::Normal,
                    _ => fail(format!("--durability: full or normal, not {value}")),
                }
            }
            _ => fail(format!("unknown flag {flag}")),
        }
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| fail(format!("temp dir: {e}")));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(format!("runtime: {e}")));
    println!("{rounds} rounds, durability {durability:?}, medians of each");
    rt.block_on(run(dir.path(), rounds, durability));
}

/// Checks a call's answer: `want` rows.
fn rows<T, E: std::fmt::Display>(answer: Result<Vec<T>, E>, want: usize) -> Vec<T> {
    match answer {
        Ok(rows) if rows.len() == want => rows,
        Ok(rows) => fail(format!("expected {want} rows, got {}", rows.len())),
        Err(e) => fail(format!("the call failed: {e}")),
    }
}

/// The lists of 1024, and the claims and renewals of 32 and 1024, through one trait: `$stores`
/// holds ours and the baseline behind it, `$to` turns our requests into the trait's.
macro_rules! trait_pairs {
    ($label:literal, $stores:expr, $to:expr, $rounds:expr) => {{
        let (stores, rounds) = ($stores, $rounds);
        pair(
            concat!($label, ": list 1024 ownerships"),
            rounds,
            Box::new(|i| {
                Box::pin(async move {
                    rows(stores[i].list_ownerships(NS, HUB, GROUP).await, 1024);
                })
            }),
        )
        .await;
        pair(
            concat!($label, ": list 1024 checkpoints"),
            rounds,
            Box::new(|i| {
                Box::pin(async move {
                    rows(stores[i].list_checkpoints(NS, HUB, GROUP).await, 1024);
                })
            }),
        )
        .await;
        for n in [32, 1024] {
            let fresh = std::cell::Cell::new(0usize);
            let fresh = &fresh;
            pair(
                &format!("{}: claim {n} new", $label),
                rounds,
                Box::new(move |i| {
                    fresh.set(fresh.get() + 1);
                    let batch = $to(ownerships(n, &format!("{}-{n}-{}", $label, fresh.get())));
                    Box::pin(async move {
                        rows(stores[i].claim_ownership(&batch).await, n);
                    })
                }),
            )
            .await;
            let group = format!("{}-renew-{n}", $label);
            let mut held = [Vec::new(), Vec::new()];
            for (i, held) in held.iter_mut().enumerate() {
                *held = rows(
                    stores[i].claim_ownership(&$to(ownerships(n, &group))).await,
                    n,
                );
            }
            let held = std::cell::RefCell::new(held);
            let held = &held;
            pair(
                &format!("{}: renew {n}", $label),
                rounds,
                Box::new(move |i| {
                    let batch = held.borrow()[i].clone();
                    Box::pin(async move {
                        let renewed = rows(stores[i].claim_ownership(&batch).await, n);
                        held.borrow_mut()[i] = renewed;
                    })
                }),
            )
            .await;
        }
    }};
}

async fn run(dir: &Path, rounds: usize, durability: Durability) {
    let ours = SqliteCheckpointStore::open_with(
        dir.join("store.db"),
        StoreOptions::new().with_durability(durability),
    )
    .unwrap_or_else(|e| fail(format!("open: {e}")));
    let plain = PlainStore::open(&dir.join("plain.db"), durability, true)
        .unwrap_or_else(|e| fail(format!("open plain: {e}")));
    let own: [&Own; 2] = [&ours, &plain];
    let off: [&Official; 2] = [&ours, &plain];
    for s in own {
        s.claim_ownership(&ownerships(1024, GROUP))
            .await
            .unwrap_or_else(|e| fail(format!("seed: {e}")));
        for p in 0..1024 {
            let c = Checkpoint {
                fully_qualified_namespace: NS.into(),
                event_hub_name: HUB.into(),
                consumer_group: GROUP.into(),
                partition_id: p.to_string(),
                offset: Some((p * 128).to_string()),
                sequence_number: Some(p as i64),
            };
            s.update_checkpoint(c)
                .await
                .unwrap_or_else(|e| fail(format!("seed: {e}")));
        }
    }
    let seq = std::cell::Cell::new(1_000_000i64);
    let seq = &seq;
    pair(
        "own trait: update a checkpoint",
        rounds * 4,
        Box::new(move |i| {
            seq.set(seq.get() + 1);
            let c = Checkpoint {
                fully_qualified_namespace: NS.into(),
                event_hub_name: HUB.into(),
                consumer_group: GROUP.into(),
                partition_id: "0".into(),
                offset: Some((seq.get() * 128).to_string()),
                sequence_number: Some(seq.get()),
            };
            Box::pin(async move {
                own[i]
                    .update_checkpoint(c)
                    .await
                    .unwrap_or_else(|e| fail(format!("update: {e}")))
            })
        }),
    )
    .await;
    trait_pairs!("own trait", own, |o: Vec<Ownership>| o, rounds);
    trait_pairs!(
        "official trait",
        off,
        |o: Vec<Ownership>| official(&o),
        rounds
    );
}

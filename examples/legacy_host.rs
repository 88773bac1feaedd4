//! A minimal EventProcessorHost-style host on the embedded file, through the legacy API.
//!
//! Two hosts share four partitions of one consumer group, each with its own store handle on
//! the file, as two processes would. Every renew interval a host renews its leases, acquires
//! expired ones, steals one from the busiest host when that host holds two more than it, and
//! "processes" a few events per partition, checkpointing every few events. Host A starts alone
//! and takes everything, host B steals its share, host A then crashes (stops renewing), and
//! host B takes A's partitions once their leases expire. It runs for about six seconds.
//!
//! ```text
//! cargo run --example legacy_host [-- PATH]
//! ```
//! PATH defaults to `legacy-host.db` in the current directory. Run it again to see the hosts
//! resume from the stored checkpoints.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eventhubs_checkpointstore_sqlite::legacy::{
    Checkpoint, CheckpointManager, HostContext, Lease, LeaseManager, LeaseOptions,
    SqliteCheckpointLeaseManager,
};
use eventhubs_checkpointstore_sqlite::{Result, SqliteCheckpointStore};

const NS: &str = "example.servicebus.windows.net";
const HUB: &str = "telemetry";
const GROUP: &str = "$Default";
const PARTITIONS: [&str; 4] = ["0", "1", "2", "3"];
/// Events "received" per partition per renew interval.
const EVENTS_PER_TICK: i64 = 3;
/// Checkpoint after every this many events, as EPH code usually does.
const CHECKPOINT_EVERY: i64 = 5;

/// Short timings, so the example ends quickly (EventProcessorHost's are 30 s and 10 s).
fn lease_options() -> LeaseOptions {
    LeaseOptions::new()
        .with_lease_duration(Duration::from_millis(2000))
        .with_lease_renew_interval(Duration::from_millis(500))
}

/// A partition this host processes: its lease and where it is in the stream.
struct Pump {
    lease: Lease,
    next_sequence_number: i64,
    unchecked: i64,
}

struct Host {
    name: &'static str,
    manager: SqliteCheckpointLeaseManager,
    pumps: BTreeMap<String, Pump>,
    started: Instant,
}

impl Host {
    fn new(path: &str, name: &'static str, started: Instant) -> Result<Self> {
        let store = SqliteCheckpointStore::open(path)?;
        let context = HostContext::new(NS, HUB, GROUP, name);
        let manager = SqliteCheckpointLeaseManager::with_options(&store, context, lease_options())?;
        Ok(Host {
            name,
            manager,
            pumps: BTreeMap::new(),
            started,
        })
    }

    fn say(&self, what: impl std::fmt::Display) {
        let at = self.started.elapsed().as_secs_f64();
        println!("[{at:4.1}s] {}: {what}", self.name);
    }

    /// What EventProcessorHost does at start-up.
    async fn start(&self) -> Result<()> {
        self.manager.create_lease_store_if_not_exists().await?;
        self.manager.create_checkpoint_store_if_not_exists().await?;
        for p in PARTITIONS {
            self.manager.create_lease_if_not_exists(p).await?;
        }
        self.say("started");
        Ok(())
    }

    /// One renew interval: process events (the pumps run all the time), then the partition
    /// manager's pass: renew, acquire expired leases, steal.
    async fn tick(&mut self) -> Result<()> {
        self.process_events().await?;
        self.renew_all().await?;
        self.balance().await
    }

    async fn renew_all(&mut self) -> Result<()> {
        let mut lost = Vec::new();
        for (p, pump) in &mut self.pumps {
            match self.manager.renew_lease(&mut pump.lease).await {
                Ok(()) => {}
                Err(e) if e.is_ownership_lost() => lost.push((p.clone(), e)),
                Err(e) => return Err(e),
            }
        }
        for (p, e) in lost {
            self.pumps.remove(&p);
            self.say(format!("lost partition {p} at renewal: {e}"));
        }
        Ok(())
    }

    async fn balance(&mut self) -> Result<()> {
        let leases = self.manager.get_all_leases().await?;
        // Acquire every expired or released lease.
        for lease in &leases {
            if self.manager.is_expired(lease) && !self.pumps.contains_key(&lease.partition_id) {
                let was = lease.owner.clone();
                self.take(
                    lease.clone(),
                    was.map_or("released".into(), |o| format!("expired, last held by {o}")),
                )
                .await?;
            }
        }
        // Steal one lease from the busiest other host if it holds two more than this one.
        let mut held_by: BTreeMap<&str, Vec<&Lease>> = BTreeMap::new();
        for lease in &leases {
            if let Some(owner) = lease.owner.as_deref() {
                if owner != self.name && !self.manager.is_expired(lease) {
                    held_by.entry(owner).or_default().push(lease);
                }
            }
        }
        let busiest = held_by.into_iter().max_by_key(|(_, l)| l.len());
        if let Some((owner, theirs)) = busiest {
            if theirs.len() >= self.pumps.len() + 2 {
                if let Some(victim) = theirs.last() {
                    self.take((*victim).clone(), format!("stolen from {owner}"))
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Acquires `lease` and starts its pump at the stored checkpoint.
    async fn take(&mut self, mut lease: Lease, why: String) -> Result<()> {
        let p = lease.partition_id.clone();
        match self.manager.acquire_lease(&mut lease).await {
            Ok(()) => {}
            // Another host got there first: fine, try again next time.
            Err(e) if e.is_ownership_lost() => return Ok(()),
            Err(e) => return Err(e),
        }
        let checkpoint = self.manager.create_checkpoint_if_not_exists(&p).await?;
        let next = if checkpoint.is_start_of_stream() {
            0
        } else {
            checkpoint.sequence_number + 1
        };
        self.say(format!(
            "acquired partition {p} ({why}), epoch {}, resuming at sequence number {next}",
            lease.epoch
        ));
        self.pumps.insert(
            p,
            Pump {
                lease,
                next_sequence_number: next,
                unchecked: 0,
            },
        );
        Ok(())
    }

    async fn process_events(&mut self) -> Result<()> {
        let mut lost = Vec::new();
        for (p, pump) in &mut self.pumps {
            for _ in 0..EVENTS_PER_TICK {
                let seq = pump.next_sequence_number;
                pump.next_sequence_number += 1;
                pump.unchecked += 1;
                if pump.unchecked < CHECKPOINT_EVERY {
                    continue;
                }
                // The event at `seq` (offset seq * 64 here) is done: record it, fenced by the lease.
                let checkpoint = Checkpoint::at(p.as_str(), (seq * 64).to_string(), seq);
                match self
                    .manager
                    .update_checkpoint(&pump.lease, &checkpoint)
                    .await
                {
                    Ok(()) => {
                        pump.unchecked = 0;
                        let at = self.started.elapsed().as_secs_f64();
                        println!(
                            "[{at:4.1}s] {}: checkpointed partition {p} at sequence number {seq}",
                            self.name
                        );
                    }
                    Err(e) if e.is_ownership_lost() => {
                        lost.push((p.clone(), e));
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        for (p, e) in lost {
            self.pumps.remove(&p);
            self.say(format!(
                "lost partition {p} at checkpoint, nothing written: {e}"
            ));
        }
        Ok(())
    }

    /// A clean shutdown: give every lease up so others need not wait for expiry.
    async fn release_all(&mut self) -> Result<()> {
        for (p, mut pump) in std::mem::take(&mut self.pumps) {
            match self.manager.release_lease(&mut pump.lease).await {
                Ok(()) => self.say(format!("released partition {p}")),
                Err(e) if e.is_ownership_lost() => self.say(format!("partition {p} was gone")),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// Runs `host` from `start` to `stop` (seconds since `started`), then releases or crashes.
async fn run(mut host: Host, start: f64, stop: f64, clean_exit: bool) -> Result<()> {
    let interval = host.manager.lease_renew_interval();
    tokio::time::sleep(Duration::from_secs_f64(start)).await;
    host.start().await?;
    while host.started.elapsed() < Duration::from_secs_f64(stop) {
        host.tick().await?;
        tokio::time::sleep(interval).await;
    }
    if clean_exit {
        host.release_all().await
    } else {
        host.say(format!(
            "crashes holding {} partition(s) without releasing them",
            host.pumps.len()
        ));
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "legacy-host.db".into());
    println!("store: {path}");
    let started = Instant::now();
    let a = Host::new(&path, "host-a", started)?;
    let b = Host::new(&path, "host-b", started)?;
    // Host A runs from 0 s to 3 s and crashes; host B from 1 s to 6 s and exits cleanly.
    let (ra, rb) = tokio::join!(run(a, 0.0, 3.0, false), run(b, 1.0, 6.0, true));
    ra?;
    rb?;

    let store = SqliteCheckpointStore::open(&path)?;
    let report =
        SqliteCheckpointLeaseManager::new(&store, HostContext::new(NS, HUB, GROUP, "report"))?;
    println!(
        "\n{:<10} {:<8} {:<6} checkpoint (offset / sequence number)",
        "partition", "owner", "epoch"
    );
    for lease in report.get_all_leases().await? {
        let checkpoint = match report.get_checkpoint(&lease.partition_id).await? {
            Some(c) => format!("{} / {}", c.offset, c.sequence_number),
            None => "-".into(),
        };
        println!(
            "{:<10} {:<8} {:<6} {checkpoint}",
            lease.partition_id,
            lease.owner.as_deref().unwrap_or("-"),
            lease.epoch,
        );
    }
    Ok(())
}

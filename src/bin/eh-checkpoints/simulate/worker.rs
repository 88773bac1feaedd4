//! One simulated processor: the hidden `__worker` subcommand that `simulate` starts N times.
//!
//! It runs the official load-balancing loop against the store, "processes" a synthetic event
//! stream on each partition it owns (event i of a partition has sequence number i), writes a
//! fenced checkpoint every K events, and reports everything it does on stdout (see
//! `protocol.rs`). It stops when stdin says `stop` or closes (the parent is gone), releasing
//! its partitions first.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventhubs_checkpointstore_sqlite::{Checkpoint, Error, Ownership, SqliteCheckpointStore};
use time::OffsetDateTime;

use super::balance::{Balancer, Rng};
use super::protocol::Report;
use super::{ProcessorArgs, SIM_GROUP, SIM_HUB, SIM_NAMESPACE};
use crate::{Global, Outcome};

/// How often owned partitions make progress and reports are flushed.
const TICK: Duration = Duration::from_millis(20);

/// The hidden `__worker` subcommand's arguments: its owner id, and what `simulate` passes on
/// to every worker.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct WorkerArgs {
    /// The owner id this processor claims with.
    #[arg(long)]
    id: String,
    #[command(flatten)]
    processor: ProcessorArgs,
}

/// A partition this worker owns.
struct Owned {
    /// The ownership as the last winning claim returned it: the fence for checkpoints.
    ownership: Ownership,
    /// The next event to process.
    next: i64,
    /// The last acknowledged checkpoint (-1: none).
    checkpointed: i64,
    /// Fractional events carried to the next tick.
    carry: f64,
}

struct Worker {
    args: WorkerArgs,
    store: SqliteCheckpointStore,
    owned: BTreeMap<String, Owned>,
    out: Vec<Report>,
    balancer: Balancer,
}

/// Runs a worker until told to stop. An error is reported to the parent as an `X` line.
pub(crate) fn main(g: &Global, args: WorkerArgs) -> Outcome {
    match run(g, args) {
        Ok(()) => Outcome::Ok,
        Err(e) => {
            // If even this line cannot be written, the parent is gone and sees the exit code.
            let _ = writeln!(std::io::stdout(), "{}", Report::Error(e));
            Outcome::Reported
        }
    }
}

fn run(g: &Global, args: WorkerArgs) -> Result<(), String> {
    let options = g
        .options()
        .with_durability(args.processor.durability.into())
        .with_wal_preallocation(true)
        .with_pool_size(2);
    let store = SqliteCheckpointStore::open_with(&g.db, options).map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // Any line (`stop`) or the end of stdin (the parent is gone) stops the worker.
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            stop.store(true, Ordering::SeqCst);
        });
    }
    let seed =
        u64::from(std::process::id()) ^ (OffsetDateTime::now_utc().unix_timestamp_nanos() as u64);
    let mut worker = Worker {
        balancer: Balancer {
            partitions: (0..args.processor.partitions)
                .map(|p| p.to_string())
                .collect(),
            me: args.id.clone(),
            expiry: Duration::from_millis(args.processor.expiry_ms),
            strategy: args.processor.strategy,
            template: Ownership {
                fully_qualified_namespace: SIM_NAMESPACE.to_owned(),
                event_hub_name: SIM_HUB.to_owned(),
                consumer_group: SIM_GROUP.to_owned(),
                ..Ownership::default()
            },
            rng: Rng::new(seed),
        },
        args,
        store,
        owned: BTreeMap::new(),
        out: vec![Report::Ready],
    };
    worker.flush()?;
    let interval = Duration::from_millis(worker.args.processor.interval_ms);
    let mut next_cycle = Instant::now();
    let mut last_tick = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= next_cycle {
            worker.balance()?;
            // A little jitter, as the official processors have, so that cycles drift apart.
            let jitter = worker
                .balancer
                .rng
                .below(interval.as_millis() as usize / 5 + 1) as u64;
            next_cycle = now + interval + Duration::from_millis(jitter);
        }
        worker.process(now.duration_since(last_tick))?;
        last_tick = now;
        worker.flush()?;
        std::thread::sleep(TICK);
    }
    worker.release()?;
    worker.out.push(Report::Done);
    worker.flush()
}

/// Busy is "try again next time" (nothing was written); anything else ends the worker.
fn retryable(e: &Error) -> bool {
    e.is_busy()
}

/// Writes the reports in `out` to the parent, and empties it.
fn flush(out: &mut Vec<Report>) -> Result<(), String> {
    let mut text = String::new();
    for r in out.drain(..) {
        text.push_str(&r.to_string());
        text.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot report to the parent: {e}"))
}

impl Worker {
    fn flush(&mut self) -> Result<(), String> {
        flush(&mut self.out)
    }

    fn report_wins(&mut self, claims: &[Ownership], won: &[Ownership]) {
        for w in won {
            let old = claims
                .iter()
                .find(|c| c.partition_id == w.partition_id)
                .and_then(|c| c.etag.clone());
            self.out.push(Report::Claim {
                partition: w.partition_id.clone(),
                old_etag: old,
                new_etag: w.etag.clone().unwrap_or_default(),
                owner: w.owner_id.clone(),
                nanos: w
                    .last_modified_time
                    .map_or(0, |t| t.unix_timestamp_nanos() as i64),
            });
        }
    }

    /// One load-balancing cycle: list, renew own, claim or steal, and start or stop
    /// processing accordingly.
    fn balance(&mut self) -> Result<(), String> {
        let listing = match self
            .store
            .blocking_list_ownerships(SIM_NAMESPACE, SIM_HUB, SIM_GROUP)
        {
            Ok(l) => l,
            Err(e) if retryable(&e) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let claims = self.balancer.plan(&listing, OffsetDateTime::now_utc());
        let won = match self.store.blocking_claim_ownership(&claims) {
            Ok(w) => w,
            Err(e) if retryable(&e) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        self.report_wins(&claims, &won);
        // Partitions held before but not renewed now were taken by another processor.
        let lost: Vec<String> = self
            .owned
            .keys()
            .filter(|p| !won.iter().any(|w| &w.partition_id == *p))
            .cloned()
            .collect();
        for p in lost {
            self.owned.remove(&p);
            self.out.push(Report::Lost { partition: p });
        }
        let mut gained = Vec::new();
        for w in won {
            match self.owned.get_mut(&w.partition_id) {
                Some(o) => o.ownership = w,
                None => gained.push(w),
            }
        }
        if gained.is_empty() {
            return Ok(());
        }
        // Resume from the checkpoint, read after the claim was won: a fenced write of the
        // previous owner either committed before it (and is seen here) or is refused.
        let checkpoints = loop {
            match self
                .store
                .blocking_list_checkpoints(SIM_NAMESPACE, SIM_HUB, SIM_GROUP)
            {
                Ok(c) => break c,
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(e.to_string()),
            }
        };
        for w in gained {
            let checkpointed = checkpoints
                .iter()
                .find(|c| c.partition_id == w.partition_id)
                .and_then(|c| c.sequence_number)
                .unwrap_or(-1);
            self.owned.insert(
                w.partition_id.clone(),
                Owned {
                    ownership: w,
                    next: checkpointed + 1,
                    checkpointed,
                    carry: 0.0,
                },
            );
        }
        Ok(())
    }

    /// Processes the events due since the last tick on every owned partition, and writes a
    /// fenced checkpoint where a multiple of K (or the last event) was passed.
    fn process(&mut self, elapsed: Duration) -> Result<(), String> {
        let (rate, end, every) = (
            self.args.processor.rate,
            self.args.processor.events,
            self.args.processor.checkpoint_every.max(1),
        );
        let mut refused = Vec::new();
        for (p, o) in self.owned.iter_mut() {
            let mut n = 0;
            if o.next < end {
                let budget = o.carry + rate * elapsed.as_secs_f64();
                n = (budget.floor() as i64).min(end - o.next);
                o.carry = budget - budget.floor();
            }
            // Events are processed up to the end of each block of K and checkpointed there,
            // so that a long tick (a loaded machine) skips no checkpoint, as a real processor
            // that checkpoints every K events would not.
            loop {
                let last = o.next - 1;
                let due = last > o.checkpointed
                    && ((last + 1) / every > (o.checkpointed + 1) / every || last == end - 1);
                if due {
                    let checkpoint = Checkpoint {
                        partition_id: p.clone(),
                        offset: Some((last * 128).to_string()),
                        sequence_number: Some(last),
                        fully_qualified_namespace: o.ownership.fully_qualified_namespace.clone(),
                        event_hub_name: o.ownership.event_hub_name.clone(),
                        consumer_group: o.ownership.consumer_group.clone(),
                    };
                    let etag = o.ownership.etag.clone().unwrap_or_default();
                    // The parent hears of the events before the checkpoint that covers them
                    // is written: a process killed right after that write has reported them
                    // (the one who takes over starts after them).
                    flush(&mut self.out)?;
                    match self
                        .store
                        .blocking_update_checkpoint_fenced(&checkpoint, &o.ownership)
                    {
                        Ok(()) => {
                            o.checkpointed = last;
                            self.out.push(Report::Acked {
                                partition: p.clone(),
                                seq: last,
                                etag,
                            });
                        }
                        Err(Error::OwnershipLost { .. }) => {
                            self.out.push(Report::Refused {
                                partition: p.clone(),
                                seq: last,
                                etag,
                            });
                            refused.push(p.clone());
                            break;
                        }
                        // Retried on the next tick (the checkpoint is still due); no further
                        // events until then.
                        Err(e) if retryable(&e) => break,
                        Err(e) => return Err(e.to_string()),
                    }
                }
                if n == 0 {
                    break;
                }
                let block_end = (o.next / every + 1) * every - 1;
                let to = (o.next + n - 1).min(block_end);
                self.out.push(Report::Processed {
                    partition: p.clone(),
                    from: o.next,
                    to,
                });
                n -= to - o.next + 1;
                o.next = to + 1;
            }
        }
        for p in refused {
            self.owned.remove(&p);
            self.out.push(Report::Lost { partition: p });
        }
        Ok(())
    }

    /// Releases every owned partition, as processors do on a clean shutdown.
    fn release(&mut self) -> Result<(), String> {
        let claims: Vec<Ownership> = self
            .owned
            .values()
            .map(|o| Ownership {
                owner_id: None,
                last_modified_time: None,
                ..o.ownership.clone()
            })
            .collect();
        if claims.is_empty() {
            return Ok(());
        }
        let won = self
            .store
            .blocking_claim_ownership(&claims)
            .map_err(|e| e.to_string())?;
        self.report_wins(&claims, &won);
        self.owned.clear();
        Ok(())
    }
}

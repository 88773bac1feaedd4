//! What the parent of a simulation learns from its workers' reports: every claim won, every
//! checkpoint acknowledged, the events processed per partition (as [`Ranges`]), the current
//! owners, and the kill. [`State::apply`] folds one report line in.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use super::balance::fair_share;
use super::protocol::Report;

#[derive(Debug, Clone)]
pub(super) struct Win {
    pub(super) worker: usize,
    pub(super) partition: String,
    pub(super) old: Option<String>,
    pub(super) new: String,
    pub(super) owner: Option<String>,
    pub(super) nanos: i64,
}

/// A fenced checkpoint write acknowledged to a worker.
#[derive(Debug, Clone)]
pub(super) struct Ack {
    pub(super) worker: usize,
    pub(super) partition: String,
    pub(super) seq: i64,
    pub(super) etag: String,
    /// Arrival order; within one worker it is the order of its writes.
    pub(super) order: usize,
}

/// Everything the parent learned from the reports.
pub(super) struct State {
    pub(super) names: Vec<String>,
    pub(super) partitions: Vec<String>,
    pub(super) events: i64,
    pub(super) wins: Vec<Win>,
    pub(super) acks: Vec<Ack>,
    pub(super) refused: usize,
    pub(super) lost: usize,
    /// Per partition, the events processed at least once.
    pub(super) processed: HashMap<String, Ranges>,
    /// Events processed, counting repeats.
    pub(super) processed_total: u64,
    pub(super) replayed_after_kill: u64,
    pub(super) replayed_other: u64,
    /// Current owner per partition from the latest claim: (store time, owner).
    pub(super) owner_of: HashMap<String, (i64, Option<String>)>,
    /// Highest acknowledged checkpoint per partition.
    pub(super) acked_max: HashMap<String, i64>,
    pub(super) done: Vec<bool>,
    pub(super) eof: Vec<bool>,
    pub(super) errors: Vec<String>,
    /// The killed worker, when, and the partitions it held then.
    pub(super) killed: Option<(usize, Instant, BTreeSet<String>)>,
}

impl State {
    /// Nothing learned yet, for workers `names` on `partitions` of `events` events each.
    pub(super) fn new(names: Vec<String>, partitions: Vec<String>, events: i64) -> State {
        let n = names.len();
        State {
            names,
            partitions,
            events,
            wins: Vec::new(),
            acks: Vec::new(),
            refused: 0,
            lost: 0,
            processed: HashMap::new(),
            processed_total: 0,
            replayed_after_kill: 0,
            replayed_other: 0,
            owner_of: HashMap::new(),
            acked_max: HashMap::new(),
            done: vec![false; n],
            eof: vec![false; n],
            errors: Vec::new(),
            killed: None,
        }
    }

    /// Folds in one report line of `worker`, received at `now`. A malformed line (the torn
    /// last line of a killed worker) is ignored.
    pub(super) fn apply(&mut self, worker: usize, line: &str, now: Instant) {
        let Some(report) = Report::parse(line) else {
            return;
        };
        match report {
            Report::Ready => {}
            Report::Done => self.done[worker] = true,
            Report::Error(e) => self.errors.push(format!("{}: {e}", self.names[worker])),
            Report::Claim {
                partition,
                old_etag,
                new_etag,
                owner,
                nanos,
            } => {
                let cur = self.owner_of.entry(partition.clone()).or_insert((0, None));
                if nanos >= cur.0 {
                    *cur = (nanos, owner.clone());
                }
                self.wins.push(Win {
                    worker,
                    partition,
                    old: old_etag,
                    new: new_etag,
                    owner,
                    nanos,
                });
            }
            Report::Lost { .. } => self.lost += 1,
            Report::Refused { .. } => self.refused += 1,
            Report::Acked {
                partition,
                seq,
                etag,
            } => {
                let max = self.acked_max.entry(partition.clone()).or_insert(-1);
                *max = (*max).max(seq);
                let order = self.acks.len();
                self.acks.push(Ack {
                    worker,
                    partition,
                    seq,
                    etag,
                    order,
                });
            }
            Report::Processed {
                partition,
                from,
                to,
            } => {
                let after_kill = self
                    .killed
                    .as_ref()
                    .is_some_and(|(_, at, set)| now >= *at && set.contains(&partition));
                if from > to {
                    return;
                }
                self.processed_total += (to - from + 1) as u64;
                let replayed = self
                    .processed
                    .entry(partition)
                    .or_default()
                    .insert(from, to);
                if after_kill {
                    self.replayed_after_kill += replayed;
                } else {
                    self.replayed_other += replayed;
                }
            }
        }
    }

    /// Partitions per worker name, from the latest claims.
    pub(super) fn holdings(&self) -> HashMap<&str, usize> {
        let mut h = HashMap::new();
        for (_, owner) in self.owner_of.values() {
            if let Some(o) = owner {
                *h.entry(o.as_str()).or_insert(0) += 1;
            }
        }
        h
    }

    pub(super) fn live(&self, worker: usize) -> bool {
        self.killed.as_ref().is_none_or(|(k, _, _)| *k != worker)
    }

    /// Every partition owned by a live worker, each holding its fair share.
    pub(super) fn balanced(&self) -> bool {
        let live: Vec<&str> = (0..self.names.len())
            .filter(|w| self.live(*w))
            .map(|w| self.names[w].as_str())
            .collect();
        let (min, max) = fair_share(self.partitions.len(), live.len());
        let h = self.holdings();
        let owned_by_live: usize = live.iter().map(|n| h.get(n).copied().unwrap_or(0)).sum();
        owned_by_live == self.partitions.len()
            && live.iter().all(|n| {
                let c = h.get(n).copied().unwrap_or(0);
                c >= min && c <= max
            })
    }

    /// After the kill: no partition is still held by the killed worker.
    pub(super) fn taken_over(&self) -> bool {
        match &self.killed {
            Some((k, _, set)) => set.iter().all(|p| {
                self.owner_of
                    .get(p)
                    .is_some_and(|(_, o)| o.as_deref().is_some_and(|o| o != self.names[*k]))
            }),
            None => false,
        }
    }
}

/// A set of events as sorted, disjoint, non-adjacent inclusive ranges: what one partition's
/// processing covered, in memory proportional to the number of ownership changes rather than
/// to the number of events.
#[derive(Debug, Clone, Default)]
pub(super) struct Ranges(Vec<(i64, i64)>);

impl Ranges {
    /// Adds `from..=to` and returns how many of its events were already in the set.
    pub(super) fn insert(&mut self, from: i64, to: i64) -> u64 {
        let mut overlap = 0;
        let (mut lo, mut hi) = (from, to);
        let mut kept = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < from - 1 || a > to + 1 {
                kept.push((a, b));
            } else {
                overlap += (b.min(to) - a.max(from) + 1).max(0) as u64;
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        kept.push((lo, hi));
        kept.sort_unstable();
        self.0 = kept;
        overlap
    }

    /// How many events of `from..=to` are not in the set.
    pub(super) fn missing(&self, from: i64, to: i64) -> u64 {
        let wanted = (to - from + 1).max(0) as u64;
        let covered: u64 = self
            .0
            .iter()
            .map(|&(a, b)| (b.min(to) - a.max(from) + 1).max(0) as u64)
            .sum();
        wanted - covered.min(wanted)
    }

    #[cfg(test)]
    pub(super) fn of(ranges: &[(i64, i64)]) -> Ranges {
        let mut r = Ranges::default();
        for &(a, b) in ranges {
            r.insert(a, b);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_count_repeats_and_gaps() {
        let mut r = Ranges::default();
        assert_eq!(r.insert(0, 9), 0);
        assert_eq!(r.insert(20, 29), 0);
        assert_eq!(r.missing(0, 29), 10);
        assert_eq!(r.insert(5, 24), 10, "5..=9 and 20..=24 were seen");
        assert_eq!(r.insert(30, 30), 0, "adjacent ranges merge");
        assert_eq!(r.0, [(0, 30)]);
        assert_eq!(r.missing(0, 30), 0);
        assert_eq!(r.missing(0, 31), 1);
    }
}

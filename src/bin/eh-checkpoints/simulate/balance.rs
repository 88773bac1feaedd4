//! One load-balancing decision, as the official processors make it every interval (the Go and
//! Rust `processor_load_balancer`): renew every partition this processor owns, and claim one
//! more (or, greedy, as many as needed) towards its fair share: first unowned or expired
//! partitions, then by stealing from processors above their share.
//!
//! Pure: it reads a listing and returns the claims to send; `worker.rs` does the I/O.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use eventhubs_checkpointstore_sqlite::Ownership;
use time::OffsetDateTime;

/// How many partitions a cycle may add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Strategy {
    /// One partition per cycle, the official processors' default.
    Balanced,
    /// As many as needed to reach the fair share in one cycle.
    Greedy,
}

/// A small xorshift generator: the choice among candidates only needs to differ between
/// processors so that they do not all race for the same partition.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// A number in `0..n` (`n` > 0).
    pub(super) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Whether a listed ownership is held by a live owner at `now`.
pub(super) fn is_active(o: &Ownership, now: OffsetDateTime, expiry: Duration) -> bool {
    match (&o.owner_id, o.last_modified_time) {
        (Some(_), Some(t)) => now - t < expiry,
        _ => false,
    }
}

/// The fair share of `partitions` among `owners`: (at least, at most).
pub(super) fn fair_share(partitions: usize, owners: usize) -> (usize, usize) {
    let owners = owners.max(1);
    let min = partitions / owners;
    (min, min + usize::from(!partitions.is_multiple_of(owners)))
}

/// What a processor needs to decide its claims: who it is and what it balances.
pub(super) struct Balancer {
    /// Every partition of the hub.
    pub(super) partitions: Vec<String>,
    /// This processor's owner id.
    pub(super) me: String,
    /// How long an ownership lasts without renewal.
    pub(super) expiry: Duration,
    /// How many to claim per cycle.
    pub(super) strategy: Strategy,
    /// Supplies the namespace, hub and group of new claims.
    pub(super) template: Ownership,
    /// Picks among candidates.
    pub(super) rng: Rng,
}

impl Balancer {
    /// The claims for one cycle: renewals of this processor's partitions (with the listed
    /// etags) followed by new claims.
    pub(super) fn plan(&mut self, listing: &[Ownership], now: OffsetDateTime) -> Vec<Ownership> {
        plan(
            listing,
            &self.partitions,
            &self.me,
            now,
            self.expiry,
            self.strategy,
            &mut self.rng,
            &self.template,
        )
    }
}

// Eight parameters: the balancer's fields spelled out keep the decision a plain function.
#[allow(clippy::too_many_arguments)]
fn plan(
    listing: &[Ownership],
    partitions: &[String],
    me: &str,
    now: OffsetDateTime,
    expiry: Duration,
    strategy: Strategy,
    rng: &mut Rng,
    template: &Ownership,
) -> Vec<Ownership> {
    let by_partition: HashMap<&str, &Ownership> = listing
        .iter()
        .map(|o| (o.partition_id.as_str(), o))
        .collect();
    // Active owners and what they hold; `me` counts even with nothing (and with expired
    // records of its own, which it renews).
    let mut held: BTreeMap<&str, Vec<&Ownership>> = BTreeMap::new();
    held.insert(me, Vec::new());
    let mut claimable: Vec<(&str, Option<&Ownership>)> = Vec::new();
    for p in partitions {
        match by_partition.get(p.as_str()) {
            None => claimable.push((p, None)),
            Some(o) if o.owner_id.as_deref() == Some(me) => held.entry(me).or_default().push(o),
            Some(o) if is_active(o, now, expiry) => {
                if let Some(owner) = o.owner_id.as_deref() {
                    held.entry(owner).or_default().push(o);
                }
            }
            Some(o) => claimable.push((p, Some(o))),
        }
    }
    let mine: Vec<&Ownership> = held.get(me).cloned().unwrap_or_default();
    let mut claims: Vec<Ownership> = mine
        .iter()
        .map(|o| Ownership {
            owner_id: Some(me.to_owned()),
            last_modified_time: None,
            ..(*o).clone()
        })
        .collect();

    let (min, max) = fair_share(partitions.len(), held.len());
    let held_now = mine.len();
    let wanted = if held_now >= max {
        0
    } else if held_now < min {
        match strategy {
            Strategy::Balanced => 1,
            Strategy::Greedy => min - held_now,
        }
    } else {
        // At the minimum: take one of the remainder only while fewer owners than there are
        // remainder partitions hold the maximum.
        let at_max = held.values().filter(|v| v.len() >= max).count();
        usize::from(at_max < partitions.len() % held.len().max(1))
    };
    let new_claim = |o: Option<&Ownership>, p: &str| Ownership {
        partition_id: p.to_owned(),
        owner_id: Some(me.to_owned()),
        etag: o.and_then(|o| o.etag.clone()),
        last_modified_time: None,
        ..template.clone()
    };
    for count in held_now..held_now + wanted {
        if !claimable.is_empty() {
            let (p, listed) = claimable.swap_remove(rng.below(claimable.len()));
            claims.push(new_claim(listed, p));
        } else {
            // Steal from an owner above the maximum; below the minimum, also take the extra
            // partition of one at the maximum (only when shares differ: an owner at an even
            // share is never robbed, or two processors would rob each other back and forth).
            let victims: Vec<&str> = held
                .iter()
                .filter(|(owner, v)| {
                    **owner != me && (v.len() > max || (count < min && v.len() == max && max > min))
                })
                .map(|(owner, _)| *owner)
                .collect();
            if victims.is_empty() {
                break;
            }
            let victim = victims[rng.below(victims.len())];
            let Some(theirs) = held.get_mut(victim) else {
                break;
            };
            let o = theirs.swap_remove(rng.below(theirs.len()));
            claims.push(new_claim(Some(o), &o.partition_id));
        }
    }
    claims
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    fn owned(p: usize, owner: &str, now: OffsetDateTime) -> Ownership {
        Ownership {
            partition_id: p.to_string(),
            owner_id: Some(owner.into()),
            etag: Some(format!("e{p}")),
            last_modified_time: Some(now),
            ..Ownership::default()
        }
    }

    const EXPIRY: Duration = Duration::from_secs(2);

    #[test]
    fn an_empty_hub_is_claimed_one_at_a_time_or_all_at_once() {
        let now = OffsetDateTime::now_utc();
        let mut rng = Rng::new(7);
        let t = Ownership::default();
        let one = plan(
            &[],
            &ids(8),
            "a",
            now,
            EXPIRY,
            Strategy::Balanced,
            &mut rng,
            &t,
        );
        assert_eq!(one.len(), 1);
        assert_eq!(
            one[0].etag, None,
            "a partition without a row is claimed create-only"
        );
        let all = plan(
            &[],
            &ids(8),
            "a",
            now,
            EXPIRY,
            Strategy::Greedy,
            &mut rng,
            &t,
        );
        let mut got: Vec<_> = all.iter().map(|o| o.partition_id.clone()).collect();
        got.sort();
        got.dedup();
        assert_eq!(got.len(), 8);
    }

    #[test]
    fn renews_its_own_and_steals_only_above_the_share() {
        let now = OffsetDateTime::now_utc();
        let mut rng = Rng::new(3);
        let t = Ownership::default();
        // a holds all 4; b is new: b steals one of a's (with a's etag).
        let listing: Vec<_> = (0..4).map(|p| owned(p, "a", now)).collect();
        let b = plan(
            &listing,
            &ids(4),
            "b",
            now,
            EXPIRY,
            Strategy::Greedy,
            &mut rng,
            &t,
        );
        assert_eq!(b.len(), 2);
        assert!(b.iter().all(|o| o.owner_id.as_deref() == Some("b")));
        assert!(b.iter().all(|o| o.etag.is_some()));
        // a renews its four and claims nothing: it is above its share.
        let a = plan(
            &listing,
            &ids(4),
            "a",
            now,
            EXPIRY,
            Strategy::Greedy,
            &mut rng,
            &t,
        );
        assert_eq!(a.len(), 4);
        // Balanced 2/2: nobody claims anything new.
        let listing: Vec<_> = (0..4)
            .map(|p| owned(p, if p < 2 { "a" } else { "b" }, now))
            .collect();
        for me in ["a", "b"] {
            let c = plan(
                &listing,
                &ids(4),
                me,
                now,
                EXPIRY,
                Strategy::Greedy,
                &mut rng,
                &t,
            );
            assert_eq!(c.len(), 2, "{me} only renews");
        }
    }

    #[test]
    fn an_owner_at_an_even_share_is_never_robbed() {
        let now = OffsetDateTime::now_utc();
        let t = Ownership::default();
        // a 9, b 8, c 8, d 7 of 32: d may only take from a.
        let owner = |p: usize| match p {
            0..=8 => "a",
            9..=16 => "b",
            17..=24 => "c",
            _ => "d",
        };
        let listing: Vec<_> = (0..32).map(|p| owned(p, owner(p), now)).collect();
        for seed in 1..50 {
            let mut rng = Rng::new(seed);
            let d = plan(
                &listing,
                &ids(32),
                "d",
                now,
                EXPIRY,
                Strategy::Greedy,
                &mut rng,
                &t,
            );
            assert_eq!(d.len(), 8);
            let stolen: usize = d[7].partition_id.parse().unwrap_or(99);
            assert_eq!(owner(stolen), "a", "seed {seed} stole {stolen}");
        }
    }

    #[test]
    fn expired_partitions_are_claimable_with_their_etag() {
        let now = OffsetDateTime::now_utc();
        let mut rng = Rng::new(5);
        let t = Ownership::default();
        let old = now - Duration::from_secs(10);
        let listing = vec![owned(0, "dead", old), owned(1, "a", now)];
        let c = plan(
            &listing,
            &ids(2),
            "a",
            now,
            EXPIRY,
            Strategy::Greedy,
            &mut rng,
            &t,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].partition_id, "0");
        assert_eq!(c[1].etag.as_deref(), Some("e0"));
    }

    #[test]
    fn fair_share_spreads_the_remainder() {
        assert_eq!(fair_share(32, 4), (8, 8));
        assert_eq!(fair_share(32, 3), (10, 11));
        assert_eq!(fair_share(3, 4), (0, 1));
    }
}

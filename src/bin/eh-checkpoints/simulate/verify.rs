//! The checks a simulation ends with: one function per guarantee the README lists, each
//! comparing what the workers reported (the [`State`]) with the final state of the store.
//!
//! 1. One owner per ownership generation: a generation is identified by the etag a claim
//!    presents (none for the first). Every (partition, presented etag) must have exactly one
//!    winning claim.
//! 2. The claims of a partition form one chain from its creation to the etag the store holds
//!    now: each claim presents the etag the previous one produced. A killed worker may have
//!    won a claim it never reported, so one gap per partition is allowed after a kill.
//! 3. Every acknowledged checkpoint was written under the writer's own ownership: its etag
//!    is one that the same worker won.
//! 4. No acknowledged checkpoint went backwards: ordered by store history, that is by the
//!    position of their fencing etag in the partition's chain and then by the order in which
//!    the one owner of that generation wrote them, the sequence numbers never decrease; and
//!    the store's final checkpoint is not below the last acknowledged one.
//! 5. Every event from 0 up to the partition's final checkpoint was processed at least once,
//!    and the final checkpoint is the last event.

use std::collections::{HashMap, HashSet};

use eventhubs_checkpointstore_sqlite::{Checkpoint, Ownership, SqliteCheckpointStore};
use serde::Serialize;

use super::state::{State, Win};
use super::{SIM_GROUP, SIM_HUB, SIM_NAMESPACE};
use crate::CliError;

/// One check's verdict.
#[derive(Debug, Serialize)]
pub(crate) struct CheckResult {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &'static str, problems: Vec<String>, ok_detail: String) -> CheckResult {
    match problems.first() {
        None => CheckResult {
            name,
            ok: true,
            detail: ok_detail,
        },
        Some(first) => CheckResult {
            name,
            ok: false,
            detail: format!("{} problem(s), first: {first}", problems.len()),
        },
    }
}

/// Runs every check against the store's final rows.
pub(super) fn verify(
    state: &State,
    store: &SqliteCheckpointStore,
) -> Result<Vec<CheckResult>, CliError> {
    let owners = store.blocking_list_ownerships(SIM_NAMESPACE, SIM_HUB, SIM_GROUP)?;
    let checkpoints = store.blocking_list_checkpoints(SIM_NAMESPACE, SIM_HUB, SIM_GROUP)?;
    let chains = Chains::of(state);
    Ok(vec![
        one_owner_per_generation(state),
        claims_form_one_chain(state, &chains, &owners),
        acks_fenced_by_own_claim(state),
        acks_never_went_backwards(state, &chains, &checkpoints),
        every_event_processed(state, &checkpoints),
    ])
}

/// 1. Every (partition, presented etag) has exactly one winning claim.
fn one_owner_per_generation(state: &State) -> CheckResult {
    let mut winners: HashMap<(&str, Option<&str>), Vec<&Win>> = HashMap::new();
    for w in &state.wins {
        winners
            .entry((w.partition.as_str(), w.old.as_deref()))
            .or_default()
            .push(w);
    }
    let problems: Vec<String> = winners
        .iter()
        .filter(|(_, ws)| ws.len() > 1)
        .map(|((p, old), ws)| {
            format!(
                "partition {p}, generation {}: won by {}",
                old.unwrap_or("(create)"),
                ws.iter()
                    .map(|w| state.names[w.worker].as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )
        })
        .collect();
    check(
        "one owner per ownership generation",
        problems,
        format!(
            "{} claims won, each (partition, etag) exactly once",
            state.wins.len()
        ),
    )
}

/// Each partition's claims followed from its creation, one presented etag to the next.
struct Chains<'a> {
    /// (partition, etag) -> the place of the claim that produced it in its chain.
    index: HashMap<(&'a str, &'a str), usize>,
    /// Per partition: the claims on the chain, the gaps taken, the last etag.
    partitions: HashMap<&'a str, (usize, usize, Option<&'a str>)>,
}

impl<'a> Chains<'a> {
    fn of(state: &'a State) -> Chains<'a> {
        let killed = state.killed.is_some();
        let mut index = HashMap::new();
        let mut partitions = HashMap::new();
        for p in &state.partitions {
            let mut by_old: HashMap<Option<&str>, &Win> = HashMap::new();
            for w in state.wins.iter().filter(|w| &w.partition == p) {
                by_old.insert(w.old.as_deref(), w);
            }
            let produced: HashSet<&str> = state
                .wins
                .iter()
                .filter(|w| &w.partition == p)
                .map(|w| w.new.as_str())
                .collect();
            let mut orphans: Vec<&Win> = by_old
                .iter()
                .filter(|(old, _)| old.is_some_and(|o| !produced.contains(o)))
                .map(|(_, w)| *w)
                .collect();
            orphans.sort_by_key(|w| w.nanos);
            let mut gaps = 0;
            let mut at: Option<&str> = None;
            let mut length = 0;
            let mut last: Option<&str> = None;
            loop {
                let next = match by_old.get(&at) {
                    Some(w) => *w,
                    None => match orphans.get(gaps) {
                        Some(w) if killed && gaps == 0 => {
                            gaps += 1;
                            *w
                        }
                        _ => break,
                    },
                };
                index.insert((p.as_str(), next.new.as_str()), length);
                length += 1;
                last = Some(next.new.as_str());
                at = Some(next.new.as_str());
                if length > state.wins.len() {
                    break;
                }
            }
            partitions.insert(p.as_str(), (length, gaps, last));
        }
        Chains { index, partitions }
    }
}

/// 2. Every claim of a partition is on its one chain, which ends at the stored etag.
fn claims_form_one_chain(state: &State, chains: &Chains<'_>, owners: &[Ownership]) -> CheckResult {
    let killed = state.killed.is_some();
    let victim = state.killed.as_ref().map(|(w, _, _)| &state.names[*w]);
    let mut problems = Vec::new();
    let mut generations = 0;
    for p in &state.partitions {
        let (length, gaps, last) = chains
            .partitions
            .get(p.as_str())
            .copied()
            .unwrap_or((0, 0, None));
        generations += length;
        let on_chain = state.wins.iter().filter(|w| &w.partition == p).count();
        if length != on_chain {
            problems.push(format!(
                "partition {p}: {} of its {on_chain} claims are not on one chain",
                on_chain.saturating_sub(length)
            ));
        }
        let stored = owners.iter().find(|o| &o.partition_id == p);
        let stored_etag = stored.and_then(|o| o.etag.as_deref());
        // The killed worker may have won a last claim it never reported.
        let unreported_last = killed
            && gaps == 0
            && stored.and_then(|o| o.owner_id.as_deref()) == victim.map(|v| v.as_str());
        if stored_etag != last && !unreported_last {
            problems.push(format!(
                "partition {p}: the store's etag {} is not the last claim's {}",
                stored_etag.unwrap_or("(none)"),
                last.unwrap_or("(none)")
            ));
        }
    }
    check(
        "claims form one chain per partition, ending at the stored etag",
        problems,
        format!("{generations} claims on {} chains", state.partitions.len()),
    )
}

/// 3. Every acknowledged checkpoint's etag is one its writer won as the owner.
fn acks_fenced_by_own_claim(state: &State) -> CheckResult {
    // (partition, etag) -> the worker that won it, if it won it as the owner.
    let won_by: HashMap<(&str, &str), usize> = state
        .wins
        .iter()
        .filter(|w| w.owner.as_deref() == Some(state.names[w.worker].as_str()))
        .map(|w| ((w.partition.as_str(), w.new.as_str()), w.worker))
        .collect();
    let problems: Vec<String> = state
        .acks
        .iter()
        .filter(|a| won_by.get(&(a.partition.as_str(), a.etag.as_str())) != Some(&a.worker))
        .map(|a| {
            format!(
                "{} acknowledged checkpoint {} of partition {} under etag {} it never won",
                state.names[a.worker], a.seq, a.partition, a.etag
            )
        })
        .collect();
    check(
        "every acknowledged checkpoint was fenced by its writer's own claim",
        problems,
        format!("{} acknowledged fenced writes", state.acks.len()),
    )
}

/// 4. In store order the acknowledged sequence numbers never decrease, and the store ends
///    at or above the last one.
fn acks_never_went_backwards(
    state: &State,
    chains: &Chains<'_>,
    checkpoints: &[Checkpoint],
) -> CheckResult {
    let mut problems = Vec::new();
    for p in &state.partitions {
        let mut acks: Vec<(usize, usize, i64)> = state
            .acks
            .iter()
            .filter(|a| &a.partition == p)
            .map(|a| {
                let idx = chains
                    .index
                    .get(&(a.partition.as_str(), a.etag.as_str()))
                    .copied()
                    .unwrap_or(usize::MAX);
                (idx, a.order, a.seq)
            })
            .collect();
        acks.sort();
        for pair in acks.windows(2) {
            if pair[1].2 < pair[0].2 {
                problems.push(format!(
                    "partition {p}: checkpoint {} acknowledged after {}",
                    pair[1].2, pair[0].2
                ));
            }
        }
        let stored = checkpoints
            .iter()
            .find(|c| &c.partition_id == p)
            .and_then(|c| c.sequence_number);
        if let Some((_, _, last)) = acks.last() {
            if stored.is_none_or(|s| s < *last) {
                problems.push(format!(
                    "partition {p}: the store ends at {stored:?}, below the acknowledged {last}"
                ));
            }
        }
    }
    check(
        "acknowledged checkpoints never went backwards",
        problems,
        format!(
            "{} acknowledged writes in store order, non-decreasing on every partition",
            state.acks.len()
        ),
    )
}

/// 5. Every partition ends at its last event, and every event up to it was processed.
fn every_event_processed(state: &State, checkpoints: &[Checkpoint]) -> CheckResult {
    let mut problems = Vec::new();
    let mut covered = 0u64;
    for p in &state.partitions {
        let stored = checkpoints
            .iter()
            .find(|c| &c.partition_id == p)
            .and_then(|c| c.sequence_number)
            .unwrap_or(-1);
        if stored != state.events - 1 {
            problems.push(format!(
                "partition {p}: final checkpoint {stored}, expected {}",
                state.events - 1
            ));
        }
        let missing = state
            .processed
            .get(p)
            .map_or((stored + 1).max(0) as u64, |r| r.missing(0, stored));
        if missing > 0 {
            problems.push(format!(
                "partition {p}: {missing} events up to {stored} were never processed"
            ));
        }
        covered += (stored + 1).max(0) as u64;
    }
    check(
        "every event up to the final checkpoint processed at least once",
        problems,
        format!("{covered} events on {} partitions", state.partitions.len()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::state::{Ack, Ranges};
    use eventhubs_checkpointstore_sqlite::migrate::export::StoreExport;
    use eventhubs_checkpointstore_sqlite::migrate::OnConflict;

    /// One partition, three events: proc-1 creates the ownership and checkpoints event 0,
    /// proc-2 steals it and checkpoints event 2; the store ends at etag e2, sequence 2.
    fn scenario() -> (State, SqliteCheckpointStore) {
        let win = |worker: usize, old: Option<&str>, new: &str, nanos: i64| Win {
            worker,
            partition: "0".into(),
            old: old.map(Into::into),
            new: new.into(),
            owner: Some(format!("proc-{}", worker + 1)),
            nanos,
        };
        let ack = |worker: usize, seq: i64, etag: &str, order: usize| Ack {
            worker,
            partition: "0".into(),
            seq,
            etag: etag.into(),
            order,
        };
        let mut state = State::new(vec!["proc-1".into(), "proc-2".into()], vec!["0".into()], 3);
        state.wins = vec![win(0, None, "e1", 1), win(1, Some("e1"), "e2", 2)];
        state.acks = vec![ack(0, 0, "e1", 0), ack(1, 2, "e2", 1)];
        state.processed = HashMap::from([("0".to_owned(), Ranges::of(&[(0, 2), (1, 1)]))]);
        let store = SqliteCheckpointStore::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
        let json = format!(
            r#"{{"format":"eh-checkpoints-export","format_version":1,"schema_version":1,
            "ownerships":[{{"namespace":"{SIM_NAMESPACE}","event_hub":"{SIM_HUB}",
              "consumer_group":"{SIM_GROUP}","partition_id":"0","owner_id":"proc-2",
              "etag":"e2","last_modified":"2026-01-01T00:00:00Z","epoch":2}}],
            "checkpoints":[{{"namespace":"{SIM_NAMESPACE}","event_hub":"{SIM_HUB}",
              "consumer_group":"{SIM_GROUP}","partition_id":"0","offset":"256",
              "sequence_number":2}}]}}"#
        );
        let export = StoreExport::from_json(&json).unwrap_or_else(|e| panic!("{e}"));
        store
            .blocking_import(&export, OnConflict::Refuse)
            .unwrap_or_else(|e| panic!("{e}"));
        (state, store)
    }

    fn failed(state: &State, store: &SqliteCheckpointStore) -> Vec<&'static str> {
        verify(state, store)
            .unwrap_or_else(|e| panic!("{}", e.message))
            .into_iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn a_consistent_history_passes_every_check() {
        let (state, store) = scenario();
        assert!(failed(&state, &store).is_empty());
    }

    #[test]
    fn each_violation_fails_its_check() {
        let (mut s, store) = scenario();
        s.wins.push(Win {
            worker: 0,
            new: "e3".into(),
            ..s.wins[1].clone()
        });
        assert!(failed(&s, &store).contains(&"one owner per ownership generation"));

        let (mut s, store) = scenario();
        s.wins[1].old = Some("unknown".into());
        assert_eq!(
            failed(&s, &store),
            ["claims form one chain per partition, ending at the stored etag"]
        );

        let (mut s, store) = scenario();
        s.acks.push(Ack {
            worker: 0,
            ..s.acks[1].clone()
        });
        assert_eq!(
            failed(&s, &store),
            ["every acknowledged checkpoint was fenced by its writer's own claim"]
        );

        let (mut s, store) = scenario();
        s.acks.push(Ack {
            seq: 1,
            order: 2,
            ..s.acks[1].clone()
        });
        assert_eq!(
            failed(&s, &store),
            ["acknowledged checkpoints never went backwards"]
        );

        let (mut s, store) = scenario();
        s.processed
            .insert("0".into(), Ranges::of(&[(0, 0), (2, 2)]));
        assert_eq!(
            failed(&s, &store),
            ["every event up to the final checkpoint processed at least once"]
        );
    }
}

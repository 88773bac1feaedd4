//! The report a simulation ends with: its settings, the timeline (balanced, killed, taken
//! over, finished), the counts and the checks; as JSON or rendered for people.

use std::path::PathBuf;

use serde::Serialize;

use super::verify::CheckResult;
use crate::EXIT_CHECK_FAILED;

/// The final report, printed as a table or as JSON.
#[derive(Debug, Serialize)]
pub(crate) struct SimReport {
    pub(crate) db: PathBuf,
    pub(crate) namespace: &'static str,
    pub(crate) event_hub: &'static str,
    pub(crate) consumer_group: &'static str,
    pub(crate) processes: u32,
    pub(crate) partitions: u32,
    pub(crate) events_per_partition: i64,
    pub(crate) checkpoint_every: i64,
    pub(crate) interval_ms: u64,
    pub(crate) expiry_ms: u64,
    pub(crate) strategy: String,
    pub(crate) balanced_after_secs: Option<f64>,
    pub(crate) killed: Option<KillReport>,
    pub(crate) finished_after_secs: f64,
    pub(crate) checkpoints_written: usize,
    pub(crate) fenced_writes_refused: usize,
    pub(crate) claims_won: usize,
    pub(crate) partitions_lost: usize,
    pub(crate) events_processed: u64,
    pub(crate) events_replayed: u64,
    pub(crate) events_replayed_after_takeover: u64,
    pub(crate) checks: Vec<CheckResult>,
    pub(crate) ok: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct KillReport {
    pub(crate) process: String,
    pub(crate) at_secs: f64,
    pub(crate) partitions: usize,
    pub(crate) taken_over_after_secs: Option<f64>,
    pub(crate) rebalanced_after_secs: Option<f64>,
}

/// The report for people.
pub(crate) fn render(report: &SimReport) -> String {
    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    let r = report;
    line(format!(
        "simulate: {} processes, {} partitions x {} events, a checkpoint every {} events",
        r.processes, r.partitions, r.events_per_partition, r.checkpoint_every
    ));
    line(format!(
        "          load balancing every {} ms, ownership expiry {} ms, {} claiming",
        r.interval_ms, r.expiry_ms, r.strategy
    ));
    line(format!(
        "store:    {} (group {}/{}/{})",
        r.db.display(),
        r.namespace,
        r.event_hub,
        r.consumer_group
    ));
    line(String::new());
    let t = |s: Option<f64>| s.map_or("never".to_owned(), |s| format!("{s:.2} s"));
    line(format!(
        "balanced after             {}",
        t(r.balanced_after_secs)
    ));
    if let Some(k) = &r.killed {
        line(format!(
            "killed                     {} at {:.2} s (SIGKILL, holding {} partitions)",
            k.process, k.at_secs, k.partitions
        ));
        line(format!(
            "taken over after           {} (its partitions claimed by live processes)",
            t(k.taken_over_after_secs)
        ));
        line(format!(
            "rebalanced after           {} (after the kill)",
            t(k.rebalanced_after_secs)
        ));
    }
    line(format!(
        "finished after             {:.2} s",
        r.finished_after_secs
    ));
    line(String::new());
    line(format!(
        "checkpoints written        {}",
        r.checkpoints_written
    ));
    line(format!(
        "fenced writes refused      {} (stale owners kept out)",
        r.fenced_writes_refused
    ));
    line(format!(
        "claims won                 {} (renewals and releases included)",
        r.claims_won
    ));
    line(format!("events processed           {}", r.events_processed));
    line(format!(
        "events replayed            {} ({} after the takeover, {} after steals while balancing)",
        r.events_replayed,
        r.events_replayed_after_takeover,
        r.events_replayed - r.events_replayed_after_takeover
    ));
    line(String::new());
    for c in &r.checks {
        line(format!(
            "{}  {}: {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.name,
            c.detail
        ));
    }
    line(String::new());
    if r.ok {
        line("all checks passed".into());
    } else {
        line(format!(
            "SOME CHECKS FAILED (exit code {EXIT_CHECK_FAILED})"
        ));
    }
    s
}

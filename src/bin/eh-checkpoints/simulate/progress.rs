//! The live view of a simulation on stderr: a bar per process (the partitions it holds and
//! its checkpoints), a total (events checkpointed, checkpoints per second), and milestone
//! lines; plain lines only when stderr is not a terminal.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(super) struct Display {
    pub(super) multi: MultiProgress,
    pub(super) bars: Vec<ProgressBar>,
    pub(super) total: ProgressBar,
}

impl Display {
    pub(super) fn new(names: &[String], partitions: u64, events: u64) -> Display {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
        let style = ProgressStyle::with_template(
            "{prefix:>8} {bar:32.cyan/blue} {pos:>3} partitions  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("█▉▊▋▌▍▎▏ ");
        let bars = names
            .iter()
            .map(|n| {
                let b = multi.add(ProgressBar::new(partitions));
                b.set_style(style.clone());
                b.set_prefix(n.clone());
                b
            })
            .collect();
        let total = multi.add(ProgressBar::new(partitions * events));
        total.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} {bar:32.green/white} {percent:>3}% of events checkpointed  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        total.set_prefix("total");
        Display { multi, bars, total }
    }

    /// A line above the bars, or on stderr when no bars are drawn (not a terminal).
    pub(super) fn note(&self, line: &str) {
        if self.multi.is_hidden() {
            crate::output::warn(line);
        } else {
            let _ = self.multi.println(line);
        }
    }
}

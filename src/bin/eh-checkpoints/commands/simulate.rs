//! `simulate`: its arguments, and the report printed at the end (exit 5 when a check
//! fails). The engine is `simulate/`.

use clap::Args;

use crate::simulate::{self, report, ProcessorArgs};
use crate::{output, CliError, Global, Outcome};

#[derive(Debug, Clone, Args)]
pub(crate) struct SimulateArgs {
    /// Processor processes to start.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub processes: u32,
    #[command(flatten)]
    pub processor: ProcessorArgs,
    /// Start the processes this many milliseconds apart (0: all at once), so that later ones
    /// have to steal partitions from earlier ones.
    #[arg(long, default_value_t = 1000)]
    pub stagger_ms: u64,
    /// SIGKILL the process holding the most partitions this many seconds after the start.
    #[arg(long, value_name = "SECS")]
    pub kill_after: Option<f64>,
    /// Give up (and fail) after this many seconds.
    #[arg(long, default_value_t = 120.0, value_name = "SECS")]
    pub timeout: f64,
}

pub(crate) fn run(g: &Global, args: &SimulateArgs) -> Result<Outcome, CliError> {
    let report = simulate::run(g, args)?;
    if g.json {
        output::print_json(&report)?;
    } else {
        output::print(&report::render(&report))?;
    }
    Ok(if report.ok {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

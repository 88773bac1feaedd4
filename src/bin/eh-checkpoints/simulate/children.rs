//! The worker processes of a simulation: starting one (this same binary's hidden `__worker`
//! subcommand), the threads that read its stdout into a channel and keep its stderr, and
//! killing and reaping them all when dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::state::State;
use super::ProcessorArgs;
use crate::CliError;

/// A line from a worker, or the end of its stdout.
pub(super) enum Msg {
    Line(usize, String),
    Eof(usize),
}

/// The workers, killed and reaped when dropped so that no process outlives the parent's
/// error paths.
pub(super) struct Workers {
    pub(super) children: Vec<Child>,
    pub(super) stdins: Vec<Option<ChildStdin>>,
    stderr: Vec<Arc<Mutex<String>>>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        for c in &mut self.children {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// Starts one worker process and the threads that read its stdout and stderr.
pub(super) fn spawn(
    exe: &Path,
    db: &Path,
    busy_timeout: Duration,
    args: &ProcessorArgs,
    name: &str,
    workers: &mut Workers,
    tx: &Sender<Msg>,
) -> Result<(), CliError> {
    let i = workers.children.len();
    let mut cmd = Command::new(exe);
    cmd.arg("--db")
        .arg(db)
        .args(["--busy-timeout", &busy_timeout.as_millis().to_string()])
        .arg("__worker")
        .args(["--id", name])
        .args(args.to_args())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::runtime(format!("cannot start a worker process: {e}")))?;
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let sink = Arc::new(Mutex::new(String::new()));
    workers.children.push(child);
    workers.stdins.push(stdin);
    workers.stderr.push(Arc::clone(&sink));
    let stdout = stdout.ok_or_else(|| CliError::runtime("a worker has no stdout"))?;
    let tx = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    if tx.send(Msg::Line(i, l)).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(Msg::Eof(i));
    });
    if let Some(mut stderr) = stderr {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            if let Ok(mut s) = sink.lock() {
                s.push_str(&text);
            }
        });
    }
    Ok(())
}

/// Applies every message that arrives within `wait` (at least one wait, then what is queued).
pub(super) fn drain(rx: &Receiver<Msg>, state: &mut State, wait: Duration) {
    let mut first = true;
    loop {
        let msg = if first {
            first = false;
            match rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match rx.try_recv() {
                Ok(m) => m,
                Err(_) => return,
            }
        };
        let now = Instant::now();
        match msg {
            Msg::Line(w, line) => state.apply(w, &line, now),
            Msg::Eof(w) => state.eof[w] = true,
        }
    }
}

impl Workers {
    /// No workers yet.
    pub(super) fn new() -> Workers {
        Workers {
            children: Vec::new(),
            stdins: Vec::new(),
            stderr: Vec::new(),
        }
    }

    /// The end of worker `w`'s stderr, as `: text`, or nothing.
    pub(super) fn stderr_tail(&self, w: usize) -> String {
        let text = self.stderr[w].lock().map(|s| s.clone()).unwrap_or_default();
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else {
            let tail: String = text
                .chars()
                .rev()
                .take(500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!(": {tail}")
        }
    }
}

//! The lines a simulation worker writes on its stdout for the parent, one report a line,
//! space-separated (owner ids, etags and partition ids have no spaces; `-` stands for none).
//!
//! ```text
//! R                                   ready: the store is open
//! C <partition> <old etag> <new etag> <owner> <unix nanos>   a claim (or renewal, or release) won
//! L <partition>                       a partition this worker held was taken by another
//! K <partition> <seq> <etag>          a fenced checkpoint write returned Ok (acknowledged)
//! F <partition> <seq> <etag>          a fenced checkpoint write was refused: ownership lost
//! P <partition> <from> <to>           events from..=to were processed
//! X <message>                         an error; the worker exits non-zero
//! D                                   done: partitions released, exiting
//! ```

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Report {
    Ready,
    Claim {
        partition: String,
        old_etag: Option<String>,
        new_etag: String,
        owner: Option<String>,
        nanos: i64,
    },
    Lost {
        partition: String,
    },
    Acked {
        partition: String,
        seq: i64,
        etag: String,
    },
    Refused {
        partition: String,
        seq: i64,
        etag: String,
    },
    Processed {
        partition: String,
        from: i64,
        to: i64,
    },
    Error(String),
    Done,
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("-")
}

fn from_opt(s: &str) -> Option<String> {
    (s != "-").then(|| s.to_owned())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Ready => write!(f, "R"),
            Report::Claim {
                partition,
                old_etag,
                new_etag,
                owner,
                nanos,
            } => write!(
                f,
                "C {partition} {} {new_etag} {} {nanos}",
                opt(old_etag),
                opt(owner)
            ),
            Report::Lost { partition } => write!(f, "L {partition}"),
            Report::Acked {
                partition,
                seq,
                etag,
            } => write!(f, "K {partition} {seq} {etag}"),
            Report::Refused {
                partition,
                seq,
                etag,
            } => write!(f, "F {partition} {seq} {etag}"),
            Report::Processed {
                partition,
                from,
                to,
            } => write!(f, "P {partition} {from} {to}"),
            Report::Error(message) => write!(f, "X {}", message.replace('\n', " ")),
            Report::Done => write!(f, "D"),
        }
    }
}

impl Report {
    /// Parses one line; `None` for anything malformed (such as the torn last line of a killed
    /// worker).
    pub(super) fn parse(line: &str) -> Option<Report> {
        let mut it = line.split(' ');
        let kind = it.next()?;
        let mut next = || it.next().map(ToOwned::to_owned);
        let report = match kind {
            "R" => Report::Ready,
            "D" => Report::Done,
            "X" => return Some(Report::Error(line.get(2..).unwrap_or("").to_owned())),
            "C" => Report::Claim {
                partition: next()?,
                old_etag: from_opt(&next()?),
                new_etag: next()?,
                owner: from_opt(&next()?),
                nanos: next()?.parse().ok()?,
            },
            "L" => Report::Lost { partition: next()? },
            "K" | "F" => {
                let partition = next()?;
                let seq = next()?.parse().ok()?;
                let etag = next()?;
                if kind == "K" {
                    Report::Acked {
                        partition,
                        seq,
                        etag,
                    }
                } else {
                    Report::Refused {
                        partition,
                        seq,
                        etag,
                    }
                }
            }
            "P" => Report::Processed {
                partition: next()?,
                from: next()?.parse().ok()?,
                to: next()?.parse().ok()?,
            },
            _ => return None,
        };
        if it.next().is_some() {
            return None;
        }
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_report_parses_back() {
        let reports = [
            Report::Ready,
            Report::Claim {
                partition: "3".into(),
                old_etag: None,
                new_etag: "e1".into(),
                owner: Some("proc-1".into()),
                nanos: 42,
            },
            Report::Claim {
                partition: "3".into(),
                old_etag: Some("e1".into()),
                new_etag: "e2".into(),
                owner: None,
                nanos: 43,
            },
            Report::Lost {
                partition: "3".into(),
            },
            Report::Acked {
                partition: "3".into(),
                seq: 49,
                etag: "e2".into(),
            },
            Report::Refused {
                partition: "3".into(),
                seq: 99,
                etag: "e1".into(),
            },
            Report::Processed {
                partition: "3".into(),
                from: 0,
                to: 9,
            },
            Report::Error("it broke".into()),
            Report::Done,
        ];
        for r in reports {
            assert_eq!(Report::parse(&r.to_string()), Some(r.clone()), "{r}");
        }
        assert_eq!(Report::parse("C 3 - e1"), None, "a torn line is ignored");
        assert_eq!(Report::parse("K 3 12 e1 extra"), None);
    }
}

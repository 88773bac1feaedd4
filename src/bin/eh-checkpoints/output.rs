//! Everything the program prints on stdout: plain text tables, JSON, and the rows every
//! command shows, under one set of JSON field names (those of the export format:
//! `namespace`, `event_hub`, `consumer_group`, `partition_id`, `owner_id`, `etag`,
//! `last_modified`, `offset`, `sequence_number`). Commands build their text and hand it to
//! [`print()`], the one place that writes to stdout; names from the database pass through
//! [`clean`] (tables do it for every cell) so that control characters reach the terminal
//! escaped, never raw.

use std::borrow::Cow;
use std::io::{ErrorKind, Write};

use eventhubs_checkpointstore_sqlite::admin::GroupSummary;
use eventhubs_checkpointstore_sqlite::{Checkpoint, Ownership};
use serde::Serialize;
use time::OffsetDateTime;

use crate::CliError;

/// Writes `text` to stdout. A reader that went away (a closed pipe, `| head -1`) ends the
/// program quietly ([`CliError::stdout_closed`]); any other failure (a full disk) is an error.
pub(crate) fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            ErrorKind::BrokenPipe => CliError::stdout_closed(),
            _ => CliError::runtime(format!("cannot write to stdout: {e}")),
        })
}

/// Writes a line to stderr (warnings, errors, notes), ignoring a stderr that cannot be
/// written: there is nowhere left to say so.
pub(crate) fn warn(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Characters [`clean`] escapes: control characters (ESC, BEL, CR, newline, DEL, C1), the
/// bidirectional overrides and isolates that reorder what a terminal shows, and the
/// backslash (so that the escaping is unambiguous).
fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\\' || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character [`needs_escape`] names escaped as Rust writes it (`\u{1b}`,
/// `\r`, `\n`, `\\`); text without them is returned as it is.
pub(crate) fn clean(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut s = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            s.extend(c.escape_default());
        } else {
            s.push(c);
        }
    }
    Cow::Owned(s)
}

/// Writes `value` as pretty JSON and a newline to stdout.
pub(crate) fn print_json(value: &impl Serialize) -> Result<(), CliError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::runtime(format!("cannot write JSON: {e}")))?;
    text.push('\n');
    print(&text)
}

/// A plain text table: left-aligned columns two spaces apart, a header and a rule.
pub(crate) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new<const N: usize>(headers: [&str; N]) -> Self {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; every cell is [`clean`]ed.
    pub(crate) fn row<const N: usize>(&mut self, cells: [String; N]) {
        self.rows
            .push(cells.iter().map(|c| clean(c).into_owned()).collect());
    }

    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    s.push_str("  ");
                }
                s.push_str(cell);
                let pad = widths.get(i).copied().unwrap_or(0) - cell.chars().count();
                s.push_str(&" ".repeat(pad));
            }
            let mut s = s.trim_end().to_owned();
            s.push('\n');
            s
        };
        let mut out = line(&self.headers);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&rule));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// An optional value as table text: `-` for none.
pub(crate) fn or_dash(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A store time as RFC 3339 to the millisecond, and its age.
pub(crate) fn time_text(t: Option<OffsetDateTime>) -> (String, String) {
    match t {
        None => ("-".into(), "-".into()),
        Some(t) => {
            let shown = t
                .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
                .unwrap_or(t);
            let text = shown
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| t.to_string());
            let age = (OffsetDateTime::now_utc() - t).as_seconds_f64();
            (text, format!("{age:.1}s"))
        }
    }
}

/// A group with its counts, as JSON.
#[derive(Debug, Serialize)]
pub(crate) struct GroupRow<'a> {
    pub namespace: &'a str,
    pub event_hub: &'a str,
    pub consumer_group: &'a str,
    pub ownerships: u64,
    pub owned: u64,
    pub checkpoints: u64,
    pub placeholders: u64,
}

impl<'a> From<&'a GroupSummary> for GroupRow<'a> {
    fn from(g: &'a GroupSummary) -> Self {
        GroupRow {
            namespace: &g.fully_qualified_namespace,
            event_hub: &g.event_hub_name,
            consumer_group: &g.consumer_group,
            ownerships: g.ownerships,
            owned: g.owned,
            checkpoints: g.checkpoints,
            placeholders: g.placeholders,
        }
    }
}

/// An ownership, as JSON.
#[derive(Debug, Serialize)]
pub(crate) struct OwnershipRow<'a> {
    pub namespace: &'a str,
    pub event_hub: &'a str,
    pub consumer_group: &'a str,
    pub partition_id: &'a str,
    pub owner_id: Option<&'a str>,
    pub etag: Option<&'a str>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_modified: Option<OffsetDateTime>,
}

impl<'a> From<&'a Ownership> for OwnershipRow<'a> {
    fn from(o: &'a Ownership) -> Self {
        OwnershipRow {
            namespace: &o.fully_qualified_namespace,
            event_hub: &o.event_hub_name,
            consumer_group: &o.consumer_group,
            partition_id: &o.partition_id,
            owner_id: o.owner_id.as_deref(),
            etag: o.etag.as_deref(),
            last_modified: o.last_modified_time,
        }
    }
}

/// A checkpoint, as JSON.
#[derive(Debug, Serialize)]
pub(crate) struct CheckpointRow<'a> {
    pub namespace: &'a str,
    pub event_hub: &'a str,
    pub consumer_group: &'a str,
    pub partition_id: &'a str,
    pub offset: Option<&'a str>,
    pub sequence_number: Option<i64>,
}

impl<'a> From<&'a Checkpoint> for CheckpointRow<'a> {
    fn from(c: &'a Checkpoint) -> Self {
        CheckpointRow {
            namespace: &c.fully_qualified_namespace,
            event_hub: &c.event_hub_name,
            consumer_group: &c.consumer_group,
            partition_id: &c.partition_id,
            offset: c.offset.as_deref(),
            sequence_number: c.sequence_number,
        }
    }
}

/// Rows of one kind as JSON rows.
pub(crate) fn rows<'a, T: 'a, R: From<&'a T>>(items: &'a [T]) -> Vec<R> {
    items.iter().map(R::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let mut t = Table::new(["a", "long header"]);
        t.row(["wide cell".into(), "x".into()]);
        assert_eq!(
            t.render(),
            "a          long header\n---------  -----------\nwide cell  x\n"
        );
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(clean("plain $Default"), "plain $Default");
        assert_eq!(
            clean("a\u{1b}[2Jb\u{7}c\rd\ne\\f\u{7f}\u{9b}\u{202e}"),
            "a\\u{1b}[2Jb\\u{7}c\\rd\\ne\\\\f\\u{7f}\\u{9b}\\u{202e}"
        );
        let mut t = Table::new(["name"]);
        t.row(["x\u{1b}]0;owned\u{7}".into()]);
        assert!(!t.render().contains('\u{1b}'), "{}", t.render());
    }
}

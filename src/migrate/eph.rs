//! Importing EventProcessorHost (EPH) lease blobs as checkpoints.
//!
//! EPH kept each partition's lease and checkpoint in one JSON blob per partition. Downloaded
//! from the lease container, each blob is a small JSON file named after its partition. Three
//! dialects exist, one per SDK:
//!
//! | dialect | keys | example |
//! |---|---|---|
//! | .NET (`Microsoft.Azure.EventHubs.Processor`) | PascalCase | `{"PartitionId":"0","Owner":"…","Token":"…","Epoch":386,"Offset":"8591964920","SequenceNumber":960180}` |
//! | Python (`azure-eventhub` 1.x) | snake_case | `{"partition_id":"0","sequence_number":960180,"owner":"…","token":"…","epoch":3,"event_processor_context":null,"offset":"8591964920"}` |
//! | Java (`azure-eventhubs-eph`) | camelCase | `{"offset":"8591964920","sequenceNumber":960180,"token":"…","epoch":3,"partitionId":"0","owner":"…"}` |
//!
//! Only the position carries over, as in the official migration guides: owner, token and
//! epoch are dropped (the new processors claim ownership afresh). A lease without an offset
//! (null, empty, or `"-1"`, EPH's start of stream) never checkpointed and is skipped.
//!
//! The dialect is told by the keys that differ between them (`PartitionId`/`SequenceNumber`,
//! `partition_id`/`sequence_number`/`event_processor_context`, `partitionId`/`sequenceNumber`);
//! a file that mixes them, or has none, is refused. Offsets may be JSON strings or integers;
//! sequence numbers integers or integer strings (Python 1.x wrote both). Other keys are
//! ignored. The partition id comes from the JSON, or from the file name when the JSON lacks it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, Transaction};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::migrate::{self, OnConflict, Plan, Run};
use crate::model::{self, Checkpoint, GroupKey, MAX_NAME_LEN, MAX_OFFSET_LEN};
use crate::store::ops;
use crate::store::SqliteCheckpointStore;

/// The largest lease file read, in bytes. A lease blob is a few hundred bytes.
pub const MAX_LEASE_FILE_LEN: u64 = 64 * 1024;

/// Which SDK wrote a lease blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EphDialect {
    /// .NET `Microsoft.Azure.EventHubs.Processor`: PascalCase keys.
    DotNet,
    /// Python `azure-eventhub` 1.x: snake_case keys.
    Python,
    /// Java `azure-eventhubs-eph`: camelCase keys.
    Java,
}

impl EphDialect {
    /// A short lowercase name: `dotnet`, `python` or `java`.
    pub fn name(self) -> &'static str {
        match self {
            EphDialect::DotNet => "dotnet",
            EphDialect::Python => "python",
            EphDialect::Java => "java",
        }
    }

    /// The keys of (partition id, offset, sequence number, owner, epoch) in this dialect.
    fn keys(self) -> [&'static str; 5] {
        match self {
            EphDialect::DotNet => ["PartitionId", "Offset", "SequenceNumber", "Owner", "Epoch"],
            EphDialect::Python => [
                "partition_id",
                "offset",
                "sequence_number",
                "owner",
                "epoch",
            ],
            EphDialect::Java => ["partitionId", "offset", "sequenceNumber", "owner", "epoch"],
        }
    }

    /// The keys only this dialect uses.
    fn distinct_keys(self) -> &'static [&'static str] {
        match self {
            EphDialect::DotNet => &[
                "PartitionId",
                "Offset",
                "SequenceNumber",
                "Owner",
                "Token",
                "Epoch",
            ],
            EphDialect::Python => &["partition_id", "sequence_number", "event_processor_context"],
            EphDialect::Java => &["partitionId", "sequenceNumber"],
        }
    }
}

/// One EPH lease blob, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EphLease {
    /// Which SDK wrote it.
    pub dialect: EphDialect,
    /// The partition id.
    pub partition_id: String,
    /// The checkpointed offset, `None` if the lease never checkpointed.
    pub offset: Option<String>,
    /// The checkpointed sequence number.
    pub sequence_number: Option<i64>,
    /// The last owner (informational; not imported).
    pub owner: Option<String>,
    /// The lease epoch (informational; not imported).
    pub epoch: Option<i64>,
}

/// A lease and the file it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EphLeaseFile {
    /// The file.
    pub path: PathBuf,
    /// What it holds.
    pub lease: EphLease,
}

fn lease_error(reason: impl Into<String>) -> Error {
    Error::invalid("lease", reason)
}

fn text(value: &Value, key: &str) -> Result<Option<String>> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        other => Err(lease_error(format!(
            "`{key}` must be a string, an integer or null, not {other}"
        ))),
    }
}

fn integer(value: &Value, key: &str) -> Result<Option<i64>> {
    let bad = || lease_error(format!("`{key}` must be an integer or null, not {value}"));
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => n.as_i64().map(Some).ok_or_else(bad),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => s.trim().parse::<i64>().map(Some).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

impl EphLease {
    /// Parses one lease blob. `blob_name` (the file name) supplies the partition id when the
    /// JSON lacks one.
    ///
    /// ```
    /// use eventhubs_checkpointstore_sqlite::migrate::eph::{EphDialect, EphLease};
    ///
    /// let lease = EphLease::parse(
    ///     br#"{"PartitionId":"0","Owner":"h1","Token":"t","Epoch":386,
    ///          "Offset":"8591964920","SequenceNumber":960180}"#,
    ///     None,
    /// )?;
    /// assert_eq!(lease.dialect, EphDialect::DotNet);
    /// assert_eq!(lease.position(), Ok(("8591964920", Some(960180))));
    /// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] (`lease`) if the bytes are not a JSON object, the keys are
    /// of no dialect or of several, a value has the wrong type, or there is no partition id.
    pub fn parse(json: &[u8], blob_name: Option<&str>) -> Result<Self> {
        let value: Value =
            serde_json::from_slice(json).map_err(|e| lease_error(format!("not JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(lease_error("not a JSON object"));
        };
        let dialect = detect(&map)?;
        let [pid_key, offset_key, seq_key, owner_key, epoch_key] = dialect.keys();
        let get = |key: &str| map.get(key).unwrap_or(&Value::Null);
        let partition_id = match text(get(pid_key), pid_key)? {
            Some(p) if !p.is_empty() => p,
            _ => match blob_name {
                Some(name) if !name.is_empty() => name.to_owned(),
                _ => return Err(lease_error(format!("no `{pid_key}` and no file name"))),
            },
        };
        model::name("partition_id", &partition_id)?;
        let offset = text(get(offset_key), offset_key)?.filter(|o| !o.is_empty());
        if let Some(o) = &offset {
            model::bounded("offset", o, MAX_OFFSET_LEN)?;
        }
        let owner = text(get(owner_key), owner_key)?.filter(|o| !o.is_empty());
        if let Some(o) = &owner {
            model::bounded("owner", o, MAX_NAME_LEN)?;
        }
        Ok(EphLease {
            dialect,
            partition_id,
            offset,
            sequence_number: integer(get(seq_key), seq_key)?,
            owner,
            epoch: integer(get(epoch_key), epoch_key)?,
        })
    }

    /// The position to import, `(offset, sequence number)`, or why there is none.
    pub fn position(&self) -> std::result::Result<(&str, Option<i64>), &'static str> {
        match self.offset.as_deref() {
            None => Err("no offset: the lease never checkpointed"),
            Some("-1") => Err("offset -1 is the start of the stream: nothing was processed"),
            Some(offset) => Ok((offset, self.sequence_number)),
        }
    }
}

fn detect(map: &Map<String, Value>) -> Result<EphDialect> {
    let found: Vec<EphDialect> = [EphDialect::DotNet, EphDialect::Python, EphDialect::Java]
        .into_iter()
        .filter(|d| d.distinct_keys().iter().any(|k| map.contains_key(*k)))
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(lease_error(
            "not an EventProcessorHost lease: it has none of the keys `PartitionId`, \
             `partition_id` or `partitionId` (nor the sequence number keys)",
        )),
        several => Err(lease_error(format!(
            "mixes the key styles of {}",
            several
                .iter()
                .map(|d| d.name())
                .collect::<Vec<_>>()
                .join(" and ")
        ))),
    }
}

/// The UTF-8 byte order mark some Windows tools write before a JSON file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The keys of a JSON object, in order, duplicates kept (serde_json keeps only the last).
struct Keys(Vec<String>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, serde::de::IgnoredAny)) = map.next_entry::<String, _>()? {
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(Visit)
    }
}

fn read_one(path: &Path) -> Result<(EphLeaseFile, Option<String>)> {
    let io = |e: std::io::Error| Error::Io {
        path: Some(path.to_owned()),
        source: std::sync::Arc::new(e),
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_LEASE_FILE_LEN {
        return Err(lease_error(format!(
            "`{}` is {len} bytes, too large for a lease blob (limit {MAX_LEASE_FILE_LEN})",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    let in_file = |reason: String| lease_error(format!("`{}`: {reason}", path.display()));
    // A BOM is accepted (and said): the JSON after it is what the tool saved.
    let (bytes, note) = match bytes.strip_prefix(BOM) {
        Some(rest) => (
            rest,
            Some(format!(
                "`{}`: a UTF-8 byte order mark was skipped",
                path.display()
            )),
        ),
        None => (&bytes[..], None),
    };
    // Duplicate keys are refused: which of the two values EPH meant cannot be told.
    if let Ok(Keys(keys)) = serde_json::from_slice::<Keys>(bytes) {
        let mut seen = HashSet::new();
        if let Some(dup) = keys.iter().find(|k| !seen.insert(k.as_str())) {
            return Err(in_file(format!(
                "the key `{dup}` appears twice; which value is meant cannot be told"
            )));
        }
    }
    let name = path.file_name().and_then(|n| n.to_str()).map(|n| {
        // `0` as downloaded, or `0.json` as some tools save it.
        n.strip_suffix(".json").unwrap_or(n)
    });
    let lease = EphLease::parse(bytes, name).map_err(|e| match e {
        Error::InvalidArgument { field, reason } => in_file(reason).with_field(field),
        other => other,
    })?;
    // EPH names each blob after its partition: a file named for another partition than the
    // one it holds was renamed or copied, and importing it would move the wrong partition.
    if let Some(name) = name.filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
        if name != lease.partition_id {
            return Err(in_file(format!(
                "it is named for partition `{name}` but holds partition `{}`: renamed or \
                 copied? Name it after the partition it holds",
                lease.partition_id
            )));
        }
    }
    Ok((
        EphLeaseFile {
            path: path.to_owned(),
            lease,
        },
        note,
    ))
}

/// What [`scan_eph_leases`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EphScan {
    /// The lease files read, sorted by path.
    pub leases: Vec<EphLeaseFile>,
    /// The entries of the directory that were not read, and why: subfolders, symlinks, hidden
    /// files and other non-regular files.
    pub skipped: Vec<EphSkipped>,
    /// What was accepted but is worth saying (a UTF-8 byte order mark skipped).
    pub notes: Vec<String>,
}

/// A directory entry [`scan_eph_leases`] did not read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EphSkipped {
    /// The entry.
    pub path: PathBuf,
    /// Why: `subfolder`, `symlink`, `hidden` or `not a regular file`.
    pub reason: String,
}

/// Reads lease blobs from `path`: one file, or every regular file directly inside a directory
/// (not its subfolders, symlinks or hidden files, which are listed as skipped), sorted by
/// name. Point it at the directory that holds one consumer group's partition files
/// (`<container>/<prefix><group>/` for .NET and Java, the container itself for Python 1.x).
///
/// Every file is read before this returns, and every bad one is named in the error, so one
/// bad file does not hide another. A file with a UTF-8 byte order mark is read (and noted); a
/// file with a key twice, or named for another partition than the one it holds, is refused.
///
/// # Errors
/// [`Error::Io`] if a file or the directory cannot be read; [`Error::InvalidArgument`]
/// (`lease`) naming every file that is not a lease, two files that name the same partition,
/// or a directory that holds no lease file (naming the subfolders that do, when it is the
/// container root). Nothing is returned from a directory with a bad file.
pub fn scan_eph_leases(path: impl AsRef<Path>) -> Result<EphScan> {
    let path = path.as_ref();
    let io = |e: std::io::Error| Error::Io {
        path: Some(path.to_owned()),
        source: std::sync::Arc::new(e),
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mut scan = EphScan {
        leases: Vec::new(),
        skipped: Vec::new(),
        notes: Vec::new(),
    };
    let files = if meta.is_dir() {
        let (files, skipped) = entries(path).map_err(io)?;
        scan.skipped = skipped;
        files
    } else {
        vec![path.to_owned()]
    };
    let mut bad = Vec::new();
    for file in &files {
        match read_one(file) {
            Ok((lease, note)) => {
                scan.leases.push(lease);
                scan.notes.extend(note);
            }
            Err(Error::InvalidArgument { reason, .. }) => bad.push(reason),
            Err(other) => return Err(other),
        }
    }
    if !bad.is_empty() {
        let count = bad.len();
        return Err(lease_error(if count == 1 {
            bad.remove(0)
        } else {
            format!("{count} files are not usable leases: {}", bad.join("; "))
        }));
    }
    if meta.is_dir() && scan.leases.is_empty() {
        return Err(lease_error(empty_directory(path, &scan.skipped)));
    }
    let mut seen = HashSet::new();
    for f in &scan.leases {
        if !seen.insert(f.lease.partition_id.as_str()) {
            return Err(lease_error(format!(
                "partition `{}` appears twice (again in `{}`): are two consumer groups mixed?",
                f.lease.partition_id,
                f.path.display()
            )));
        }
    }
    Ok(scan)
}

/// [`scan_eph_leases`], only the leases.
///
/// # Errors
/// As [`scan_eph_leases`].
pub fn read_eph_leases(path: impl AsRef<Path>) -> Result<Vec<EphLeaseFile>> {
    Ok(scan_eph_leases(path)?.leases)
}

/// The regular files directly in `dir`, sorted, and the entries skipped.
fn entries(dir: &Path) -> std::io::Result<(Vec<PathBuf>, Vec<EphSkipped>)> {
    let (mut files, mut skipped) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let reason = if entry.file_name().to_string_lossy().starts_with('.') {
            "hidden"
        } else if kind.is_symlink() {
            "symlink"
        } else if kind.is_dir() {
            "subfolder"
        } else if !kind.is_file() {
            "not a regular file"
        } else {
            files.push(entry.path());
            continue;
        };
        skipped.push(EphSkipped {
            path: entry.path(),
            reason: reason.to_owned(),
        });
    }
    files.sort();
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((files, skipped))
}

/// Why a directory with no lease file is refused, pointing at the subfolders that hold files
/// (the container root holds one subfolder per consumer group).
fn empty_directory(dir: &Path, skipped: &[EphSkipped]) -> String {
    let mut text = format!("no lease files directly in `{}`", dir.display());
    if !skipped.is_empty() {
        text += &format!(" ({} entries skipped)", skipped.len());
    }
    let holding: Vec<String> = skipped
        .iter()
        .filter(|s| s.reason == "subfolder")
        .filter_map(|s| {
            let (files, _) = entries(&s.path).ok()?;
            (!files.is_empty()).then(|| format!("`{}` ({} files)", s.path.display(), files.len()))
        })
        .collect();
    if !holding.is_empty() {
        text += &format!(
            "; it looks like a lease container: point at the consumer group's subfolder, {}",
            holding.join(", ")
        );
    }
    text
}

/// What an EPH import does with one lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum EphAction {
    /// The partition has no position yet: write one.
    New,
    /// The store holds this very position already: nothing to do.
    Same,
    /// The store holds another position, and [`OnConflict::Overwrite`] was given: replace it.
    Replace {
        /// The position replaced.
        current: Checkpoint,
    },
    /// The store holds another position and [`OnConflict::Refuse`] was given: refused.
    Conflict {
        /// The position the store holds.
        current: Checkpoint,
    },
    /// The lease names no position; nothing is written.
    Skip {
        /// Why.
        reason: String,
    },
}

/// One lease and what the import does with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EphImportItem {
    /// The lease.
    pub lease: EphLease,
    /// The checkpoint it becomes (for [`EphAction::Skip`], `None`).
    pub checkpoint: Option<Checkpoint>,
    /// What happens to it.
    #[serde(flatten)]
    pub action: EphAction,
}

/// The items of an EPH import; conflicts are the items with [`EphAction::Conflict`].
struct Planned(Vec<EphImportItem>);

impl Plan for Planned {
    fn conflicts(&self) -> Option<(usize, String)> {
        let mut conflicts = self.0.iter().filter_map(|i| match &i.action {
            EphAction::Conflict { current } => Some((&i.lease, current)),
            _ => None,
        });
        let (lease, current) = conflicts.next()?;
        let first = format!(
            "partition {} has offset {}, sequence number {}",
            lease.partition_id,
            current.offset.as_deref().unwrap_or("null"),
            current
                .sequence_number
                .map_or("null".to_owned(), |s| s.to_string()),
        );
        Some((1 + conflicts.count(), first))
    }
}

/// Decides, inside `tx`, what happens to each lease.
fn plan(
    tx: &Transaction<'_>,
    g: &GroupKey,
    group: (&str, &str, &str),
    leases: &[EphLease],
    on_conflict: OnConflict,
) -> Result<Planned> {
    let (ns, hub, cg) = group;
    let mut items = Vec::with_capacity(leases.len());
    for lease in leases {
        let key = g.clone().partition(&lease.partition_id)?;
        let (offset, sequence_number) = match lease.position() {
            Ok(p) => p,
            Err(reason) => {
                items.push(EphImportItem {
                    lease: lease.clone(),
                    checkpoint: None,
                    action: EphAction::Skip {
                        reason: reason.to_owned(),
                    },
                });
                continue;
            }
        };
        let checkpoint = Checkpoint {
            fully_qualified_namespace: ns.to_owned(),
            event_hub_name: hub.to_owned(),
            consumer_group: cg.to_owned(),
            partition_id: lease.partition_id.clone(),
            offset: Some(offset.to_owned()),
            sequence_number,
        };
        let action = match ops::stored_checkpoint(tx, &key)? {
            // No row, or a legacy placeholder (no position): nothing is lost by writing.
            None | Some((None, None)) => EphAction::New,
            Some((o, s)) if o.as_deref() == Some(offset) && s == sequence_number => EphAction::Same,
            Some((o, s)) => {
                let current = Checkpoint {
                    offset: o,
                    sequence_number: s,
                    ..checkpoint.clone()
                };
                match on_conflict {
                    OnConflict::Overwrite => EphAction::Replace { current },
                    OnConflict::Refuse => EphAction::Conflict { current },
                }
            }
        };
        items.push(EphImportItem {
            lease: lease.clone(),
            checkpoint: Some(checkpoint),
            action,
        });
    }
    Ok(Planned(items))
}

/// Writes the position of every new or replaced item.
fn apply(tx: &Transaction<'_>, g: &GroupKey, planned: &Planned) -> Result<()> {
    for item in &planned.0 {
        if let (Some(c), EphAction::New | EphAction::Replace { .. }) =
            (&item.checkpoint, &item.action)
        {
            let key = g.clone().partition(&c.partition_id)?;
            ops::write_checkpoint(tx, &key, c.offset.as_deref(), c.sequence_number)?;
        }
    }
    Ok(())
}

/// Validates the group and the leases, then plans or applies them through the shared import
/// skeleton.
fn import(
    conn: &mut Connection,
    group: (&str, &str, &str),
    leases: &[EphLease],
    run: Run,
    on_conflict: OnConflict,
) -> Result<Vec<EphImportItem>> {
    let (ns, hub, cg) = group;
    let g = GroupKey::new(ns, hub, cg)?;
    let mut seen = HashSet::new();
    for lease in leases {
        if !seen.insert(lease.partition_id.as_str()) {
            return Err(lease_error(format!(
                "partition `{}` appears twice",
                lease.partition_id
            )));
        }
    }
    let planned = migrate::run(
        conn,
        run,
        on_conflict,
        |tx| plan(tx, &g, group, leases, on_conflict),
        |tx, planned| apply(tx, &g, planned),
    )?;
    Ok(planned.0)
}

impl SqliteCheckpointStore {
    /// What [`blocking_import_eph`](Self::blocking_import_eph) would do with `leases` in the
    /// given group, without writing. Conflicts show as [`EphAction::Conflict`] (or, with
    /// [`OnConflict::Overwrite`], [`EphAction::Replace`]).
    ///
    /// # Errors
    /// As [`blocking_import_eph`](Self::blocking_import_eph), except that conflicts are not an
    /// error.
    pub fn blocking_plan_import_eph(
        &self,
        fully_qualified_namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
        leases: &[EphLease],
        on_conflict: OnConflict,
    ) -> Result<Vec<EphImportItem>> {
        let group = (fully_qualified_namespace, event_hub_name, consumer_group);
        self.with_read_conn(|_, c| import(c, group, leases, Run::Plan, on_conflict))
    }

    /// Writes the position of every lease that has one as the partition's checkpoint in the
    /// given group, in one `BEGIN IMMEDIATE` transaction, and returns what was done per lease.
    /// Leases without a position are skipped ([`EphAction::Skip`]); a legacy placeholder is
    /// replaced; ownership is not touched.
    ///
    /// ```
    /// use eventhubs_checkpointstore_sqlite::migrate::{eph::EphLease, OnConflict};
    /// use eventhubs_checkpointstore_sqlite::SqliteCheckpointStore;
    ///
    /// let store = SqliteCheckpointStore::open_in_memory()?;
    /// let leases = [
    ///     EphLease::parse(br#"{"partition_id":"0","offset":"4096","sequence_number":64,
    ///         "owner":null,"token":null,"epoch":2,"event_processor_context":null}"#, None)?,
    ///     EphLease::parse(br#"{"partitionId":"1","sequenceNumber":0,"epoch":-1}"#, None)?,
    /// ];
    /// let done = store.blocking_import_eph("ns", "hub", "$Default", &leases, OnConflict::Refuse)?;
    /// assert_eq!(done.len(), 2); // partition 1 was skipped: it has no offset
    /// let checkpoints = store.blocking_list_checkpoints("ns", "hub", "$Default")?;
    /// assert_eq!(checkpoints.len(), 1);
    /// assert_eq!(checkpoints[0].sequence_number, Some(64));
    /// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an invalid name or a partition that appears twice;
    /// [`Error::Conflict`] if, with [`OnConflict::Refuse`], a partition already has another
    /// position.
    /// Nothing is written in either case. Storage errors as for
    /// [`update_checkpoint`](crate::CheckpointStore::update_checkpoint).
    pub fn blocking_import_eph(
        &self,
        fully_qualified_namespace: &str,
        event_hub_name: &str,
        consumer_group: &str,
        leases: &[EphLease],
        on_conflict: OnConflict,
    ) -> Result<Vec<EphImportItem>> {
        let group = (fully_qualified_namespace, event_hub_name, consumer_group);
        self.with_conn(|_, c| import(c, group, leases, Run::Apply, on_conflict))
    }
}

//! The crate's one error type.

use std::path::PathBuf;
use std::sync::Arc;

/// The result type of every fallible operation in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The underlying cause of an [`Error`], shared so that one failure (say, of a group-committed
/// batch) can be reported to every caller it affects.
pub type Source = Arc<dyn std::error::Error + Send + Sync>;

/// What went wrong, named for what the caller can do about it.
///
/// Messages are lowercase without a trailing period; the underlying cause, where there is one,
/// is kept as the [`source`](std::error::Error::source).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An argument was rejected before anything was written: fix the named field.
    #[error("invalid argument `{field}`: {reason}")]
    InvalidArgument {
        /// The offending field, for example `partition_id`.
        field: &'static str,
        /// Why it was rejected.
        reason: String,
    },

    /// A fenced write found that the ownership (or legacy lease) it relied on is no longer the
    /// current one; nothing was written. Re-read ownership before trying again.
    #[error("ownership of partition `{partition_id}` was lost: {reason}")]
    OwnershipLost {
        /// The partition whose ownership is gone.
        partition_id: String,
        /// What the store found instead.
        reason: String,
    },

    /// An import found rows that the store already holds with other contents, and was not
    /// asked to overwrite them. Nothing was written: import again with overwrite to replace
    /// them, or leave them as they are.
    #[error("{count} row(s) conflict with the store, nothing was written (first: {first})")]
    Conflict {
        /// How many rows conflict.
        count: usize,
        /// The first conflicting row and what the store holds instead.
        first: String,
    },

    /// The database stayed locked by another connection or process for longer than the busy
    /// timeout, or no pooled connection became free in time. Nothing was written; retrying later
    /// is safe.
    #[error(
        "{} is busy: gave up after the busy timeout{}",
        path.as_ref().map_or("the database".to_owned(), |p| format!("`{}`", p.display())),
        timeout.map(|t| format!(" of {t:?}")).unwrap_or_default()
    )]
    Busy {
        /// The database file that stayed locked (`None` in memory, or when not known).
        path: Option<PathBuf>,
        /// The busy timeout that ran out, when known.
        timeout: Option<std::time::Duration>,
        /// The underlying SQLite or pool error.
        #[source]
        source: Source,
    },

    /// The file is not a SQLite database, is corrupt, or is a SQLite database that is not a
    /// checkpoint store. It was left untouched.
    #[error(
        "{} is not a checkpoint store database: {reason}",
        path_or_memory(path)
    )]
    NotADatabase {
        /// The file that was refused.
        path: Option<PathBuf>,
        /// What is wrong with it.
        reason: String,
        /// The underlying SQLite error, if any.
        #[source]
        source: Option<Source>,
    },

    /// The file was written by a newer version of this crate. It was left untouched; upgrade
    /// the crate to open it.
    #[error(
        "{} has schema version {found}, newer than the supported {supported}",
        path_or_memory(path)
    )]
    SchemaTooNew {
        /// The file that was refused.
        path: Option<PathBuf>,
        /// The schema version found in the file.
        found: i64,
        /// The newest schema version this build understands.
        supported: i64,
    },

    /// The database (or its directory) is read-only, so a write was refused. Nothing was
    /// written.
    #[error("{} is read-only", path_or_memory(path))]
    ReadOnly {
        /// The database file.
        path: Option<PathBuf>,
        /// The underlying SQLite error, if a write was refused (rather than the open).
        #[source]
        source: Option<Source>,
    },

    /// The disk (or the file size limit) is full. The write was rolled back; earlier data is
    /// intact, and writes succeed again once there is space.
    #[error("no space left for {}", path_or_memory(path))]
    DiskFull {
        /// The database file.
        path: Option<PathBuf>,
        /// The underlying SQLite error.
        #[source]
        source: Source,
    },

    /// The file could not be opened, created, read or written; the source says which.
    #[error("i/o error on {}", path_or_memory(path))]
    Io {
        /// The path that could not be opened, read or written.
        path: Option<PathBuf>,
        /// The underlying error.
        #[source]
        source: Source,
    },

    /// Anything else: a SQLite error this crate does not expect, or a panic in a blocking task.
    /// This is a bug or an environment problem; the message and source say which.
    #[error("internal error: {message}")]
    Internal {
        /// What happened.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Source>,
    },
}

/// A [`Source`] that is only a message, for causes that are not errors of another library.
pub(crate) fn message(text: &str) -> Source {
    Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(text))
}

fn path_or_memory(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("`{}`", p.display()),
        None => "the in-memory database".to_owned(),
    }
}

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// An [`Error::InvalidArgument`] with its field set to `field`; any other error as is.
    pub(crate) fn with_field(self, field: &'static str) -> Self {
        match self {
            Error::InvalidArgument { reason, .. } => Error::InvalidArgument { field, reason },
            other => other,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Error::Internal {
            message: message.into(),
            source: None,
        }
    }

    /// Attaches the database path to the variants that name one and were built without it.
    pub(crate) fn at(mut self, file: Option<&std::path::Path>) -> Self {
        if let Error::NotADatabase { path, .. }
        | Error::SchemaTooNew { path, .. }
        | Error::ReadOnly { path, .. }
        | Error::DiskFull { path, .. }
        | Error::Io { path, .. }
        | Error::Busy { path, .. } = &mut self
        {
            if path.is_none() {
                *path = file.map(ToOwned::to_owned);
            }
        }
        // SQLite reports a full disk as such, but a write refused by the file size limit
        // (EFBIG) only as a write error: tell them apart by the files' sizes.
        if let Error::Io {
            path: Some(path),
            source,
        } = &self
        {
            if is_write_error(source.as_ref()) {
                if let Some(limit) = file_size_limit_reached(path) {
                    return Error::DiskFull {
                        path: Some(path.clone()),
                        source: Arc::new(FileSizeLimit {
                            limit,
                            source: Arc::clone(source),
                        }),
                    };
                }
            }
        }
        self
    }

    /// Attaches the busy timeout that ran out to an [`Error::Busy`] built without it.
    pub(crate) fn waited(mut self, busy_timeout: std::time::Duration) -> Self {
        if let Error::Busy { timeout, .. } = &mut self {
            timeout.get_or_insert(busy_timeout);
        }
        self
    }

    /// True for the errors that mean "try again later": busy and locked.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }

    /// True when a fenced write or a legacy lease operation found that the ownership (lease)
    /// it relied on is no longer current: [`Error::OwnershipLost`].
    pub fn is_ownership_lost(&self) -> bool {
        matches!(self, Error::OwnershipLost { .. })
    }
}

/// The cause of an [`Error::DiskFull`] that the file size limit (`RLIMIT_FSIZE`) caused.
#[derive(Debug, thiserror::Error)]
#[error("the file size limit of {limit} bytes is reached")]
struct FileSizeLimit {
    limit: u64,
    #[source]
    source: Source,
}

fn is_write_error(err: &(dyn std::error::Error + 'static)) -> bool {
    use rusqlite::ffi;
    matches!(
        err.downcast_ref::<rusqlite::Error>(),
        Some(rusqlite::Error::SqliteFailure(e, _))
            if e.extended_code == ffi::SQLITE_IOERR_WRITE
                || e.extended_code == ffi::SQLITE_IOERR_TRUNCATE
    )
}

/// The process's file size limit, if the database file or one of its `-wal`, `-shm` and
/// `-journal` files has reached it.
#[cfg(target_os = "linux")]
fn file_size_limit_reached(db: &std::path::Path) -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max file size"))?;
    // "Max file size   <soft>   <hard>   bytes"; "unlimited" does not parse.
    let soft: u64 = line["Max file size".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let reached = ["", "-wal", "-shm", "-journal"].iter().any(|suffix| {
        std::fs::metadata(crate::schema::side_file(db, suffix)).is_ok_and(|m| m.len() >= soft)
    });
    reached.then_some(soft)
}

#[cfg(not(target_os = "linux"))]
fn file_size_limit_reached(_db: &std::path::Path) -> Option<u64> {
    None
}

impl From<rusqlite::Error> for Error {
    /// Sorts SQLite's result codes into the variants a caller can act on.
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        let code = match &err {
            rusqlite::Error::SqliteFailure(e, _) => Some(e.code),
            // The store only ever writes valid UTF-8 text and integers where the schema says
            // so: a stored value that does not read back as its type was damaged on disk (or
            // written by hand).
            rusqlite::Error::Utf8Error(..)
            | rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => {
                return Error::NotADatabase {
                    path: None,
                    reason: "it is corrupt: a stored value is not of the type this store writes"
                        .to_owned(),
                    source: Some(Arc::new(err)),
                }
            }
            _ => None,
        };
        match code {
            Some(C::DatabaseBusy | C::DatabaseLocked) => Error::Busy {
                path: None,
                timeout: None,
                source: Arc::new(err),
            },
            Some(C::NotADatabase) => Error::NotADatabase {
                path: None,
                reason: "it is not a SQLite database".to_owned(),
                source: Some(Arc::new(err)),
            },
            Some(C::DatabaseCorrupt) => Error::NotADatabase {
                path: None,
                reason: "it is corrupt".to_owned(),
                source: Some(Arc::new(err)),
            },
            Some(C::ReadOnly) => Error::ReadOnly {
                path: None,
                source: Some(Arc::new(err)),
            },
            Some(C::DiskFull | C::TooBig) => Error::DiskFull {
                path: None,
                source: Arc::new(err),
            },
            Some(C::CannotOpen | C::PermissionDenied | C::SystemIoFailure) => Error::Io {
                path: None,
                source: Arc::new(err),
            },
            _ => Error::Internal {
                message: "unexpected sqlite error".to_owned(),
                source: Some(Arc::new(err)),
            },
        }
    }
}

impl From<r2d2::Error> for Error {
    /// r2d2 reports both "no connection became free in time" and "a new connection failed to
    /// open" this way; the first is the common case once the store is open.
    fn from(err: r2d2::Error) -> Self {
        Error::Busy {
            path: None,
            timeout: None,
            source: Arc::new(err),
        }
    }
}

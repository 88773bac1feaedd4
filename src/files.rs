//! The file-system side of opening a store: the regular-file gate that runs before SQLite is
//! given a path, exclusive creation of the files this crate writes (a new store, a backup, an
//! export), and the names SQLite is given (absolute and resolved, so never read as a URI).
//!
//! On POSIX systems, closing *any* descriptor of a file drops every lock the process holds on
//! it, SQLite's included, so an `open` and `close` of a store's file beside a live connection
//! (another store, another thread of this process) would silently unlock it, and let another
//! process write at the same time. So the gate looks with `stat`, a new file is made with
//! `mknod` on Linux (which opens nothing), and the one descriptor this crate reads a store's
//! header through is [`Held`]: shared by every store of the process on that file, and closed
//! only when the last of them is dropped.

use std::fs::{File, Metadata};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::error::{message, Error, Result};

/// Which file a path named when it was looked at: device and inode number, to tell later
/// whether the path still names the same file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    /// The identity of the file described by `meta`.
    pub(crate) fn of(meta: &Metadata) -> Identity {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Identity {
                dev: meta.dev(),
                ino: meta.ino(),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Identity { dev: 0, ino: 0 }
        }
    }

    /// The identity of the file `path` names now (following symlinks), if it names one.
    pub(crate) fn now(path: &Path) -> Option<Identity> {
        std::fs::metadata(path).ok().map(|m| Identity::of(&m))
    }
}

/// What [`gate`] let through.
#[derive(Debug)]
pub(crate) struct Gated {
    /// The file's absolute path with every symlink resolved: the name SQLite is given, and
    /// the one its `-wal` and `-shm` files are named after.
    pub(crate) real: PathBuf,
    /// The file the path named.
    pub(crate) identity: Identity,
}

/// How many times [`gate`] looks again when the path changes under it (another process
/// creating the same new store at the same moment).
const GATE_TRIES: usize = 100;

/// Lets through only a regular file, or a missing one when `create` is `Some(mode)` (it is
/// then created, empty, with `mode` less the umask). Symlinks are followed to a regular file;
/// a symlink to anything else, or to nothing, is refused. Nothing is opened: a FIFO, a device
/// or a socket is refused before anything could block on it or write to it.
pub(crate) fn gate(path: &Path, create: Option<u32>) -> Result<Gated> {
    for _ in 0..GATE_TRIES {
        match std::fs::metadata(path) {
            Ok(meta) => {
                refuse_unless_regular(&meta)?;
                let real = std::fs::canonicalize(path).map_err(io)?;
                return Ok(Gated {
                    real,
                    identity: Identity::of(&meta),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(mode) = create else {
                    return Err(Error::Io {
                        path: None,
                        source: Arc::new(e),
                    });
                };
                match make_empty(path, mode) {
                    // Made here, or by a concurrent opener since: look again.
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let dangling = std::fs::symlink_metadata(path)
                            .is_ok_and(|m| m.file_type().is_symlink())
                            && std::fs::metadata(path)
                                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
                        if dangling {
                            return Err(Error::Io {
                                path: None,
                                source: message(
                                    "the path is a symlink to a missing file: a new store is \
                                     not created through a symlink",
                                ),
                            });
                        }
                    }
                    Err(e) => return Err(io(e)),
                }
            }
            Err(e) => return Err(io(e)),
        }
    }
    Err(Error::Io {
        path: None,
        source: message("the path kept changing while it was being opened"),
    })
}

/// The descriptors this process holds of store files, by process id and file: see [`Held`].
/// A child of `fork` inherits the parent's entries (and, in memory, the stores that keep them
/// alive) but must not share them: the descriptor's open file description, and with it the
/// gate's lock (`store/gate.rs`), would then be the parent's too.
static HELD: Mutex<Vec<(u32, Identity, Weak<File>)>> = Mutex::new(Vec::new());

/// A read-only descriptor of a store's file, shared by every store of this process on that
/// file (and closed when the last is dropped), for reading its header without ever closing a
/// descriptor beside a live connection.
#[derive(Debug)]
pub(crate) struct Held {
    file: Arc<File>,
    identity: Identity,
    writable: bool,
}

impl Held {
    /// The descriptor (the cross-process gate locks it: `store::gate`).
    pub(crate) fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// The file it is a descriptor of.
    pub(crate) fn identity(&self) -> Identity {
        self.identity
    }

    /// Opened for writing as well (never written through: the cross-process gate's lock is a
    /// write lock, which needs it).
    pub(crate) fn writable(&self) -> bool {
        self.writable
    }
}

/// Holds the file that the gate let through as `identity` at `path`: the descriptor another
/// store of this process holds of it, or a new one, opened non-blocking and checked (with
/// `fstat`) to be that same regular file. For a store that writes (`writable`), a new one is
/// opened for writing too if the file allows it.
pub(crate) fn hold(path: &Path, identity: Identity, writable: bool) -> Result<Held> {
    let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
    held.retain(|(_, _, file)| file.strong_count() > 0);
    let pid = std::process::id();
    if let Some(file) = held
        .iter()
        .find(|(p, id, _)| *p == pid && *id == identity)
        .and_then(|(_, _, file)| file.upgrade())
    {
        let writable = opened_for_writing(&file);
        return Ok(Held {
            file,
            identity,
            writable,
        });
    }
    let file = if writable {
        open_descriptor(path, true).or_else(|_| open_descriptor(path, false))
    } else {
        open_descriptor(path, false)
    }
    .map_err(io)?;
    let writable = opened_for_writing(&file);
    let meta = file.metadata().map_err(io)?;
    refuse_unless_regular(&meta)?;
    if Identity::of(&meta) != identity {
        return Err(Error::Io {
            path: None,
            source: message("the file was replaced while it was being opened"),
        });
    }
    let file = Arc::new(file);
    held.push((pid, identity, Arc::downgrade(&file)));
    Ok(Held {
        file,
        identity,
        writable,
    })
}

/// Opens `path` for reading (and writing, with `write`) without blocking (a FIFO put there
/// since the gate) and without making it the controlling terminal (a terminal device).
fn open_descriptor(path: &Path, write: bool) -> std::io::Result<File> {
    #[cfg(unix)]
    {
        use rustix::fs::{open, Mode, OFlags};
        let access = if write { OFlags::RDWR } else { OFlags::RDONLY };
        let flags = access | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        Ok(File::from(open(path, flags, Mode::empty())?))
    }
    #[cfg(not(unix))]
    {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
    }
}

/// Opens the regular file at `path` for appending only: never a symlink (refused by the open
/// itself), and nothing but a regular file (refused after `fstat`).
pub(crate) fn open_for_append(path: &Path) -> std::io::Result<File> {
    #[cfg(unix)]
    let file = {
        use rustix::fs::{open, Mode, OFlags};
        let flags = OFlags::WRONLY
            | OFlags::APPEND
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::NOCTTY
            | OFlags::CLOEXEC;
        File::from(open(path, flags, Mode::empty())?)
    };
    #[cfg(not(unix))]
    let file = std::fs::OpenOptions::new().append(true).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

fn opened_for_writing(file: &File) -> bool {
    #[cfg(unix)]
    {
        rustix::fs::fcntl_getfl(file)
            .is_ok_and(|f| f & rustix::fs::OFlags::ACCMODE == rustix::fs::OFlags::RDWR)
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        false
    }
}

/// The first `len` bytes (fewer if the file is shorter) of the file at `path`, and its length:
/// through the descriptor a store of this process holds of it if there is one, else through
/// a descriptor of its own.
pub(crate) fn read_start(path: &Path, len: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let identity = Identity::now(path);
    let shared = {
        let held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        // Any process's: a read closes nothing, and a parent's descriptor is as good to read.
        held.iter()
            .find(|(_, id, _)| Some(*id) == identity)
            .and_then(|(_, _, file)| file.upgrade())
    };
    match shared {
        Some(file) => read_at_start(&file, len),
        None => read_at_start(&open_descriptor(path, false)?, len),
    }
}

fn read_at_start(file: &File, len: usize) -> std::io::Result<(Vec<u8>, u64)> {
    let size = file.metadata()?.len();
    let mut buf = vec![0; len];
    let mut got = 0;
    while got < len {
        #[cfg(unix)]
        let n = std::os::unix::fs::FileExt::read_at(file, &mut buf[got..], got as u64)?;
        #[cfg(windows)]
        let n = std::os::windows::fs::FileExt::seek_read(file, &mut buf[got..], got as u64)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok((buf, size))
}

/// Refuses a database whose `-wal` or `-shm` is there but is not a regular file (a symlink, a
/// directory): SQLite opens them only as regular files, never through a symlink, and then fails
/// as if it could not create them ("attempt to write a readonly database", or "unable to
/// open"). Nothing is opened or changed.
pub(crate) fn refuse_odd_side_files(real: &Path) -> Result<()> {
    for suffix in ["-wal", "-shm"] {
        let side = crate::schema::side_file(real, suffix);
        let Ok(meta) = std::fs::symlink_metadata(&side) else {
            continue;
        };
        let kind = meta.file_type();
        let what = if kind.is_file() {
            continue;
        } else if kind.is_symlink() {
            "a symbolic link"
        } else if kind.is_dir() {
            "a directory"
        } else {
            describe(&kind)
        };
        return Err(Error::Io {
            path: None,
            source: message(&format!(
                "its {suffix} file `{}` is {what}: SQLite opens a database's {suffix} file only \
                 as a regular file, never through a symbolic link; move it aside (nothing was \
                 changed) and open again",
                side.display()
            )),
        });
    }
    Ok(())
}

/// Refuses anything but a regular file, naming what it is.
fn refuse_unless_regular(meta: &Metadata) -> Result<()> {
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(());
    }
    if kind.is_dir() {
        return Err(Error::Io {
            path: None,
            source: message("the path is a directory, not a database file"),
        });
    }
    Err(Error::NotADatabase {
        path: None,
        reason: format!("it is {}, not a regular file", describe(&kind)),
        source: None,
    })
}

/// What a file that is not a regular file is, in words.
fn describe(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    let _ = kind;
    "a special file"
}

/// Makes a new, empty regular file at `path` with `mode` (less the umask) without opening it;
/// fails with `AlreadyExists` if anything (a dangling symlink too) is there.
#[cfg(target_os = "linux")]
fn make_empty(path: &Path, mode: u32) -> std::io::Result<()> {
    use rustix::fs::{mknodat, FileType, Mode, CWD};
    mknodat(
        CWD,
        path,
        FileType::RegularFile,
        Mode::from_raw_mode(mode & 0o7777),
        0,
    )
    .map_err(std::io::Error::from)
}

/// Elsewhere, creates the file exclusively and closes it at once.
#[cfg(not(target_os = "linux"))]
fn make_empty(path: &Path, mode: u32) -> std::io::Result<()> {
    create_new(path, mode).map(drop)
}

/// Creates a new file at `path` for writing, exclusively (`O_CREAT | O_EXCL`: it fails if
/// anything, a symlink too, is at `path`, and never follows one), with Unix permission bits
/// `mode` less the umask.
fn create_new(path: &Path, mode: u32) -> std::io::Result<File> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, mode);
    #[cfg(not(unix))]
    let _ = mode;
    open.open(path)
}

/// Creates a new file at `path` for writing, exclusively: it fails with [`Error::Io`] (whose
/// source is an [`AlreadyExists`](std::io::ErrorKind::AlreadyExists) I/O error) if anything is
/// already there, a symlink too (which is neither followed nor touched). The file gets the Unix
/// permission bits `mode` less the umask; `0o600` is what a store gets by default.
///
/// This is how a backup destination is created, and what an export written to a file should
/// use, so that neither overwrites a file nor is readable by others.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use std::io::Write;
/// let path = dir.path().join("export.json");
/// let mut file = eventhubs_checkpointstore_sqlite::create_new_file(&path, 0o600)?;
/// file.write_all(b"{}").unwrap();
/// assert!(eventhubs_checkpointstore_sqlite::create_new_file(&path, 0o600).is_err());
/// # Ok::<(), eventhubs_checkpointstore_sqlite::Error>(())
/// ```
///
/// # Errors
/// [`Error::Io`] naming `path` if it exists or cannot be created.
pub fn create_new_file(path: impl AsRef<Path>, mode: u32) -> Result<File> {
    let path = path.as_ref();
    create_new(path, mode).map_err(|e| io(e).at(Some(path)))
}

/// The name to give SQLite for `path`: SQLite (built with URIs on) reads a name that starts
/// with `file:` as a URI, so such a relative name gets a leading `./`. Every other name is a
/// plain path to SQLite, whatever `?`, `#` or `%` it holds.
pub(crate) fn sqlite_name(path: &Path) -> PathBuf {
    if path.as_os_str().as_encoded_bytes().starts_with(b"file:") {
        Path::new(".").join(path)
    } else {
        path.to_owned()
    }
}

/// A `file:` URI for the absolute path `path`, every byte but unreserved ones and `/`
/// percent-encoded, with the query `query`.
pub(crate) fn uri(path: &Path, query: &str) -> String {
    let mut out = String::from("file:");
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push('?');
    out.push_str(query);
    out
}

/// Whether this process may write `path`, by its effective ids (an immutable file or
/// read-only media say no even to root).
pub(crate) fn writable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use rustix::fs::{accessat, Access, AtFlags, CWD};
        accessat(CWD, path, Access::WRITE_OK, AtFlags::EACCESS).is_ok()
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).is_ok_and(|m| !m.permissions().readonly())
    }
}

fn io(e: std::io::Error) -> Error {
    Error::Io {
        path: None,
        source: Arc::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encodes_what_a_uri_would_read() {
        assert_eq!(
            uri(Path::new("/a b/x?y#z%.db"), "immutable=1"),
            "file:/a%20b/x%3Fy%23z%25.db?immutable=1"
        );
        assert_eq!(
            sqlite_name(Path::new("file:x.db")),
            Path::new("./file:x.db")
        );
        assert_eq!(sqlite_name(Path::new("x?.db")), Path::new("x?.db"));
    }
}

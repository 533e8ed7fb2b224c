//! The store's error type.
//!
//! Expected outcomes of a put (an illegal message, a flush timeout) are
//! [`PutStatus`](crate::PutStatus) values; an `Err` means the store could not do
//! its job: I/O failed, the disk is full, data on disk is corrupt, or the write
//! path was poisoned by a failed flush.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result with the store's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What exactly is wrong with bytes read from disk.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CorruptionKind {
    /// A record failed to decode (magic, lengths, CRCs, encoding).
    Record(crate::format::RecordError),
    /// A record decoded but its PHYSICALOFFSET field is not the position it was read from.
    MisplacedRecord {
        /// The physical offset written in the record.
        stored: u64,
    },
    /// A mapped file's length differs from the configured file size.
    WrongFileSize {
        /// Actual length on disk.
        actual: u64,
        /// Configured size.
        expected: u64,
    },
    /// A file in a store directory whose name is not a 20-digit offset.
    ForeignFile,
    /// The file names of a queue do not follow each other by exactly one file size.
    GapInFileNames {
        /// The start offset the file should have had.
        expected_offset: u64,
    },
    /// A file name that is not a multiple of the configured file size.
    MisalignedFileName,
    /// An IndexFile header with impossible counts or offsets.
    IndexHeader,
    /// A ConsumeQueue unit that does not match the record it points at (the offset in the
    /// error is the queue offset).
    UnitMismatch,
    /// Found by the offline check: repairing it would lose records, so it needs the
    /// repair's explicit discard flag.
    NeedsDiscard(String),
    /// A deleted-topic marker (`consumequeue/<topic>/deleted-before`) does not hold an
    /// offset.
    BadTombstone(String),
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Record(e) => write!(f, "bad record: {e}"),
            Self::MisplacedRecord { stored } => {
                write!(
                    f,
                    "record claims physical offset {stored}, which is not where it lies"
                )
            }
            Self::WrongFileSize { actual, expected } => {
                write!(f, "file is {actual} bytes, expected {expected}")
            }
            Self::ForeignFile => f.write_str("file name is not a 20-digit offset"),
            Self::BadTombstone(text) => write!(
                f,
                "deleted-topic marker holds `{text}`, not a CommitLog offset"
            ),
            Self::NeedsDiscard(what) => write!(
                f,
                "{what} (repairing it drops records: pass the discard flag to cut here)"
            ),
            Self::GapInFileNames { expected_offset } => {
                write!(
                    f,
                    "gap in file names: expected a file starting at {expected_offset}"
                )
            }
            Self::MisalignedFileName => {
                f.write_str("file name is not a multiple of the configured file size")
            }
            Self::IndexHeader => f.write_str("index file header has impossible values"),
            Self::UnitMismatch => {
                f.write_str("consume queue unit does not match the record it points at")
            }
        }
    }
}

/// Why replicated CommitLog bytes were refused (see
/// [`MessageStore::append_replicated`](crate::MessageStore::append_replicated)). Nothing of
/// the refused stretch was made visible; the records before it were.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The bytes do not start where this copy of the log ends: the two logs have diverged
    /// (or the sender skipped or repeated data).
    OffsetMismatch {
        /// Where this log ends (the next byte it needs).
        expected: u64,
        /// Where the offered bytes start.
        offered: u64,
    },
    /// An empty log can only start at a file boundary.
    Misaligned {
        /// The offered start.
        offset: u64,
        /// The CommitLog file size.
        file_size: u64,
    },
    /// The bytes at `offset` are not a valid record.
    BadRecord {
        /// CommitLog offset of the bad record.
        offset: u64,
        /// What is wrong with it.
        error: crate::format::RecordError,
    },
    /// A valid record that names another position as its own.
    MisplacedRecord {
        /// Where it would have been written.
        offset: u64,
        /// The physical offset written in it.
        stored: u64,
    },
    /// A record that does not leave room for its file's end-of-file blank, or a blank that
    /// does not declare exactly the rest of its file.
    Overrun {
        /// CommitLog offset of the record or blank.
        offset: u64,
        /// Its declared size.
        size: u64,
        /// Bytes left in the file.
        remaining: u64,
    },
}

impl fmt::Display for ReplicaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OffsetMismatch { expected, offered } => write!(
                f,
                "offered bytes start at offset {offered} but this log ends at {expected} (the logs have diverged)"
            ),
            Self::Misaligned { offset, file_size } => write!(
                f,
                "an empty log can only start at a file boundary; offset {offset} is not a multiple of {file_size}"
            ),
            Self::BadRecord { offset, error } => write!(f, "bad record at offset {offset}: {error}"),
            Self::MisplacedRecord { offset, stored } => write!(
                f,
                "record at offset {offset} claims physical offset {stored}"
            ),
            Self::Overrun {
                offset,
                size,
                remaining,
            } => write!(
                f,
                "{size} bytes at offset {offset} do not fit the {remaining} left in the file"
            ),
        }
    }
}

/// Everything that can go wrong in the store.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    Io {
        /// What the store was doing (`"fallocate"`, `"msync"`, ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The disk (or quota) is full. The store stays usable: nothing was written, and
    /// appends succeed again once space is freed.
    DiskFull {
        /// What was being done (`allocate`, `msync`, `rename`, …).
        op: &'static str,
        /// The file it was done to.
        path: PathBuf,
    },
    /// Bytes on disk are corrupt. Opening refuses rather than guessing.
    Corrupted {
        /// The file holding the bad bytes.
        path: PathBuf,
        /// Offset of the bad bytes within that file.
        offset: u64,
        /// What is wrong.
        kind: CorruptionKind,
    },
    /// A configuration value is invalid.
    InvalidConfig {
        /// The field (or RocketMQ property key) at fault.
        field: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A configuration key the store does not have.
    UnknownConfigKey {
        /// The key as given.
        key: String,
    },
    /// Another process (or another open store in this process) holds the directory.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A flush failed earlier. Data above the last good flush may not be on disk,
    /// and the kernel may already have dropped the dirty pages, so the store refuses
    /// every further write until it is reopened and recovered from disk.
    Poisoned,
    /// The store has been shut down.
    ShutDown,
    /// Replicated bytes were refused.
    Replica(ReplicaError),
    /// Dispatch to the ConsumeQueues did not catch up with the CommitLog within `waited`
    /// (or has failed); the operation that needed it changed nothing.
    DispatchBehind {
        /// How long it waited.
        waited: std::time::Duration,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => Error::DiskFull { op, path },
            _ => Error::Io { op, path, source },
        }
    }

    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidConfig {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Error::DiskFull { op, path } => write!(f, "disk full: {op} {}", path.display()),
            Error::Corrupted { path, offset, kind } => {
                write!(
                    f,
                    "corrupt data in {} at offset {offset}: {kind}",
                    path.display()
                )
            }
            Error::InvalidConfig { field, reason } => {
                write!(f, "invalid configuration `{field}`: {reason}")
            }
            Error::UnknownConfigKey { key } => write!(f, "unknown configuration key `{key}`"),
            Error::Locked { path } => {
                write!(
                    f,
                    "store directory is locked by another process ({})",
                    path.display()
                )
            }
            Error::Poisoned => f.write_str(
                "a flush to disk failed earlier; the store refuses writes until it is reopened",
            ),
            Error::ShutDown => f.write_str("the store has been shut down"),
            Error::Replica(e) => write!(f, "replication: {e}"),
            Error::DispatchBehind { waited } => write!(
                f,
                "dispatch to the consume queues did not catch up within {waited:?}; nothing was changed"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Corrupted {
                kind: CorruptionKind::Record(e),
                ..
            } => Some(e),
            _ => None,
        }
    }
}

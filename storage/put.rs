//! What a put reports back: its status, where the record landed, and the offsets it names.

use std::net::SocketAddr;

use crate::format::{self, EncodeError};

/// A byte offset in the CommitLog (PHYSICALOFFSET).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysicalOffset(pub u64);

/// A logical index in one topic queue (QUEUEOFFSET; a ConsumeQueue unit number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct QueueOffset(pub u64);

/// RocketMQ's PutMessageStatus. Expected outcomes are values; a broken store is an
/// `Err` instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PutStatus {
    /// Stored (and, in SYNC_FLUSH with `WAIT`, flushed).
    PutOk,
    /// Stored, but its flush did not complete within `syncFlushTimeout`.
    FlushDiskTimeout,
    /// SYNC_MASTER: no slave acknowledged within `slaveTimeout` (the store never produces it:
    /// broker-lite answers it after waiting for its slaves; the message stays stored).
    FlushSlaveTimeout,
    /// SYNC_MASTER without a slave close enough (`haSlaveFallbehindMax`); like
    /// `FlushSlaveTimeout`, answered by broker-lite, never by the store.
    SlaveNotAvailable,
    /// The store is shut down or not writeable.
    ServiceNotAvailable,
    /// No CommitLog file could be obtained in time.
    CreateMappedFileFailed,
    /// Limits broken (topic, sizes, batch rules).
    MessageIllegal,
    /// Encoded properties over 32 767 bytes.
    PropertiesSizeExceeded,
    /// The put lock has been held longer than `osPageCacheBusyTimeOutMills`.
    OsPageCacheBusy,
    /// The disk is fuller than `diskSpaceWarningLevelRatio` (90 %): nothing was written.
    /// Puts are accepted again once cleanup brings usage below it. RocketMQ reports this
    /// as SERVICE_NOT_AVAILABLE; broker-lite answers that code with a remark saying why.
    DiskFull,
    /// Anything else.
    UnknownError,
}

impl PutStatus {
    /// RocketMQ's name for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            PutStatus::PutOk => "PUT_OK",
            PutStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
            PutStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
            PutStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
            PutStatus::ServiceNotAvailable => "SERVICE_NOT_AVAILABLE",
            PutStatus::CreateMappedFileFailed => "CREATE_MAPEDFILE_FAILED",
            PutStatus::MessageIllegal => "MESSAGE_ILLEGAL",
            PutStatus::PropertiesSizeExceeded => "PROPERTIES_SIZE_EXCEEDED",
            PutStatus::OsPageCacheBusy => "OS_PAGECACHE_BUSY",
            PutStatus::DiskFull => "DISK_FULL",
            PutStatus::UnknownError => "UNKNOWN_ERROR",
        }
    }

    /// Whether the message(s) were written to the CommitLog.
    pub fn is_stored(self) -> bool {
        matches!(self, PutStatus::PutOk | PutStatus::FlushDiskTimeout)
    }
}

// The codec knows nothing of put statuses; this is where its refusals get one.
impl EncodeError {
    /// The RocketMQ put status this error is reported as.
    pub fn status(&self) -> PutStatus {
        match self {
            EncodeError::PropertiesSizeExceeded { .. } => PutStatus::PropertiesSizeExceeded,
            _ => PutStatus::MessageIllegal,
        }
    }
}

/// Where a put landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Physical offset of the first record.
    pub physical_offset: PhysicalOffset,
    /// Bytes written (all records of a batch; the blank of a roll-over not included).
    pub wrote_bytes: u64,
    /// Queue offset of the first record.
    pub queue_offset: QueueOffset,
    /// Number of records.
    pub msg_count: u32,
    /// STORETIMESTAMP written into the records.
    pub store_timestamp: i64,
    /// Physical offsets of every record after the first (batches only).
    pub(crate) later_offsets: Vec<u64>,
    pub(crate) store_host: SocketAddr,
}

impl Appended {
    /// Physical offsets of all records, in order.
    pub fn record_offsets(&self) -> impl Iterator<Item = PhysicalOffset> + '_ {
        std::iter::once(self.physical_offset)
            .chain(self.later_offsets.iter().map(|&o| PhysicalOffset(o)))
    }

    /// The end offset (first byte after the last record).
    pub fn end_offset(&self) -> PhysicalOffset {
        PhysicalOffset(self.physical_offset.0 + self.wrote_bytes)
    }

    /// Offset message ids, comma-joined for a batch as RocketMQ's send response.
    pub fn msg_id(&self) -> String {
        let ids: Vec<String> = self
            .record_offsets()
            .map(|o| format::offset_msg_id(self.store_host, o.0))
            .collect();
        ids.join(",")
    }
}

/// The outcome of a put: a status and, if anything was stored, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutResult {
    /// RocketMQ's status.
    pub status: PutStatus,
    /// Where the records went, when they were stored.
    pub appended: Option<Appended>,
}

impl PutResult {
    pub(crate) fn rejected(status: PutStatus) -> Self {
        PutResult {
            status,
            appended: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_errors_map_to_rocketmq_statuses() {
        assert_eq!(
            EncodeError::PropertiesSizeExceeded { bytes: 40_000 }.status(),
            PutStatus::PropertiesSizeExceeded
        );
        for e in [
            EncodeError::IllegalTopic,
            EncodeError::IllegalQueueId,
            EncodeError::IllegalBatch,
        ] {
            assert_eq!(e.status(), PutStatus::MessageIllegal, "{e:?}");
        }
    }
}

//! What goes into the store and what a put reports back.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::format;

/// A byte offset in the CommitLog (PHYSICALOFFSET).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysicalOffset(pub u64);

/// A logical index in one topic queue (QUEUEOFFSET; a ConsumeQueue unit number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct QueueOffset(pub u64);

/// A message as a producer hands it to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic: 1..=127 chars of `[%|a-zA-Z0-9_-]`.
    pub topic: String,
    /// Queue within the topic (at most `i32::MAX`).
    pub queue_id: u32,
    /// The producer's opaque flag.
    pub flag: i32,
    /// The body, stored as is.
    pub body: Vec<u8>,
    /// Properties in RocketMQ's encoding (`name 0x01 value 0x02 …`); see
    /// [`format::encode_properties`]. A `__CRC32#` property in here is replaced by the store.
    pub properties: String,
    /// SYSFLAG; the host-family bits are set by the store.
    pub sys_flag: i32,
    /// The producer's timestamp (ms).
    pub born_timestamp: i64,
    /// The producer's address.
    pub born_host: SocketAddr,
    /// RECONSUMETIMES.
    pub reconsume_times: i32,
    /// PREPARED TRANSACTION OFFSET.
    pub prepared_transaction_offset: i64,
}

impl Message {
    /// A message with no properties, born now on 127.0.0.1:0.
    pub fn new(topic: impl Into<String>, queue_id: u32, body: impl Into<Vec<u8>>) -> Self {
        Message {
            topic: topic.into(),
            queue_id,
            flag: 0,
            body: body.into(),
            properties: String::new(),
            sys_flag: 0,
            born_timestamp: crate::clock::wall_millis(),
            born_host: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }

    /// Adds a property (builder style). Names and values must not contain 0x01 or 0x02.
    #[must_use]
    pub fn with_property(mut self, key: &str, value: &str) -> Self {
        if !self.properties.is_empty()
            && !self
                .properties
                .ends_with(char::from(format::PROPERTY_SEPARATOR))
        {
            self.properties.push(char::from(format::PROPERTY_SEPARATOR));
        }
        self.properties.push_str(key);
        self.properties
            .push(char::from(format::NAME_VALUE_SEPARATOR));
        self.properties.push_str(value);
        self
    }

    /// Removes every occurrence of a property (builder style).
    #[must_use]
    pub fn without_property(mut self, key: &str) -> Self {
        let kept: Vec<(&str, &str)> = format::parse_properties(&self.properties)
            .filter(|(k, _)| *k != key)
            .collect();
        self.properties = format::encode_properties(kept);
        self
    }

    /// Sets a property, replacing any value it had (builder style).
    #[must_use]
    pub fn with_property_replaced(self, key: &str, value: &str) -> Self {
        self.without_property(key).with_property(key, value)
    }

    /// The value of a property.
    pub fn property(&self, key: &str) -> Option<&str> {
        format::property(&self.properties, key)
    }

    /// Whether a SYNC_FLUSH put of this message waits for its flush (`WAIT` absent or not `false`).
    pub fn waits_for_store(&self) -> bool {
        self.property(format::keys::WAIT) != Some("false")
    }

    /// Whether the message enters a consume queue (transaction type NOT or COMMIT).
    pub fn advances_queue(&self) -> bool {
        format::enters_consume_queue(self.sys_flag)
    }
}

/// RocketMQ's PutMessageStatus (§4.6). Expected outcomes are values; a broken store is an
/// `Err` instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PutStatus {
    /// Stored (and, in SYNC_FLUSH with `WAIT`, flushed).
    PutOk,
    /// Stored, but its flush did not complete within `syncFlushTimeout`.
    FlushDiskTimeout,
    /// SYNC_MASTER replication timed out (not produced: no replication yet).
    FlushSlaveTimeout,
    /// SYNC_MASTER without a slave (not produced: no replication yet).
    SlaveNotAvailable,
    /// The store is shut down or not writeable.
    ServiceNotAvailable,
    /// No CommitLog file could be obtained in time.
    CreateMappedFileFailed,
    /// Limits of §3.7 / §4.1 broken (topic, sizes, batch rules).
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

    /// Offset message ids (§3.5), comma-joined for a batch as RocketMQ's send response.
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

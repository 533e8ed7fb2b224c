//! Byte layouts of the files derived from the CommitLog and of the store's metadata files:
//! the ConsumeQueue unit, the IndexFile header and item, RocketMQ's `checkpoint` and our
//! CRC-protected offsets checkpoint. Pure encode/decode; no I/O. All big-endian.

use super::{crc32, java_string_hash};

// ---------------------------------------------------------------------------------------
// ConsumeQueue
// ---------------------------------------------------------------------------------------

/// Bytes per ConsumeQueue unit: commitlog offset (8), size (4), tags code (8).
pub const CQ_UNIT_SIZE: u64 = 20;
/// Units per ConsumeQueue file by default.
pub const DEFAULT_CQ_UNITS_PER_FILE: u64 = 300_000;
/// RocketMQ's default ConsumeQueue file size: 6 000 000 bytes.
pub const DEFAULT_CQ_FILE_SIZE: u64 = DEFAULT_CQ_UNITS_PER_FILE * CQ_UNIT_SIZE;

const _: () = assert!(DEFAULT_CQ_FILE_SIZE == 6_000_000);
const _: () = assert!(DEFAULT_CQ_FILE_SIZE.is_multiple_of(CQ_UNIT_SIZE));

/// One ConsumeQueue unit: where a queue's message lies in the CommitLog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqUnit {
    /// PHYSICALOFFSET of the record.
    pub physical_offset: i64,
    /// TOTALSIZE of the record.
    pub size: i32,
    /// Java hashCode of the record's `TAGS` (0 without tags), sign-extended.
    pub tags_code: i64,
}

impl CqUnit {
    /// The filler RocketMQ writes before the first real unit of a queue whose earlier
    /// offsets no longer exist (`{0, Integer.MAX_VALUE, 0}`).
    pub const FILLER: CqUnit = CqUnit {
        physical_offset: 0,
        size: i32::MAX,
        tags_code: 0,
    };

    /// The unit as stored.
    pub fn encode(&self) -> [u8; CQ_UNIT_SIZE as usize] {
        let mut out = [0u8; CQ_UNIT_SIZE as usize];
        out[..8].copy_from_slice(&self.physical_offset.to_be_bytes());
        out[8..12].copy_from_slice(&self.size.to_be_bytes());
        out[12..].copy_from_slice(&self.tags_code.to_be_bytes());
        out
    }

    /// Reads a unit from the first 20 bytes of `bytes`; `None` if fewer are given.
    pub fn decode(bytes: &[u8]) -> Option<CqUnit> {
        let b = bytes.get(..CQ_UNIT_SIZE as usize)?;
        Some(CqUnit {
            physical_offset: i64::from_be_bytes(b[..8].try_into().ok()?),
            size: i32::from_be_bytes(b[8..12].try_into().ok()?),
            tags_code: i64::from_be_bytes(b[12..20].try_into().ok()?),
        })
    }

    /// Never-written space (all zero): the end of a queue's data.
    pub fn is_zero(&self) -> bool {
        self.physical_offset == 0 && self.size == 0 && self.tags_code == 0
    }

    /// A pre-fill unit standing for a removed offset.
    pub fn is_filler(&self) -> bool {
        *self == Self::FILLER
    }

    /// Physical end of the record the unit points at.
    pub fn end(&self) -> u64 {
        (self.physical_offset as u64).saturating_add(self.size as u64)
    }
}

// ---------------------------------------------------------------------------------------
// IndexFile
// ---------------------------------------------------------------------------------------

/// Bytes of the IndexFile header.
pub const INDEX_HEADER_SIZE: u64 = 40;
/// Bytes per hash slot.
pub const INDEX_SLOT_SIZE: u64 = 4;
/// Bytes per index item.
pub const INDEX_ITEM_SIZE: u64 = 20;
/// Default number of hash slots (`maxHashSlotNum`).
pub const DEFAULT_INDEX_SLOTS: u32 = 5_000_000;
/// Default number of items (`maxIndexNum`); item 0 is never used.
pub const DEFAULT_INDEX_ITEMS: u32 = 20_000_000;
/// Most results one key query returns (`maxMsgsNumBatch`).
pub const MAX_MSGS_NUM_BATCH: usize = 64;

/// Size of an IndexFile with `slots` hash slots and `items` items.
pub const fn index_file_size(slots: u32, items: u32) -> u64 {
    INDEX_HEADER_SIZE + slots as u64 * INDEX_SLOT_SIZE + items as u64 * INDEX_ITEM_SIZE
}

const _: () = assert!(index_file_size(DEFAULT_INDEX_SLOTS, DEFAULT_INDEX_ITEMS) == 420_000_040);

/// Byte position of slot `slot`.
pub const fn index_slot_pos(slot: u32) -> u64 {
    INDEX_HEADER_SIZE + slot as u64 * INDEX_SLOT_SIZE
}

/// Byte position of item `item` in a file with `slots` slots.
pub const fn index_item_pos(slots: u32, item: u32) -> u64 {
    INDEX_HEADER_SIZE + slots as u64 * INDEX_SLOT_SIZE + item as u64 * INDEX_ITEM_SIZE
}

/// The IndexFile header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexHeader {
    /// Store time of the first indexed message.
    pub begin_timestamp: i64,
    /// Store time of the last indexed message.
    pub end_timestamp: i64,
    /// Physical offset of the first indexed message.
    pub begin_phy_offset: i64,
    /// Physical offset of the last indexed message.
    pub end_phy_offset: i64,
    /// Slots that became non-empty.
    pub hash_slot_count: i32,
    /// The next item number (starts at 1; a fresh file holds 0).
    pub index_count: i32,
}

impl IndexHeader {
    /// The header as stored.
    pub fn encode(&self) -> [u8; INDEX_HEADER_SIZE as usize] {
        let mut out = [0u8; INDEX_HEADER_SIZE as usize];
        out[..8].copy_from_slice(&self.begin_timestamp.to_be_bytes());
        out[8..16].copy_from_slice(&self.end_timestamp.to_be_bytes());
        out[16..24].copy_from_slice(&self.begin_phy_offset.to_be_bytes());
        out[24..32].copy_from_slice(&self.end_phy_offset.to_be_bytes());
        out[32..36].copy_from_slice(&self.hash_slot_count.to_be_bytes());
        out[36..40].copy_from_slice(&self.index_count.to_be_bytes());
        out
    }

    /// Reads a header; `None` if fewer than 40 bytes are given.
    pub fn decode(bytes: &[u8]) -> Option<IndexHeader> {
        let b = bytes.get(..INDEX_HEADER_SIZE as usize)?;
        Some(IndexHeader {
            begin_timestamp: i64::from_be_bytes(b[..8].try_into().ok()?),
            end_timestamp: i64::from_be_bytes(b[8..16].try_into().ok()?),
            begin_phy_offset: i64::from_be_bytes(b[16..24].try_into().ok()?),
            end_phy_offset: i64::from_be_bytes(b[24..32].try_into().ok()?),
            hash_slot_count: i32::from_be_bytes(b[32..36].try_into().ok()?),
            index_count: i32::from_be_bytes(b[36..40].try_into().ok()?),
        })
    }

    /// The next item number as a loader reads it (≤ 0 means 1).
    pub fn next_item(&self) -> u32 {
        self.index_count.max(1) as u32
    }
}

/// One IndexFile item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexItem {
    /// [`index_key_hash`] of the key.
    pub key_hash: i32,
    /// CommitLog offset of the record.
    pub phy_offset: i64,
    /// Seconds between the header's begin timestamp and the record's store time.
    pub time_diff: i32,
    /// The previous item in the same slot (0 ends the chain).
    pub prev_index: i32,
}

impl IndexItem {
    /// The item as stored.
    pub fn encode(&self) -> [u8; INDEX_ITEM_SIZE as usize] {
        let mut out = [0u8; INDEX_ITEM_SIZE as usize];
        out[..4].copy_from_slice(&self.key_hash.to_be_bytes());
        out[4..12].copy_from_slice(&self.phy_offset.to_be_bytes());
        out[12..16].copy_from_slice(&self.time_diff.to_be_bytes());
        out[16..20].copy_from_slice(&self.prev_index.to_be_bytes());
        out
    }

    /// Reads an item; `None` if fewer than 20 bytes are given.
    pub fn decode(bytes: &[u8]) -> Option<IndexItem> {
        let b = bytes.get(..INDEX_ITEM_SIZE as usize)?;
        Some(IndexItem {
            key_hash: i32::from_be_bytes(b[..4].try_into().ok()?),
            phy_offset: i64::from_be_bytes(b[4..12].try_into().ok()?),
            time_diff: i32::from_be_bytes(b[12..16].try_into().ok()?),
            prev_index: i32::from_be_bytes(b[16..20].try_into().ok()?),
        })
    }
}

/// The index key of a message key: `topic#key`.
pub fn index_key(topic: &str, key: &str) -> String {
    let mut s = String::with_capacity(topic.len() + 1 + key.len());
    s.push_str(topic);
    s.push('#');
    s.push_str(key);
    s
}

/// RocketMQ's key hash: `abs(hashCode)`, and 0 for `Integer.MIN_VALUE`.
pub fn index_key_hash(index_key: &str) -> i32 {
    java_string_hash(index_key).checked_abs().unwrap_or(0)
}

/// The time difference stored in an item: whole seconds since `begin`, clamped to
/// `[0, i32::MAX]`; 0 while the file has no begin time.
pub fn index_time_diff(begin_timestamp: i64, store_timestamp: i64) -> i32 {
    if begin_timestamp <= 0 {
        return 0;
    }
    let secs = store_timestamp.saturating_sub(begin_timestamp) / 1000;
    secs.clamp(0, i64::from(i32::MAX)) as i32
}

/// An IndexFile's name: its creation time as `yyyyMMddHHmmssSSS`. RocketMQ uses local
/// time; we use UTC (names are only sorted, never parsed back, by either implementation).
pub fn index_file_name(unix_millis: i64) -> String {
    let millis = unix_millis.rem_euclid(1000);
    let secs = unix_millis.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let day_secs = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}{millis:03}",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60
    )
}

/// Whether `name` is an IndexFile name (17 digits).
pub fn is_index_file_name(name: &str) -> bool {
    name.len() == 17 && name.bytes().all(|b| b.is_ascii_digit())
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// ---------------------------------------------------------------------------------------
// RocketMQ checkpoint
// ---------------------------------------------------------------------------------------

/// Size of RocketMQ's `checkpoint` file.
pub const CHECKPOINT_FILE_SIZE: u64 = 4096;

/// RocketMQ's `checkpoint`: three store timestamps. Written for RocketMQ's tools and for a
/// RocketMQ broker opening our directory; our own recovery uses [`OffsetCheckpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimestampCheckpoint {
    /// Store time of the newest CommitLog data known flushed.
    pub physic_msg_timestamp: i64,
    /// Store time of the newest message written to a flushed ConsumeQueue.
    pub logics_msg_timestamp: i64,
    /// End timestamp of the newest full, flushed IndexFile.
    pub index_msg_timestamp: i64,
}

impl TimestampCheckpoint {
    /// The first 24 bytes of the file (the rest stays zero).
    pub fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.physic_msg_timestamp.to_be_bytes());
        out[8..16].copy_from_slice(&self.logics_msg_timestamp.to_be_bytes());
        out[16..24].copy_from_slice(&self.index_msg_timestamp.to_be_bytes());
        out
    }

    /// Reads the file's first 24 bytes; `None` if fewer are given.
    pub fn decode(bytes: &[u8]) -> Option<TimestampCheckpoint> {
        let b = bytes.get(..24)?;
        Some(TimestampCheckpoint {
            physic_msg_timestamp: i64::from_be_bytes(b[..8].try_into().ok()?),
            logics_msg_timestamp: i64::from_be_bytes(b[8..16].try_into().ok()?),
            index_msg_timestamp: i64::from_be_bytes(b[16..24].try_into().ok()?),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Offsets checkpoint (ours)
// ---------------------------------------------------------------------------------------

/// Name of our offsets checkpoint in the store root (RocketMQ ignores unknown files).
pub const OFFSET_CHECKPOINT_FILE: &str = "checkpoint.offsets";
/// Two slots, each in its own 512-byte sector, written alternately.
pub const OFFSET_CHECKPOINT_SLOT_STRIDE: u64 = 512;
/// Size of the offsets checkpoint file.
pub const OFFSET_CHECKPOINT_FILE_SIZE: u64 = 2 * OFFSET_CHECKPOINT_SLOT_STRIDE;
/// Magic of an offsets checkpoint slot (`MQCK`).
pub const OFFSET_CHECKPOINT_MAGIC: u32 = 0x4D51_434B;
/// Layout version of the slot.
pub const OFFSET_CHECKPOINT_VERSION: u32 = 1;
/// Encoded slot length: magic, version, sequence, two offsets, crc.
pub const OFFSET_CHECKPOINT_SLOT_LEN: usize = 4 + 4 + 8 + 8 + 8 + 4;

/// What recovery may trust, by CommitLog offset rather than by timestamp (RocketMQ #678):
/// written only after the data it vouches for was flushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OffsetCheckpoint {
    /// Incremented on every write; the valid slot with the higher one wins.
    pub sequence: u64,
    /// Every CommitLog byte below this offset was flushed. A bad record below it is
    /// corruption, not a torn tail.
    pub commit_log_durable: u64,
    /// ConsumeQueue units and index items of every record below this offset were flushed.
    pub dispatched_durable: u64,
}

impl OffsetCheckpoint {
    /// One slot as stored, CRC last.
    pub fn encode(&self) -> [u8; OFFSET_CHECKPOINT_SLOT_LEN] {
        let mut out = [0u8; OFFSET_CHECKPOINT_SLOT_LEN];
        out[..4].copy_from_slice(&OFFSET_CHECKPOINT_MAGIC.to_be_bytes());
        out[4..8].copy_from_slice(&OFFSET_CHECKPOINT_VERSION.to_be_bytes());
        out[8..16].copy_from_slice(&self.sequence.to_be_bytes());
        out[16..24].copy_from_slice(&self.commit_log_durable.to_be_bytes());
        out[24..32].copy_from_slice(&self.dispatched_durable.to_be_bytes());
        let crc = crc32(&out[..32]);
        out[32..].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Reads one slot; `None` unless magic, version and CRC check out.
    pub fn decode(bytes: &[u8]) -> Option<OffsetCheckpoint> {
        let b = bytes.get(..OFFSET_CHECKPOINT_SLOT_LEN)?;
        let crc = u32::from_be_bytes(b[32..36].try_into().ok()?);
        let valid = u32::from_be_bytes(b[..4].try_into().ok()?) == OFFSET_CHECKPOINT_MAGIC
            && u32::from_be_bytes(b[4..8].try_into().ok()?) == OFFSET_CHECKPOINT_VERSION
            && crc32(&b[..32]) == crc;
        valid.then(|| OffsetCheckpoint {
            sequence: u64::from_be_bytes(b[8..16].try_into().unwrap_or_default()),
            commit_log_durable: u64::from_be_bytes(b[16..24].try_into().unwrap_or_default()),
            dispatched_durable: u64::from_be_bytes(b[24..32].try_into().unwrap_or_default()),
        })
    }

    /// The newest valid slot of a whole file's bytes.
    pub fn newest(file: &[u8]) -> Option<OffsetCheckpoint> {
        let stride = OFFSET_CHECKPOINT_SLOT_STRIDE as usize;
        let a = file.get(..stride).and_then(Self::decode);
        let b = file.get(stride..).and_then(Self::decode);
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.sequence > a.sequence { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Byte position of the slot this checkpoint is written to (alternating).
    pub fn slot_pos(&self) -> u64 {
        (self.sequence % 2) * OFFSET_CHECKPOINT_SLOT_STRIDE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cq_unit_round_trips_and_has_rocketmq_layout() {
        let u = CqUnit {
            physical_offset: 0x0102_0304_0506_0708,
            size: 0x0A0B_0C0D,
            tags_code: -2,
        };
        let b = u.encode();
        assert_eq!(&b[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&b[8..12], &[0x0A, 0x0B, 0x0C, 0x0D]);
        assert_eq!(
            &b[12..],
            &[0xFF; 7].iter().copied().chain([0xFE]).collect::<Vec<_>>()[..]
        );
        assert_eq!(CqUnit::decode(&b), Some(u));
        assert_eq!(CqUnit::decode(&b[..19]), None);
        assert!(CqUnit::decode(&[0; 20]).expect("20 bytes").is_zero());
        assert!(CqUnit::FILLER.is_filler());
    }

    #[test]
    fn index_layout_matches_rocketmq_sizes() {
        assert_eq!(index_slot_pos(0), 40);
        assert_eq!(index_item_pos(DEFAULT_INDEX_SLOTS, 0), 20_000_040);
        assert_eq!(index_item_pos(DEFAULT_INDEX_SLOTS, 1), 20_000_060);
        let h = IndexHeader {
            begin_timestamp: 1,
            end_timestamp: 2,
            begin_phy_offset: 3,
            end_phy_offset: 4,
            hash_slot_count: 5,
            index_count: 6,
        };
        let b = h.encode();
        assert_eq!(b[7], 1);
        assert_eq!(b[39], 6);
        assert_eq!(IndexHeader::decode(&b), Some(h));
        let item = IndexItem {
            key_hash: 7,
            phy_offset: 8,
            time_diff: 9,
            prev_index: 10,
        };
        let b = item.encode();
        assert_eq!((b[3], b[11], b[15], b[19]), (7, 8, 9, 10));
        assert_eq!(IndexItem::decode(&b), Some(item));
    }

    #[test]
    fn key_hash_is_non_negative_like_rocketmq() {
        assert_eq!(index_key("t", "k"), "t#k");
        // "polygenelubricants" hashes to Integer.MIN_VALUE in Java.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(index_key_hash("polygenelubricants"), 0);
        let h = java_string_hash("TopicTest#key-1");
        assert_eq!(index_key_hash("TopicTest#key-1"), h.abs());
    }

    #[test]
    fn time_diff_clamps() {
        assert_eq!(index_time_diff(0, 5_000), 0);
        assert_eq!(index_time_diff(1_000, 5_999), 4);
        assert_eq!(index_time_diff(10_000, 5_000), 0);
        assert_eq!(index_time_diff(1, i64::MAX), i32::MAX);
    }

    #[test]
    fn index_file_names_are_utc_timestamps() {
        assert_eq!(index_file_name(0), "19700101000000000");
        // 2026-11-21T14:05:07.089Z (checked with Python datetime)
        assert_eq!(index_file_name(1_795_269_907_089), "20261121140507089");
        assert!(is_index_file_name("20261121134507089"));
        assert!(!is_index_file_name("2026112113450708"));
    }

    #[test]
    fn offset_checkpoint_picks_newest_valid_slot() {
        let a = OffsetCheckpoint {
            sequence: 4,
            commit_log_durable: 100,
            dispatched_durable: 90,
        };
        let b = OffsetCheckpoint { sequence: 5, ..a };
        let mut file = vec![0u8; OFFSET_CHECKPOINT_FILE_SIZE as usize];
        let pa = a.slot_pos() as usize;
        file[pa..pa + OFFSET_CHECKPOINT_SLOT_LEN].copy_from_slice(&a.encode());
        assert_eq!(OffsetCheckpoint::newest(&file), Some(a));
        let pb = b.slot_pos() as usize;
        file[pb..pb + OFFSET_CHECKPOINT_SLOT_LEN].copy_from_slice(&b.encode());
        assert_eq!(OffsetCheckpoint::newest(&file), Some(b));
        // A torn newer slot falls back to the older one; every single-bit flip is caught.
        for bit in 0..OFFSET_CHECKPOINT_SLOT_LEN * 8 {
            let mut damaged = file.clone();
            damaged[pb + bit / 8] ^= 1 << (bit % 8);
            assert_eq!(OffsetCheckpoint::newest(&damaged), Some(a), "bit {bit}");
        }
        assert_eq!(OffsetCheckpoint::newest(&[0u8; 1024]), None);
        assert_eq!(OffsetCheckpoint::newest(&[]), None);
    }

    #[test]
    fn timestamp_checkpoint_layout() {
        let c = TimestampCheckpoint {
            physic_msg_timestamp: 1,
            logics_msg_timestamp: 2,
            index_msg_timestamp: 3,
        };
        let b = c.encode();
        assert_eq!((b[7], b[15], b[23]), (1, 2, 3));
        assert_eq!(TimestampCheckpoint::decode(&b), Some(c));
    }
}

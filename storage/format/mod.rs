//! RocketMQ's CommitLog record format: every on-disk constant plus a pure, total codec.
//!
//! No I/O here. [`RecordPlan`] validates a message and encodes it into any buffer (the
//! CommitLog hands it a slice of the mapping); [`decode_record`] reads one record from an
//! arbitrary byte slice and never panics, never allocates and never reads outside it.
//!
//! Record layout (v1, big-endian; offsets for IPv4 born and store hosts):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | TOTALSIZE (whole record) |
//! | 4 | 4 | MAGICCODE `DA A3 20 A7` |
//! | 8 | 4 | BODYCRC = crc32(body) & 0x7FFFFFFF |
//! | 12 | 4 | QUEUEID |
//! | 16 | 4 | FLAG |
//! | 20 | 8 | QUEUEOFFSET (logical index in the topic queue) |
//! | 28 | 8 | PHYSICALOFFSET (this record's CommitLog offset) |
//! | 36 | 4 | SYSFLAG |
//! | 40 | 8 | BORNTIMESTAMP |
//! | 48 | 8 / 20 | BORNHOST (address + 4-byte port; 20 bytes if SYSFLAG 0x10) |
//! | 56 | 8 | STORETIMESTAMP |
//! | 64 | 8 / 20 | STOREHOST (20 bytes if SYSFLAG 0x20) |
//! | 72 | 4 | RECONSUMETIMES |
//! | 76 | 8 | PREPARED TRANSACTION OFFSET |
//! | 84 | 4 + n | BODY length, body |
//! | 88+n | 1 + t | TOPIC length (signed byte), topic |
//! | … | 2 + p | PROPERTIES length (signed short), properties |
//!
//! With `enabledAppendPropCRC` the last 20 bytes of the properties are
//! `__CRC32#` 0x01 + ten ASCII digits (least significant first) + 0x02, holding
//! `crc32(record[..TOTALSIZE-20]) & 0x7FFFFFFF`. A record that does not fit at the end of a
//! file is replaced by an 8-byte BLANK (`TOTALSIZE` = bytes left, magic `CB D4 31 94`).

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// MESSAGE_MAGIC_CODE: a normal v1 record.
pub const MESSAGE_MAGIC_CODE: i32 = -626_843_481;
/// BLANK_MAGIC_CODE: end-of-file filler.
pub const BLANK_MAGIC_CODE: i32 = -875_286_124;
/// A record must leave at least this many bytes free in its file, room for a BLANK.
pub const END_FILE_MIN_BLANK_LENGTH: u64 = 8;
/// The page size the store's flush arithmetic assumes.
pub const OS_PAGE_SIZE: u64 = 4096;
/// Longest topic accepted (`Byte.MAX_VALUE`; v1 records have a 1-byte topic length).
pub const MAX_TOPIC_LENGTH: usize = 127;
/// Longest properties string (`Short.MAX_VALUE`, both in chars and in bytes).
pub const MAX_PROPERTIES_LENGTH: usize = 32_767;
/// A record may exceed `maxMessageSize` (the body limit) by at most this much (4.9.5+).
pub const MAX_RECORD_OVERHEAD: u64 = 64 * 1024;
/// Bytes reserved at the end of the properties for the whole-record CRC.
pub const CRC32_RESERVED_LEN: usize = 20;
/// The whole-record CRC property's name.
pub const CRC32_PROPERTY: &str = "__CRC32#";
/// Separates a property's name from its value.
pub const NAME_VALUE_SEPARATOR: u8 = 1;
/// Separates properties.
pub const PROPERTY_SEPARATOR: u8 = 2;
/// Width of a mapped file's name (its start offset, zero padded).
pub const FILE_NAME_WIDTH: usize = 20;

/// SYSFLAG: body compressed.
pub const FLAG_COMPRESSED: i32 = 0x1;
/// SYSFLAG: MULTI_TAG filter type.
pub const FLAG_MULTI_TAGS: i32 = 0x2;
/// SYSFLAG mask of the transaction type.
pub const TRANSACTION_TYPE_MASK: i32 = 0xC;
/// Transaction type: not transactional.
pub const TRANSACTION_NOT_TYPE: i32 = 0x0;
/// Transaction type: half (prepared) message.
pub const TRANSACTION_PREPARED_TYPE: i32 = 0x4;
/// Transaction type: committed.
pub const TRANSACTION_COMMIT_TYPE: i32 = 0x8;
/// Transaction type: rolled back.
pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0xC;
/// Whether a record with this SYSFLAG gets a queue offset and enters its ConsumeQueue
/// (transaction type NOT or COMMIT; PREPARED and ROLLBACK records do not).
pub fn enters_consume_queue(sys_flag: i32) -> bool {
    matches!(
        sys_flag & TRANSACTION_TYPE_MASK,
        TRANSACTION_NOT_TYPE | TRANSACTION_COMMIT_TYPE
    )
}

/// SYSFLAG: born host is IPv6.
pub const FLAG_BORNHOST_V6: i32 = 0x10;
/// SYSFLAG: store host is IPv6.
pub const FLAG_STOREHOST_V6: i32 = 0x20;

/// Property keys the store looks at.
pub mod keys {
    /// Business keys, space separated; indexed.
    pub const KEYS: &str = "KEYS";
    /// Tag; its Java hashCode is the ConsumeQueue tags code.
    pub const TAGS: &str = "TAGS";
    /// Client-generated unique id; indexed.
    pub const UNIQ_KEY: &str = "UNIQ_KEY";
    /// `false` lets a SYNC_FLUSH put return without waiting for its flush.
    pub const WAIT: &str = "WAIT";
    /// Delay level.
    pub const DELAY: &str = "DELAY";
    /// The topic a delayed or half message really belongs to.
    pub const REAL_TOPIC: &str = "REAL_TOPIC";
    /// The queue a delayed or half message really belongs to.
    pub const REAL_QID: &str = "REAL_QID";
}

/// The topic delayed messages wait in, queue `level - 1`.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// Byte offsets of the fixed fields (the same for every host family).
pub mod pos {
    /// TOTALSIZE.
    pub const TOTAL_SIZE: usize = 0;
    /// MAGICCODE.
    pub const MAGIC: usize = 4;
    /// BODYCRC.
    pub const BODY_CRC: usize = 8;
    /// QUEUEID.
    pub const QUEUE_ID: usize = 12;
    /// FLAG.
    pub const FLAG: usize = 16;
    /// QUEUEOFFSET.
    pub const QUEUE_OFFSET: usize = 20;
    /// PHYSICALOFFSET.
    pub const PHYSICAL_OFFSET: usize = 28;
    /// SYSFLAG.
    pub const SYS_FLAG: usize = 36;
    /// BORNTIMESTAMP.
    pub const BORN_TIMESTAMP: usize = 40;
    /// BORNHOST.
    pub const BORN_HOST: usize = 48;
}

/// Length of a record with IPv4 hosts and empty body, topic and properties.
pub const MIN_RECORD_LEN: usize = 91;

const _: () =
    assert!(MIN_RECORD_LEN == 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + 1 + 2);
const _: () = assert!(CRC32_RESERVED_LEN == CRC32_PROPERTY.len() + 1 + 10 + 1);
const _: () = assert!(MESSAGE_MAGIC_CODE as u32 == 0xDAA3_20A7);
const _: () = assert!(BLANK_MAGIC_CODE as u32 == 0xCBD4_3194);

/// `java.util.zip.CRC32` masked to 31 bits, as RocketMQ stores it.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) & 0x7FFF_FFFF
}

/// Java's `String.hashCode()`: over UTF-16 code units, `h = 31*h + unit`, wrapping.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The ConsumeQueue tags code of a properties string: the Java hash of `TAGS`, or 0.
pub fn tags_code(properties: &str) -> i64 {
    property(properties, keys::TAGS).map_or(0, |t| i64::from(java_string_hash(t)))
}

/// The ConsumeQueue tags code of a record: for the schedule topic the time it is due
/// (store time + its level's delay, levels capped at the last one), else [`tags_code`].
pub fn queue_tags_code(
    topic: &str,
    properties: &str,
    store_timestamp: i64,
    delay_levels: &[i64],
) -> i64 {
    if topic == SCHEDULE_TOPIC {
        let level = property(properties, keys::DELAY).and_then(|d| d.parse::<usize>().ok());
        if let Some(level) = level.filter(|&l| l > 0) {
            let delay = delay_levels
                .get(level.min(delay_levels.len()).saturating_sub(1))
                .copied()
                .unwrap_or(0);
            return store_timestamp.saturating_add(delay);
        }
    }
    tags_code(properties)
}

/// A mapped file's name: its start offset as 20 zero-padded decimal digits.
pub fn file_name(offset: u64) -> String {
    format!("{offset:0>20}")
}

/// Parses a 20-digit file name back to its offset.
pub fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() == FILE_NAME_WIDTH && name.bytes().all(|b| b.is_ascii_digit()) {
        name.parse().ok()
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

/// Encodes properties as RocketMQ does: `name 0x01 value 0x02 ...`, no trailing 0x02.
pub fn encode_properties<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push(char::from(PROPERTY_SEPARATOR));
        }
        out.push_str(k);
        out.push(char::from(NAME_VALUE_SEPARATOR));
        out.push_str(v);
    }
    out
}

/// Iterates the properties of an encoded string with RocketMQ's parsing rules: split on
/// 0x02; keep a segment only if its first 0x01 is neither first nor last (so name and
/// value are non-empty). A trailing 0x02 (4.9.0 and older) is accepted.
pub fn parse_properties(encoded: &str) -> impl Iterator<Item = (&str, &str)> {
    encoded
        .split(char::from(PROPERTY_SEPARATOR))
        .filter_map(|seg| {
            let i = seg.find(char::from(NAME_VALUE_SEPARATOR))?;
            (i > 0 && i + 1 < seg.len()).then(|| (&seg[..i], &seg[i + 1..]))
        })
}

/// The value of `key` in an encoded properties string (the last one wins, as in Java).
/// The same rules as [`parse_properties`], in one byte scan that only looks at segments
/// starting with `key` (every record is read for `TAGS`, `KEYS` and `UNIQ_KEY` when it is
/// dispatched, so this is on the hot path).
pub fn property<'a>(encoded: &'a str, key: &str) -> Option<&'a str> {
    let key = key.as_bytes();
    if key.is_empty() || key.contains(&NAME_VALUE_SEPARATOR) {
        // Not a name RocketMQ writes; the general rules decide.
        return parse_properties(encoded)
            .filter(|(k, _)| k.as_bytes() == key)
            .last()
            .map(|(_, v)| v);
    }
    let bytes = encoded.as_bytes();
    let mut found = None;
    let mut start = 0;
    while start <= bytes.len() {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == PROPERTY_SEPARATOR)
            .map_or(bytes.len(), |i| start + i);
        let seg = &bytes[start..end];
        // `key` holds no separator, so the segment's first 0x01 is the one after `key`;
        // the value must not be empty.
        if seg.len() > key.len() + 1
            && seg.starts_with(key)
            && seg[key.len()] == NAME_VALUE_SEPARATOR
        {
            // Both ends are ASCII separators (or the string's ends): char boundaries.
            found = encoded.get(start + key.len() + 1..end);
        }
        start = end + 1;
    }
    found
}

/// Removes every `__CRC32#` pair, so a message coming back to the store (retry, DLQ,
/// delayed re-put) carries exactly one CRC, the new one, at the end.
fn strip_crc_property(encoded: &str) -> Cow<'_, str> {
    if !encoded.contains(CRC32_PROPERTY) {
        return Cow::Borrowed(encoded);
    }
    let kept: Vec<&str> = encoded
        .split(char::from(PROPERTY_SEPARATOR))
        .filter(|seg| {
            !seg.strip_prefix(CRC32_PROPERTY)
                .is_some_and(|rest| rest.starts_with(char::from(NAME_VALUE_SEPARATOR)))
                && !seg.is_empty()
        })
        .collect();
    Cow::Owned(kept.join(&char::from(PROPERTY_SEPARATOR).to_string()))
}

// ---------------------------------------------------------------------------------------
// Message ids
// ---------------------------------------------------------------------------------------

/// The offset message id: store host address + port + physical offset, upper hex.
pub fn offset_msg_id(store_host: SocketAddr, physical_offset: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut bytes = Vec::with_capacity(28);
    put_host(&mut bytes, store_host);
    bytes.extend_from_slice(&physical_offset.to_be_bytes());
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    s
}

/// Parses an offset message id (32 hex chars for IPv4, 56 for IPv6; any case).
pub fn parse_offset_msg_id(id: &str) -> Option<(SocketAddr, u64)> {
    if !id.is_ascii() || !id.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..id.len() / 2)
        .map(|i| u8::from_str_radix(&id[2 * i..2 * i + 2], 16).ok())
        .collect();
    let bytes = bytes?;
    let ip_len = match bytes.len() {
        16 => 4,
        28 => 16,
        _ => return None,
    };
    let mut r = Reader::new(&bytes);
    let addr = r.host(ip_len == 16).ok()?;
    let offset = r.u64().ok()?;
    Some((addr, offset))
}

fn put_host(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&i32::from(addr.port()).to_be_bytes());
}

fn host_len(addr: SocketAddr) -> usize {
    if addr.is_ipv4() {
        8
    } else {
        20
    }
}

// ---------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------

/// Why a message cannot be encoded; each maps to the RocketMQ status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// Empty topic, longer than 127 bytes, or characters outside `[%|a-zA-Z0-9_-]`.
    IllegalTopic,
    /// Queue id above `i32::MAX`.
    IllegalQueueId,
    /// Body over `maxMessageSize`.
    BodyTooLarge {
        /// Body length.
        size: usize,
        /// The limit.
        max: u64,
    },
    /// Whole record over `maxMessageSize + 64 KiB`, or larger than a CommitLog file.
    RecordTooLarge {
        /// Record length.
        size: usize,
        /// The limit.
        max: u64,
    },
    /// Properties string over 32 767 UTF-16 chars (`MESSAGE_ILLEGAL`).
    PropertiesTooLong {
        /// Length in chars.
        chars: usize,
    },
    /// Encoded properties over 32 767 bytes (`PROPERTIES_SIZE_EXCEEDED`).
    PropertiesSizeExceeded {
        /// Length in bytes, CRC property included.
        bytes: usize,
    },
    /// A batch mixes topics or queues, carries a delay level or a transaction type.
    IllegalBatch,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IllegalTopic => {
                f.write_str("topic is empty, over 127 bytes or has illegal characters")
            }
            Self::IllegalQueueId => f.write_str("queue id above i32::MAX"),
            Self::BodyTooLarge { size, max } => write!(f, "body of {size} bytes exceeds {max}"),
            Self::RecordTooLarge { size, max } => write!(f, "record of {size} bytes exceeds {max}"),
            Self::PropertiesTooLong { chars } => {
                write!(f, "properties of {chars} chars exceed 32767")
            }
            Self::PropertiesSizeExceeded { bytes } => {
                write!(f, "properties of {bytes} bytes exceed 32767")
            }
            Self::IllegalBatch => f.write_str("illegal batch"),
        }
    }
}

impl std::error::Error for EncodeError {}

/// Is `topic` a legal RocketMQ topic (1..=127 chars of `[%|a-zA-Z0-9_-]`)?
pub fn is_valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LENGTH
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
}

/// A validated message, ready to be written: lengths are known and the body CRC is
/// computed, so the CommitLog only fills in offsets and the store time under its lock.
#[derive(Debug)]
pub struct RecordPlan<'a> {
    msg: &'a Message,
    /// User properties with any old CRC property removed.
    properties: Cow<'a, str>,
    /// Whether a 0x02 goes between the user properties and the CRC property.
    crc_separator: bool,
    with_crc: bool,
    store_host_v6: bool,
    body_crc: u32,
    len: usize,
}

impl<'a> RecordPlan<'a> {
    /// Validates `msg` against limits (`max_body` is `maxMessageSize`) and
    /// computes its encoded length and body CRC.
    ///
    /// # Errors
    /// An [`EncodeError`] naming the limit that was broken.
    pub fn new(
        msg: &'a Message,
        store_host: SocketAddr,
        max_body: u32,
        with_crc: bool,
    ) -> Result<Self, EncodeError> {
        if !is_valid_topic(&msg.topic) {
            return Err(EncodeError::IllegalTopic);
        }
        if i32::try_from(msg.queue_id).is_err() {
            return Err(EncodeError::IllegalQueueId);
        }
        let max_body = u64::from(max_body);
        if msg.body.len() as u64 > max_body {
            return Err(EncodeError::BodyTooLarge {
                size: msg.body.len(),
                max: max_body,
            });
        }
        let properties = strip_crc_property(&msg.properties);
        if properties.len() > MAX_PROPERTIES_LENGTH {
            // UTF-16 length never exceeds UTF-8 length, so count only when it matters.
            let chars = properties.encode_utf16().count();
            if chars > MAX_PROPERTIES_LENGTH {
                return Err(EncodeError::PropertiesTooLong { chars });
            }
        }
        // With the CRC property: a 0x02 before it unless the user part already ends with one.
        // Without: a trailing 0x02 (legal since 4.9.0) when the properties would otherwise end
        // in a zero byte, which readers take for a zero-filled torn write.
        let crc_separator = if with_crc {
            !properties.is_empty() && !properties.ends_with(char::from(PROPERTY_SEPARATOR))
        } else {
            properties.ends_with('\0')
        };
        let props_len = properties.len()
            + usize::from(crc_separator)
            + if with_crc { CRC32_RESERVED_LEN } else { 0 };
        if props_len > MAX_PROPERTIES_LENGTH {
            return Err(EncodeError::PropertiesSizeExceeded { bytes: props_len });
        }
        let len = MIN_RECORD_LEN - 16
            + host_len(msg.born_host)
            + host_len(store_host)
            + msg.body.len()
            + msg.topic.len()
            + props_len;
        let max_record = max_body + MAX_RECORD_OVERHEAD;
        if len as u64 > max_record {
            return Err(EncodeError::RecordTooLarge {
                size: len,
                max: max_record,
            });
        }
        Ok(RecordPlan {
            msg,
            properties,
            crc_separator,
            with_crc,
            store_host_v6: store_host.is_ipv6(),
            body_crc: crc32(&msg.body),
            len,
        })
    }

    /// Encoded length in bytes (TOTALSIZE).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a record is at least [`MIN_RECORD_LEN`] bytes.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Encodes the record into `out`, which must be exactly [`len`](Self::len) bytes.
    ///
    /// # Panics
    /// If `out.len() != self.len()` or the store host's address family differs from the
    /// one the plan was made for (caller bugs).
    pub fn write(&self, out: &mut [u8], fields: &StoreFields) {
        assert_eq!(out.len(), self.len, "record buffer has the wrong length");
        assert_eq!(
            fields.store_host.is_ipv6(),
            self.store_host_v6,
            "store host family changed"
        );
        let m = self.msg;
        let mut sys_flag = m.sys_flag & !(FLAG_BORNHOST_V6 | FLAG_STOREHOST_V6);
        if m.born_host.is_ipv6() {
            sys_flag |= FLAG_BORNHOST_V6;
        }
        if fields.store_host.is_ipv6() {
            sys_flag |= FLAG_STOREHOST_V6;
        }
        let mut w = Writer { buf: out, at: 0 };
        w.put(&(self.len as i32).to_be_bytes());
        w.put(&MESSAGE_MAGIC_CODE.to_be_bytes());
        w.put(&self.body_crc.to_be_bytes());
        w.put(&(m.queue_id as i32).to_be_bytes());
        w.put(&m.flag.to_be_bytes());
        w.put(&fields.queue_offset.to_be_bytes());
        w.put(&fields.physical_offset.to_be_bytes());
        w.put(&sys_flag.to_be_bytes());
        w.put(&m.born_timestamp.to_be_bytes());
        w.host(m.born_host);
        w.put(&fields.store_timestamp.to_be_bytes());
        w.host(fields.store_host);
        w.put(&m.reconsume_times.to_be_bytes());
        w.put(&m.prepared_transaction_offset.to_be_bytes());
        w.put(&(m.body.len() as i32).to_be_bytes());
        w.put(&m.body);
        w.put(&[m.topic.len() as u8]);
        w.put(m.topic.as_bytes());
        let props_len = self.len - w.at - 2;
        w.put(&(props_len as i16).to_be_bytes());
        w.put(self.properties.as_bytes());
        if self.crc_separator {
            w.put(&[PROPERTY_SEPARATOR]);
        }
        if self.with_crc {
            let crc = crc32(&w.buf[..self.len - CRC32_RESERVED_LEN]);
            w.put(CRC32_PROPERTY.as_bytes());
            w.put(&[NAME_VALUE_SEPARATOR]);
            w.put(&crc_digits(crc));
            w.put(&[PROPERTY_SEPARATOR]);
        }
        debug_assert_eq!(w.at, self.len);
    }
}

/// The fields the store fills in when it appends a record.
#[derive(Debug, Clone, Copy)]
pub struct StoreFields {
    /// QUEUEOFFSET.
    pub queue_offset: i64,
    /// PHYSICALOFFSET.
    pub physical_offset: i64,
    /// STORETIMESTAMP (ms).
    pub store_timestamp: i64,
    /// STOREHOST.
    pub store_host: SocketAddr,
}

/// Encodes one record into a new buffer (the convenience form of [`RecordPlan`]).
///
/// # Errors
/// An [`EncodeError`] if the message breaks a limit.
pub fn encode_record(
    msg: &Message,
    fields: &StoreFields,
    max_body: u32,
    with_crc: bool,
) -> Result<Vec<u8>, EncodeError> {
    let plan = RecordPlan::new(msg, fields.store_host, max_body, with_crc)?;
    let mut out = vec![0; plan.len()];
    plan.write(&mut out, fields);
    Ok(out)
}

/// Writes the BLANK end-of-file header (8 bytes) declaring `remaining` bytes.
pub fn write_blank(out: &mut [u8; 8], remaining: u32) {
    out[..4].copy_from_slice(&remaining.to_be_bytes());
    out[4..].copy_from_slice(&BLANK_MAGIC_CODE.to_be_bytes());
}

/// The ten ASCII digits of the CRC property: least significant digit first.
fn crc_digits(mut crc: u32) -> [u8; 10] {
    let mut d = [b'0'; 10];
    for digit in &mut d {
        *digit = b'0' + (crc % 10) as u8;
        crc /= 10;
    }
    d
}

struct Writer<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    #[inline]
    fn host(&mut self, addr: SocketAddr) {
        match addr.ip() {
            IpAddr::V4(ip) => self.put(&ip.octets()),
            IpAddr::V6(ip) => self.put(&ip.octets()),
        }
        self.put(&i32::from(addr.port()).to_be_bytes());
    }
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordError {
    /// The slice ends before the record does.
    Truncated {
        /// Bytes the record needs.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// TOTALSIZE and MAGIC are both zero: unwritten (pre-allocated) space.
    ZeroHeader,
    /// Neither the message nor the blank magic.
    BadMagic(u32),
    /// TOTALSIZE outside the possible range.
    BadTotalSize(i32),
    /// A length field is negative or points past TOTALSIZE.
    BadFieldLength(&'static str),
    /// TOTALSIZE differs from the length the fields add up to.
    LengthMismatch {
        /// TOTALSIZE.
        declared: usize,
        /// Sum of the fields.
        computed: usize,
    },
    /// BODYCRC does not match the body.
    BodyCrcMismatch {
        /// Stored value.
        stored: u32,
        /// Recomputed value.
        computed: u32,
    },
    /// The `__CRC32#` property does not match the record.
    RecordCrcMismatch {
        /// Stored value.
        stored: u32,
        /// Recomputed value.
        computed: u32,
    },
    /// The `__CRC32#` property is present but its digits are not a number.
    BadCrcProperty,
    /// Topic or properties are not UTF-8.
    InvalidUtf8(&'static str),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, available } => {
                write!(f, "truncated: needs {needed} bytes, {available} available")
            }
            Self::ZeroHeader => f.write_str("zero header (unwritten space)"),
            Self::BadMagic(m) => write!(f, "bad magic code {m:#010x}"),
            Self::BadTotalSize(s) => write!(f, "impossible total size {s}"),
            Self::BadFieldLength(field) => write!(f, "bad {field} length"),
            Self::LengthMismatch { declared, computed } => {
                write!(f, "total size {declared} but fields add up to {computed}")
            }
            Self::BodyCrcMismatch { stored, computed } => {
                write!(f, "body crc mismatch: stored {stored}, computed {computed}")
            }
            Self::RecordCrcMismatch { stored, computed } => {
                write!(
                    f,
                    "record crc mismatch: stored {stored}, computed {computed}"
                )
            }
            Self::BadCrcProperty => f.write_str("malformed __CRC32# property"),
            Self::InvalidUtf8(field) => write!(f, "{field} is not UTF-8"),
        }
    }
}

impl std::error::Error for RecordError {}

/// One decoded CommitLog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A message record.
    Message(RecordView<'a>),
    /// The end-of-file filler; `len` is the number of bytes it declares (the rest of the file).
    Blank {
        /// TOTALSIZE of the blank.
        len: u32,
    },
}

/// A record read from bytes, borrowing body, topic and properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// TOTALSIZE.
    pub total_size: u32,
    /// BODYCRC.
    pub body_crc: u32,
    /// QUEUEID.
    pub queue_id: i32,
    /// FLAG.
    pub flag: i32,
    /// QUEUEOFFSET.
    pub queue_offset: i64,
    /// PHYSICALOFFSET.
    pub physical_offset: i64,
    /// SYSFLAG.
    pub sys_flag: i32,
    /// BORNTIMESTAMP.
    pub born_timestamp: i64,
    /// BORNHOST.
    pub born_host: SocketAddr,
    /// STORETIMESTAMP.
    pub store_timestamp: i64,
    /// STOREHOST.
    pub store_host: SocketAddr,
    /// RECONSUMETIMES.
    pub reconsume_times: i32,
    /// PREPARED TRANSACTION OFFSET.
    pub prepared_transaction_offset: i64,
    /// The body as stored.
    pub body: &'a [u8],
    /// The topic.
    pub topic: &'a str,
    /// The properties as stored, the `__CRC32#` property included.
    pub properties: &'a str,
}

impl RecordView<'_> {
    /// The properties without the trailing `__CRC32#` property.
    pub fn user_properties(&self) -> &str {
        let p = self.properties;
        if matches!(crc_trailer(p.as_bytes()), Trailer::Valid(_)) {
            let rest = &p[..p.len() - CRC32_RESERVED_LEN];
            rest.strip_suffix(char::from(PROPERTY_SEPARATOR))
                .unwrap_or(rest)
        } else {
            p
        }
    }

    /// The value of one property.
    pub fn property(&self, key: &str) -> Option<&str> {
        property(self.properties, key)
    }

    /// The transaction type bits of SYSFLAG.
    pub fn transaction_type(&self) -> i32 {
        self.sys_flag & TRANSACTION_TYPE_MASK
    }

    /// Turns the view back into a message (what a producer would have sent).
    pub fn to_message(&self) -> Message {
        Message {
            topic: self.topic.to_owned(),
            queue_id: self.queue_id as u32,
            flag: self.flag,
            body: self.body.to_vec(),
            properties: self.user_properties().to_owned(),
            sys_flag: self.sys_flag & !(FLAG_BORNHOST_V6 | FLAG_STOREHOST_V6),
            born_timestamp: self.born_timestamp,
            born_host: self.born_host,
            reconsume_times: self.reconsume_times,
            prepared_transaction_offset: self.prepared_transaction_offset,
        }
    }
}

/// What the end of a properties string says about the whole-record CRC.
#[derive(Debug, PartialEq, Eq)]
enum Trailer<'a> {
    /// A well-formed `__CRC32#` property; the ten digit bytes.
    Valid(&'a [u8]),
    /// Something that was a CRC property (or a zero-filled torn tail) but is damaged.
    Damaged,
    /// No CRC property: a record written by RocketMQ 4.x or with the option off.
    Absent,
}

fn crc_trailer(props: &[u8]) -> Trailer<'_> {
    let name = CRC32_PROPERTY.as_bytes();
    if let Some(start) = props.len().checked_sub(CRC32_RESERVED_LEN) {
        let t = &props[start..];
        let framed = t[8] == NAME_VALUE_SEPARATOR && t[19] == PROPERTY_SEPARATOR;
        let at_boundary = start == 0 || props[start - 1] == PROPERTY_SEPARATOR;
        if framed && at_boundary && &t[..8] == name {
            return Trailer::Valid(&t[9..19]);
        }
        let name_distance = t[..8].iter().zip(name).filter(|(a, b)| a != b).count();
        if framed && name_distance <= 2 {
            return Trailer::Damaged;
        }
    }
    // A CRC property anywhere but intact at the end, or properties ending in a zero byte
    // (RocketMQ never writes one; a torn write zero-fills from a page boundary), mean the
    // record was damaged rather than written without a CRC.
    if props.windows(name.len()).any(|w| w == name) || props.last() == Some(&0) {
        return Trailer::Damaged;
    }
    Trailer::Absent
}

/// Decodes the record at the start of `buf`.
///
/// With `verify_crc`, the whole-record `__CRC32#` property is checked when present (it
/// covers the body and BODYCRC), else BODYCRC (for a non-empty body). Records without it (RocketMQ 4.x) are
/// accepted unless their properties show a damaged CRC property or end in a zero byte, the
/// mark of a zero-filled torn write. Never panics and never reads outside `buf`.
///
/// # Errors
/// A [`RecordError`] describing the first problem found.
pub fn decode_record(buf: &[u8], verify_crc: bool) -> Result<Decoded<'_>, RecordError> {
    let mut r = Reader::new(buf);
    let total = r.i32()?;
    let magic = r.i32()?;
    if magic == BLANK_MAGIC_CODE {
        return match u32::try_from(total) {
            Ok(len) if u64::from(len) >= END_FILE_MIN_BLANK_LENGTH => Ok(Decoded::Blank { len }),
            _ => Err(RecordError::BadTotalSize(total)),
        };
    }
    if magic != MESSAGE_MAGIC_CODE {
        return Err(if total == 0 && magic == 0 {
            RecordError::ZeroHeader
        } else {
            RecordError::BadMagic(magic as u32)
        });
    }
    let total_len = match usize::try_from(total) {
        Ok(n) if n >= MIN_RECORD_LEN => n,
        _ => return Err(RecordError::BadTotalSize(total)),
    };
    if total_len > buf.len() {
        return Err(RecordError::Truncated {
            needed: total_len,
            available: buf.len(),
        });
    }
    let rec = &buf[..total_len];
    let mut r = Reader { buf: rec, at: 8 };
    let body_crc = r.i32()? as u32;
    let queue_id = r.i32()?;
    let flag = r.i32()?;
    let queue_offset = r.i64()?;
    let physical_offset = r.i64()?;
    let sys_flag = r.i32()?;
    let born_timestamp = r.i64()?;
    let born_host = r.host(sys_flag & FLAG_BORNHOST_V6 != 0)?;
    let store_timestamp = r.i64()?;
    let store_host = r.host(sys_flag & FLAG_STOREHOST_V6 != 0)?;
    let reconsume_times = r.i32()?;
    let prepared_transaction_offset = r.i64()?;
    let body_len = usize::try_from(r.i32()?).map_err(|_| RecordError::BadFieldLength("body"))?;
    let body = r
        .bytes(body_len)
        .map_err(|_| RecordError::BadFieldLength("body"))?;
    let topic_len = usize::try_from(r.i8()?).map_err(|_| RecordError::BadFieldLength("topic"))?;
    let topic = r
        .bytes(topic_len)
        .map_err(|_| RecordError::BadFieldLength("topic"))?;
    let props_len =
        usize::try_from(r.i16()?).map_err(|_| RecordError::BadFieldLength("properties"))?;
    let props = r
        .bytes(props_len)
        .map_err(|_| RecordError::BadFieldLength("properties"))?;
    if r.at != total_len {
        return Err(RecordError::LengthMismatch {
            declared: total_len,
            computed: r.at,
        });
    }
    if verify_crc {
        let digits = match crc_trailer(props) {
            Trailer::Valid(digits) => Some(digits),
            Trailer::Damaged => return Err(RecordError::BadCrcProperty),
            Trailer::Absent => None,
        };
        // The whole-record CRC covers the body and the BODYCRC field: when it matches, a
        // second pass over the body proves nothing more. On a mismatch the body is checked
        // first so that a damaged body is reported as such.
        let whole = match digits {
            Some(digits) => {
                let mut stored: u64 = 0;
                for &d in digits.iter().rev() {
                    if !d.is_ascii_digit() {
                        return Err(RecordError::BadCrcProperty);
                    }
                    stored = stored * 10 + u64::from(d - b'0');
                }
                let computed = crc32(&rec[..total_len - CRC32_RESERVED_LEN]);
                (stored != u64::from(computed)).then_some(RecordError::RecordCrcMismatch {
                    stored: u32::try_from(stored).unwrap_or(u32::MAX),
                    computed,
                })
            }
            None => None,
        };
        if (digits.is_none() || whole.is_some()) && !body.is_empty() {
            let computed = crc32(body);
            if computed != body_crc {
                return Err(RecordError::BodyCrcMismatch {
                    stored: body_crc,
                    computed,
                });
            }
        }
        if let Some(e) = whole {
            return Err(e);
        }
    }
    Ok(Decoded::Message(RecordView {
        total_size: total_len as u32,
        body_crc,
        queue_id,
        flag,
        queue_offset,
        physical_offset,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body,
        topic: std::str::from_utf8(topic).map_err(|_| RecordError::InvalidUtf8("topic"))?,
        properties: std::str::from_utf8(props)
            .map_err(|_| RecordError::InvalidUtf8("properties"))?,
    }))
}

/// Bounds-checked big-endian reader.
struct Reader<'b> {
    buf: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn new(buf: &'b [u8]) -> Self {
        Reader { buf, at: 0 }
    }

    fn bytes(&mut self, n: usize) -> Result<&'b [u8], RecordError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(RecordError::Truncated {
                needed: self.at.saturating_add(n),
                available: self.buf.len(),
            })?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut a = [0; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    fn i8(&mut self) -> Result<i8, RecordError> {
        Ok(i8::from_be_bytes(self.array()?))
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn host(&mut self, v6: bool) -> Result<SocketAddr, RecordError> {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))
        };
        // The port is a Java int; only its low 16 bits can be a real port.
        let port = self.i32()?;
        Ok(SocketAddr::new(ip, port as u16))
    }
}

mod files;
pub use files::*;
mod message;
pub use message::Message;

#[cfg(test)]
mod tests;

//! The read side of the store: `get_message` with RocketMQ's statuses, next-begin
//! rules and transfer limits, tag filtering, lookup by time, and key queries.
//!
//! Nothing is served because a derived file says so: every ConsumeQueue unit and index hit
//! is checked against the CommitLog record it points at (CRC, topic, queue, queue offset or
//! key) before it is returned.

use std::collections::HashSet;

use crate::error::{CorruptionKind, Error, Result};
use crate::format::{self, CqUnit, RecordView, CQ_UNIT_SIZE};
use crate::index::indexed_keys;
use crate::log::{Checked, CommitLog, RecordGuard};
use crate::put::QueueOffset;
use crate::queue::ConsumeQueue;

/// Outcome of [`MessageStore::get_message`](crate::MessageStore::get_message)
/// (RocketMQ `GetMessageStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GetMessageStatus {
    /// At least one message returned.
    Found,
    /// Units were scanned but none passed the filter.
    NoMatchedMessage,
    /// The messages scanned lie in CommitLog files already removed.
    MessageWasRemoving,
    /// The ConsumeQueue file holding the offset was removed.
    OffsetFoundNull,
    /// The offset is beyond the end of the queue by more than one.
    OffsetOverflowBadly,
    /// The offset is exactly the end of the queue (nothing new yet).
    OffsetOverflowOne,
    /// The offset is below the queue's minimum.
    OffsetTooSmall,
    /// No such queue.
    NoMatchedLogicQueue,
    /// The queue has never held a message.
    NoMessageInQueue,
}

impl GetMessageStatus {
    /// RocketMQ's name for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Found => "FOUND",
            Self::NoMatchedMessage => "NO_MATCHED_MESSAGE",
            Self::MessageWasRemoving => "MESSAGE_WAS_REMOVING",
            Self::OffsetFoundNull => "OFFSET_FOUND_NULL",
            Self::OffsetOverflowBadly => "OFFSET_OVERFLOW_BADLY",
            Self::OffsetOverflowOne => "OFFSET_OVERFLOW_ONE",
            Self::OffsetTooSmall => "OFFSET_TOO_SMALL",
            Self::NoMatchedLogicQueue => "NO_MATCHED_LOGIC_QUEUE",
            Self::NoMessageInQueue => "NO_MESSAGE_IN_QUEUE",
        }
    }
}

/// What a pull gets back. The records are the raw CommitLog bytes, borrowed from the
/// mapping (each guard keeps its file mapped).
#[derive(Debug)]
#[non_exhaustive]
pub struct GetMessageResult {
    /// The status.
    pub status: GetMessageStatus,
    /// Where the consumer should ask next.
    pub next_begin_offset: QueueOffset,
    /// The queue's minimum offset.
    pub min_offset: QueueOffset,
    /// The queue's maximum offset (one past the last message).
    pub max_offset: QueueOffset,
    /// The messages, in queue order.
    pub messages: Vec<RecordGuard>,
    /// Sum of the messages' sizes.
    pub buffer_total_size: u64,
    /// The last message scanned is far behind the CommitLog end (RocketMQ hint to pull
    /// from a slave).
    pub suggest_pulling_from_slave: bool,
}

impl GetMessageResult {
    fn empty(status: GetMessageStatus, next: u64, min: u64, max: u64) -> Self {
        GetMessageResult {
            status,
            next_begin_offset: QueueOffset(next),
            min_offset: QueueOffset(min),
            max_offset: QueueOffset(max),
            messages: Vec::new(),
            buffer_total_size: 0,
            suggest_pulling_from_slave: false,
        }
    }
}

/// Decides which messages a pull returns.
pub trait MessageFilter: Send + Sync {
    /// ConsumeQueue-level test on the unit's tags code (cheap; may admit hash collisions).
    fn matches_tags_code(&self, tags_code: i64) -> bool;

    /// CommitLog-level test on the record (e.g. SQL92 filters). Default: accept.
    fn matches_record(&self, record: &RecordView<'_>) -> bool {
        let _ = record;
        true
    }
}

/// A TAG subscription expression (`*`, or `TagA || TagB`), matched by tag hash code as
/// RocketMQ's broker does; clients re-check the tag string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    all: bool,
    codes: HashSet<i32>,
}

impl TagFilter {
    /// Parses a subscription expression: `*` or empty means every tag; otherwise tags
    /// separated by `||`, trimmed, empty parts dropped.
    pub fn parse(expression: &str) -> TagFilter {
        let expression = expression.trim();
        if expression.is_empty() || expression == "*" {
            return TagFilter {
                all: true,
                codes: HashSet::new(),
            };
        }
        let codes = expression
            .split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(format::java_string_hash)
            .collect();
        TagFilter { all: false, codes }
    }
}

impl MessageFilter for TagFilter {
    fn matches_tags_code(&self, tags_code: i64) -> bool {
        self.all || self.codes.contains(&(tags_code as i32))
    }
}

/// Transfer limits of one pull.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TransferLimits {
    pub memory_window: u64,
    pub bytes_in_memory: u64,
    pub count_in_memory: u32,
    pub bytes_in_disk: u64,
    pub count_in_disk: u32,
}

/// Checks that a unit describes the record it points at.
fn unit_matches(
    unit: &CqUnit,
    v: &RecordView<'_>,
    topic: &str,
    queue_id: u32,
    offset: u64,
) -> bool {
    v.total_size as usize == unit.size as usize
        && v.topic == topic
        && v.queue_id as u32 == queue_id
        && v.queue_offset as u64 == offset
}

/// `getMessage` on one queue.
pub(crate) fn get_message(
    log: &CommitLog,
    q: Option<&ConsumeQueue>,
    offset: u64,
    max_msgs: u32,
    filter: Option<&dyn MessageFilter>,
    limits: &TransferLimits,
) -> Result<GetMessageResult> {
    use GetMessageStatus as S;
    let Some(q) = q else {
        // RocketMQ 4.9 creates an empty queue on lookup, so an unknown queue reads as empty.
        return Ok(GetMessageResult::empty(S::NoMessageInQueue, 0, 0, 0));
    };
    let (min, max) = (q.min_offset(), q.max_offset());
    let early = |status, next| Ok(GetMessageResult::empty(status, next, min, max));
    if max == 0 {
        return early(S::NoMessageInQueue, 0);
    }
    if offset < min {
        return early(S::OffsetTooSmall, min);
    }
    if offset == max {
        return early(S::OffsetOverflowOne, offset);
    }
    if offset > max {
        return early(S::OffsetOverflowBadly, max);
    }
    let Some((file, pos)) = q.units_from(offset) else {
        let per_file = q.units_per_file();
        return early(S::OffsetFoundNull, offset + per_file - offset % per_file);
    };
    let units = file.readable_from(pos);
    let scan_limit = 16_000usize.max(max_msgs as usize * CQ_UNIT_SIZE as usize);
    let log_max = log.max_offset();
    let log_min = log.min_offset();
    let file_size = log.file_size();
    let mut result = GetMessageResult::empty(S::NoMatchedMessage, offset, min, max);
    // Room for a full answer up front: no reallocation while the batch fills.
    let most = max_msgs.min(limits.count_in_memory.max(limits.count_in_disk));
    result.messages.reserve_exact(most as usize);
    let mut scanned = 0usize;
    let mut max_phy_pulling = 0u64;
    let mut skip_below = 0u64;
    let mut file_at = None;
    while scanned < scan_limit && scanned + CQ_UNIT_SIZE as usize <= units.len() {
        let Some(unit) = CqUnit::decode(&units[scanned..]) else {
            break;
        };
        let unit_offset = offset + (scanned / CQ_UNIT_SIZE as usize) as u64;
        if unit.is_filler() {
            scanned += CQ_UNIT_SIZE as usize;
            continue;
        }
        let phys = unit.physical_offset as u64;
        let size = unit.size.max(0) as u64;
        let in_disk = log_max.saturating_sub(phys) > limits.memory_window;
        let count = result.messages.len() as u32;
        if count > 0 {
            let full = count >= max_msgs
                || if in_disk {
                    result.buffer_total_size + size > limits.bytes_in_disk
                        || count >= limits.count_in_disk
                } else {
                    result.buffer_total_size + size > limits.bytes_in_memory
                        || count >= limits.count_in_memory
                };
            if full {
                break;
            }
        }
        scanned += CQ_UNIT_SIZE as usize;
        max_phy_pulling = phys;
        if phys < skip_below {
            continue;
        }
        if filter.is_some_and(|f| !f.matches_tags_code(unit.tags_code)) {
            continue;
        }
        if phys < log_min {
            if result.messages.is_empty() {
                result.status = S::MessageWasRemoving;
            }
            skip_below = phys - phys % file_size + file_size;
            continue;
        }
        let mismatch = || Error::Corrupted {
            path: q.path_of(unit_offset),
            offset: unit_offset,
            kind: CorruptionKind::UnitMismatch,
        };
        // One checked decode serves both the unit check and the record-level filter.
        let checked = log.read_checked(phys, &mut file_at, |v| {
            if unit_matches(&unit, v, q.topic(), q.queue_id(), unit_offset) {
                Ok(filter.is_none_or(|f| f.matches_record(v)))
            } else {
                Err(mismatch())
            }
        })?;
        let rec = match checked {
            Checked::Accepted(rec) => rec,
            Checked::Rejected => continue,
            Checked::Absent if phys < log.min_offset() => {
                // Cleanup deleted the file since the scan began: removed, not corrupt.
                if result.messages.is_empty() {
                    result.status = S::MessageWasRemoving;
                }
                skip_below = phys - phys % file_size + file_size;
                continue;
            }
            Checked::Absent => return Err(mismatch()),
        };
        result.buffer_total_size += size;
        result.messages.push(rec);
        result.status = S::Found;
    }
    result.next_begin_offset = QueueOffset(offset + (scanned / CQ_UNIT_SIZE as usize) as u64);
    result.suggest_pulling_from_slave =
        log_max.saturating_sub(max_phy_pulling) > limits.memory_window;
    Ok(result)
}

/// Store time of the record a unit points at, if it is readable and matches.
fn unit_time(log: &CommitLog, unit: &CqUnit) -> Option<i64> {
    let rec = log.read(unit.physical_offset as u64).ok()??;
    let t = rec.view().ok()?.store_timestamp;
    Some(t)
}

/// `getOffsetInQueueByTime`: the queue offset whose message was stored at
/// `timestamp`, else the closer neighbour (ties to the older), else the nearest end.
pub(crate) fn offset_by_time(log: &CommitLog, q: &ConsumeQueue, timestamp: i64) -> u64 {
    let (min, max) = (q.min_offset(), q.max_offset());
    if max <= min {
        return 0;
    }
    let log_min = log.min_offset();
    // Binary search over the whole readable range by store time (monotonic per queue,
    // apart from clock steps, which only affect which neighbour is chosen).
    let (mut lo, mut hi) = (min, max - 1);
    let mut older: Option<(u64, i64)> = None;
    let mut newer: Option<(u64, i64)> = None;
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        let Some(unit) = q.unit(mid) else {
            return 0;
        };
        if unit.is_filler() || (unit.physical_offset as u64) < log_min {
            lo = mid + 1;
            continue;
        }
        let Some(t) = unit_time(log, &unit) else {
            return 0;
        };
        match t.cmp(&timestamp) {
            std::cmp::Ordering::Equal => {
                // The first of equal times.
                newer = Some((mid, t));
                if mid == 0 {
                    break;
                }
                hi = mid - 1;
            }
            std::cmp::Ordering::Less => {
                older = Some((mid, t));
                lo = mid + 1;
            }
            std::cmp::Ordering::Greater => {
                newer = Some((mid, t));
                if mid == 0 {
                    break;
                }
                hi = mid - 1;
            }
        }
    }
    match (older, newer) {
        (_, Some((n, t))) if t == timestamp => n,
        (None, Some((n, _))) => n,
        (Some((o, _)), None) => o,
        (Some((o, to)), Some((n, tn))) => {
            if timestamp - to <= tn - timestamp {
                o
            } else {
                n
            }
        }
        (None, None) => 0,
    }
}

/// Whether `rec` is on `topic` and indexed under `key`.
pub(crate) fn record_has_key(rec: &RecordGuard, topic: &str, key: &str) -> bool {
    rec.view()
        .is_ok_and(|v| v.topic == topic && indexed_keys(&v).any(|k| k == key))
}

/// Result of a key query.
#[derive(Debug)]
#[non_exhaustive]
pub struct QueryMessageResult {
    /// Matching records, in CommitLog order, each verified to carry the key.
    pub messages: Vec<RecordGuard>,
}

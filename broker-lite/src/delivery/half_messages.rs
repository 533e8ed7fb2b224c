//! Transactional messages: half messages wait in `RMQ_SYS_TRANS_HALF_TOPIC`
//! queue 0, invisible to consumers; END_TRANSACTION commits one (re-put to its real topic)
//! or rolls it back, and either way records an op message (tag `d`, body = the half
//! message's queue offset) in `RMQ_SYS_TRANS_OP_HALF_TOPIC`. The check round asks a live
//! producer of the group about half messages left unresolved past `transactionTimeOut`,
//! and discards one after `transactionCheckMax` checks into `TRANS_CHECK_MAX_TIME_TOPIC`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use mqstore::format::{self, keys, RecordView, StoreFields};
use mqstore::{Message, MessageStore, PhysicalOffset, QueueOffset};

/// Where half messages wait.
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Where resolutions are recorded.
pub const OP_TOPIC: &str = "RMQ_SYS_TRANS_OP_HALF_TOPIC";
/// Where half messages go after too many checks.
pub const CHECK_MAX_TOPIC: &str = "TRANS_CHECK_MAX_TIME_TOPIC";
/// The internal group whose offsets say how far the check round got.
pub const CHECK_GROUP: &str = "CID_RMQ_SYS_TRANS";
/// Tag of an op message that resolves a half message.
pub const OP_TAG_DONE: &str = "d";

/// Message properties of the transaction flow.
pub mod props {
    /// `true` on a half message a producer sends.
    pub const TRAN_MSG: &str = "TRAN_MSG";
    /// The producer group.
    pub const PGROUP: &str = "PGROUP";
    /// Check-backs so far.
    pub const CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
    /// A producer-chosen first-check delay in seconds.
    pub const CHECK_IMMUNITY: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
}

/// Whether a send is the prepare step of a transaction.
pub fn is_prepare(msg: &Message) -> bool {
    msg.property(props::TRAN_MSG) == Some("true")
        && msg.sys_flag & format::TRANSACTION_TYPE_MASK == format::TRANSACTION_PREPARED_TYPE
}

/// The half message stored for a prepare: real topic and queue kept in properties,
/// transaction bits reset so it enters the half queue.
pub fn to_half(msg: Message) -> Message {
    let topic = msg.topic.clone();
    let queue = msg.queue_id.to_string();
    let mut half = msg
        .with_property_replaced(keys::REAL_TOPIC, &topic)
        .with_property_replaced(keys::REAL_QID, &queue);
    HALF_TOPIC.clone_into(&mut half.topic);
    half.queue_id = 0;
    half.sys_flag &= !format::TRANSACTION_TYPE_MASK;
    half
}

/// The message a commit publishes: the half message back in its real topic and queue,
/// COMMIT type, pointing at the half record.
pub fn committed(half: &RecordView<'_>) -> Option<Message> {
    let mut msg = half.to_message();
    half.property(keys::REAL_TOPIC)?.clone_into(&mut msg.topic);
    msg.queue_id = half.property(keys::REAL_QID)?.parse().ok()?;
    msg.sys_flag =
        (msg.sys_flag & !format::TRANSACTION_TYPE_MASK) | format::TRANSACTION_COMMIT_TYPE;
    msg.prepared_transaction_offset = half.physical_offset;
    Some(
        msg.without_property(keys::REAL_TOPIC)
            .without_property(keys::REAL_QID)
            .without_property(props::TRAN_MSG),
    )
}

/// Unique keys for the broker's own messages.
#[derive(Debug, Default)]
struct UniqueIds {
    next: AtomicU64,
}

impl UniqueIds {
    fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let ms = crate::state::metadata::now_millis() as u64;
        format!("{:016X}{:08X}{:08X}", ms, std::process::id(), n as u32)
    }
}

/// An op message resolving the half message at `half_queue_offset`.
pub fn op_message(half_queue_offset: u64, host: std::net::SocketAddr, uniq: &str) -> Message {
    let mut m = Message::new(OP_TOPIC, 0, half_queue_offset.to_string().into_bytes())
        .with_property(keys::TAGS, OP_TAG_DONE)
        .with_property(keys::UNIQ_KEY, uniq)
        .with_property(keys::WAIT, "false");
    m.born_host = host;
    m.born_timestamp = crate::state::metadata::now_millis();
    m
}

/// The half queue offset the op message at `op_offset` resolves.
fn op_target(store: &MessageStore, op_offset: u64) -> Option<u64> {
    let record = store
        .commit_log_offset_in_queue(OP_TOPIC, 0, QueueOffset(op_offset))
        .and_then(|p| store.read(p).ok().flatten())?;
    let v = record.view().ok()?;
    if v.property(keys::TAGS) != Some(OP_TAG_DONE) {
        return None;
    }
    std::str::from_utf8(v.body).ok()?.trim().parse().ok()
}

/// Where the check group's op offset may move: past the op messages from `from` on that
/// resolve half offsets below `half_offset` (those the round no longer needs), stopping at
/// the first that resolves one at or above it, so a restart re-reads every resolution the
/// unfinished part of the half queue still depends on.
pub fn op_offset_after(store: &MessageStore, from: u64, half_offset: u64) -> u64 {
    let max = store.max_offset_in_queue(OP_TOPIC, 0).0;
    let mut at = from.max(store.min_offset_in_queue(OP_TOPIC, 0).0);
    while at < max && op_target(store, at).is_none_or(|h| h < half_offset) {
        at += 1;
    }
    at
}

/// What the broker remembers about resolved transactions.
#[derive(Debug, Default)]
pub struct Transactions {
    /// Half queue offsets with an op message.
    resolved_offsets: Mutex<HashSet<u64>>,
    /// UNIQ_KEYs of half messages resolved since start (a check-back copy and the
    /// original share it, so a late second END_TRANSACTION does not publish twice).
    resolved_keys: Mutex<HashSet<String>>,
    ids: UniqueIds,
    /// Op messages read so far (next op queue offset to read).
    op_read: AtomicU64,
}

impl Transactions {
    /// Reads the op queue from the check group's committed offset, so resolutions made
    /// before a restart are known.
    pub fn load(store: &MessageStore, op_from: u64) -> Self {
        let t = Transactions::default();
        t.op_read.store(op_from, Ordering::Relaxed);
        t.read_ops(store);
        t
    }

    /// Reads op messages written since the last call.
    pub fn read_ops(&self, store: &MessageStore) {
        let max = store.max_offset_in_queue(OP_TOPIC, 0).0;
        let min = store.min_offset_in_queue(OP_TOPIC, 0).0;
        let mut at = self.op_read.load(Ordering::Relaxed).max(min);
        let mut resolved = self
            .resolved_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while at < max {
            if let Some(half) = op_target(store, at) {
                resolved.insert(half);
            }
            at += 1;
        }
        self.op_read.store(at, Ordering::Relaxed);
    }

    /// Whether the half message at `queue_offset` (or another copy with `uniq`) was
    /// resolved.
    pub fn is_resolved(&self, queue_offset: u64, uniq: Option<&str>) -> bool {
        self.resolved_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&queue_offset)
            || uniq.is_some_and(|k| {
                self.resolved_keys
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains(k)
            })
    }

    /// Records a resolution made now.
    pub fn mark_resolved(&self, queue_offset: u64, uniq: Option<&str>) {
        self.resolved_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(queue_offset);
        if let Some(k) = uniq {
            self.resolved_keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(k.to_owned());
        }
    }

    /// A new UNIQ_KEY for a broker-made message.
    pub fn new_uniq_key(&self) -> String {
        self.ids.next()
    }

    /// Forgets offsets below the check group's new half offset (kept small).
    pub fn forget_below(&self, half_offset: u64) {
        self.resolved_offsets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|&o| o >= half_offset);
    }
}

/// The CHECK_TRANSACTION_STATE body: the half message encoded as a CommitLog record,
/// with its real topic and queue.
pub fn check_body(
    half: &RecordView<'_>,
    at: PhysicalOffset,
    queue_offset: u64,
    store_timestamp: i64,
    max_body: u32,
) -> Option<Vec<u8>> {
    let mut msg = half.to_message();
    half.property(keys::REAL_TOPIC)?.clone_into(&mut msg.topic);
    msg.queue_id = half.property(keys::REAL_QID)?.parse().ok()?;
    let fields = StoreFields {
        queue_offset: queue_offset as i64,
        physical_offset: at.0 as i64,
        store_timestamp,
        store_host: half.store_host,
    };
    format::encode_record(&msg, &fields, max_body, false).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_half_and_commit_round_trip() {
        let mut m = Message::new("T", 3, b"pay".to_vec())
            .with_property(props::TRAN_MSG, "true")
            .with_property(props::PGROUP, "pg")
            .with_property(keys::UNIQ_KEY, "U1");
        m.sys_flag = format::TRANSACTION_PREPARED_TYPE;
        assert!(is_prepare(&m));
        let half = to_half(m);
        assert_eq!(
            (half.topic.as_str(), half.queue_id, half.sys_flag),
            (HALF_TOPIC, 0, 0)
        );
        assert!(
            half.advances_queue(),
            "a half message enters the half queue"
        );
        let fields = StoreFields {
            queue_offset: 7,
            physical_offset: 4096,
            store_timestamp: 1,
            store_host: half.born_host,
        };
        let bytes = format::encode_record(&half, &fields, 1 << 20, true).expect("encodes");
        let format::Decoded::Message(v) = format::decode_record(&bytes, true).expect("decodes")
        else {
            panic!("not a message");
        };
        let c = committed(&v).expect("has a real topic");
        assert_eq!((c.topic.as_str(), c.queue_id), ("T", 3));
        assert_eq!(
            c.sys_flag & format::TRANSACTION_TYPE_MASK,
            format::TRANSACTION_COMMIT_TYPE
        );
        assert_eq!(c.prepared_transaction_offset, 4096);
        assert_eq!(c.property(props::TRAN_MSG), None);
        assert_eq!(c.property(keys::REAL_TOPIC), None);
        assert_eq!(c.property(props::PGROUP), Some("pg"));
        assert_eq!(c.body, b"pay");
    }
}

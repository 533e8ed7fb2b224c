//! Random sequences of puts, batch puts, gets, key queries, time seeks, clean reopens,
//! crashes (threads stopped without flush or checkpoint, abort file left) and torn tails,
//! against a simple in-memory model, with tiny files so that every case rolls CommitLog,
//! ConsumeQueue and IndexFiles. After every reopen each acknowledged message is found by
//! queue offset, by key and by message id, and every queue runs from min to max without
//! holes.

mod common;

use std::collections::HashMap;

use mqstore::{
    FlushMode, GetMessageStatus, Message, MessageStore, PhysicalOffset, PutStatus, QueueOffset,
};
use proptest::prelude::*;

const FILE_SIZE: u64 = 64 * 1024;
const MAX_BODY: u32 = 8 * 1024;

#[derive(Debug, Clone)]
enum Op {
    Put {
        topic: u8,
        queue: u8,
        body_len: usize,
    },
    Batch {
        topic: u8,
        queue: u8,
        body_lens: Vec<usize>,
    },
    Reopen,
    /// Stop as if killed (no flush, no checkpoint, abort file left), reopen.
    Crash,
    /// Crash, zero the last `bytes` bytes of data above the durable point (a torn tail),
    /// reopen.
    TearAndReopen {
        bytes: u16,
    },
    /// Pull from a queue at an offset (relative to its max).
    Get {
        topic: u8,
        queue: u8,
        back: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let body = prop_oneof![
        0usize..64,
        0usize..=MAX_BODY as usize,
        Just(MAX_BODY as usize)
    ];
    prop_oneof![
        6 => (0u8..3, 0u8..3, body.clone()).prop_map(|(topic, queue, body_len)| Op::Put { topic, queue, body_len }),
        2 => (0u8..3, 0u8..3, proptest::collection::vec(0usize..1500, 1..6))
            .prop_map(|(topic, queue, body_lens)| Op::Batch { topic, queue, body_lens }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => (1u16..6000).prop_map(|bytes| Op::TearAndReopen { bytes }),
        2 => (0u8..3, 0u8..3, 0u8..40).prop_map(|(topic, queue, back)| Op::Get { topic, queue, back }),
    ]
}

/// Zeroes the CommitLog bytes `[from, to)` on disk (a torn tail across files).
fn zero_range(root: &std::path::Path, from: u64, to: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut at = from;
    while at < to {
        let start = at / FILE_SIZE * FILE_SIZE;
        let len = (start + FILE_SIZE).min(to) - at;
        let path = root.join("commitlog").join(format!("{start:020}"));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.seek(SeekFrom::Start(at - start)).expect("seek");
        f.write_all(&vec![0u8; len as usize]).expect("zero");
        at += len;
    }
}

/// 48 cases in `cargo test`; `PROPTEST_CASES=5000` for a long run.
fn model_cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48)
}

fn body(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize * 31 + i) as u8).collect()
}

struct Expected {
    offset: u64,
    size: u64,
    topic: String,
    queue_id: u32,
    queue_offset: u64,
    body: Vec<u8>,
    key: String,
    msg_id: String,
}

fn open(root: &std::path::Path, mode: FlushMode) -> MessageStore {
    MessageStore::builder(root)
        .configure(|c| {
            c.mapped_file_size_commit_log = FILE_SIZE;
            c.max_message_size = MAX_BODY;
            c.flush_disk_type = mode;
            common::small_derived_files(c);
            // Checkpoints only at open and shutdown, so a crash's durable point is known.
            c.flush_interval_consume_queue = std::time::Duration::from_secs(3600);
            // Index files roll every few dozen keys.
            c.max_index_num = 40;
            c.max_hash_slot_num = 7;
        })
        .open()
        .expect("open store")
}

/// Every acknowledged message is reachable by queue offset, key and message id, and each
/// queue is contiguous from min to max.
fn check_all(store: &MessageStore, model: &[Expected]) -> Result<(), TestCaseError> {
    prop_assert!(store.wait_dispatched(std::time::Duration::from_secs(10)));
    let mut queues: HashMap<(String, u32), Vec<&Expected>> = HashMap::new();
    for e in model {
        queues
            .entry((e.topic.clone(), e.queue_id))
            .or_default()
            .push(e);
    }
    for ((topic, q), exps) in &queues {
        prop_assert_eq!(store.min_offset_in_queue(topic, *q).0, 0);
        prop_assert_eq!(store.max_offset_in_queue(topic, *q).0, exps.len() as u64);
        let mut at = 0u64;
        let mut got = Vec::new();
        while at < exps.len() as u64 {
            let r = store
                .get_message("g", topic, *q, QueueOffset(at), 32, None)
                .expect("get");
            prop_assert_eq!(r.status, GetMessageStatus::Found);
            prop_assert!(r.next_begin_offset.0 > at);
            at = r.next_begin_offset.0;
            got.extend(r.messages);
        }
        prop_assert_eq!(got.len(), exps.len(), "queue {} {} without holes", topic, q);
        for (rec, exp) in got.iter().zip(exps) {
            prop_assert_eq!(rec.physical_offset().0, exp.offset);
            prop_assert_eq!(rec.view().expect("decodes").body, exp.body.as_slice());
        }
    }
    for e in model {
        let hits = store.query_message(&e.topic, &e.key, 64, 0, i64::MAX);
        prop_assert!(
            hits.messages
                .iter()
                .any(|r| r.physical_offset().0 == e.offset),
            "key {} found",
            e.key
        );
        let (_, phys) = mqstore::format::parse_offset_msg_id(&e.msg_id).expect("msg id");
        let rec = store
            .read(PhysicalOffset(phys))
            .expect("read")
            .expect("by id");
        prop_assert_eq!(rec.view().expect("decodes").body, e.body.as_slice());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: model_cases(), ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..60), sync in any::<bool>()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = if sync { FlushMode::Sync } else { FlushMode::Async };
        let mut store = open(dir.path(), mode);
        // Everything below this was made durable and checkpointed by the last open.
        let mut floor = 0u64;
        let mut model: Vec<Expected> = Vec::new();
        let mut next_qo: HashMap<(String, u32), u64> = HashMap::new();
        let mut seq = 0u64;
        for op in ops {
            match op {
                Op::Put { topic, queue, body_len } => {
                    seq += 1;
                    let t = format!("topic-{topic}");
                    let key = format!("k{seq}");
                    let m = Message::new(t.clone(), u32::from(queue), body(seq, body_len)).with_property("KEYS", &format!("{key} shared"));
                    let r = store.put(&m).expect("put");
                    prop_assert_eq!(r.status, PutStatus::PutOk);
                    let a = r.appended.expect("appended");
                    let qo = next_qo.entry((t.clone(), u32::from(queue))).or_insert(0);
                    prop_assert_eq!(a.queue_offset.0, *qo);
                    *qo += 1;
                    model.push(Expected { offset: a.physical_offset.0, size: a.wrote_bytes, topic: t, queue_id: u32::from(queue), queue_offset: a.queue_offset.0, body: m.body, key, msg_id: a.msg_id() });
                }
                Op::Batch { topic, queue, body_lens } => {
                    let t = format!("topic-{topic}");
                    let msgs: Vec<Message> = body_lens.iter().map(|&len| { seq += 1; Message::new(t.clone(), u32::from(queue), body(seq, len)).with_property("KEYS", &format!("k{seq}")) }).collect();
                    let r = store.put_batch(&msgs).expect("batch");
                    prop_assert_eq!(r.status, PutStatus::PutOk);
                    let a = r.appended.expect("appended");
                    prop_assert_eq!(a.msg_count as usize, msgs.len());
                    let qo = next_qo.entry((t.clone(), u32::from(queue))).or_insert(0);
                    prop_assert_eq!(a.queue_offset.0, *qo);
                    let offsets: Vec<u64> = a.record_offsets().map(|o| o.0).chain(std::iter::once(a.end_offset().0)).collect();
                    prop_assert_eq!(a.msg_id().split(',').count(), msgs.len());
                    // A batch never spans files.
                    prop_assert_eq!(offsets[0] / FILE_SIZE, (a.end_offset().0 - 1) / FILE_SIZE);
                    let ids: Vec<String> = a.msg_id().split(',').map(str::to_owned).collect();
                    for ((m, span), id) in msgs.into_iter().zip(offsets.windows(2)).zip(ids) {
                        let key = m.property("KEYS").expect("key").to_owned();
                        model.push(Expected { offset: span[0], size: span[1] - span[0], topic: t.clone(), queue_id: u32::from(queue), queue_offset: *qo, body: m.body, key, msg_id: id });
                        *qo += 1;
                    }
                }
                Op::Get { topic, queue, back } => {
                    let t = format!("topic-{topic}");
                    let q = u32::from(queue);
                    prop_assert!(store.wait_dispatched(std::time::Duration::from_secs(10)));
                    let n = model.iter().filter(|e| e.topic == t && e.queue_id == q).count() as u64;
                    let at = n.saturating_sub(u64::from(back));
                    let r = store.get_message("g", &t, q, QueueOffset(at), 4, None).expect("get");
                    let want = match (n, at == n) {
                        (0, _) => GetMessageStatus::NoMessageInQueue,
                        (_, true) => GetMessageStatus::OffsetOverflowOne,
                        _ => GetMessageStatus::Found,
                    };
                    prop_assert_eq!(r.status, want);
                    let exp: Vec<_> = model.iter().filter(|e| e.topic == t && e.queue_id == q).skip(at as usize).take(4).collect();
                    prop_assert!(r.messages.len() <= exp.len());
                    for (rec, e) in r.messages.iter().zip(exp) {
                        prop_assert_eq!(rec.physical_offset().0, e.offset);
                    }
                    prop_assert_eq!(r.next_begin_offset.0, if n == 0 { 0 } else { at + r.messages.len() as u64 });
                }
                Op::Reopen => {
                    store.shutdown().expect("shutdown");
                    store = open(dir.path(), mode);
                    prop_assert!(store.recovery_report().truncated.is_none(), "clean reopen cuts nothing");
                    prop_assert!(!store.recovery_report().abnormal_exit);
                    floor = store.max_offset().0;
                    check_all(&store, &model)?;
                }
                Op::Crash => {
                    store.halt();
                    store = open(dir.path(), mode);
                    prop_assert!(store.recovery_report().abnormal_exit);
                    prop_assert!(store.recovery_report().truncated.is_none(), "a crash tears nothing here");
                    floor = store.max_offset().0;
                    check_all(&store, &model)?;
                }
                Op::TearAndReopen { bytes } => {
                    let end = store.max_offset().0;
                    store.halt();
                    let cut = end.saturating_sub(u64::from(bytes)).max(floor);
                    zero_range(dir.path(), cut, end);
                    store = open(dir.path(), mode);
                    // Exactly the records that end at or before the cut survive.
                    model.retain(|e| e.offset + e.size <= cut);
                    next_qo.clear();
                    for e in &model {
                        next_qo.insert((e.topic.clone(), e.queue_id), e.queue_offset + 1);
                    }
                    let expected_end = model.last().map_or(0, |e| e.offset + e.size);
                    // The end is right after the last survivor, or at the next file's start
                    // when the survivor's file was closed by a BLANK the cut did not reach.
                    let got = store.max_offset().0;
                    prop_assert!(
                        got == expected_end || (got.is_multiple_of(FILE_SIZE) && got > expected_end && got - expected_end < FILE_SIZE),
                        "recovered end {got}, last survivor ends at {expected_end}, cut at {cut}"
                    );
                    floor = got;
                    check_all(&store, &model)?;
                }
            }
        }
        store.shutdown().expect("shutdown");
        let store = open(dir.path(), mode);
        check_all(&store, &model)?;
        // Read back through the store: every message identical, in order.
        let read: Vec<_> = store.records_from(PhysicalOffset(0)).collect::<Result<_, _>>().expect("iterate");
        prop_assert_eq!(read.len(), model.len());
        for (rec, exp) in read.iter().zip(&model) {
            let v = rec.view().expect("decodes");
            prop_assert_eq!(rec.physical_offset().0, exp.offset);
            prop_assert_eq!(v.topic, exp.topic.as_str());
            prop_assert_eq!(v.queue_id as u32, exp.queue_id);
            prop_assert_eq!(v.queue_offset as u64, exp.queue_offset);
            prop_assert_eq!(v.body, exp.body.as_slice());
            let again = store.read(rec.physical_offset()).expect("read").expect("present");
            prop_assert_eq!(again.bytes(), rec.bytes());
        }
        for ((topic, queue), next) in &next_qo {
            prop_assert_eq!(store.next_queue_offset(topic, *queue).0, *next, "queue table restored");
        }
        store.shutdown().expect("shutdown");
        // And straight from disk: file-level invariants and contiguous queue offsets.
        let disk = common::scan_commit_log(dir.path(), FILE_SIZE);
        prop_assert_eq!(disk.len(), model.len());
        let mut seen: HashMap<(String, i32), i64> = HashMap::new();
        for r in &disk {
            let next = seen.entry((r.topic.clone(), r.queue_id)).or_insert(0);
            prop_assert_eq!(r.queue_offset, *next, "queue offsets contiguous per queue");
            *next += 1;
        }
        prop_assert!(disk.windows(2).all(|w| w[0].offset + w[0].size <= w[1].offset), "strictly increasing, no overlap");
    }
}

//! Random sequences of single and batch puts against a simple in-memory model, with tiny
//! files so that every case rolls over, then close and reopen.

mod common;

use std::collections::HashMap;

use mqstore::{FlushMode, Message, PhysicalOffset, PutStatus};
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
    /// Shut down, zero the last `bytes` bytes of data (a torn tail), reopen.
    TearAndReopen {
        bytes: u16,
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
        1 => (1u16..6000).prop_map(|bytes| Op::TearAndReopen { bytes }),
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
}

proptest! {
    #![proptest_config(ProptestConfig { cases: model_cases(), ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..60), sync in any::<bool>()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = if sync { FlushMode::Sync } else { FlushMode::Async };
        let mut store = common::open_small(dir.path(), FILE_SIZE, MAX_BODY, mode);
        let mut model: Vec<Expected> = Vec::new();
        let mut next_qo: HashMap<(String, u32), u64> = HashMap::new();
        let mut seq = 0u64;
        for op in ops {
            match op {
                Op::Put { topic, queue, body_len } => {
                    seq += 1;
                    let t = format!("topic-{topic}");
                    let m = Message::new(t.clone(), u32::from(queue), body(seq, body_len)).with_property("KEYS", &seq.to_string());
                    let r = store.put(&m).expect("put");
                    prop_assert_eq!(r.status, PutStatus::PutOk);
                    let a = r.appended.expect("appended");
                    let qo = next_qo.entry((t.clone(), u32::from(queue))).or_insert(0);
                    prop_assert_eq!(a.queue_offset.0, *qo);
                    *qo += 1;
                    model.push(Expected { offset: a.physical_offset.0, size: a.wrote_bytes, topic: t, queue_id: u32::from(queue), queue_offset: a.queue_offset.0, body: m.body });
                }
                Op::Batch { topic, queue, body_lens } => {
                    let t = format!("topic-{topic}");
                    let msgs: Vec<Message> = body_lens.iter().map(|&len| { seq += 1; Message::new(t.clone(), u32::from(queue), body(seq, len)) }).collect();
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
                    for (m, span) in msgs.into_iter().zip(offsets.windows(2)) {
                        model.push(Expected { offset: span[0], size: span[1] - span[0], topic: t.clone(), queue_id: u32::from(queue), queue_offset: *qo, body: m.body });
                        *qo += 1;
                    }
                }
                Op::Reopen => {
                    store.shutdown().expect("shutdown");
                    store = common::open_small(dir.path(), FILE_SIZE, MAX_BODY, mode);
                    prop_assert!(store.recovery_report().truncated.is_none(), "clean reopen cuts nothing");
                }
                Op::TearAndReopen { bytes } => {
                    let end = store.max_offset().0;
                    store.shutdown().expect("shutdown");
                    let cut = end.saturating_sub(u64::from(bytes));
                    zero_range(dir.path(), cut, end);
                    store = common::open_small(dir.path(), FILE_SIZE, MAX_BODY, mode);
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
                }
            }
        }
        store.shutdown().expect("shutdown");
        let store = common::open_small(dir.path(), FILE_SIZE, MAX_BODY, mode);
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

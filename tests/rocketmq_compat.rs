//! A store directory as Apache RocketMQ 4.9 writes it, built here byte by byte from the
//! specification with code independent of the crate (records without the `__CRC32#`
//! property, ConsumeQueue units, an IndexFile, the 4 KiB checkpoint, no abort file):
//! the store opens it, serves every message by queue offset, key and time, keeps
//! RocketMQ's IndexFile, and leaves the directory in RocketMQ's layout.

use std::path::Path;

use mqstore::{GetMessageStatus, MessageStore, QueueOffset, TagFilter};

const LOG_FILE: u64 = 64 * 1024;
const CQ_FILE: u64 = 100 * 20;
const SLOTS: u32 = 100;
const ITEMS: u32 = 400;
const BASE_TS: i64 = 1_700_000_000_000;

fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

fn crc(bytes: &[u8]) -> i32 {
    (crc32fast::hash(bytes) & 0x7FFF_FFFF) as i32
}

struct Msg {
    topic: &'static str,
    queue_id: i32,
    queue_offset: i64,
    body: Vec<u8>,
    keys: &'static str,
    uniq: &'static str,
    tag: &'static str,
    store_ts: i64,
}

/// v1 layout, IPv4 hosts, properties without a trailing separator (4.9.1+).
fn record(m: &Msg, phys: i64) -> Vec<u8> {
    let props = format!(
        "KEYS\u{1}{}\u{2}UNIQ_KEY\u{1}{}\u{2}TAGS\u{1}{}",
        m.keys, m.uniq, m.tag
    );
    let total = 84 + 4 + m.body.len() + 1 + m.topic.len() + 2 + props.len();
    let mut r = Vec::with_capacity(total);
    r.extend_from_slice(&(total as i32).to_be_bytes());
    r.extend_from_slice(&0xDAA3_20A7u32.to_be_bytes());
    r.extend_from_slice(&crc(&m.body).to_be_bytes());
    r.extend_from_slice(&m.queue_id.to_be_bytes());
    r.extend_from_slice(&0i32.to_be_bytes()); // flag
    r.extend_from_slice(&m.queue_offset.to_be_bytes());
    r.extend_from_slice(&phys.to_be_bytes());
    r.extend_from_slice(&0i32.to_be_bytes()); // sysflag
    r.extend_from_slice(&(m.store_ts - 5).to_be_bytes()); // born
    r.extend_from_slice(&[10, 0, 0, 9]);
    r.extend_from_slice(&40_000i32.to_be_bytes());
    r.extend_from_slice(&m.store_ts.to_be_bytes());
    r.extend_from_slice(&[10, 0, 0, 1]);
    r.extend_from_slice(&10_911i32.to_be_bytes());
    r.extend_from_slice(&0i32.to_be_bytes()); // reconsume
    r.extend_from_slice(&0i64.to_be_bytes()); // prepared offset
    r.extend_from_slice(&(m.body.len() as i32).to_be_bytes());
    r.extend_from_slice(&m.body);
    r.push(m.topic.len() as u8);
    r.extend_from_slice(m.topic.as_bytes());
    r.extend_from_slice(&(props.len() as i16).to_be_bytes());
    r.extend_from_slice(props.as_bytes());
    assert_eq!(r.len(), total);
    r
}

/// RocketMQ's IndexFile `putKey`, written out independently.
struct Index {
    bytes: Vec<u8>,
    count: i32,
    slots_used: i32,
    begin_ts: i64,
}

impl Index {
    fn new() -> Index {
        let size = 40 + SLOTS as usize * 4 + ITEMS as usize * 20;
        Index {
            bytes: vec![0; size],
            count: 1,
            slots_used: 0,
            begin_ts: 0,
        }
    }

    fn put(&mut self, key: &str, phys: i64, ts: i64) {
        let hash = java_hash(key).checked_abs().unwrap_or(0);
        let slot = 40 + (hash as usize % SLOTS as usize) * 4;
        let old = i32::from_be_bytes(self.bytes[slot..slot + 4].try_into().expect("4"));
        if self.count <= 1 {
            self.begin_ts = ts;
            self.bytes[0..8].copy_from_slice(&ts.to_be_bytes());
            self.bytes[16..24].copy_from_slice(&phys.to_be_bytes());
        }
        let item = 40 + SLOTS as usize * 4 + self.count as usize * 20;
        let diff = ((ts - self.begin_ts) / 1000) as i32;
        self.bytes[item..item + 4].copy_from_slice(&hash.to_be_bytes());
        self.bytes[item + 4..item + 12].copy_from_slice(&phys.to_be_bytes());
        self.bytes[item + 12..item + 16].copy_from_slice(&diff.to_be_bytes());
        self.bytes[item + 16..item + 20].copy_from_slice(&old.to_be_bytes());
        self.bytes[slot..slot + 4].copy_from_slice(&self.count.to_be_bytes());
        if old == 0 {
            self.slots_used += 1;
        }
        self.count += 1;
        self.bytes[8..16].copy_from_slice(&ts.to_be_bytes());
        self.bytes[24..32].copy_from_slice(&phys.to_be_bytes());
        self.bytes[32..36].copy_from_slice(&self.slots_used.to_be_bytes());
        self.bytes[36..40].copy_from_slice(&self.count.to_be_bytes());
    }
}

fn messages() -> Vec<Msg> {
    let specs = [
        ("TopicTest", 0, "order-1 order-x", "UNIQ0001", "TagA"),
        ("TopicTest", 1, "order-2", "UNIQ0002", "TagB"),
        ("TopicTest", 0, "order-3", "UNIQ0003", "TagB"),
        ("Other", 0, "order-1", "UNIQ0004", "TagA"),
        ("TopicTest", 0, "order-5", "UNIQ0005", "TagA"),
    ];
    let mut next = std::collections::HashMap::new();
    specs
        .iter()
        .enumerate()
        .map(|(i, &(topic, queue_id, keys, uniq, tag))| {
            let qo = next.entry((topic, queue_id)).or_insert(0i64);
            let m = Msg {
                topic,
                queue_id,
                queue_offset: *qo,
                body: format!("hello rocketmq {i}").into_bytes(),
                keys,
                uniq,
                tag,
                store_ts: BASE_TS + i as i64 * 2000,
            };
            *qo += 1;
            m
        })
        .collect()
}

/// Writes the directory; returns each message's CommitLog offset.
fn write_rocketmq_dir(root: &Path, msgs: &[Msg]) -> Vec<i64> {
    let mut log = vec![0u8; LOG_FILE as usize];
    let mut at = 0usize;
    let mut offsets = Vec::new();
    let mut index = Index::new();
    let mut queues: std::collections::BTreeMap<(&str, i32), Vec<u8>> =
        std::collections::BTreeMap::new();
    for m in msgs {
        let rec = record(m, at as i64);
        log[at..at + rec.len()].copy_from_slice(&rec);
        let unit = queues.entry((m.topic, m.queue_id)).or_default();
        unit.extend_from_slice(&(at as i64).to_be_bytes());
        unit.extend_from_slice(&(rec.len() as i32).to_be_bytes());
        unit.extend_from_slice(&i64::from(java_hash(m.tag)).to_be_bytes());
        index.put(&format!("{}#{}", m.topic, m.uniq), at as i64, m.store_ts);
        for k in m.keys.split(' ') {
            index.put(&format!("{}#{}", m.topic, k), at as i64, m.store_ts);
        }
        offsets.push(at as i64);
        at += rec.len();
    }
    std::fs::create_dir_all(root.join("commitlog")).expect("mkdir");
    std::fs::write(root.join("commitlog").join(format!("{:020}", 0)), &log).expect("log");
    for ((topic, q), units) in &queues {
        let dir = root.join("consumequeue").join(topic).join(q.to_string());
        std::fs::create_dir_all(&dir).expect("mkdir");
        let mut file = units.clone();
        file.resize(CQ_FILE as usize, 0);
        std::fs::write(dir.join(format!("{:020}", 0)), &file).expect("cq");
    }
    std::fs::create_dir_all(root.join("index")).expect("mkdir");
    std::fs::write(root.join("index").join("20231114221320000"), &index.bytes).expect("index");
    let last_ts = msgs.last().expect("messages").store_ts;
    let mut checkpoint = vec![0u8; 4096];
    checkpoint[0..8].copy_from_slice(&last_ts.to_be_bytes());
    checkpoint[8..16].copy_from_slice(&last_ts.to_be_bytes());
    std::fs::write(root.join("checkpoint"), &checkpoint).expect("checkpoint");
    std::fs::write(root.join("lock"), b"lock").expect("lock");
    offsets
}

fn open(root: &Path) -> MessageStore {
    MessageStore::builder(root)
        .configure(|c| {
            c.mapped_file_size_commit_log = LOG_FILE;
            c.mapped_file_size_consume_queue = CQ_FILE;
            c.max_hash_slot_num = SLOTS;
            c.max_index_num = ITEMS;
        })
        .open()
        .expect("opens a RocketMQ 4.9 directory")
}

#[test]
fn a_directory_written_by_rocketmq_opens_and_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let msgs = messages();
    let offsets = write_rocketmq_dir(dir.path(), &msgs);
    let store = open(dir.path());
    let report = store.recovery_report().clone();
    assert!(!report.abnormal_exit);
    assert!(report.truncated.is_none());
    assert!(
        report.index_files_rebuilt.is_empty(),
        "RocketMQ's index is kept"
    );
    assert_eq!(
        report.consume_queue_units_rebuilt, 0,
        "RocketMQ's units match ours"
    );
    assert!(store.wait_dispatched(std::time::Duration::from_secs(5)));

    // By queue offset, with the tag filter.
    let r = store
        .get_message("g", "TopicTest", 0, QueueOffset(0), 32, None)
        .expect("get");
    assert_eq!(r.status, GetMessageStatus::Found);
    let bodies: Vec<Vec<u8>> = r
        .messages
        .iter()
        .map(|m| m.view().expect("decodes").body.to_vec())
        .collect();
    assert_eq!(
        bodies,
        [
            msgs[0].body.clone(),
            msgs[2].body.clone(),
            msgs[4].body.clone()
        ]
    );
    assert_eq!(r.next_begin_offset, QueueOffset(3));
    let only_a = TagFilter::parse("TagA");
    let r = store
        .get_message("g", "TopicTest", 0, QueueOffset(0), 32, Some(&only_a))
        .expect("get");
    assert_eq!(r.messages.len(), 2);
    assert_eq!(store.max_offset_in_queue("TopicTest", 1), QueueOffset(1));

    // By key and unique key, through RocketMQ's own IndexFile; topics do not mix.
    let hits = store.query_message("TopicTest", "order-1", 32, 0, i64::MAX);
    assert_eq!(hits.messages.len(), 1);
    assert_eq!(hits.messages[0].physical_offset().0, offsets[0] as u64);
    let hits = store.query_message("TopicTest", "UNIQ0003", 32, 0, i64::MAX);
    assert_eq!(hits.messages[0].physical_offset().0, offsets[2] as u64);
    let hits = store.query_message("Other", "order-1", 32, 0, i64::MAX);
    assert_eq!(hits.messages[0].physical_offset().0, offsets[3] as u64);
    assert!(store
        .query_message("TopicTest", "order-1", 32, BASE_TS + 1, i64::MAX)
        .messages
        .is_empty());

    // By time and by offset message id (the store host written by RocketMQ).
    assert_eq!(
        store.offset_in_queue_by_time("TopicTest", 0, msgs[2].store_ts),
        QueueOffset(1)
    );
    assert_eq!(
        store.offset_in_queue_by_time("TopicTest", 0, msgs[2].store_ts + 1),
        QueueOffset(1)
    );
    assert_eq!(store.earliest_message_time(), BASE_TS);
    let id =
        mqstore::format::offset_msg_id("10.0.0.1:10911".parse().expect("addr"), offsets[1] as u64);
    let (_, phys) = mqstore::format::parse_offset_msg_id(&id).expect("id");
    let rec = store
        .read(mqstore::PhysicalOffset(phys))
        .expect("read")
        .expect("present");
    assert_eq!(rec.view().expect("decodes").body, msgs[1].body.as_slice());

    // New messages continue RocketMQ's queues and are found the same ways.
    let put = store
        .put(
            &mqstore::Message::new("TopicTest", 0, b"ours".to_vec())
                .with_property("KEYS", "order-9"),
        )
        .expect("put");
    assert_eq!(put.appended.expect("stored").queue_offset, QueueOffset(3));
    store.shutdown().expect("shutdown");

    // Still RocketMQ's layout: same names, sizes, and the checkpoint page.
    let root = dir.path();
    assert_eq!(
        std::fs::metadata(root.join("checkpoint"))
            .expect("stat")
            .len(),
        4096
    );
    assert!(root
        .join("consumequeue/TopicTest/0/00000000000000000000")
        .exists());
    assert!(root.join("index/20231114221320000").exists());
    assert!(!root.join("abort").exists());
    let store = open(root);
    let hits = store.query_message("TopicTest", "order-9", 32, 0, i64::MAX);
    assert_eq!(hits.messages.len(), 1);
    store.shutdown().expect("shutdown");
}

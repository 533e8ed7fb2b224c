//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use mqstore::format::{self, Decoded};
use mqstore::{FlushMode, MessageStore};

/// A store with small files (so tests roll over often) and the given flush mode.
pub fn open_small(root: &Path, file_size: u64, max_body: u32, mode: FlushMode) -> MessageStore {
    MessageStore::builder(root)
        .configure(|c| {
            c.mapped_file_size_commit_log = file_size;
            c.max_message_size = max_body;
            c.flush_disk_type = mode;
            small_derived_files(c);
        })
        .open()
        .expect("open store")
}

/// Small ConsumeQueue (1 000 units) and IndexFiles (84 KB) so tests roll them too and
/// fit on tiny filesystems.
pub fn small_derived_files(c: &mut mqstore::StoreConfig) {
    c.mapped_file_size_consume_queue = 1000 * 20;
    c.max_hash_slot_num = 1000;
    c.max_index_num = 4000;
}

/// Copies a store directory tree (a stopped store's files) to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// One record as found on disk by [`scan_commit_log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnDisk {
    pub offset: u64,
    pub size: u64,
    pub topic: String,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub body: Vec<u8>,
}

/// Reads every CommitLog file straight from disk, independently of the store, and checks
/// the file-level invariants: records never span files, each file ends exactly at a record
/// boundary followed by zeros or with a BLANK covering the rest, PHYSICALOFFSET equals the
/// position, CRCs verify.
pub fn scan_commit_log(root: &Path, file_size: u64) -> Vec<OnDisk> {
    let dir = root.join("commitlog");
    let mut names: BTreeMap<u64, std::path::PathBuf> = BTreeMap::new();
    for e in std::fs::read_dir(&dir).expect("read dir") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            continue; // a file the allocator is creating right now
        }
        let offset =
            format::parse_file_name(&name).unwrap_or_else(|| panic!("foreign file {name}"));
        names.insert(offset, e.path());
    }
    let mut out = Vec::new();
    let mut prev_end: Option<u64> = None;
    for (from, path) in names {
        let bytes = std::fs::read(&path).expect("read file");
        assert_eq!(
            bytes.len() as u64,
            file_size,
            "{} has the wrong size",
            path.display()
        );
        let mut pos = 0usize;
        loop {
            if pos == bytes.len() {
                break;
            }
            match format::decode_record(&bytes[pos..], true) {
                Ok(Decoded::Message(v)) => {
                    let offset = from + pos as u64;
                    assert_eq!(v.physical_offset as u64, offset, "misplaced record");
                    if let Some(prev) = prev_end {
                        assert!(offset >= prev, "physical offsets must increase");
                    }
                    assert!(
                        pos + v.total_size as usize + 8 <= bytes.len(),
                        "record leaves no room for a blank"
                    );
                    out.push(OnDisk {
                        offset,
                        size: u64::from(v.total_size),
                        topic: v.topic.to_owned(),
                        queue_id: v.queue_id,
                        queue_offset: v.queue_offset,
                        body: v.body.to_vec(),
                    });
                    pos += v.total_size as usize;
                    prev_end = Some(offset + u64::from(v.total_size));
                }
                Ok(Decoded::Blank { len }) => {
                    assert_eq!(
                        pos + len as usize,
                        bytes.len(),
                        "blank must cover the rest of the file"
                    );
                    break;
                }
                Err(format::RecordError::ZeroHeader) => {
                    assert!(
                        bytes[pos..].iter().all(|&b| b == 0),
                        "data after the end in {}",
                        path.display()
                    );
                    break;
                }
                Err(e) => panic!("bad record in {} at {pos}: {e}", path.display()),
            }
        }
    }
    out
}

/// Asserts that every acknowledged `(physical offset, sequence number)` reads back from
/// `store` with the body `body(seq)`; `context` (seed, cycle) goes into every failure message.
pub fn assert_acked_present(
    store: &mqstore::MessageStore,
    acked: &[(u64, u64)],
    body: impl Fn(u64) -> Vec<u8>,
    context: &str,
) {
    for &(offset, seq) in acked {
        let rec = store
            .read(mqstore::PhysicalOffset(offset))
            .unwrap_or_else(|e| panic!("{context}: read {offset}: {e}"))
            .unwrap_or_else(|| panic!("{context}: acknowledged record at {offset} lost"));
        assert_eq!(
            rec.view().expect("decodes").body,
            body(seq).as_slice(),
            "{context}: record {offset} differs"
        );
    }
}

/// Once dispatched, every queue of `topic` runs from its min to its max
/// without holes, each message's queue offset equals its position, and every record of the
/// topic in the CommitLog is in its queue. Returns the CommitLog offsets found per queue.
pub fn assert_queues_consistent(
    store: &mqstore::MessageStore,
    topic: &str,
    context: &str,
) -> std::collections::HashMap<u32, Vec<u64>> {
    use mqstore::{GetMessageStatus, QueueOffset};
    assert!(
        store.wait_dispatched(std::time::Duration::from_secs(10)),
        "{context}: dispatch caught up"
    );
    let mut in_log: std::collections::HashMap<u32, Vec<u64>> = std::collections::HashMap::new();
    for rec in store.records_from(mqstore::PhysicalOffset(0)) {
        let rec = rec.unwrap_or_else(|e| panic!("{context}: iterate: {e}"));
        let v = rec.view().expect("decodes");
        if v.topic == topic {
            in_log
                .entry(v.queue_id as u32)
                .or_default()
                .push(rec.physical_offset().0);
        }
    }
    for (&q, offsets) in &in_log {
        let (min, max) = (
            store.min_offset_in_queue(topic, q).0,
            store.max_offset_in_queue(topic, q).0,
        );
        assert_eq!(min, 0, "{context}: queue {q} min");
        assert_eq!(max, offsets.len() as u64, "{context}: queue {q} max");
        let mut at = 0;
        let mut got = Vec::new();
        while at < max {
            let r = store
                .get_message("check", topic, q, QueueOffset(at), 32, None)
                .unwrap_or_else(|e| panic!("{context}: get {q}/{at}: {e}"));
            assert_eq!(r.status, GetMessageStatus::Found, "{context}: {q}/{at}");
            for m in &r.messages {
                let v = m.view().expect("decodes");
                assert_eq!(
                    v.queue_offset as u64,
                    got.len() as u64,
                    "{context}: position"
                );
                got.push(m.physical_offset().0);
            }
            at = r.next_begin_offset.0;
        }
        assert_eq!(
            &got, offsets,
            "{context}: queue {q} equals the CommitLog's records"
        );
    }
    in_log
}

/// Puts `msg`, sending it again while the store answers `OS_PAGECACHE_BUSY` (another writer
/// held the put lock past the busy timeout, which a loaded machine can do; the status stores
/// nothing and RocketMQ's clients retry it). Any other status is returned as it is.
pub fn put_retrying_busy(
    store: &MessageStore,
    msg: &mqstore::Message,
) -> mqstore::Result<mqstore::PutResult> {
    loop {
        let result = store.put(msg)?;
        if result.status != mqstore::PutStatus::OsPageCacheBusy {
            return Ok(result);
        }
    }
}

//! Bit flips in every kind of file while the store is stopped:
//! a flipped CommitLog record (header, body or properties) below the durable point refuses
//! to open with a typed error; a flipped ConsumeQueue unit, index entry or checkpoint is
//! repaired from the CommitLog (or ignored) and the store serves exactly the CommitLog's
//! records. Nothing panics and no corrupt or foreign record is ever returned.

mod common;

use std::path::{Path, PathBuf};

use mqstore::{Error, Message, MessageStore};

const FILE_SIZE: u64 = 64 * 1024;
const RECORDS: u64 = 120;

fn open(root: &Path) -> Result<MessageStore, Error> {
    MessageStore::builder(root)
        .configure(|c| {
            c.mapped_file_size_commit_log = FILE_SIZE;
            c.max_message_size = 4096;
            common::small_derived_files(c);
            // What opening does with each flip (the background check has its own tests).
            c.check_tail_in_background = false;
        })
        .open()
}

/// A clean store: 120 keyed records in 3 queues over three CommitLog files.
fn prepare(root: &Path) -> Vec<(u64, u64)> {
    let store = open(root).expect("open");
    let mut out = Vec::new();
    for i in 0..RECORDS {
        let msg = Message::new("flip", (i % 3) as u32, vec![i as u8; 1200])
            .with_property("KEYS", &format!("key-{i}"))
            .with_property("TAGS", &format!("tag{}", i % 2));
        let a = store.put(&msg).expect("put").appended.expect("stored");
        out.push((a.physical_offset.0, a.end_offset().0));
    }
    store.shutdown().expect("shutdown");
    out
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn flip(path: &Path, byte: u64, bit: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[byte as usize] ^= 1 << bit;
    std::fs::write(path, &bytes).expect("write");
}

/// Every record is served intact through queues and by key.
fn assert_serves_everything(store: &MessageStore, context: &str) {
    let queues = common::assert_queues_consistent(store, "flip", context);
    assert_eq!(
        queues.values().map(Vec::len).sum::<usize>(),
        RECORDS as usize,
        "{context}"
    );
    for i in 0..RECORDS {
        let hits = store.query_message("flip", &format!("key-{i}"), 4, 0, i64::MAX);
        assert_eq!(hits.messages.len(), 1, "{context}: key-{i}");
        let v = hits.messages[0].view().expect("decodes");
        assert_eq!(v.body, vec![i as u8; 1200].as_slice(), "{context}");
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .collect();
    out.sort();
    out
}

#[test]
fn flipped_commit_log_record_refuses_to_open() {
    let pristine = tempfile::tempdir().expect("tempdir");
    let records = prepare(pristine.path());
    let mut rng = Rng(0x5EED_0001);
    for round in 0..60 {
        let (start, end) = records[rng.below(RECORDS) as usize];
        let pos = start + rng.below(end - start);
        let bit = rng.below(8);
        let dir = tempfile::tempdir().expect("tempdir");
        common::copy_dir(pristine.path(), dir.path());
        let file = dir
            .path()
            .join("commitlog")
            .join(format!("{:020}", pos / FILE_SIZE * FILE_SIZE));
        flip(&file, pos % FILE_SIZE, bit);
        match open(dir.path()) {
            Err(Error::Corrupted { path, offset, .. }) => {
                assert_eq!(path, file, "round {round}");
                assert!(offset <= pos % FILE_SIZE, "round {round}: names the record");
            }
            other => panic!("round {round}: flip at {pos} bit {bit}: {other:?}"),
        }
    }
}

/// A flipped ConsumeQueue unit whose record lies in the CommitLog files verified at open
/// (the last three) is rewritten from the CommitLog. One pointing into older files is not
/// re-read at open: the read path checks it against its record and refuses to serve that
/// one offset (typed error); every other message is served intact.
#[test]
fn flipped_consume_queue_unit_is_repaired_or_refused() {
    let pristine = tempfile::tempdir().expect("tempdir");
    prepare(pristine.path());
    let mut rng = Rng(0x5EED_0002);
    let (mut repaired, mut refused) = (0, 0);
    for round in 0..60 {
        let dir = tempfile::tempdir().expect("tempdir");
        common::copy_dir(pristine.path(), dir.path());
        let queue = rng.below(3) as u32;
        let file = dir
            .path()
            .join("consumequeue/flip")
            .join(queue.to_string())
            .join(format!("{:020}", 0));
        // 40 units per queue: flip a bit inside one of them.
        let pos = rng.below(40 * 20);
        flip(&file, pos, rng.below(8));
        let unit = pos / 20;
        let context = format!("round {round}: queue {queue} byte {pos}");
        let store = open(dir.path()).unwrap_or_else(|e| panic!("{context}: {e}"));
        assert!(store.wait_dispatched(std::time::Duration::from_secs(5)));
        let mut served = 0;
        for at in 0..40 {
            let got = store.get_message("g", "flip", queue, mqstore::QueueOffset(at), 1, None);
            match got {
                Ok(r) => {
                    assert_eq!(r.messages.len(), 1, "{context}: offset {at}");
                    let v = r.messages[0].view().expect("decodes");
                    assert_eq!(v.queue_offset as u64, at, "{context}");
                    assert_eq!(u64::from(v.body[0]), at * 3 + u64::from(queue), "{context}");
                    served += 1;
                }
                Err(Error::Corrupted { .. }) => {
                    assert_eq!(at, unit, "{context}: only the flipped unit");
                }
                Err(e) => panic!("{context}: {e}"),
            }
        }
        if served == 40 {
            repaired += 1;
        } else {
            refused += 1;
        }
        store.shutdown().expect("shutdown");
    }
    eprintln!("consume queue flips: {repaired} repaired or harmless, {refused} refused");
    assert!(repaired > 0);
}

#[test]
fn flipped_index_never_gives_a_wrong_answer() {
    let pristine = tempfile::tempdir().expect("tempdir");
    prepare(pristine.path());
    let mut rng = Rng(0x5EED_0003);
    let mut repaired = 0;
    for round in 0..60 {
        let dir = tempfile::tempdir().expect("tempdir");
        common::copy_dir(pristine.path(), dir.path());
        let file = files_in(&dir.path().join("index"))[0].clone();
        // Header, the slot table (1 000 slots) and the first 121 items.
        let used = 40 + 1000 * 4 + 121 * 20;
        let pos = rng.below(used);
        flip(&file, pos, rng.below(8));
        let context = format!("round {round}: index byte {pos}");
        let store = match open(dir.path()) {
            Ok(store) => store,
            Err(Error::Corrupted { .. }) => continue, // refusing is allowed
            Err(e) => panic!("{context}: {e}"),
        };
        if !store.recovery_report().index_files_rebuilt.is_empty() {
            repaired += 1;
            assert_serves_everything(&store, &context);
        }
        // Whatever the flip hit: every answer carries the asked key.
        for i in 0..RECORDS {
            let key = format!("key-{i}");
            for r in store.query_message("flip", &key, 8, 0, i64::MAX).messages {
                assert_eq!(
                    r.view().expect("decodes").body,
                    vec![i as u8; 1200].as_slice(),
                    "{context}"
                );
            }
        }
        store.shutdown().expect("shutdown");
    }
    assert!(repaired > 0, "structural flips are detected and rebuilt");
}

#[test]
fn damaged_checkpoints_fall_back_and_lose_nothing() {
    let pristine = tempfile::tempdir().expect("tempdir");
    prepare(pristine.path());
    let mut rng = Rng(0x5EED_0004);
    for round in 0..40 {
        let dir = tempfile::tempdir().expect("tempdir");
        common::copy_dir(pristine.path(), dir.path());
        let (name, len) = if round % 2 == 0 {
            ("checkpoint.offsets", 1024)
        } else {
            ("checkpoint", 24)
        };
        let path = dir.path().join(name);
        match round % 4 {
            // Both slots (or the whole file) zeroed.
            3 => std::fs::write(&path, vec![0u8; len as usize]).expect("zero"),
            _ => flip(&path, rng.below(len), rng.below(8)),
        }
        let context = format!("round {round}: {name}");
        let store = open(dir.path()).unwrap_or_else(|e| panic!("{context}: {e}"));
        assert_serves_everything(&store, &context);
        store.shutdown().expect("shutdown");
    }
}

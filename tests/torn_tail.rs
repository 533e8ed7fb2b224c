//! Torn tails: records written after the last durable point are cut at
//! every byte position (zeroed from there, and separately overwritten with garbage), the
//! store reopens, and exactly the complete records before the cut survive, with the
//! ConsumeQueues and the index agreeing with the CommitLog.

mod common;

use std::path::Path;

use mqstore::{MessageStore, PhysicalOffset};

const FILE_SIZE: u64 = 64 * 1024;
/// Records written after the durable point; every byte of them is a cut point.
const TORN: u64 = 3;

fn open(root: &Path) -> MessageStore {
    MessageStore::builder(root)
        .configure(|c| {
            c.mapped_file_size_commit_log = FILE_SIZE;
            c.max_message_size = 4096;
            common::small_derived_files(c);
            c.flush_interval_consume_queue = std::time::Duration::from_secs(3600);
        })
        .open()
        .expect("open")
}

struct Written {
    offset: u64,
    end: u64,
    key: String,
}

/// Five durable records, then `TORN` more, then a simulated kill.
fn prepare(root: &Path) -> Vec<Written> {
    let mut out = Vec::new();
    let mut put = |store: &MessageStore, i: u64| {
        let key = format!("key-{i}");
        let msg = mqstore::Message::new("torn", (i % 3) as u32, vec![i as u8; 40])
            .with_property("KEYS", &key)
            .with_property("TAGS", "t");
        let a = store.put(&msg).expect("put").appended.expect("stored");
        out.push(Written {
            offset: a.physical_offset.0,
            end: a.end_offset().0,
            key,
        });
    };
    let store = open(root);
    for i in 0..5 {
        put(&store, i);
    }
    store.shutdown().expect("shutdown");
    let store = open(root);
    for i in 5..5 + TORN {
        put(&store, i);
    }
    assert!(store.wait_dispatched(std::time::Duration::from_secs(5)));
    store.halt();
    out
}

fn damage(root: &Path, from: u64, to: u64, garbage: bool) {
    let path = root.join("commitlog").join(format!("{:020}", 0));
    let mut bytes = std::fs::read(&path).expect("read");
    let mut x = from.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for b in &mut bytes[from as usize..to as usize] {
        *b = if garbage {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        } else {
            0
        };
    }
    std::fs::write(&path, &bytes).expect("write");
}

#[test]
fn every_cut_point_in_the_last_records_keeps_exactly_the_complete_prefix() {
    let pristine = tempfile::tempdir().expect("tempdir");
    let written = prepare(pristine.path());
    let torn_from = written[written.len() - TORN as usize].offset;
    let end = written.last().expect("records").end;
    assert!(end < FILE_SIZE, "all in the first file");
    for garbage in [false, true] {
        for cut in torn_from..end {
            let dir = tempfile::tempdir().expect("tempdir");
            common::copy_dir(pristine.path(), dir.path());
            damage(dir.path(), cut, end, garbage);
            let context = format!("cut {cut} garbage {garbage}");
            let store = open(dir.path());
            let survivors: Vec<&Written> = written.iter().filter(|w| w.end <= cut).collect();
            let expected_end = survivors.last().map_or(0, |w| w.end);
            assert_eq!(
                store.max_offset(),
                PhysicalOffset(expected_end),
                "{context}"
            );
            let queues = common::assert_queues_consistent(&store, "torn", &context);
            assert_eq!(
                queues.values().map(Vec::len).sum::<usize>(),
                survivors.len(),
                "{context}"
            );
            for w in &written {
                let hits = store.query_message("torn", &w.key, 8, 0, i64::MAX);
                let found = hits
                    .messages
                    .iter()
                    .any(|r| r.physical_offset().0 == w.offset);
                assert_eq!(found, w.end <= cut, "{context}: key {} by index", w.key);
            }
            store.shutdown().expect("shutdown");
        }
    }
}

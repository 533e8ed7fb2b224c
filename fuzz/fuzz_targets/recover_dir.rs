//! Arbitrary bytes as a whole store directory — two CommitLog files, a ConsumeQueue file,
//! an index file, both checkpoints, with or without the abort file — opened in each
//! recovery mode. Opening never panics (a typed error is fine); when it opens, every record
//! it serves decodes, queue reads stay within the log, appends work and a reopen agrees.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mqstore::{
    FlushMode, Message, MessageStore, PhysicalOffset, PutStatus, QueueOffset, RecoveryMode,
    StoreConfig,
};

const LOG_FILE: u64 = 4096;
const CQ_FILE: u64 = 20 * 64;
const SLOTS: u32 = 16;
const ITEMS: u32 = 32;

#[derive(Debug, Arbitrary)]
struct Dir {
    log0: Vec<u8>,
    log1: Vec<u8>,
    second_file: bool,
    queue: Vec<u8>,
    index: Vec<u8>,
    checkpoint: Vec<u8>,
    offsets: Vec<u8>,
    abort: bool,
    mode: u8,
}

fn sized(mut bytes: Vec<u8>, len: u64) -> Vec<u8> {
    bytes.resize(len as usize, 0);
    bytes
}

fn config(root: &std::path::Path, mode: RecoveryMode) -> StoreConfig {
    let mut c = StoreConfig::new(root);
    c.mapped_file_size_commit_log = LOG_FILE;
    c.mapped_file_size_consume_queue = CQ_FILE;
    c.max_hash_slot_num = SLOTS;
    c.max_index_num = ITEMS;
    c.max_message_size = 1024;
    c.flush_disk_type = FlushMode::Async;
    c.recovery_mode = mode;
    c
}

fuzz_target!(|d: Dir| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let root = dir.path();
    let write = |rel: &str, bytes: &[u8]| {
        let path = root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, bytes).expect("write");
    };
    write("commitlog/00000000000000000000", &sized(d.log0, LOG_FILE));
    if d.second_file {
        write("commitlog/00000000000000004096", &sized(d.log1, LOG_FILE));
    }
    write("consumequeue/t/0/00000000000000000000", &sized(d.queue, CQ_FILE));
    write(
        "index/20240101000000000",
        &sized(d.index, mqstore::format::index_file_size(SLOTS, ITEMS)),
    );
    write("checkpoint", &d.checkpoint);
    write("checkpoint.offsets", &d.offsets);
    if d.abort {
        write("abort", b"");
    }
    let mode = match d.mode % 3 {
        0 => RecoveryMode::TolerateTailCorruption,
        1 => RecoveryMode::AbsoluteConsistency,
        _ => RecoveryMode::TolerateAnyCorruption,
    };
    let Ok(store) = MessageStore::open(config(root, mode)) else {
        return;
    };
    let max = store.max_offset().0;
    assert!(max <= 2 * LOG_FILE + LOG_FILE);
    let mut served = 0;
    for rec in store.records_from(PhysicalOffset(0)) {
        let Ok(rec) = rec else { break };
        let v = rec.view().expect("a served record decodes");
        assert!(rec.physical_offset().0 < max);
        assert!(!v.topic.is_empty());
        served += 1;
        if served > 1000 {
            break;
        }
    }
    if store.wait_dispatched(std::time::Duration::from_secs(5)) {
        let qmax = store.max_offset_in_queue("t", 0).0;
        let mut at = store.min_offset_in_queue("t", 0).0;
        while at < qmax.min(at + 256) {
            match store.get_message("g", "t", 0, QueueOffset(at), 32, None) {
                Ok(r) => {
                    for m in &r.messages {
                        assert!(m.physical_offset().0 < max);
                    }
                    at = r.next_begin_offset.0.max(at + 1);
                }
                Err(_) => at += 1,
            }
        }
        let _ = store.query_message("t", "k", 8, 0, i64::MAX);
    }
    let put = store.put(&Message::new("t", 0, b"after".to_vec()));
    if let Ok(r) = &put {
        assert_eq!(r.status, PutStatus::PutOk);
    }
    let end = store.max_offset().0;
    if store.shutdown().is_ok() && put.is_ok() {
        let again = MessageStore::open(config(root, mode)).expect("a store that closed cleanly reopens");
        assert_eq!(again.max_offset().0, end, "a clean reopen keeps the end");
        let _ = again.shutdown();
    }
});

//! Structured operations — puts, reads, queue reads, restarts and simulated crashes —
//! against a model: after any sequence every acknowledged message (SYNC_FLUSH) reads back
//! byte for byte, by offset and through its queue, and queue offsets are dense.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mqstore::{FlushMode, GetMessageStatus, Message, MessageStore, PhysicalOffset, QueueOffset, StoreConfig};

#[derive(Debug, Arbitrary)]
enum Op {
    Put { queue: u8, len: u16, fill: u8 },
    Read { pick: u16 },
    Get { queue: u8, pick: u16 },
    Restart,
    Crash,
}

fn open(root: &std::path::Path) -> MessageStore {
    let mut c = StoreConfig::new(root);
    c.mapped_file_size_commit_log = 8 * 1024;
    c.mapped_file_size_consume_queue = 20 * 16;
    c.max_hash_slot_num = 8;
    c.max_index_num = 64;
    c.max_message_size = 4096;
    c.flush_disk_type = FlushMode::Sync;
    MessageStore::open(c).expect("the store reopens after any sequence")
}

fuzz_target!(|ops: Vec<Op>| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let mut store = Some(open(dir.path()));
    // Per queue: (physical offset, body) in queue order.
    let mut model: [Vec<(u64, Vec<u8>)>; 3] = Default::default();
    for op in ops.into_iter().take(48) {
        let s = store.as_ref().expect("open");
        match op {
            Op::Put { queue, len, fill } => {
                let q = usize::from(queue % 3);
                let body = vec![fill; usize::from(len % 3000)];
                match s.put(&Message::new("m", q as u32, body.clone())) {
                    Ok(r) if r.status == mqstore::PutStatus::PutOk => {
                        let a = r.appended.expect("position");
                        assert_eq!(a.queue_offset.0, model[q].len() as u64, "dense queue offsets");
                        model[q].push((a.physical_offset.0, body));
                    }
                    Ok(_) | Err(_) => {}
                }
            }
            Op::Read { pick } => {
                let all: Vec<&(u64, Vec<u8>)> = model.iter().flatten().collect();
                if let Some((at, body)) = all.get(usize::from(pick) % all.len().max(1)) {
                    let r = s.read(PhysicalOffset(*at)).expect("read").expect("acked record");
                    assert_eq!(r.view().expect("decodes").body, body.as_slice());
                }
            }
            Op::Get { queue, pick } => {
                let q = usize::from(queue % 3);
                if !model[q].is_empty() {
                    let i = usize::from(pick) % model[q].len();
                    assert!(s.wait_dispatched(std::time::Duration::from_secs(5)));
                    let r = s
                        .get_message("g", "m", q as u32, QueueOffset(i as u64), 1, None)
                        .expect("get");
                    assert_eq!(r.status, GetMessageStatus::Found);
                    let m = &r.messages[0];
                    assert_eq!(m.physical_offset().0, model[q][i].0);
                    assert_eq!(m.view().expect("decodes").body, model[q][i].1.as_slice());
                }
            }
            Op::Restart => {
                store.take().expect("open").shutdown().expect("shutdown");
                store = Some(open(dir.path()));
            }
            Op::Crash => {
                store.take().expect("open").halt();
                store = Some(open(dir.path()));
            }
        }
    }
    let s = store.take().expect("open");
    for (at, body) in model.iter().flatten() {
        let r = s.read(PhysicalOffset(*at)).expect("read").expect("acked record survives");
        assert_eq!(r.view().expect("decodes").body, body.as_slice());
    }
    let _ = s.shutdown();
});

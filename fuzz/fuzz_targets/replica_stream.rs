//! A slave fed a master's CommitLog stream cut into arbitrary pieces, some of them flipped,
//! dropped, repeated or offered at a wrong offset. `append_replicated` never panics; the
//! slave's visible log is always a prefix of the master's, byte for byte; and resuming with
//! the good bytes from where it stands always completes the copy.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mqstore::{BrokerRole, FlushMode, Message, MessageStore, PhysicalOffset, StoreConfig};

const LOG_FILE: u64 = 8 * 1024;

#[derive(Debug, Arbitrary)]
enum Piece {
    Good { len: u16 },
    Flipped { len: u16, at: u16, bit: u8 },
    Skip { len: u16 },
    Again { len: u16 },
    Resume,
}

#[derive(Debug, Arbitrary)]
struct Input {
    sizes: Vec<u16>,
    pieces: Vec<Piece>,
}

fn open(root: &std::path::Path, role: BrokerRole) -> Option<MessageStore> {
    let mut c = StoreConfig::new(root);
    c.mapped_file_size_commit_log = LOG_FILE;
    c.mapped_file_size_consume_queue = 20 * 16;
    c.max_hash_slot_num = 8;
    c.max_index_num = 64;
    c.max_message_size = 4096;
    c.flush_disk_type = FlushMode::Async;
    c.broker_role = role;
    MessageStore::open(c).ok()
}

fn bytes_of(store: &MessageStore, from: u64, to: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let Some(chunk) = store.read_raw(PhysicalOffset(at), usize::MAX) else { break };
        let take = chunk.bytes().len().min((to - at) as usize);
        out.extend_from_slice(&chunk.bytes()[..take]);
        at += take as u64;
    }
    out
}

fuzz_target!(|input: Input| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let Some(master) = open(&dir.path().join("m"), BrokerRole::AsyncMaster) else { return };
    for (i, size) in input.sizes.iter().take(40).enumerate() {
        let body = vec![i as u8; usize::from(*size % 2500)];
        let _ = master.put(&Message::new("F", (i % 2) as u32, body));
    }
    let end = master.max_offset().0;
    let stream = bytes_of(&master, 0, end);
    let Some(slave) = open(&dir.path().join("s"), BrokerRole::Slave) else { return };
    let mut at = 0u64;
    for piece in input.pieces.into_iter().take(64) {
        let (len, flip, offset) = match piece {
            Piece::Good { len } => (len, None, at),
            Piece::Flipped { len, at: pos, bit } => (len, Some((pos, bit)), at),
            Piece::Skip { len } => (len, None, at + u64::from(len % 64) + 1),
            Piece::Again { len } => (len, None, at.saturating_sub(u64::from(len % 64) + 1)),
            Piece::Resume => {
                at = slave.replica_resume().0;
                continue;
            }
        };
        // Pieces never cross a file, as a master's frames never do.
        let file_end = (offset / LOG_FILE + 1) * LOG_FILE;
        let stop = (offset + u64::from(len % 4096) + 1).min(file_end).min(end);
        if offset >= stop {
            continue;
        }
        let mut piece = stream[offset as usize..stop as usize].to_vec();
        if let Some((pos, bit)) = flip {
            let i = usize::from(pos) % piece.len();
            piece[i] ^= 1 << (bit % 8);
        }
        match slave.append_replicated(PhysicalOffset(offset), &piece) {
            Ok(p) => at = p.received_end.0,
            Err(_) => at = slave.replica_resume().0,
        }
        let visible = slave.max_offset().0;
        assert!(visible <= end);
        assert_eq!(bytes_of(&slave, 0, visible), stream[..visible as usize], "a prefix of the master's log");
    }
    let mut at = slave.replica_resume().0;
    while at < end {
        let file_end = (at / LOG_FILE + 1) * LOG_FILE;
        let stop = (at + 1000).min(file_end).min(end);
        let p = slave
            .append_replicated(PhysicalOffset(at), &stream[at as usize..stop as usize])
            .expect("good bytes from where the slave stands are taken");
        at = p.received_end.0;
    }
    assert_eq!(slave.max_offset().0, end);
    assert_eq!(bytes_of(&slave, 0, end), stream);
});

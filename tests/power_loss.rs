//! Power loss, approximated by "truncate to the last sync" (RELIABILITY.md F3, harness H3):
//! while SYNC_FLUSH writers run, snapshot the CommitLog files, then destroy everything at
//! or above the durable offset in the copy — zeros, or garbage followed by zeros, as a power
//! cut can leave — and open the copy. Every record acknowledged before the snapshot must be
//! there byte for byte; the lost suffix must be cut as a torn tail, never refused as
//! corruption, and the copy must accept appends.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use mqstore::{FlushMode, Message, PutStatus};

const FILE_SIZE: u64 = 64 * 1024;

fn body(seq: u64) -> Vec<u8> {
    let len = (seq * 2_654_435_761 % 900) as usize;
    (0..len).map(|i| (seq as usize ^ i) as u8).collect()
}

/// A tiny deterministic generator, so a failing seed reproduces.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Copies the CommitLog files and destroys every byte at or above `durable`.
fn power_cut_copy(from: &Path, to: &Path, durable: u64, garbage: Option<&mut XorShift>) {
    let dst = to.join("commitlog");
    std::fs::create_dir_all(&dst).expect("mkdir");
    let mut garbage = garbage;
    for entry in std::fs::read_dir(from.join("commitlog")).expect("read dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(start) = mqstore::format::parse_file_name(&name) else {
            continue;
        }; // skip *.tmp
        let mut bytes = std::fs::read(entry.path()).expect("read");
        assert_eq!(bytes.len() as u64, FILE_SIZE);
        let cut = durable.saturating_sub(start).min(FILE_SIZE) as usize;
        bytes[cut..].fill(0);
        if let Some(rng) = garbage.as_deref_mut() {
            if cut < bytes.len() {
                let end = (cut + 1 + (rng.next() % 8192) as usize).min(bytes.len());
                for b in &mut bytes[cut..end] {
                    *b = rng.next() as u8;
                }
            }
        }
        std::fs::write(dst.join(&name), bytes).expect("write copy");
    }
}

#[test]
fn sync_acks_survive_losing_everything_past_the_durable_offset() {
    for seed in 1..=6u64 {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(common::open_small(
            dir.path(),
            FILE_SIZE,
            4096,
            FlushMode::Sync,
        ));
        let acks: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
        let writers: Vec<_> = (0..3u64)
            .map(|t| {
                let (store, acks) = (Arc::clone(&store), Arc::clone(&acks));
                std::thread::spawn(move || {
                    for i in 0..150u64 {
                        let seq = t * 1000 + i;
                        let r = store
                            .put(&Message::new("pl", t as u32, body(seq)))
                            .expect("put");
                        assert_eq!(r.status, PutStatus::PutOk);
                        let off = r.appended.expect("stored").physical_offset.0;
                        acks.lock().expect("acks").push((off, seq));
                    }
                })
            })
            .collect();
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut snapshots = 0;
        let mut acks_checked = 0usize;
        while writers.iter().any(|w| !w.is_finished()) || snapshots < 2 {
            std::thread::sleep(std::time::Duration::from_millis(rng.next() % 15));
            // Order matters: acks first, then the durable offset, then the bytes.
            let acked: Vec<(u64, u64)> = acks.lock().expect("acks").clone();
            let durable = store.flushed_offset().0;
            let copy = tempfile::tempdir().expect("tempdir");
            let garble = rng.next().is_multiple_of(2);
            power_cut_copy(dir.path(), copy.path(), durable, garble.then_some(&mut rng));
            let recovered = common::open_small(copy.path(), FILE_SIZE, 4096, FlushMode::Sync);
            assert!(
                recovered.max_offset().0 <= durable,
                "seed {seed}: nothing past the cut survives (max {} > durable {durable})",
                recovered.max_offset().0
            );
            let context = format!("seed {seed}, durable {durable}");
            common::assert_acked_present(&recovered, &acked, body, &context);
            let r = recovered
                .put(&Message::new("pl", 9, b"after".to_vec()))
                .expect("append after the cut");
            assert_eq!(r.status, PutStatus::PutOk);
            recovered.shutdown().expect("shutdown");
            snapshots += 1;
            acks_checked += acked.len();
        }
        for w in writers {
            w.join().expect("writer");
        }
        eprintln!(
            "seed {seed}: {snapshots} power cuts, {acks_checked} acknowledged records checked"
        );
        assert!(
            acks_checked > 0,
            "seed {seed}: no power cut saw an acknowledged record"
        );
    }
}

//! Power loss, approximated by "truncate to the last sync":
//! while SYNC_FLUSH writers run, snapshot the CommitLog files, then destroy everything at
//! or above the durable offset in the copy — zeros, or garbage followed by zeros, as a power
//! cut can leave — and open the copy. Every record acknowledged before the snapshot must be
//! there byte for byte; the lost suffix must be cut as a torn tail, never refused as
//! corruption, and the copy must accept appends.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use mqstore::{FlushMode, Message, MessageStore, PutStatus};

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
                        let r = common::put_retrying_busy(
                            &store,
                            &Message::new("pl", t as u32, body(seq)),
                        )
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

/// Copies a store directory as a power cut at this moment could leave it (harness H2 in
/// the mmap design): the CommitLog keeps every byte below `durable`; each 4 KiB page at or
/// above it independently holds what the page cache holds now, or what it held at the last
/// sync (zeros), or — for one page — torn garbage. The checkpoints are copied as they are;
/// ConsumeQueues and index files too (they may point past what the CommitLog kept), or
/// they are left out entirely (rebuilt from the CommitLog).
/// `durable` is asked after the derived files are copied (a copied checkpoint vouches only
/// for what was durable when it was copied); the offset used is returned.
fn power_cut_copy_pages(
    from: &Path,
    to: &Path,
    durable: impl FnOnce() -> u64,
    rng: &mut XorShift,
) -> u64 {
    const PAGE: usize = 4096;
    // Checkpoints are written with an fsync each time: what they hold now is durable.
    for name in ["checkpoint", "checkpoint.offsets"] {
        if from.join(name).is_file() {
            std::fs::copy(from.join(name), to.join(name)).expect("copy checkpoint");
        }
    }
    if rng.next().is_multiple_of(2) {
        for name in ["consumequeue", "index"] {
            if from.join(name).is_dir() {
                common::copy_dir(&from.join(name), &to.join(name));
            }
        }
    }
    let durable = durable();
    let dst = to.join("commitlog");
    std::fs::create_dir_all(&dst).expect("mkdir");
    let torn_page = rng.next() % 64;
    let mut page_no = 0u64;
    for entry in std::fs::read_dir(from.join("commitlog")).expect("read dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(start) = mqstore::format::parse_file_name(&name) else {
            continue;
        };
        let mut bytes = std::fs::read(entry.path()).expect("read");
        let cut = durable.saturating_sub(start).min(FILE_SIZE) as usize;
        let mut at = cut / PAGE * PAGE;
        while at < bytes.len() {
            let from_byte = at.max(cut);
            let end = (at + PAGE).min(bytes.len());
            match rng.next() % 3 {
                0 => {} // written back before the cut
                _ => bytes[from_byte..end].fill(0),
            }
            if page_no == torn_page {
                let torn_end = from_byte + (rng.next() as usize % (end - from_byte + 1));
                for b in &mut bytes[from_byte..torn_end] {
                    *b = rng.next() as u8;
                }
            }
            page_no += 1;
            at += PAGE;
        }
        std::fs::write(dst.join(&name), bytes).expect("write copy");
    }
    durable
}

/// Random unsynced pages lost (H2), in both flush modes: SYNC acknowledgements all
/// survive; in either mode what survives is a prefix of what was written, byte for byte
/// (an ASYNC loss is a suffix, never a hole), and the store accepts appends.
#[test]
fn a_power_cut_keeps_a_prefix_and_every_durable_record() {
    for seed in 1..=8u64 {
        let mode = if seed % 2 == 0 {
            FlushMode::Async
        } else {
            FlushMode::Sync
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(common::open_small(dir.path(), FILE_SIZE, 4096, mode));
        let acks: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let (store, acks) = (Arc::clone(&store), Arc::clone(&acks));
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        let seq = t * 1000 + i;
                        let msg = Message::new("pl", t as u32, body(seq))
                            .with_property("KEYS", &format!("k{seq}"));
                        let r = common::put_retrying_busy(&store, &msg).expect("put");
                        assert_eq!(r.status, PutStatus::PutOk);
                        let off = r.appended.expect("stored").physical_offset.0;
                        acks.lock().expect("acks").push((off, seq));
                    }
                })
            })
            .collect();
        let mut rng = XorShift(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let mut cuts = 0;
        while writers.iter().any(|w| !w.is_finished()) || cuts < 2 {
            std::thread::sleep(std::time::Duration::from_millis(rng.next() % 20));
            let mut acked: Vec<(u64, u64)> = acks.lock().expect("acks").clone();
            acked.sort_unstable();
            let durable_before = store.flushed_offset().0;
            let copy = tempfile::tempdir().expect("tempdir");
            let mut cut_rng = XorShift(rng.next() | 1);
            let durable = power_cut_copy_pages(
                dir.path(),
                copy.path(),
                || store.flushed_offset().0,
                &mut cut_rng,
            );
            let context = format!("seed {seed} {mode:?} cut {cuts}, durable {durable}");
            let recovered = MessageStore::builder(copy.path())
                .configure(|c| {
                    c.mapped_file_size_commit_log = FILE_SIZE;
                    c.max_message_size = 4096;
                    c.flush_disk_type = mode;
                    common::small_derived_files(c);
                })
                .open()
                .unwrap_or_else(|e| panic!("{context}: open after the cut: {e}"));
            let end = recovered.max_offset().0;
            // A prefix, byte for byte: every acknowledged record below the recovered end.
            let below_end: Vec<(u64, u64)> =
                acked.iter().copied().filter(|&(o, _)| o < end).collect();
            common::assert_acked_present(&recovered, &below_end, body, &context);
            // Durable records all survive, in both modes.
            assert!(
                end >= durable_before,
                "{context}: recovered end {end} below the durable offset {durable_before}"
            );
            if mode == FlushMode::Sync {
                assert!(
                    acked.iter().all(|&(o, _)| o < end),
                    "{context}: a SYNC acknowledgement was lost"
                );
            }
            // The derived data agrees with the CommitLog that survived.
            common::assert_queues_consistent(&recovered, "pl", &context);
            if let Some(&(o, seq)) = below_end.last() {
                let hits = recovered.query_message("pl", &format!("k{seq}"), 4, 0, i64::MAX);
                assert!(
                    hits.messages.iter().any(|m| m.physical_offset().0 == o),
                    "{context}: newest surviving key k{seq} found"
                );
            }
            let r = recovered
                .put(&Message::new("pl", 9, b"after".to_vec()))
                .expect("append after the cut");
            assert_eq!(r.status, PutStatus::PutOk);
            recovered.shutdown().expect("shutdown");
            cuts += 1;
        }
        for w in writers {
            w.join().expect("writer");
        }
    }
}

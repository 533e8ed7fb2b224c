//! The offline check and repair (`mqstore::verify`): it finds every corruption the
//! torn-tail and bit-flip tests create, and a repair makes the store open again with every
//! record before the damage.

mod common;

use std::path::Path;

use mqstore::verify::{
    repair_store, verify_store, RepairOptions, RepairReport, Severity, VerifyReport,
};
use mqstore::{Error, Message, MessageStore, PhysicalOffset, StoreConfig};

const FILE_SIZE: u64 = 64 * 1024;

fn config(root: &Path) -> StoreConfig {
    let mut c = StoreConfig::new(root);
    c.mapped_file_size_commit_log = FILE_SIZE;
    c.max_message_size = 4096;
    common::small_derived_files(&mut c);
    c.flush_interval_consume_queue = std::time::Duration::from_secs(3600);
    c
}

fn open(root: &Path) -> Result<MessageStore, Error> {
    MessageStore::open(config(root))
}

fn verify(root: &Path) -> VerifyReport {
    verify_store(&config(root), &mut |_, _| {}).expect("verify runs")
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Repairs `root` with `options` and asserts the check after the repair is clean.
fn repair_clean(root: &Path, options: RepairOptions, context: &str) -> RepairReport {
    let repaired = repair_store(&config(root), options, &mut |_, _| {})
        .unwrap_or_else(|e| panic!("{context}: repair: {e}"));
    assert!(
        repaired.after.problems.is_empty(),
        "{context}: {:?}",
        repaired.after.problems
    );
    repaired
}

fn flip(path: &Path, byte: u64, bit: u64) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[byte as usize] ^= 1 << bit;
    std::fs::write(path, &bytes).expect("write");
}

/// 120 keyed records in 3 queues over three CommitLog files, cleanly shut down.
fn prepare(root: &Path) -> Vec<(u64, u64)> {
    let store = open(root).expect("open");
    let mut out = Vec::new();
    for i in 0..120u64 {
        let msg = Message::new("v", (i % 3) as u32, vec![i as u8; 1200])
            .with_property("KEYS", &format!("key-{i}"))
            .with_property("TAGS", &format!("tag{}", i % 2));
        let a = store.put(&msg).expect("put").appended.expect("stored");
        out.push((a.physical_offset.0, a.end_offset().0));
    }
    store.shutdown().expect("shutdown");
    out
}

fn assert_serves(root: &Path, records: &[(u64, u64)], context: &str) {
    let store = open(root).unwrap_or_else(|e| panic!("{context}: open after repair: {e}"));
    let end = records.last().map_or(0, |r| r.1);
    assert_eq!(store.max_offset(), PhysicalOffset(end), "{context}: end");
    for &(at, _) in records {
        assert!(
            store.read(PhysicalOffset(at)).expect("read").is_some(),
            "{context}: record {at} kept"
        );
    }
    let queues = common::assert_queues_consistent(&store, "v", context);
    assert_eq!(
        queues.values().map(Vec::len).sum::<usize>(),
        records.len(),
        "{context}: every kept record in its queue"
    );
    if let Some(&(at, _)) = records.last() {
        let i = records.len() - 1;
        let hits = store.query_message("v", &format!("key-{i}"), 4, 0, i64::MAX);
        assert!(
            hits.messages.iter().any(|m| m.physical_offset().0 == at),
            "{context}: newest kept key found"
        );
    }
    store.shutdown().expect("shutdown");
}

#[test]
fn a_clean_store_verifies_clean_and_a_running_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = prepare(dir.path());
    let report = verify(dir.path());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.messages, records.len() as u64);
    assert!(
        report.commit_log_files >= 3,
        "three full files and the next"
    );
    assert_eq!(report.valid_end, records.last().expect("records").1);
    assert_eq!(report.queue_units, 120);
    assert!(report.index_items >= 120, "{} items", report.index_items);
    let mut calls = 0;
    let mut last = (0, 0);
    verify_store(&config(dir.path()), &mut |done, total| {
        calls += 1;
        assert!(done <= total);
        last = (done, total);
    })
    .expect("verify");
    assert!(
        calls > 3 && last.0 == last.1,
        "progress reported to the end"
    );
    let store = open(dir.path()).expect("open");
    assert!(matches!(
        verify_store(&config(dir.path()), &mut |_, _| {}),
        Err(Error::Locked { .. })
    ));
    drop(store);
}

#[test]
fn every_flipped_commit_log_bit_is_found_and_cut_only_with_the_discard_flag() {
    let pristine = tempfile::tempdir().expect("tempdir");
    let records = prepare(pristine.path());
    let mut rng = Rng(0x5EED_0002);
    for round in 0..24 {
        let victim = rng.below(records.len() as u64) as usize;
        let (start, end) = records[victim];
        let pos = start + rng.below(end - start);
        let bit = rng.below(8);
        let dir = tempfile::tempdir().expect("tempdir");
        common::copy_dir(pristine.path(), dir.path());
        let file = dir
            .path()
            .join("commitlog")
            .join(format!("{:020}", pos / FILE_SIZE * FILE_SIZE));
        flip(&file, pos % FILE_SIZE, bit);
        let context = format!("round {round}: flip at {pos} bit {bit}");
        let report = verify(dir.path());
        assert_eq!(report.worst(), Some(Severity::Corrupt), "{context}");
        let p = report
            .problems
            .iter()
            .find(|p| p.severity == Severity::Corrupt)
            .expect("corrupt problem");
        assert_eq!(p.path, file, "{context}: names the file");
        assert_eq!(p.offset, start % FILE_SIZE, "{context}: names the record");
        assert_eq!(report.valid_end, start, "{context}: valid up to the record");

        let damaged = std::fs::read(&file).expect("read");
        let refused = repair_store(
            &config(dir.path()),
            RepairOptions::default(),
            &mut |_, _| {},
        );
        assert!(
            matches!(refused, Err(Error::Corrupted { .. })),
            "{context}: {refused:?}"
        );
        assert_eq!(
            std::fs::read(&file).expect("read"),
            damaged,
            "{context}: untouched"
        );

        let repaired = repair_clean(
            dir.path(),
            RepairOptions {
                discard_after_corruption: true,
                ..RepairOptions::default()
            },
            &context,
        );
        assert_eq!(repaired.cut_at, Some(start), "{context}");
        let backup = repaired.backup_dir.expect("backup");
        assert_eq!(
            std::fs::read(
                backup
                    .join("commitlog")
                    .join(file.file_name().expect("name"))
            )
            .expect("saved"),
            damaged,
            "{context}: the cut bytes are saved"
        );
        assert_serves(dir.path(), &records[..victim], &context);
    }
}

#[test]
fn flipped_queue_and_index_bits_are_found_and_rebuilt() {
    let pristine = tempfile::tempdir().expect("tempdir");
    let records = prepare(pristine.path());
    let mut rng = Rng(0x5EED_0003);
    for round in 0..20 {
        let dir = tempfile::tempdir().expect("tempdir");
        common::copy_dir(pristine.path(), dir.path());
        let (path, byte) = if round % 2 == 0 {
            // A ConsumeQueue unit (40 in each queue): any of its 20 bytes.
            let q = rng.below(3);
            let path = dir.path().join(format!("consumequeue/v/{q}/{:020}", 0));
            (path, rng.below(40 * 20))
        } else {
            // An index item's key hash, offset or time (120 items + UNIQ-less keys).
            let path = std::fs::read_dir(dir.path().join("index"))
                .expect("index dir")
                .next()
                .expect("an index file")
                .expect("entry")
                .path();
            let c = config(dir.path());
            let item = 1 + rng.below(120) as u32;
            let at = mqstore::format::index_item_pos(c.max_hash_slot_num, item);
            (path, at + rng.below(16))
        };
        let bit = rng.below(8);
        flip(&path, byte, bit);
        let context = format!("round {round}: {} byte {byte} bit {bit}", path.display());
        let report = verify(dir.path());
        assert_eq!(
            report.worst(),
            Some(Severity::Derived),
            "{context}: {:?}",
            report.problems
        );
        assert!(
            report.problems.iter().any(|p| p.path == path),
            "{context}: names the file: {:?}",
            report.problems
        );
        let repaired = repair_clean(dir.path(), RepairOptions::default(), &context);
        assert_eq!(
            repaired.cut_at, None,
            "{context}: the CommitLog is left alone"
        );
        assert_serves(dir.path(), &records, &context);
    }
}

#[test]
fn every_torn_tail_is_found_and_repaired_to_the_complete_prefix() {
    let pristine = tempfile::tempdir().expect("tempdir");
    // Durable records, then more that a crash leaves in the page cache only: a copy
    // taken while the store runs, with the durable checkpoint of the clean shutdown.
    let records = prepare(pristine.path());
    let store = open(pristine.path()).expect("open");
    let mut all = records.clone();
    for i in 120..123u64 {
        let msg = Message::new("v", (i % 3) as u32, vec![i as u8; 300])
            .with_property("KEYS", &format!("key-{i}"));
        let a = store.put(&msg).expect("put").appended.expect("stored");
        all.push((a.physical_offset.0, a.end_offset().0));
    }
    let torn_from = records.last().expect("records").1;
    let end = all.last().expect("records").1;
    assert_eq!(torn_from / FILE_SIZE, end / FILE_SIZE, "one file");
    let crashed = tempfile::tempdir().expect("tempdir");
    common::copy_dir(pristine.path(), crashed.path());
    std::fs::remove_file(crashed.path().join("lock")).expect("no lock in the copy");
    drop(store);
    let file_name = format!("{:020}", torn_from / FILE_SIZE * FILE_SIZE);
    for garbage in [false, true] {
        for cut in (torn_from..end).step_by(11) {
            let dir = tempfile::tempdir().expect("tempdir");
            common::copy_dir(crashed.path(), dir.path());
            let path = dir.path().join("commitlog").join(&file_name);
            let mut bytes = std::fs::read(&path).expect("read");
            let mut x = cut | 1;
            for b in &mut bytes[(cut % FILE_SIZE) as usize..(end % FILE_SIZE) as usize] {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = if garbage { x as u8 } else { 0 };
            }
            std::fs::write(&path, &bytes).expect("write");
            let context = format!("cut {cut} garbage {garbage}");
            let survivors: Vec<(u64, u64)> = all.iter().copied().filter(|r| r.1 <= cut).collect();
            let kept_end = survivors.last().map_or(0, |r| r.1);
            let report = verify(dir.path());
            assert_eq!(report.valid_end, kept_end, "{context}");
            if kept_end < end && (garbage || cut > kept_end) {
                assert_eq!(
                    report.worst(),
                    Some(Severity::TornTail),
                    "{context}: {:?}",
                    report.problems
                );
            }
            repair_clean(dir.path(), RepairOptions::default(), &context);
            let store = open(dir.path()).expect("open");
            assert_eq!(store.max_offset(), PhysicalOffset(kept_end), "{context}");
            for &(at, _) in &survivors {
                assert!(store.read(PhysicalOffset(at)).expect("read").is_some());
            }
            drop(store);
        }
    }
}

#[test]
fn a_checkpoint_past_the_end_of_the_log_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = prepare(dir.path());
    let last = records.last().expect("records");
    // Lose the last record's bytes (zeros): durable data gone.
    let path = dir
        .path()
        .join("commitlog")
        .join(format!("{:020}", last.0 / FILE_SIZE * FILE_SIZE));
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[(last.0 % FILE_SIZE) as usize..(last.1 % FILE_SIZE) as usize].fill(0);
    std::fs::write(&path, &bytes).expect("write");
    let report = verify(dir.path());
    assert_eq!(
        report.worst(),
        Some(Severity::Corrupt),
        "{:?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.what.contains("durable up to")),
        "{:?}",
        report.problems
    );
}

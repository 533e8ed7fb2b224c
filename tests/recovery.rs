//! Opening a store over damaged files: torn tails (beyond the durable point) are cut,
//! corruption below it and inconsistent file sets are typed errors naming file and offset.

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use mqstore::{CorruptionKind, Error, FlushMode, Message, MessageStore, PhysicalOffset};

const FILE_SIZE: u64 = 64 * 1024;

fn fill(root: &Path, count: u32, body_len: usize) -> Vec<(u64, u64)> {
    let store = common::open_small(root, FILE_SIZE, 8192, FlushMode::Async);
    let mut out = Vec::new();
    for i in 0..count {
        let a = store
            .put(&Message::new("r", 0, vec![i as u8; body_len]))
            .expect("put")
            .appended
            .expect("stored");
        out.push((a.physical_offset.0, a.wrote_bytes));
    }
    store.shutdown().expect("shutdown");
    out
}

/// Stores `durable` records and shuts down cleanly (they are flushed and checkpointed),
/// then stores `count - durable` more and stops as if killed.
fn fill_then_crash(root: &Path, durable: u32, count: u32, body_len: usize) -> Vec<(u64, u64)> {
    let mut out = fill(root, durable, body_len);
    let store = open(root).expect("reopen");
    for i in durable..count {
        let a = store
            .put(&Message::new("r", 0, vec![i as u8; body_len]))
            .expect("put")
            .appended
            .expect("stored");
        out.push((a.physical_offset.0, a.wrote_bytes));
    }
    store.halt();
    out
}

fn file_of(root: &Path, offset: u64) -> PathBuf {
    root.join("commitlog")
        .join(format!("{:020}", offset / FILE_SIZE * FILE_SIZE))
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    let mut f = OpenOptions::new().write(true).open(path).expect("open");
    f.seek(SeekFrom::Start(at)).expect("seek");
    f.write_all(bytes).expect("write");
}

fn open(root: &Path) -> Result<MessageStore, Error> {
    MessageStore::builder(root)
        .configure(|c| {
            c.mapped_file_size_commit_log = FILE_SIZE;
            c.max_message_size = 8192;
            common::small_derived_files(c);
            c.flush_interval_consume_queue = std::time::Duration::from_secs(3600);
            // What opening itself checks (the background check is tested below).
            c.check_tail_in_background = false;
        })
        .open()
}

#[test]
fn torn_last_record_is_cut_at_every_byte() {
    let pristine = tempfile::tempdir().expect("tempdir");
    let recs = fill_then_crash(pristine.path(), 4, 5, 300);
    let (last, size) = recs[4];
    for keep in (1..size).step_by(7) {
        let dir = tempfile::tempdir().expect("tempdir");
        common::copy_dir(pristine.path(), dir.path());
        let path = file_of(dir.path(), last);
        let mut bytes = std::fs::read(&path).expect("read");
        for b in &mut bytes[(last + keep) as usize..(last + size) as usize] {
            *b = 0;
        }
        std::fs::write(&path, &bytes).expect("write");
        let store = open(dir.path()).expect("a torn tail opens");
        assert_eq!(
            store.max_offset(),
            PhysicalOffset(last),
            "cut at the torn record (keep {keep})"
        );
        let report = store.recovery_report().clone();
        assert!(
            keep < 8 || report.truncated.is_some(),
            "reported (keep {keep})"
        );
        // The next append lands where the torn record was, and it reads back.
        let a = store
            .put(&Message::new("r", 0, b"again".to_vec()))
            .expect("put")
            .appended
            .expect("stored");
        assert_eq!(a.physical_offset.0, last);
        assert_eq!(
            a.queue_offset.0, 4,
            "queue offset of the torn record reused"
        );
        store.shutdown().expect("shutdown");
        let store = open(dir.path()).expect("reopen");
        assert!(
            store.recovery_report().truncated.is_none(),
            "the tail was zeroed: nothing stale remains"
        );
        assert_eq!(
            store
                .read(PhysicalOffset(last))
                .expect("read")
                .expect("present")
                .view()
                .expect("decodes")
                .body,
            b"again"
        );
        store.shutdown().expect("shutdown");
    }
}

#[test]
fn garbage_tail_is_cut() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = fill(dir.path(), 3, 100);
    let end = recs[2].0 + recs[2].1;
    patch(&file_of(dir.path(), end), end, &[0xAB; 200]);
    let store = open(dir.path()).expect("opens");
    assert_eq!(store.max_offset(), PhysicalOffset(end));
    let (path, offset, _) = store.recovery_report().truncated.clone().expect("reported");
    assert_eq!((path, offset), (file_of(dir.path(), end), end));
}

#[test]
fn corruption_followed_by_valid_records_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = fill(dir.path(), 6, 400);
    let (victim, _) = recs[2];
    // Flip a byte in the body of a middle record.
    let path = file_of(dir.path(), victim);
    patch(&path, victim + 100, &[0x55]);
    let e = open(dir.path()).expect_err("mid-log corruption refuses to open");
    match e {
        Error::Corrupted {
            path: p,
            offset,
            kind: CorruptionKind::Record(_),
        } => {
            assert_eq!(p, path);
            assert_eq!(offset, victim % FILE_SIZE);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e_message_names_file(&path, victim));
}

fn e_message_names_file(path: &Path, offset: u64) -> bool {
    let e = open(path.parent().and_then(Path::parent).expect("root")).expect_err("still corrupt");
    let text = e.to_string();
    text.contains(&path.display().to_string()) && text.contains(&(offset % FILE_SIZE).to_string())
}

/// Files older than the last three with data are not re-read at open (the checkpoint vouches for
/// them); a bad record there is caught by the read path and never served.
#[test]
fn bad_record_in_an_old_file_is_never_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = fill(dir.path(), 60, 5000); // spans five files
    let (victim, _) = recs[1];
    assert_eq!(victim / FILE_SIZE, 0);
    assert!(recs.last().expect("records").0 / FILE_SIZE >= 3);
    patch(&file_of(dir.path(), victim), victim + 200, &[0x5A]); // flip a body byte
    let store = open(dir.path()).expect("old files are trusted at open");
    assert!(store.wait_dispatched(std::time::Duration::from_secs(5)));
    assert!(matches!(
        store.read(PhysicalOffset(victim)),
        Err(Error::Corrupted { .. })
    ));
    let got = store.get_message("g", "r", 0, mqstore::QueueOffset(1), 1, None);
    assert!(matches!(got, Err(Error::Corrupted { .. })), "{got:?}");
    // Its neighbours are intact.
    let got = store
        .get_message("g", "r", 0, mqstore::QueueOffset(2), 1, None)
        .expect("get");
    assert_eq!(
        got.messages[0].view().expect("decodes").body,
        vec![2u8; 5000].as_slice()
    );
    store.shutdown().expect("shutdown");
}

/// The same flip in one of the last three files refuses to open.
#[test]
fn bad_record_in_a_recent_file_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = fill(dir.path(), 60, 5000);
    let (victim, _) = recs[50];
    patch(
        &file_of(dir.path(), victim),
        victim % FILE_SIZE + 4,
        &[0, 0, 0, 0],
    ); // break the magic
    assert!(matches!(
        open(dir.path()),
        Err(Error::Corrupted {
            kind: CorruptionKind::Record(_),
            ..
        })
    ));
}

#[test]
fn wrong_size_gap_and_foreign_files_are_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), 40, 5000);
    let log = dir.path().join("commitlog");
    // Foreign file.
    std::fs::write(log.join("notes.txt"), b"hi").expect("write");
    assert!(matches!(
        open(dir.path()),
        Err(Error::Corrupted {
            kind: CorruptionKind::ForeignFile,
            ..
        })
    ));
    std::fs::remove_file(log.join("notes.txt")).expect("rm");
    // Wrong size.
    let second = log.join(format!("{FILE_SIZE:020}"));
    let f = OpenOptions::new().write(true).open(&second).expect("open");
    f.set_len(FILE_SIZE - 1).expect("truncate");
    match open(dir.path()) {
        Err(Error::Corrupted {
            path,
            kind: CorruptionKind::WrongFileSize { actual, expected },
            ..
        }) => {
            assert_eq!(path, second);
            assert_eq!((actual, expected), (FILE_SIZE - 1, FILE_SIZE));
        }
        other => panic!("unexpected {other:?}"),
    }
    // Gap.
    std::fs::remove_file(&second).expect("rm");
    assert!(matches!(
        open(dir.path()),
        Err(Error::Corrupted {
            kind: CorruptionKind::GapInFileNames { .. },
            ..
        })
    ));
}

#[test]
fn leftover_tmp_file_from_a_crashed_creation_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(dir.path(), 3, 100);
    let tmp = dir
        .path()
        .join("commitlog")
        .join(format!("{:020}.tmp", 5 * FILE_SIZE));
    std::fs::write(&tmp, b"half").expect("write");
    let store = open(dir.path()).expect("opens");
    assert!(!tmp.exists());
    store.shutdown().expect("shutdown");
}

/// A valid record at the wrong position is stale or misdirected data,
/// never replayed; the strict default refuses to open and names the spot.
#[test]
fn misplaced_record_copy_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = fill(dir.path(), 3, 100);
    let (first, size) = recs[0];
    let end = recs[2].0 + recs[2].1;
    // Copy a valid record to the end: a stale/misdirected write.
    let path = file_of(dir.path(), first);
    let bytes = std::fs::read(&path).expect("read");
    patch(&path, end, &bytes[first as usize..(first + size) as usize]);
    match open(dir.path()) {
        Err(Error::Corrupted {
            offset,
            kind: CorruptionKind::MisplacedRecord { stored },
            ..
        }) => {
            assert_eq!(offset, end);
            assert_eq!(stored, first);
        }
        other => panic!("unexpected {other:?}"),
    }
}

fn open_in(root: &Path, mode: mqstore::RecoveryMode) -> Result<MessageStore, Error> {
    MessageStore::builder(root)
        .configure(|c| {
            c.mapped_file_size_commit_log = FILE_SIZE;
            c.max_message_size = 8192;
            common::small_derived_files(c);
            c.recovery_mode = mode;
            c.check_tail_in_background = false;
        })
        .open()
}

/// `TolerateAnyCorruption` skips a corrupt record in the middle, keeps every later one and
/// reports the gap; the skipped record is never served.
#[test]
fn tolerate_any_corruption_skips_the_bad_record_and_reports_the_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = fill(dir.path(), 6, 400);
    let (victim, size) = recs[2];
    patch(&file_of(dir.path(), victim), victim + 100, &[0x55]);
    assert!(open(dir.path()).is_err(), "the default refuses");
    let store = open_in(dir.path(), mqstore::RecoveryMode::TolerateAnyCorruption).expect("opens");
    let gaps = store.recovery_report().gaps.clone();
    assert_eq!(
        gaps,
        vec![(PhysicalOffset(victim), PhysicalOffset(victim + size))]
    );
    // The skipped bytes stay on disk (nothing is deleted) but are never served.
    assert!(store.read(PhysicalOffset(victim)).is_err());
    for &(offset, _) in recs.iter().filter(|r| r.0 != victim) {
        assert!(store.read(PhysicalOffset(offset)).expect("read").is_some());
    }
    // Through the queue: the gap's offset reads as removed, the others in order.
    assert!(store.wait_dispatched(std::time::Duration::from_secs(5)));
    let got = store
        .get_message("g", "r", 0, mqstore::QueueOffset(0), 32, None)
        .expect("get");
    let served: Vec<u64> = got.messages.iter().map(|m| m.physical_offset().0).collect();
    let expected: Vec<u64> = recs.iter().map(|r| r.0).filter(|&o| o != victim).collect();
    assert_eq!(served, expected);
    store.shutdown().expect("shutdown");
    // Reopening keeps the gap as it is: nothing more to repair.
    let store = open_in(dir.path(), mqstore::RecoveryMode::TolerateAnyCorruption).expect("reopens");
    assert!(store.recovery_report().consume_queues_trimmed.is_empty());
    store.shutdown().expect("shutdown");
}

/// `AbsoluteConsistency` refuses even a torn tail.
#[test]
fn absolute_consistency_refuses_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = fill_then_crash(dir.path(), 3, 4, 300);
    let (last, _) = recs[3];
    patch(&file_of(dir.path(), last), last + 150, &[0; 40]);
    assert!(matches!(
        open_in(dir.path(), mqstore::RecoveryMode::AbsoluteConsistency),
        Err(Error::Corrupted { .. })
    ));
    let store = open(dir.path()).expect("the default cuts it");
    assert_eq!(store.max_offset(), PhysicalOffset(last));
    store.shutdown().expect("shutdown");
}

fn open_checking_in_background(root: &Path) -> Result<MessageStore, Error> {
    MessageStore::builder(root)
        .configure(|c| {
            c.mapped_file_size_commit_log = FILE_SIZE;
            c.max_message_size = 8192;
            common::small_derived_files(c);
            c.check_tail_in_background = true;
        })
        .open()
}

fn tail_check_outcome(store: &MessageStore) -> mqstore::TailCheck {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.tail_check() == mqstore::TailCheck::Running {
        assert!(
            std::time::Instant::now() < deadline,
            "tail check never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    store.tail_check()
}

/// After a clean shutdown the newest files are not re-read before `open` returns: a
/// background pass checks them, and the store takes writes meanwhile.
#[test]
fn a_clean_reopen_leaves_the_tail_to_a_background_check_that_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = fill(dir.path(), 60, 5000);
    let end = recs.last().map(|&(at, len)| at + len).expect("records");
    let store = open_checking_in_background(dir.path()).expect("opens");
    let report = store.recovery_report().clone();
    assert_eq!(report.records, 0, "nothing re-read at open");
    let (from, to) = report
        .tail_deferred
        .expect("tail left to the background check");
    assert_eq!(to, PhysicalOffset(end));
    assert!(from.0 < end && from.0 % FILE_SIZE == 0, "{from:?}");
    let in_range = recs.iter().filter(|&&(at, _)| at >= from.0).count() as u64;
    assert_eq!(
        tail_check_outcome(&store),
        mqstore::TailCheck::Clean { records: in_range }
    );
    let put = store
        .put(&Message::new("r", 0, vec![9; 100]))
        .expect("writes go on");
    assert_eq!(
        put.appended.expect("stored").physical_offset,
        PhysicalOffset(end)
    );
    store.shutdown().expect("shutdown");
    // Derived files that went missing are rebuilt by the open itself, as before.
    std::fs::remove_dir_all(dir.path().join("consumequeue")).expect("drop queues");
    let store = open_checking_in_background(dir.path()).expect("opens");
    assert_eq!(store.recovery_report().tail_deferred, None);
    assert!(
        store.recovery_report().records > 0,
        "the open re-read the log"
    );
    assert_eq!(
        tail_check_outcome(&store),
        mqstore::TailCheck::Clean { records: 0 },
        "only the queue units were left to the background"
    );
    assert!(store.wait_dispatched(std::time::Duration::from_secs(10)));
    assert_eq!(store.max_offset_in_queue("r", 0), mqstore::QueueOffset(61));
    store.shutdown().expect("shutdown");
}

/// Damage in the newest files found by the background check: reads never serve the bad
/// record, writes are refused naming it, and the next open checks before returning and
/// refuses to open.
#[test]
fn damage_found_in_the_background_stops_writes_and_the_next_open_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = fill(dir.path(), 60, 5000);
    let (victim, _) = recs[50];
    let path = file_of(dir.path(), victim);
    patch(&path, victim % FILE_SIZE + 200, &[0x5A, 0xA5]); // body bytes: a CRC mismatch
    let store = open_checking_in_background(dir.path()).expect("opens without re-reading");
    match tail_check_outcome(&store) {
        mqstore::TailCheck::Damaged {
            path: p, offset, ..
        } => assert_eq!((p, offset), (path.clone(), victim % FILE_SIZE)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        store.read(PhysicalOffset(victim)),
        Err(Error::Corrupted { .. })
    ));
    match store.put(&Message::new("r", 0, vec![1; 100])) {
        Err(Error::Corrupted {
            path: p, offset, ..
        }) => {
            assert_eq!((p, offset), (path.clone(), victim % FILE_SIZE));
        }
        other => panic!("a write after damage: {other:?}"),
    }
    let end = recs.last().map(|&(at, len)| at + len).expect("records");
    assert_eq!(store.max_offset(), PhysicalOffset(end), "nothing appended");
    store.shutdown().expect("shutdown");
    assert!(
        matches!(
            open_checking_in_background(dir.path()),
            Err(Error::Corrupted { .. })
        ),
        "the next open re-checks and refuses"
    );
}

/// A clean reopen reads only each queue's first and last ConsumeQueue file; the background
/// check walks the rest by the same rule. A damaged unit there is reported, writes go on,
/// and the next open rebuilds the queue from the CommitLog.
#[test]
fn a_damaged_unit_in_a_middle_queue_file_is_found_in_the_background_and_rebuilt_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = fill(dir.path(), 2500, 60); // 1000 units per queue file: three files
    let unit_file = dir
        .path()
        .join("consumequeue")
        .join("r")
        .join("0")
        .join(format!("{:020}", 1000 * 20));
    // Unit 1500 (the middle file's 500th) gets an impossible size.
    patch(&unit_file, 500 * 20 + 8, &[0, 0, 0, 0]);
    let store = open_checking_in_background(dir.path()).expect("opens");
    assert!(store.recovery_report().queue_units_deferred);
    assert!(
        store.recovery_report().consume_queues_trimmed.is_empty(),
        "the middle file was not walked at open"
    );
    assert_eq!(
        tail_check_outcome(&store),
        mqstore::TailCheck::QueueDamaged {
            topic: "r".into(),
            queue_id: 0,
            queue_offset: 1500
        }
    );
    store
        .put(&Message::new("r", 0, vec![7; 60]))
        .expect("writes go on");
    store.shutdown().expect("shutdown");
    let store = open_checking_in_background(dir.path()).expect("reopens");
    assert!(
        store.recovery_report().abnormal_exit,
        "the abort file was left"
    );
    assert_eq!(
        store.recovery_report().consume_queues_trimmed,
        vec![("r".to_owned(), 0)]
    );
    assert!(store.wait_dispatched(std::time::Duration::from_secs(10)));
    let got = store
        .get_message("g", "r", 0, mqstore::QueueOffset(1500), 1, None)
        .expect("get");
    assert_eq!(got.messages.len(), 1);
    assert_eq!(
        got.messages[0].physical_offset(),
        PhysicalOffset(recs[1500].0)
    );
    assert_eq!(
        store.max_offset_in_queue("r", 0),
        mqstore::QueueOffset(2501)
    );
    store.shutdown().expect("shutdown");
}

/// The newest IndexFile's structural check (every slot and item) is left to the background
/// check too; a file that fails it is reported, and the next open rebuilds it.
#[test]
fn a_damaged_index_file_is_found_in_the_background_and_rebuilt_next_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_checking_in_background(dir.path()).expect("open");
    for i in 0..50u32 {
        store
            .put(&Message::new("r", 0, vec![1; 60]).with_property("KEYS", &format!("key-{i}")))
            .expect("put");
    }
    store.shutdown().expect("shutdown");
    let mut index_files: Vec<PathBuf> = std::fs::read_dir(dir.path().join("index"))
        .expect("index dir")
        .map(|e| e.expect("entry").path())
        .collect();
    index_files.sort();
    let newest = index_files.last().expect("an index file").clone();
    // Item 2's link to its predecessor points forwards: a structural impossibility.
    let item_2 = 40 + 1000 * 4 + 2 * 20;
    patch(&newest, item_2 + 16, &0x7fff_fff0_i32.to_be_bytes());
    let store = open_checking_in_background(dir.path()).expect("opens");
    assert_eq!(
        store.recovery_report().index_file_deferred.as_ref(),
        Some(&newest)
    );
    assert_eq!(
        tail_check_outcome(&store),
        mqstore::TailCheck::IndexDamaged {
            path: newest.clone()
        }
    );
    store.shutdown().expect("shutdown");
    let store = open_checking_in_background(dir.path()).expect("reopens");
    assert!(
        store.recovery_report().abnormal_exit,
        "the abort file was left"
    );
    assert_eq!(store.recovery_report().index_files_rebuilt, vec![newest]);
    assert!(store.wait_dispatched(std::time::Duration::from_secs(10)));
    for i in [0u32, 1, 2, 49] {
        let hits = store.query_message("r", &format!("key-{i}"), 8, 0, i64::MAX);
        assert_eq!(hits.messages.len(), 1, "key-{i}");
    }
    store.shutdown().expect("shutdown");
}

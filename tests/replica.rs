//! The slave side of replication in the store: raw CommitLog bytes from a master, cut
//! anywhere, make a byte-identical log that is dispatched, readable and recoverable; bytes
//! that do not continue the log or are not valid records are refused and lose nothing.

mod common;

use std::path::Path;

use mqstore::{Error, FlushMode, Message, MessageStore, PhysicalOffset, QueueOffset, ReplicaError};
use proptest::prelude::*;

const FILE: u64 = 64 * 1024;
const FRAME: usize = 32 * 1024;

fn master_with(root: &Path, count: usize, seed: u64) -> MessageStore {
    let store = MessageStore::builder(root)
        .configure(|c| {
            c.mapped_file_size_commit_log = FILE;
            c.flush_disk_type = FlushMode::Async;
            c.enabled_append_prop_crc = true;
            common::small_derived_files(c);
        })
        .open()
        .expect("open master");
    let mut x = seed | 1;
    for i in 0..count {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 3000) as usize + 1;
        let m = Message::new(format!("T{}", i % 3), (i % 2) as u32, vec![i as u8; len])
            .with_property("KEYS", &format!("k{i}"));
        assert!(store.put(&m).expect("put").status.is_stored());
    }
    store
}

fn slave(root: &Path) -> MessageStore {
    common::open_small(root, FILE, 4 * 1024 * 1024, FlushMode::Async)
}

/// Streams the master's log from `from` to its end as the HA master does (at most one frame
/// per file piece), handing each frame to `deliver` in pieces cut at `cuts`.
fn stream(master: &MessageStore, from: u64, cuts: &[usize], mut deliver: impl FnMut(u64, &[u8])) {
    let mut at = from;
    let mut cut = 0usize;
    while let Some(chunk) = master.read_raw(PhysicalOffset(at), FRAME) {
        let bytes = chunk.bytes();
        let mut pos = 0;
        while pos < bytes.len() {
            let piece = cuts
                .get(cut % cuts.len().max(1))
                .copied()
                .unwrap_or(usize::MAX);
            cut += 1;
            let end = bytes.len().min(pos + piece.max(1));
            deliver(at + pos as u64, &bytes[pos..end]);
            pos = end;
        }
        at += bytes.len() as u64;
    }
}

fn assert_identical(master_root: &Path, slave_root: &Path, from: u64, to: u64) {
    let mut at = from;
    while at < to {
        let name = format!("{:020}", at - at % FILE);
        let a = std::fs::read(master_root.join("commitlog").join(&name)).expect("master file");
        let b = std::fs::read(slave_root.join("commitlog").join(&name)).expect("slave file");
        let end = ((to - (at - at % FILE)).min(FILE)) as usize;
        assert_eq!(a[..end], b[..end], "file {name} differs");
        at = at - at % FILE + FILE;
    }
}

#[test]
fn slave_log_is_byte_identical_readable_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mr, sr) = (dir.path().join("m"), dir.path().join("s"));
    let master = master_with(&mr, 400, 7);
    let end = master.max_offset().0;
    assert!(end > 4 * FILE, "several files");
    let slave = slave(&sr);
    assert_eq!(slave.replica_resume(), PhysicalOffset(0));
    stream(&master, 0, &[1000, 7, 5000, 3, 20_000], |at, b| {
        slave
            .append_replicated(PhysicalOffset(at), b)
            .expect("append");
    });
    assert_eq!(slave.max_offset(), master.max_offset());
    assert!(slave.wait_dispatched(std::time::Duration::from_secs(30)));
    for q in 0..2 {
        assert_eq!(
            slave.max_offset_in_queue("T1", q),
            master.max_offset_in_queue("T1", q)
        );
    }
    let got = slave
        .get_message("g", "T0", 0, QueueOffset(0), 32, None)
        .expect("get");
    assert_eq!(got.messages.len(), 32);
    assert_eq!(
        slave
            .query_message("T2", "k5", 4, 0, i64::MAX)
            .messages
            .len(),
        1
    );
    master.shutdown().expect("master down");
    slave.shutdown().expect("slave down");
    assert_identical(&mr, &sr, 0, end);
    let reopened = self::slave(&sr);
    assert_eq!(reopened.max_offset(), PhysicalOffset(end));
    let config = reopened.config().clone();
    reopened.shutdown().expect("down");
    let report = mqstore::verify::verify_store(&config, &mut |_, _| {}).expect("verify");
    assert_eq!(report.worst(), None, "{:?}", report.problems);
}

#[test]
fn empty_slave_starts_at_a_file_boundary_and_serves_from_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mr, sr) = (dir.path().join("m"), dir.path().join("s"));
    let master = master_with(&mr, 300, 11);
    let end = master.max_offset().0;
    let last_file = end - end % FILE;
    assert!(last_file > 0);
    let slave = slave(&sr);
    let err = slave
        .append_replicated(PhysicalOffset(last_file + 8), b"xxxxxxxxxxxx")
        .expect_err("mid-file start");
    assert!(
        matches!(err, Error::Replica(ReplicaError::Misaligned { .. })),
        "{err}"
    );
    stream(&master, last_file, &[4096], |at, b| {
        slave
            .append_replicated(PhysicalOffset(at), b)
            .expect("append");
    });
    assert_eq!(slave.min_offset(), PhysicalOffset(last_file));
    assert_eq!(slave.max_offset(), PhysicalOffset(end));
    assert!(slave.wait_dispatched(std::time::Duration::from_secs(30)));
    let q = master.max_offset_in_queue("T0", 0);
    assert_eq!(slave.max_offset_in_queue("T0", 0), q);
    let last = slave
        .get_message("g", "T0", 0, QueueOffset(q.0 - 1), 1, None)
        .expect("get");
    assert_eq!(last.messages.len(), 1, "{:?}", last.status);
    drop(slave);
    let reopened = self::slave(&sr);
    assert_eq!(reopened.max_offset(), PhysicalOffset(end));
    assert_eq!(reopened.min_offset(), PhysicalOffset(last_file));
}

#[test]
fn bad_bytes_are_refused_and_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mr, sr) = (dir.path().join("m"), dir.path().join("s"));
    let master = master_with(&mr, 60, 3);
    let slave = slave(&sr);
    let first = master.read_raw(PhysicalOffset(0), FRAME).expect("bytes");
    let good = first.bytes();
    // Half the first frame: only whole records become visible.
    let half = good.len() / 2;
    let p = slave
        .append_replicated(PhysicalOffset(0), &good[..half])
        .expect("half");
    assert!(p.visible_end.0 <= half as u64 && p.received_end.0 == half as u64);
    let visible = p.visible_end;
    // A frame at the wrong offset (a diverged master) is refused with both offsets.
    let err = slave
        .append_replicated(PhysicalOffset(half as u64 + 100), &good[half..])
        .expect_err("gap");
    match err {
        Error::Replica(ReplicaError::OffsetMismatch { expected, offered }) => {
            assert_eq!((expected, offered), (half as u64, half as u64 + 100));
        }
        e => panic!("{e}"),
    }
    assert_eq!(slave.max_offset(), visible);
    // A flipped bit in a whole record's born timestamp (covered only by the whole-record
    // CRC property): nothing of that record is written.
    let resume = slave.replica_resume();
    assert_eq!(resume, visible);
    let mut bad = good[resume.0 as usize..].to_vec();
    bad[44] ^= 0x40;
    let err = slave
        .append_replicated(resume, &bad)
        .expect_err("corrupt record");
    assert!(
        matches!(err, Error::Replica(ReplicaError::BadRecord { .. })),
        "{err}"
    );
    let kept = slave.max_offset();
    assert_eq!(kept, visible);
    // Garbage instead of a record.
    let resume = slave.replica_resume();
    let err = slave
        .append_replicated(resume, &[0x5a; 64])
        .expect_err("garbage");
    assert!(
        matches!(err, Error::Replica(ReplicaError::BadRecord { .. })),
        "{err}"
    );
    assert_eq!(slave.max_offset(), kept);
    // The good bytes from where it stands still complete the copy.
    let resume = slave.replica_resume();
    stream(&master, resume.0, &[777], |at, b| {
        slave
            .append_replicated(PhysicalOffset(at), b)
            .expect("append");
    });
    assert_eq!(slave.max_offset(), master.max_offset());
    let end = master.max_offset().0;
    master.shutdown().expect("down");
    slave.shutdown().expect("down");
    assert_identical(&mr, &sr, 0, end);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// However the stream is cut, the copy is the master's log.
    #[test]
    fn any_cutting_gives_the_same_log(
        seed in 1u64..1_000_000,
        cuts in proptest::collection::vec(1usize..9000, 1..12),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mr, sr) = (dir.path().join("m"), dir.path().join("s"));
        let master = master_with(&mr, 120, seed);
        let slave = slave(&sr);
        stream(&master, 0, &cuts, |at, b| {
            let p = slave.append_replicated(PhysicalOffset(at), b).expect("append");
            assert_eq!(p.received_end.0, at + b.len() as u64);
        });
        prop_assert_eq!(slave.max_offset(), master.max_offset());
        let end = master.max_offset().0;
        master.shutdown().expect("down");
        slave.shutdown().expect("down");
        assert_identical(&mr, &sr, 0, end);
    }
}

#[test]
fn a_slave_restarted_before_its_first_byte_still_starts_at_the_masters_last_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mr, sr) = (dir.path().join("m"), dir.path().join("s"));
    let master = master_with(&mr, 300, 5);
    let end = master.max_offset().0;
    let last_file = end - end % FILE;
    assert!(last_file > 0);
    // A first run that never received a byte leaves file 0, made in advance. The allocator
    // makes it in the background: on a loaded machine a shutdown right after open can come
    // first (CI saw it), so the run waits until the file is there.
    let first = sr.join("commitlog").join(format!("{:020}", 0));
    let run = slave(&sr);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !first.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    run.shutdown().expect("down");
    assert!(first.exists(), "the allocator made file 0 in advance");
    let slave = slave(&sr);
    // A heartbeat at the master's position changes nothing.
    let p = slave
        .append_replicated(PhysicalOffset(last_file), &[])
        .expect("heartbeat");
    assert_eq!(p.visible_end, PhysicalOffset(0));
    stream(&master, last_file, &[5000], |at, b| {
        slave
            .append_replicated(PhysicalOffset(at), b)
            .expect("append");
    });
    assert_eq!(slave.min_offset(), PhysicalOffset(last_file));
    assert_eq!(slave.max_offset(), PhysicalOffset(end));
    slave.shutdown().expect("down");
    assert!(
        !first.exists(),
        "the empty file 0 is gone, no gap in the names"
    );
    let reopened = self::slave(&sr);
    assert_eq!(reopened.min_offset(), PhysicalOffset(last_file));
    assert_eq!(reopened.max_offset(), PhysicalOffset(end));
    // Once it holds bytes, the log cannot move: a frame elsewhere is a mismatch.
    let err = reopened
        .append_replicated(PhysicalOffset(end + FILE), b"xxxxxxxx")
        .expect_err("elsewhere");
    assert!(
        matches!(err, Error::Replica(ReplicaError::OffsetMismatch { .. })),
        "{err}"
    );
}

//! Injected I/O failures (feature `fault-injection`): allocation failing with ENOSPC and a
//! failed flush poisoning the write path.

mod common;

use std::sync::Arc;

use mqstore::{
    Error, FaultInjector, FlushMode, IoOp, Message, MessageStore, PhysicalOffset, PutStatus,
};

const FILE_SIZE: u64 = 64 * 1024;

fn open(root: &std::path::Path, mode: FlushMode, faults: &FaultInjector) -> MessageStore {
    MessageStore::builder(root)
        .configure(|c| {
            c.mapped_file_size_commit_log = FILE_SIZE;
            c.flush_disk_type = mode;
        })
        .fault_injector(faults.clone())
        .open()
        .expect("open")
}

#[test]
fn allocation_failure_is_disk_full_and_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    // Opening an empty directory allocates the two checkpoint files and the first
    // CommitLog file; every later allocation (the next CommitLog file) fails until cleared.
    faults.fail_nth(IoOp::Allocate, 4, libc_enospc(), true);
    let store = open(dir.path(), FlushMode::Async, &faults);
    let mut stored = 0u32;
    let err = loop {
        match store.put(&Message::new("f", 0, vec![7u8; 3000])) {
            Ok(r) => {
                assert_eq!(r.status, PutStatus::PutOk);
                stored += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::DiskFull { .. }), "{err:?}");
    assert!(stored > 10, "the first file was usable");
    let max = store.max_offset();
    assert!(
        store.put(&Message::new("f", 0, vec![7u8; 3000])).is_err(),
        "still failing"
    );
    assert_eq!(store.max_offset(), max, "nothing written by failed puts");
    assert!(
        !std::fs::read_dir(dir.path().join("commitlog"))
            .expect("dir")
            .any(|e| e
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")),
        "half-made file removed"
    );
    faults.clear();
    let r = store
        .put(&Message::new("f", 0, vec![8u8; 3000]))
        .expect("resumes");
    assert_eq!(r.status, PutStatus::PutOk);
    assert_eq!(
        r.appended.expect("stored").queue_offset.0,
        u64::from(stored)
    );
    store.shutdown().expect("shutdown");
    let store = open(dir.path(), FlushMode::Async, &FaultInjector::new());
    assert_eq!(
        store.records_from(PhysicalOffset(0)).count(),
        stored as usize + 1
    );
}

#[test]
fn failed_flush_poisons_sync_writes_and_acked_data_survives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    // Only CommitLog flushes may meet the armed failure: the ConsumeQueue and checkpoint
    // flusher (every second by default) would otherwise take it on a slow machine, log it
    // and retry, leaving the CommitLog unpoisoned.
    let store = MessageStore::builder(dir.path())
        .configure(|c| {
            c.mapped_file_size_commit_log = FILE_SIZE;
            c.flush_disk_type = FlushMode::Sync;
            c.flush_interval_consume_queue = std::time::Duration::from_secs(3600);
        })
        .fault_injector(faults.clone())
        .open()
        .expect("open");
    let store = Arc::new(store);
    let mut acked = Vec::new();
    for i in 0..20u8 {
        let r = store.put(&Message::new("p", 0, vec![i; 100])).expect("put");
        assert_eq!(r.status, PutStatus::PutOk);
        acked.push(r.appended.expect("stored").physical_offset);
    }
    let durable = store.flushed_offset();
    faults.fail_nth(IoOp::Flush, 1, libc_eio(), false);
    // Every writer waiting above the last good flush gets an error, not PUT_OK.
    let waiters: Vec<_> = (0..4)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.put(&Message::new("p", 1, vec![t; 100])))
        })
        .collect();
    for w in waiters {
        match w.join().expect("thread") {
            // The first msync after arming fails; nobody above it is acknowledged.
            Err(Error::Io { op: "msync", .. } | Error::Poisoned) => {}
            other => panic!("a waiter above the failed flush got {other:?}"),
        }
    }
    // The failure is not retried into a success: the store stays poisoned.
    assert!(matches!(
        store.put(&Message::new("p", 0, b"x".to_vec())),
        Err(Error::Poisoned)
    ));
    assert!(matches!(store.flush(), Err(Error::Poisoned)));
    assert!(store.flushed_offset() >= durable);
    let store = Arc::into_inner(store).expect("sole owner");
    drop(store);
    let store = open(dir.path(), FlushMode::Sync, &FaultInjector::new());
    for (i, off) in acked.iter().enumerate() {
        let r = store
            .read(*off)
            .expect("read")
            .expect("acked record survives");
        assert_eq!(
            r.view().expect("decodes").body,
            vec![i as u8; 100].as_slice()
        );
    }
    let r = store
        .put(&Message::new("p", 0, b"fresh".to_vec()))
        .expect("writable after reopen");
    assert_eq!(r.status, PutStatus::PutOk);
}

#[test]
fn slow_flush_gives_flush_disk_timeout_and_the_message_stays_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    let store = MessageStore::builder(dir.path())
        .configure(|c| {
            c.mapped_file_size_commit_log = FILE_SIZE;
            c.flush_disk_type = FlushMode::Sync;
            c.sync_flush_timeout = std::time::Duration::from_millis(50);
        })
        .fault_injector(faults.clone())
        .open()
        .expect("open");
    faults.delay(IoOp::Flush, std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let r = store
        .put(&Message::new("slow", 0, b"late".to_vec()))
        .expect("put");
    assert_eq!(r.status, PutStatus::FlushDiskTimeout);
    let at = r.appended.expect("stored anyway").physical_offset;
    // The leader returns once its (slow) flush is done; it never reports PUT_OK.
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
    faults.clear();
    let r = store
        .put(&Message::new("slow", 0, b"fast".to_vec()))
        .expect("put");
    assert_eq!(
        r.status,
        PutStatus::PutOk,
        "a healthy disk acknowledges again"
    );
    store.shutdown().expect("shutdown");
    let store = open(dir.path(), FlushMode::Sync, &FaultInjector::new());
    let rec = store
        .read(at)
        .expect("read")
        .expect("the timed-out message is stored");
    assert_eq!(rec.view().expect("decodes").body, b"late");
}

fn libc_enospc() -> i32 {
    28
}

fn libc_eio() -> i32 {
    5
}

/// Cleanup's rename failing (F16): the file stays in its queue and every record in it
/// still reads back, on this run and after a reopen; once the fault clears, it goes.
#[test]
fn a_failed_rename_keeps_the_file_readable_and_it_goes_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = FaultInjector::new();
    let clock = Arc::new(mqstore::ManualClock::new(1_700_000_000_000));
    let open = |faults: &FaultInjector| {
        MessageStore::builder(dir.path())
            .configure(|c| {
                c.mapped_file_size_commit_log = 16 * 1024;
                c.flush_disk_type = FlushMode::Sync;
            })
            .clock(clock.clone())
            .disk_usage(Arc::new(mqstore::ManualDiskUsage::new(10)))
            .fault_injector(faults.clone())
            .open()
            .expect("open")
    };
    let store = open(&faults);
    let mut acked = Vec::new();
    for i in 0..40u32 {
        let r = store
            .put(&Message::new("r", 0, vec![i as u8; 1000]))
            .expect("put");
        acked.push((r.appended.expect("stored").physical_offset, i));
    }
    let check = |store: &MessageStore, step: &str| {
        let min = store.min_offset();
        for &(at, i) in acked.iter().filter(|(at, _)| *at >= min) {
            let r = store
                .read(at)
                .unwrap_or_else(|e| panic!("read {at:?}: {e}"))
                .unwrap_or_else(|| panic!("{step}: record {at:?} above min {min:?} not found"));
            assert_eq!(
                r.view().expect("decodes").body,
                vec![i as u8; 1000].as_slice()
            );
        }
    };
    store.checkpoint().expect("checkpoint");
    check(&store, "step 1");
    clock.advance(100 * 3_600_000);
    faults.fail_nth(IoOp::Rename, 1, libc_eio(), true);
    store.delete_expired_files_manually();
    assert!(
        store.run_cleanup().is_err(),
        "the rename failure is reported"
    );
    assert_eq!(store.min_offset(), PhysicalOffset(0), "nothing deleted");
    check(&store, "step 2");
    assert!(store.run_cleanup().is_err());
    check(&store, "step 3");
    faults.clear();
    // The manual deletion also woke the background cleaner: either pass may be the one
    // that deletes the file now.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.min_offset() == PhysicalOffset(0) && std::time::Instant::now() < deadline {
        store.run_cleanup().expect("cleanup");
    }
    assert!(
        store.min_offset() > PhysicalOffset(0),
        "deleted once the fault clears"
    );
    check(&store, "step 4");
    store.shutdown().expect("shutdown");
    let store = open(&FaultInjector::new());
    check(&store, "step 5");
}

/// A replica append whose write fails (EIO) publishes nothing of it; once the disk works
/// again the same bytes, offered from where the log visibly ends, complete the copy.
#[test]
fn failed_replica_write_publishes_nothing_and_the_stream_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let master = open(
        &dir.path().join("m"),
        FlushMode::Async,
        &FaultInjector::new(),
    );
    for i in 0..40u8 {
        assert!(master
            .put(&Message::new("r", 0, vec![i; 2000]))
            .expect("put")
            .status
            .is_stored());
    }
    let faults = FaultInjector::new();
    let slave = MessageStore::builder(dir.path().join("s"))
        .configure(|c| {
            c.mapped_file_size_commit_log = FILE_SIZE;
            c.broker_role = mqstore::BrokerRole::Slave;
        })
        .fault_injector(faults.clone())
        .open()
        .expect("open slave");
    let first = master
        .read_raw(PhysicalOffset(0), 32 * 1024)
        .expect("bytes");
    faults.fail_nth(IoOp::Write, 1, libc_eio(), true);
    let err = slave
        .append_replicated(PhysicalOffset(0), first.bytes())
        .expect_err("the write fails");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert_eq!(slave.max_offset(), PhysicalOffset(0), "nothing published");
    faults.clear();
    let mut at = slave.replica_resume().0;
    assert_eq!(at, 0);
    while let Some(chunk) = master.read_raw(PhysicalOffset(at), 32 * 1024) {
        slave
            .append_replicated(PhysicalOffset(at), chunk.bytes())
            .expect("append");
        at += chunk.bytes().len() as u64;
    }
    assert_eq!(slave.max_offset(), master.max_offset());
    // A slave's store refuses puts of its own.
    let r = slave
        .put(&Message::new("r", 0, b"x".to_vec()))
        .expect("put");
    assert_eq!(r.status, PutStatus::ServiceNotAvailable);
}

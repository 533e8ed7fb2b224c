//! Deleting a topic's ConsumeQueues while readers run: reads see the queue or no queue,
//! never a torn one; the files and directories go; the topic starts again at
//! queue offset 0, also after a restart; other topics are untouched.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqstore::{FlushMode, GetMessageStatus, Message, PutStatus, QueueOffset, RemovalReason};

const FILE_SIZE: u64 = 256 * 1024;

fn body(i: u64) -> Vec<u8> {
    format!("message {i:08}").into_bytes()
}

#[test]
fn a_deleted_topic_leaves_no_queue_behind_and_starts_again_at_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(common::open_small(
        dir.path(),
        FILE_SIZE,
        4096,
        FlushMode::Async,
    ));
    // 2 000 units in queue 0 (two ConsumeQueue files of 1 000), 500 in queue 1.
    for i in 0..2500u64 {
        let q = u32::from(i % 5 == 0);
        let r = common::put_retrying_busy(&store, &Message::new("Gone", q, body(i))).expect("put");
        assert_eq!(r.status, PutStatus::PutOk);
        common::put_retrying_busy(&store, &Message::new("Kept", 0, body(i))).expect("put");
    }
    assert!(store.wait_dispatched(Duration::from_secs(30)));
    let gone_dir = dir.path().join("consumequeue").join("Gone");
    assert!(gone_dir.join("0").join("00000000000000000000").exists());

    // Readers pull from the topic while it goes: every answer is whole, or "no queue".
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|t| {
            let (store, stop, reads) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&reads));
            std::thread::spawn(move || {
                let mut offset = t * 700;
                while !stop.load(Ordering::Relaxed) {
                    let got = store
                        .get_message("g", "Gone", 0, QueueOffset(offset % 2000), 32, None)
                        .expect("a read never fails");
                    match got.status {
                        GetMessageStatus::Found => {
                            for m in &got.messages {
                                let v = m.view().expect("a whole record");
                                assert_eq!(v.topic, "Gone");
                            }
                        }
                        // An unknown queue reads as empty, as in RocketMQ 4.9.
                        GetMessageStatus::NoMessageInQueue => {}
                        other => panic!("unexpected {other:?} at {offset}"),
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    offset += 37;
                }
            })
        })
        .collect();
    while reads.load(Ordering::Relaxed) < 50 {
        std::thread::yield_now();
    }
    let removed = store.delete_topic("Gone").expect("delete");
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = reads.load(Ordering::Relaxed);
    while reads.load(Ordering::Relaxed) < after + 50 && Instant::now() < deadline {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader");
    }
    assert_eq!(removed.len(), 2 + 1, "two files of queue 0, one of queue 1");
    assert!(removed
        .iter()
        .all(|f| f.reason == RemovalReason::TopicDeleted && f.path.starts_with(&gone_dir)));

    // The files and queue directories go once no reader holds them (a cleanup pass
    // releases what a reader still held at the deletion); the topic's directory keeps
    // the marker that recovery and verify read.
    while gone_dir.join("0").exists() || gone_dir.join("1").exists() {
        assert!(
            Instant::now() < deadline,
            "{} still has queues",
            gone_dir.display()
        );
        store.run_cleanup().expect("cleanup");
        std::thread::sleep(Duration::from_millis(10));
    }
    let names: Vec<_> = std::fs::read_dir(&gone_dir)
        .expect("topic dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["deleted-before"]);
    assert_eq!(store.max_offset_in_queue("Gone", 0), QueueOffset(0));
    let r = store
        .get_message("g", "Gone", 0, QueueOffset(0), 32, None)
        .expect("read");
    assert_eq!(r.status, GetMessageStatus::NoMessageInQueue);
    // The other topic is whole.
    assert_eq!(store.max_offset_in_queue("Kept", 0), QueueOffset(2500));
    let r = store
        .get_message("g", "Kept", 0, QueueOffset(2499), 1, None)
        .expect("read");
    assert_eq!(
        r.messages[0].view().expect("decodes").body,
        body(2499).as_slice()
    );

    // The topic's next message starts its queue at 0, and a restart keeps it that way.
    let r = store
        .put(&Message::new("Gone", 0, b"again".to_vec()))
        .expect("put");
    assert_eq!(r.appended.expect("stored").queue_offset, QueueOffset(0));
    assert!(store.wait_dispatched(Duration::from_secs(30)));
    let store = Arc::into_inner(store).expect("sole owner");
    store.shutdown().expect("shutdown");
    let store = common::open_small(dir.path(), FILE_SIZE, 4096, FlushMode::Async);
    assert_eq!(store.max_offset_in_queue("Gone", 0), QueueOffset(1));
    assert_eq!(store.max_offset_in_queue("Gone", 1), QueueOffset(0));
    assert_eq!(store.max_offset_in_queue("Kept", 0), QueueOffset(2500));
    let r = store
        .get_message("g", "Gone", 0, QueueOffset(0), 32, None)
        .expect("read");
    assert_eq!(r.messages.len(), 1);
    assert_eq!(r.messages[0].view().expect("decodes").body, b"again");
    assert_eq!(
        store
            .put(&Message::new("Gone", 0, b"next".to_vec()))
            .expect("put")
            .appended
            .expect("stored")
            .queue_offset,
        QueueOffset(1)
    );
}

#[test]
fn after_a_crash_the_deleted_queues_do_not_come_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No periodic checkpoint: the one the deletion takes is the only one after the open's.
    let open = || {
        mqstore::MessageStore::builder(dir.path())
            .configure(|c| {
                c.mapped_file_size_commit_log = FILE_SIZE;
                c.flush_interval_consume_queue = Duration::from_secs(3600);
                common::small_derived_files(c);
            })
            .open()
            .expect("open")
    };
    let store = open();
    for i in 0..300u64 {
        store.put(&Message::new("Gone", 0, body(i))).expect("put");
    }
    store.delete_topic("Gone").expect("delete");
    // No clean shutdown: the next open recovers as after a crash, re-dispatching from the
    // last checkpoint; the deletion's own checkpoint keeps the old records out.
    store.halt();
    let store = open();
    assert!(store.wait_dispatched(Duration::from_secs(30)));
    assert_eq!(store.max_offset_in_queue("Gone", 0), QueueOffset(0));
    // The offline check agrees: the deleted topic's records owe no queue units.
    let config = store.config().clone();
    store.shutdown().expect("shutdown");
    let report = mqstore::verify::verify_store(&config, &mut |_, _| {}).expect("verify runs");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let store = open();
    let r = store
        .put(&Message::new("Gone", 0, b"after".to_vec()))
        .expect("put");
    assert_eq!(r.appended.expect("stored").queue_offset, QueueOffset(0));
}

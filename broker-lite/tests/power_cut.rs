//! broker-lite through power cuts, judged from below (crashfs): a broker runs on the
//! crash-simulating filesystem while topics and subscription groups are created, SYNC
//! sends (some delayed) are acknowledged, consumer offsets are committed and persisted,
//! and cleanup deletes expired CommitLog files; the test cuts the power a dozen times (at
//! chosen moments and inside fsyncs before they count). The broker is then opened on
//! every image, on the plain filesystem. Each must open (every metadata file parses, or
//! falls back to its `.bak`); every topic and group whose creation returned is there;
//! the consumer offset is never behind the last value whose persist returned; every send
//! acknowledged before the cut reads back from its queue unless cleanup removed its
//! file; delay progress parses.
//!
//! Needs root and /dev/fuse; elsewhere it says why and passes, unless
//! `MQSTORE_REQUIRE_ROOT_TESTS=1` makes that a failure.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_lite::client::ops::{self, Outgoing};
use broker_lite::clients::Channel;
use broker_lite::remoting::codes::response;
use broker_lite::state::subscriptions::SubscriptionGroupConfig;
use broker_lite::state::topics::TopicConfig;
use broker_lite::{Broker, BrokerConfig, Outcome};
use bytes::Bytes;
use crashfs::CrashFs;
use mqstore::{FlushMode, GetMessageStatus, QueueOffset};

fn config(root: &Path) -> BrokerConfig {
    let mut c = BrokerConfig::default();
    root.clone_into(&mut c.store.store_path_root_dir);
    c.store.flush_disk_type = FlushMode::Sync;
    c.store.mapped_file_size_commit_log = 128 * 1024;
    c.store.mapped_file_size_consume_queue = 20 * 1000;
    c.store.max_hash_slot_num = 1000;
    c.store.max_index_num = 4000;
    c.store.message_delay_level = "1s 2s".into();
    // Every full CommitLog file is expired as soon as cleanup runs.
    c.store.file_reserved_time = Duration::ZERO;
    c.auto_create_subscription_group = false;
    c
}

/// What had been acknowledged when a cut began.
#[derive(Debug, Clone, Default)]
struct Owed {
    topics: Vec<String>,
    groups: Vec<String>,
    /// The last consumer offset of (g, T0, 0) whose persist returned.
    offset: Option<i64>,
    /// (queue, queue offset, body) of every acknowledged send to T0.
    sends: Vec<(u32, u64, Vec<u8>)>,
}

fn send(
    broker: &Broker,
    channel: &Channel,
    seq: u64,
    delay: Option<u32>,
) -> Option<(u32, u64, Vec<u8>)> {
    let body = format!("pc-{seq}-{}", "y".repeat((seq * 31 % 500) as usize)).into_bytes();
    let m = Outgoing {
        topic: "T0".into(),
        queue_id: (seq % 2) as i32,
        body: Bytes::from(body.clone()),
        tags: Some("t".into()),
        keys: Some(format!("k{seq}")),
        uniq_key: None,
        delay_level: delay,
    };
    let Outcome::Reply(r) = broker.process(channel, &ops::send_request("p", &m), false) else {
        panic!("a send gets a reply");
    };
    assert_eq!(r.code, response::SUCCESS, "send {seq}: {:?}", r.remark);
    // A delayed message waits in the schedule topic: it is owed there, not in T0.
    if delay.is_some() {
        return None;
    }
    let queue: u32 = r
        .ext("queueId")
        .and_then(|q| q.parse().ok())
        .expect("queueId");
    let offset: u64 = r
        .ext("queueOffset")
        .and_then(|q| q.parse().ok())
        .expect("queueOffset");
    Some((queue, offset, body))
}

fn check_image(root: &Path, owed: &Owed, context: &str) {
    let broker = Broker::open(config(root))
        .unwrap_or_else(|e| panic!("{context}: the broker does not open on the image: {e}"));
    for t in &owed.topics {
        assert!(broker.topics.get(t).is_some(), "{context}: topic {t} lost");
    }
    for g in &owed.groups {
        assert!(
            broker.subscriptions.find_or_create(g, false).is_some(),
            "{context}: subscription group {g} lost"
        );
    }
    if let Some(want) = owed.offset {
        let got = broker.offsets.query("g", "T0", 0);
        assert!(
            got.is_some_and(|o| o >= want),
            "{context}: consumer offset went back: {got:?} < {want}"
        );
    }
    let _ = broker.schedule.offsets();
    for (q, off, body) in &owed.sends {
        if *off < broker.store.min_offset_in_queue("T0", *q).0 {
            continue; // its CommitLog file expired and was deleted before the cut
        }
        let r = broker
            .store
            .get_message("check", "T0", *q, QueueOffset(*off), 1, None)
            .unwrap_or_else(|e| panic!("{context}: read q{q}@{off}: {e}"));
        assert_eq!(r.status, GetMessageStatus::Found, "{context}: q{q}@{off}");
        let v = r.messages[0].view().expect("decodes");
        assert_eq!(v.body, body.as_slice(), "{context}: q{q}@{off} differs");
    }
    broker.close().expect("close");
}

#[test]
fn metadata_offsets_sends_and_cleanup_survive_power_cuts() {
    if let Some(why) = crashfs::unavailable() {
        assert!(
            std::env::var_os("MQSTORE_REQUIRE_ROOT_TESTS").is_none(),
            "broker power-cut test required but crashfs cannot run: {why}"
        );
        eprintln!("broker power-cut test not run: {why}");
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let backing = dir.path().join("backing");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&backing).expect("backing");
    std::fs::create_dir_all(&mnt).expect("mnt");
    let fs = CrashFs::mount(&backing, &mnt).expect("mount crashfs");
    let broker: Arc<Broker> = Broker::open(config(&mnt.join("store"))).expect("open on crashfs");
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let channel = Channel {
        id: 1,
        remote: "127.0.0.1:50000".parse().expect("addr"),
        tx,
    };
    broker.topics.put(TopicConfig::new("T0", 2, 6));
    let mut owed = Owed {
        topics: vec!["T0".into()],
        ..Owed::default()
    };
    let mut images = Vec::new();
    // Right after the first acknowledged metadata change of a new broker (several seeds:
    // each unsynced directory entry survives or not by the seed).
    for cut_seed in 76_990..76_998 {
        let first = dir.path().join(format!("image-first-{cut_seed}"));
        fs.cut(cut_seed, &first).expect("cut");
        images.push((first, owed.clone(), cut_seed));
    }
    let mut seq = 0u64;
    for round in 0..36u64 {
        let topic = format!("T{}", round + 1);
        broker.topics.put(TopicConfig::new(&topic, 2, 6));
        owed.topics.push(topic);
        let group = format!("G{round}");
        broker
            .subscriptions
            .put(SubscriptionGroupConfig::new(&group));
        owed.groups.push(group);
        for _ in 0..40 {
            let delay = seq.is_multiple_of(13).then_some(1);
            if let Some(sent) = send(&broker, &channel, seq, delay) {
                owed.sends.push(sent);
            }
            seq += 1;
        }
        broker.offsets.commit("g", "T0", 0, round as i64);
        broker.persist_offsets();
        owed.offset = Some(round as i64);
        if round % 8 == 7 {
            broker.store.delete_expired_files_manually();
            broker.store.run_cleanup().expect("cleanup");
        }
        if round % 3 == 2 {
            let image = dir.path().join(format!("image-{round}"));
            let cut_seed = 77_000 + round;
            // Alternate: a cut now, and a cut inside one of the next fsyncs while more
            // sends run on another thread.
            let cut_owed = owed.clone();
            if round % 2 == 0 {
                fs.cut(cut_seed, &image).expect("cut");
            } else {
                let (b, ch) = (Arc::clone(&broker), channel.clone());
                let first = seq;
                let more = std::thread::spawn(move || {
                    for s in first..first + 200 {
                        send(&b, &ch, s, None);
                    }
                });
                let fired = fs
                    .cut_during_fsync(3, cut_seed, &image, Duration::from_secs(10))
                    .expect("cut during fsync");
                assert!(fired.is_some(), "fsyncs come while sends run");
                more.join().expect("sender");
                seq += 200;
            }
            images.push((image, cut_owed, cut_seed));
        }
    }
    // Let the delayed messages come due, then the last cut.
    std::thread::sleep(Duration::from_millis(1500));
    broker.persist_offsets();
    let image = dir.path().join("image-last");
    fs.cut(77_999, &image).expect("cut");
    images.push((image, owed.clone(), 77_999));
    broker.close().expect("close");
    drop(broker);
    fs.unmount().expect("unmount");
    for (image, owed, cut_seed) in &images {
        check_image(&image.join("store"), owed, &format!("cut seed {cut_seed}"));
    }
    println!(
        "broker power cuts: {} images, {} sends, {} topics, {:.1?}",
        images.len(),
        seq,
        owed.topics.len(),
        started.elapsed()
    );
}

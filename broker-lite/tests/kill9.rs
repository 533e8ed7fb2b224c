//! kill -9 of the real broker while clients send: every send the broker acknowledged is
//! pulled back after a restart, byte for byte
//! and at the queue offset it was acknowledged with, in both flush modes; the metadata
//! files (topics, consumer offsets) survive the kill and the broker keeps serving.
//! `MQSTORE_KILL9_SEED=<n>` reruns one round.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker_lite::ops::{self, Outgoing};
use broker_lite::remoting::codes::response;
use broker_lite::Client;
use bytes::Bytes;
use common::RunningBroker;

fn body(seq: u64) -> String {
    format!("kill9-{seq}-{}", "x".repeat((seq * 37 % 700) as usize))
}

async fn round(seed: u64) {
    let dir = tempfile::tempdir().expect("dir");
    let conf = if seed.is_multiple_of(2) {
        "flushDiskType=SYNC_FLUSH\n"
    } else {
        "flushDiskType=ASYNC_FLUSH\n"
    };
    // (queue, queue offset) -> body, for every acknowledged send, over all cycles.
    let acked: Arc<Mutex<HashMap<(u32, u64), String>>> = Arc::default();
    for cycle in 0..2u64 {
        let mut broker = RunningBroker::start(dir.path(), conf);
        let c = Client::connect(broker.addr).await.expect("connect");
        if cycle == 0 {
            ops::create_topic(&c, "K9", 4).await.expect("create topic");
        }
        let kill_after = 30 + (seed * 53 + cycle * 29) % 150;
        let senders: Vec<_> = (0..2u64)
            .map(|t| {
                let (acked, addr) = (Arc::clone(&acked), broker.addr);
                tokio::spawn(async move {
                    let Ok(c) = Client::connect(addr).await else {
                        return;
                    };
                    for i in 0.. {
                        let seq = seed * 1_000_000 + cycle * 100_000 + t * 10_000 + i;
                        let m = Outgoing {
                            topic: "K9".into(),
                            queue_id: ((seq + t) % 4) as i32,
                            body: Bytes::from(body(seq)),
                            tags: Some("k".into()),
                            keys: Some(format!("s{seq}")),
                            uniq_key: None,
                            delay_level: None,
                        };
                        match ops::send(&c, "p", &m).await {
                            Ok(r) if r.code == response::SUCCESS => {
                                acked
                                    .lock()
                                    .expect("acked")
                                    .insert((r.queue_id, r.queue_offset), body(seq));
                            }
                            // The kill: connection gone.
                            _ => return,
                        }
                    }
                })
            })
            .collect();
        let before = acked.lock().expect("acked").len();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while acked.lock().expect("acked").len() < before + kill_after as usize {
            assert!(
                std::time::Instant::now() < deadline,
                "seed {seed}: sends stalled"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_micros(seed * 7919 % 3000)).await;
        broker.child.kill().expect("SIGKILL");
        let _ = broker.child.wait();
        assert!(!broker.alive());
        for s in senders {
            let _ = s.await;
        }
        drop(broker);
        // Restart on the same directory: everything acknowledged is there.
        let broker = RunningBroker::start(dir.path(), conf);
        let c = Client::connect(broker.addr)
            .await
            .expect("connect after restart");
        let acked_now = acked.lock().expect("acked").clone();
        let mut by_queue: HashMap<u32, Vec<(u64, String)>> = HashMap::new();
        for ((q, off), b) in acked_now {
            by_queue.entry(q).or_default().push((off, b));
        }
        for (q, mut want) in by_queue {
            want.sort();
            let mut at = 0u64;
            let mut got: HashMap<u64, Vec<u8>> = HashMap::new();
            let last = want.last().map_or(0, |w| w.0);
            while at <= last {
                let req = ops::pull_request("check", "K9", q, at, 32, "*", None, None);
                let p = ops::pull(&c, req).await.expect("pull");
                assert_eq!(
                    p.code,
                    response::SUCCESS,
                    "seed {seed} cycle {cycle}: q{q}@{at}"
                );
                for m in p.messages {
                    got.insert(m.queue_offset as u64, m.body);
                }
                at = p.next_begin_offset.max(at + 1);
            }
            for (off, b) in want {
                assert_eq!(
                    got.get(&off).map(Vec::as_slice),
                    Some(b.as_bytes()),
                    "seed {seed} cycle {cycle}: acknowledged q{q}@{off} lost or changed"
                );
            }
        }
        ops::commit(&c, "g", "K9", 0, 1)
            .await
            .expect("commit after restart");
        drop(c);
        let (ok, _) = broker.terminate();
        assert!(ok, "seed {seed}: clean stop after recovery");
    }
}

fn seeds(default: std::ops::Range<u64>) -> Vec<u64> {
    match std::env::var("MQSTORE_KILL9_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => default.collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_sends_loses_no_acknowledged_message() {
    for seed in seeds(0..4) {
        eprintln!("broker kill -9 round seed={seed}");
        round(seed).await;
    }
}

/// `cargo test -p broker-lite --test kill9 -- --ignored --nocapture`: 100 rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long kill -9 loop"]
async fn kill_9_loop_long() {
    for seed in seeds(0..100) {
        eprintln!("broker kill -9 round seed={seed}");
        round(seed).await;
    }
}

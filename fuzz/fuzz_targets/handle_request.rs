//! Arbitrary frames handed to a live broker (its store in a temp directory): decoding and
//! processing never panic, and every two-way request gets a response with its opaque.
#![no_main]

use std::sync::{Arc, OnceLock};

use broker_lite::requests::Outcome;
use broker_lite::clients::Channel;
use broker_lite::remoting::{Inbound, RemotingCodec};
use broker_lite::{Broker, BrokerConfig};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fn broker() -> &'static (tempfile::TempDir, Arc<Broker>) {
    static B: OnceLock<(tempfile::TempDir, Arc<Broker>)> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = BrokerConfig::default();
        config.store.store_path_root_dir = dir.path().join("store");
        config.store.mapped_file_size_commit_log = 1024 * 1024;
        config.store.mapped_file_size_consume_queue = 20 * 1024;
        config.store.max_hash_slot_num = 1024;
        config.store.max_index_num = 4096;
        let broker = Broker::open(config).expect("broker opens");
        (dir, broker)
    })
}

fuzz_target!(|data: &[u8]| {
    let (_, broker) = broker();
    let (tx, _rx) = tokio::sync::mpsc::channel(8);
    let channel = Channel {
        id: 1,
        remote: "127.0.0.1:50000".parse().expect("addr"),
        tx,
    };
    let mut buf = BytesMut::from(data);
    for _ in 0..16 {
        match RemotingCodec.decode(&mut buf) {
            Ok(Some(Inbound::Command(cmd))) => {
                let oneway = cmd.is_oneway();
                let opaque = cmd.opaque;
                let response = if cmd.is_response() {
                    continue;
                } else {
                    broker.process(&channel, &cmd, false)
                };
                if let Outcome::Reply(r) = response {
                    assert!(!oneway || r.opaque == opaque);
                    assert_eq!(r.opaque, opaque);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});

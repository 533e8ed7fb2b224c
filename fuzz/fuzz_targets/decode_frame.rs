//! Arbitrary bytes on a connection: the remoting codec never panics, never asks for more
//! than a frame's declared length, and a decoded command re-encodes and decodes the same.
#![no_main]

use broker_lite::remoting::{Inbound, RemotingCodec};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    let mut codec = RemotingCodec;
    let mut buf = BytesMut::from(data);
    for _ in 0..64 {
        match codec.decode(&mut buf) {
            Ok(Some(Inbound::Command(cmd))) => {
                let mut out = BytesMut::new();
                if codec.encode(cmd.clone(), &mut out).is_ok() {
                    match codec.decode(&mut out) {
                        Ok(Some(Inbound::Command(again))) => {
                            assert_eq!(again.code, cmd.code);
                            assert_eq!(again.opaque, cmd.opaque);
                            assert_eq!(again.body, cmd.body);
                        }
                        other => panic!("re-encoded command did not decode: {other:?}"),
                    }
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
});

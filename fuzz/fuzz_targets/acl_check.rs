//! The ACL path on arbitrary input: a `plain_acl.yml` text and remoting frames, checked
//! the way the broker checks each request. Parsing and checking never panic; an unsigned
//! request from an address not white-listed is always refused; a request the fuzzer's
//! frame carries, once signed by a known account, is never refused for its signature.
#![no_main]

use broker_lite::acl::{accounts_of, Acl, Credentials, Perm, Resource, SIGNATURE_REFUSED};
use broker_lite::remoting::{Inbound, RemotingCodec};
use broker_lite::requests::{route_of, Port};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fn known() -> Acl {
    Acl::from_accounts(accounts_of(
        &[],
        &[(
            "fuzzer1",
            "fuzz-secret",
            false,
            Perm::SUB,
            Perm::SUB,
            &[(Resource::Topic("T".into()), Perm::PUB_SUB)],
        )],
    ))
}

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0xFF).unwrap_or(data.len());
    let (yaml, frames) = data.split_at(split);
    let parsed = Acl::from_text(&String::from_utf8_lossy(yaml));
    let known = known();
    let peer = std::net::IpAddr::from([127, 0, 0, data.first().copied().unwrap_or(1)]);
    let mut buf = BytesMut::from(frames.get(1..).unwrap_or_default());
    for _ in 0..8 {
        let Ok(Some(Inbound::Command(mut cmd))) = RemotingCodec.decode(&mut buf) else {
            break;
        };
        let Some(route) = route_of(Port::Broker, cmd.code) else {
            continue;
        };
        if let Ok(acl) = &parsed {
            let _ = acl.check(peer, &cmd, route.access.needs(&cmd), route.name);
        }
        cmd.ext_fields.remove("AccessKey");
        assert!(known
            .check(peer, &cmd, route.access.needs(&cmd), route.name)
            .is_err());
        Credentials {
            access_key: "fuzzer1".into(),
            secret_key: "fuzz-secret".into(),
        }
        .sign(&mut cmd);
        if let Err(remark) = known.check(peer, &cmd, route.access.needs(&cmd), route.name) {
            assert_ne!(remark, SIGNATURE_REFUSED);
        }
    }
});

//! Golden bytes and properties of the record codec.

use super::*;
use proptest::prelude::*;

fn sample() -> Message {
    Message {
        topic: "TopicA".into(),
        queue_id: 3,
        flag: 7,
        body: b"hello".to_vec(),
        properties: "KEYS\u{1}k1".into(),
        sys_flag: 0,
        born_timestamp: 0x0102_0304_0506_0708,
        born_host: "10.0.0.1:5555".parse().expect("addr"),
        reconsume_times: 2,
        prepared_transaction_offset: 9,
    }
}

fn fields() -> StoreFields {
    StoreFields {
        queue_offset: 42,
        physical_offset: 1000,
        store_timestamp: 123_456_789,
        store_host: "192.168.1.2:10911".parse().expect("addr"),
    }
}

fn be32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[test]
fn crc_is_java_crc32_masked() {
    // The standard CRC-32 check value of "123456789" is 0xCBF43926; the sign bit is cleared.
    assert_eq!(crc32(b"123456789"), 0x4BF4_3926);
    // crc32("hello") = 0x3610A686 (top bit already clear).
    assert_eq!(crc32(b"hello"), 0x3610_A686);
}

#[test]
fn golden_record_without_crc_property() {
    let bytes = encode_record(&sample(), &fields(), 1024, false).expect("encodes");
    // 91 + body 5 + topic 6 + properties 7.
    assert_eq!(bytes.len(), 109);
    assert_eq!(be32(&bytes, 0), 109, "TOTALSIZE");
    assert_eq!(&bytes[4..8], &[0xDA, 0xA3, 0x20, 0xA7], "MAGICCODE");
    assert_eq!(be32(&bytes, 8) as u32, 0x3610_A686, "BODYCRC");
    assert_eq!(be32(&bytes, 12), 3, "QUEUEID");
    assert_eq!(be32(&bytes, 16), 7, "FLAG");
    assert_eq!(be64(&bytes, 20), 42, "QUEUEOFFSET");
    assert_eq!(be64(&bytes, 28), 1000, "PHYSICALOFFSET");
    assert_eq!(be32(&bytes, 36), 0, "SYSFLAG");
    assert_eq!(&bytes[40..48], &[1, 2, 3, 4, 5, 6, 7, 8], "BORNTIMESTAMP");
    assert_eq!(&bytes[48..52], &[10, 0, 0, 1], "BORNHOST address");
    assert_eq!(be32(&bytes, 52), 5555, "BORNHOST port");
    assert_eq!(be64(&bytes, 56), 123_456_789, "STORETIMESTAMP");
    assert_eq!(&bytes[64..68], &[192, 168, 1, 2], "STOREHOST address");
    assert_eq!(be32(&bytes, 68), 10911, "STOREHOST port");
    assert_eq!(be32(&bytes, 72), 2, "RECONSUMETIMES");
    assert_eq!(be64(&bytes, 76), 9, "PREPARED TRANSACTION OFFSET");
    assert_eq!(be32(&bytes, 84), 5, "BODY length");
    assert_eq!(&bytes[88..93], b"hello");
    assert_eq!(bytes[93], 6, "TOPIC length");
    assert_eq!(&bytes[94..100], b"TopicA");
    assert_eq!(
        i16::from_be_bytes([bytes[100], bytes[101]]),
        7,
        "PROPERTIES length"
    );
    assert_eq!(&bytes[102..109], b"KEYS\x01k1");
}

#[test]
fn golden_crc_property() {
    let bytes = encode_record(&sample(), &fields(), 1024, true).expect("encodes");
    // Properties: 7 user bytes + one 0x02 separator + 20 reserved bytes.
    assert_eq!(bytes.len(), 109 + 1 + 20);
    assert_eq!(be32(&bytes, 0), 130);
    assert_eq!(i16::from_be_bytes([bytes[100], bytes[101]]), 28);
    assert_eq!(&bytes[102..110], b"KEYS\x01k1\x02");
    assert_eq!(&bytes[110..118], b"__CRC32#");
    assert_eq!(bytes[118], 1);
    assert_eq!(bytes[129], 2);
    // Value: crc over everything but the 20 reserved bytes, least significant digit first.
    let crc = crc32fast::hash(&bytes[..110]) & 0x7FFF_FFFF;
    let digits: String = bytes[119..129]
        .iter()
        .rev()
        .map(|&b| char::from(b))
        .collect();
    assert_eq!(digits.parse::<u32>().expect("digits"), crc);
    assert_eq!(&crc_digits(1234), b"4321000000");
    assert_eq!(&crc_digits(0x7FFF_FFFF), b"7463847412");
    // No separator is inserted when there are no user properties, or one already ends them.
    let mut m = sample();
    m.properties.clear();
    let b = encode_record(&m, &fields(), 1024, true).expect("encodes");
    assert_eq!(b.len(), 91 + 5 + 6 + 20);
    m.properties = "A\u{1}b\u{2}".into();
    let b = encode_record(&m, &fields(), 1024, true).expect("encodes");
    assert_eq!(b.len(), 91 + 5 + 6 + 4 + 20);
}

#[test]
fn ipv6_hosts_shift_fields_and_set_flags() {
    let mut m = sample();
    m.born_host = "[::1]:7000".parse().expect("addr");
    let mut f = fields();
    f.store_host = "[fe80::2]:10911".parse().expect("addr");
    let bytes = encode_record(&m, &f, 1024, false).expect("encodes");
    assert_eq!(bytes.len(), 109 + 24);
    assert_eq!(be32(&bytes, 36), FLAG_BORNHOST_V6 | FLAG_STOREHOST_V6);
    assert_eq!(
        be64(&bytes, 68),
        123_456_789,
        "STORETIMESTAMP after a 20-byte born host"
    );
    assert_eq!(be32(&bytes, 108), 5, "BODY length at 108");
    let Ok(Decoded::Message(v)) = decode_record(&bytes, true) else {
        panic!("decodes")
    };
    assert_eq!(v.born_host, m.born_host);
    assert_eq!(v.store_host, f.store_host);
}

#[test]
fn golden_blank() {
    let mut b = [0u8; 8];
    write_blank(&mut b, 300);
    assert_eq!(b, [0, 0, 1, 44, 0xCB, 0xD4, 0x31, 0x94]);
    assert_eq!(decode_record(&b, true), Ok(Decoded::Blank { len: 300 }));
    assert_eq!(
        decode_record(&[0u8; 16], true),
        Err(RecordError::ZeroHeader)
    );
}

#[test]
fn java_string_hash_matches_java() {
    assert_eq!(java_string_hash(""), 0);
    assert_eq!(java_string_hash("hello"), 99_162_322);
    // '中' = 0x4E2D, '文' = 0x6587: 20013 * 31 + 25991.
    assert_eq!(java_string_hash("中文"), 646_394);
    // U+1F600 is the surrogate pair D83D DE00: 55357 * 31 + 56832.
    assert_eq!(java_string_hash("😀"), 1_772_899);
    // Wraps like a Java int.
    assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    assert_eq!(tags_code("TAGS\u{1}hello"), 99_162_322);
    assert_eq!(tags_code("KEYS\u{1}x"), 0);
}

#[test]
fn properties_parse_like_rocketmq() {
    let p: Vec<_> =
        parse_properties("a\u{1}b\u{2}\u{1}x\u{2}k\u{1}\u{2}v\u{1}w\u{1}z\u{2}").collect();
    assert_eq!(p, vec![("a", "b"), ("v", "w\u{1}z")]);
    assert_eq!(property("a\u{1}1\u{2}a\u{1}2", "a"), Some("2"), "last wins");
    assert_eq!(
        encode_properties([("KEYS", "k"), ("TAGS", "t")]),
        "KEYS\u{1}k\u{2}TAGS\u{1}t"
    );
}

#[test]
fn old_crc_property_is_replaced() {
    let mut m = sample();
    m.properties = "__CRC32#\u{1}1234567890\u{2}KEYS\u{1}k1".into();
    let bytes = encode_record(&m, &fields(), 1024, true).expect("encodes");
    let Ok(Decoded::Message(v)) = decode_record(&bytes, true) else {
        panic!("decodes")
    };
    assert_eq!(v.properties.matches(CRC32_PROPERTY).count(), 1);
    assert_eq!(v.user_properties(), "KEYS\u{1}k1");
}

#[test]
fn limits_are_refused_with_their_reason() {
    let host = fields().store_host;
    let mut m = sample();
    m.topic = "t".repeat(128);
    assert_eq!(
        RecordPlan::new(&m, host, 1024, true).expect_err("long"),
        EncodeError::IllegalTopic
    );
    m.topic = "bad topic".into();
    assert_eq!(
        RecordPlan::new(&m, host, 1024, true).expect_err("chars"),
        EncodeError::IllegalTopic
    );
    m.topic = "t".repeat(127);
    assert!(RecordPlan::new(&m, host, 1024, true).is_ok(), "127 is fine");
    m.body = vec![0; 1025];
    assert!(matches!(
        RecordPlan::new(&m, host, 1024, true),
        Err(EncodeError::BodyTooLarge { .. })
    ));
    m.body = vec![0; 1024];
    assert!(
        RecordPlan::new(&m, host, 1024, true).is_ok(),
        "max body is fine"
    );
    m.body.clear();
    m.properties = format!("K\u{1}{}", "v".repeat(32_767 - 2 - 1 - 20));
    assert!(
        RecordPlan::new(&m, host, 1024, true).is_ok(),
        "exactly 32767 with the CRC property"
    );
    m.properties.push('v');
    assert_eq!(
        RecordPlan::new(&m, host, 1024, true).expect_err("over"),
        EncodeError::PropertiesSizeExceeded { bytes: 32_768 }
    );
    m.properties = format!("K\u{1}{}", "v".repeat(40_000));
    assert!(matches!(
        RecordPlan::new(&m, host, 1024, true),
        Err(EncodeError::PropertiesTooLong { .. })
    ));
    m.properties = format!("K\u{1}{}", "é".repeat(20_000));
    assert!(
        matches!(
            RecordPlan::new(&m, host, 1024, false),
            Err(EncodeError::PropertiesSizeExceeded { .. })
        ),
        "20002 chars but 40002 bytes"
    );
    m.properties.clear();
    m.queue_id = u32::MAX;
    assert_eq!(
        RecordPlan::new(&m, host, 1024, true).expect_err("queue"),
        EncodeError::IllegalQueueId
    );
}

#[test]
fn offset_msg_id_round_trips() {
    let addr: SocketAddr = "192.168.1.2:10911".parse().expect("addr");
    let id = offset_msg_id(addr, 0x1234);
    assert_eq!(id, "C0A8010200002A9F0000000000001234");
    assert_eq!(
        parse_offset_msg_id(&id.to_lowercase()),
        Some((addr, 0x1234))
    );
    let v6: SocketAddr = "[fe80::1]:9".parse().expect("addr");
    assert_eq!(offset_msg_id(v6, 1).len(), 56);
    assert_eq!(parse_offset_msg_id(&offset_msg_id(v6, 77)), Some((v6, 77)));
    assert_eq!(parse_offset_msg_id("xyz"), None);
    assert_eq!(
        parse_offset_msg_id("é0A80102000002A9F000000000000123"),
        None
    );
}

#[test]
fn zero_filled_tail_is_detected_at_every_cut() {
    let bytes = encode_record(&sample(), &fields(), 1024, true).expect("encodes");
    for keep in 8..bytes.len() {
        let mut b = bytes.clone();
        b[keep..].fill(0);
        assert!(
            decode_record(&b, true).is_err(),
            "zeroed from {keep} undetected"
        );
    }
    // A legacy record (no CRC property) torn inside its properties is caught too.
    let legacy = encode_record(&sample(), &fields(), 1024, false).expect("encodes");
    let mut b = legacy.clone();
    b[legacy.len() - 2..].fill(0);
    assert_eq!(decode_record(&b, true), Err(RecordError::BadCrcProperty));
    assert!(decode_record(&legacy, true).is_ok());
    // A property value ending in NUL is stored with a trailing 0x02 so it never looks torn.
    let mut m = sample();
    m.properties = "K\u{1}v\u{0}".into();
    let b = encode_record(&m, &fields(), 1024, false).expect("encodes");
    let Ok(Decoded::Message(v)) = decode_record(&b, true) else {
        panic!("decodes")
    };
    assert_eq!(v.property("K"), Some("v\u{0}"));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = encode_record(&sample(), &fields(), 1024, true).expect("encodes");
    for cut in 0..bytes.len() {
        assert!(decode_record(&bytes[..cut], true).is_err(), "cut at {cut}");
    }
}

#[test]
fn every_single_bit_flip_is_detected() {
    let bytes = encode_record(&sample(), &fields(), 1024, true).expect("encodes");
    for at in 0..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[at] ^= 1 << bit;
            assert!(
                decode_record(&b, true).is_err(),
                "flip of bit {bit} at {at} undetected"
            );
        }
    }
}

fn arb_host() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
    ]
}

prop_compose! {
    fn arb_message()(
        topic in "[%|a-zA-Z0-9_-]{1,127}",
        queue_id in 0u32..=i32::MAX as u32,
        flag in any::<i32>(),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        props in proptest::collection::vec(("[a-zA-Z_]{1,8}", "[^\u{1}\u{2}]{1,12}"), 0..5),
        tx in prop_oneof![Just(0), Just(4), Just(8), Just(12)],
        compressed in any::<bool>(),
        born_timestamp in any::<i64>(),
        born_host in arb_host(),
        reconsume_times in any::<i32>(),
        prepared_transaction_offset in any::<i64>(),
    ) -> Message {
        Message {
            topic, queue_id, flag, body,
            properties: encode_properties(props.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
            sys_flag: tx | i32::from(compressed),
            born_timestamp, born_host, reconsume_times, prepared_transaction_offset,
        }
    }
}

proptest! {
    /// The one-scan lookup agrees with RocketMQ's parsing rules (split on 0x02, first 0x01
    /// neither first nor last, the last pair wins) on any text made of short names,
    /// separators and other characters.
    #[test]
    fn property_lookup_follows_the_parsing_rules(
        encoded in "[ab\u{1}\u{2}é]{0,24}",
        key in "[ab\u{1}é]{0,3}",
    ) {
        let reference = parse_properties(&encoded)
            .filter(|(k, _)| *k == key)
            .last()
            .map(|(_, v)| v);
        prop_assert_eq!(property(&encoded, &key), reference);
    }

    #[test]
    fn encode_decode_round_trips(
        msg in arb_message(),
        store_host in arb_host(),
        queue_offset in 0i64..i64::MAX,
        physical_offset in 0i64..i64::MAX,
        store_timestamp in any::<i64>(),
        with_crc in any::<bool>(),
    ) {
        let f = StoreFields { queue_offset, physical_offset, store_timestamp, store_host };
        let bytes = encode_record(&msg, &f, 4096, with_crc).expect("valid message");
        let Ok(Decoded::Message(v)) = decode_record(&bytes, true) else { panic!("decodes") };
        prop_assert_eq!(v.total_size as usize, bytes.len());
        prop_assert_eq!(v.queue_offset, queue_offset);
        prop_assert_eq!(v.physical_offset, physical_offset);
        prop_assert_eq!(v.store_timestamp, store_timestamp);
        prop_assert_eq!(v.store_host, store_host);
        let mut back = v.to_message();
        let pairs = |p: &str| parse_properties(p).map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Vec<_>>();
        prop_assert_eq!(pairs(&back.properties), pairs(&msg.properties));
        back.properties = msg.properties.clone();
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), verify in any::<bool>()) {
        let _ = decode_record(&bytes, verify);
    }

    #[test]
    fn decode_of_mutated_records_never_panics(
        msg in arb_message(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let f = fields();
        let mut bytes = encode_record(&msg, &f, 4096, true).expect("valid message");
        for (i, x) in flips {
            let at = i.index(bytes.len());
            bytes[at] ^= x;
        }
        let _ = decode_record(&bytes, true);
    }
}

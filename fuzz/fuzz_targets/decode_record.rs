//! Arbitrary bytes as a CommitLog record: decoding never panics, and a record that decodes
//! lies within the bytes and decodes the same with or without the CRC check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqstore::format::{decode_record, Decoded};

fuzz_target!(|data: &[u8]| {
    match decode_record(data, true) {
        Ok(Decoded::Message(v)) => {
            assert!(v.total_size as usize <= data.len());
            assert_eq!(decode_record(data, false), Ok(Decoded::Message(v.clone())));
            let _ = v.user_properties();
            let _ = v.to_message();
        }
        Ok(Decoded::Blank { .. }) | Err(_) => {}
    }
});

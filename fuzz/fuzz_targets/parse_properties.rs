//! Arbitrary text as a record's properties: parsing never panics, and properties encoded
//! from what was parsed parse back to the same pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqstore::format::{encode_properties, parse_properties, property};

fuzz_target!(|text: &str| {
    let pairs: Vec<(&str, &str)> = parse_properties(text).collect();
    let _ = property(text, "KEYS");
    let _ = mqstore::format::tags_code(text);
    let encoded = encode_properties(pairs.iter().copied());
    let again: Vec<(&str, &str)> = parse_properties(&encoded).collect();
    assert_eq!(pairs, again);
});

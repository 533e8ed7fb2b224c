//! Request signatures as RocketMQ's clients make them (`AclClientRPCHook`, `AclUtils`,
//! `AclSigner` in RocketMQ 4.9): base64 of HmacSHA1(secretKey, the values of every ext
//! field but `Signature`, ordered by key, concatenated, then the body bytes).

use base64::Engine as _;
use hmac::{KeyInit, Mac};

use crate::remoting::RemotingCommand;

/// Ext field: the account.
pub const ACCESS_KEY: &str = "AccessKey";
/// Ext field: the signature.
pub const SIGNATURE: &str = "Signature";
/// Ext field: an optional session token (signed like any other field).
pub const SECURITY_TOKEN: &str = "SecurityToken";
/// Ext field RocketMQ's broker leaves out of the signed content (`MixAll.UNIQUE_MSG_QUERY_FLAG`)
/// although its clients sign it; both readings are accepted.
const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";

type HmacSha1 = hmac::Hmac<sha1::Sha1>;

/// An account's credentials, for signing requests.
#[derive(Clone)]
pub struct Credentials {
    /// The access key.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// Adds `AccessKey` and `Signature` to `req` (as `AclClientRPCHook` does).
    pub fn sign(&self, req: &mut RemotingCommand) {
        req.ext_fields.remove(SIGNATURE);
        req.ext_fields
            .insert(ACCESS_KEY.to_owned(), self.access_key.clone());
        let mac = content_mac(&self.secret_key, req, false);
        let signature =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        req.ext_fields.insert(SIGNATURE.to_owned(), signature);
    }
}

/// Whether `req` carries a valid signature by `secret_key`. The comparison takes the same
/// time wherever the first differing byte is.
pub fn signature_valid(secret_key: &str, req: &RemotingCommand) -> bool {
    let Some(given) = req.ext(SIGNATURE) else {
        return false;
    };
    let Ok(given) = base64::engine::general_purpose::STANDARD.decode(given.trim()) else {
        return false;
    };
    if content_mac(secret_key, req, true)
        .verify_slice(&given)
        .is_ok()
    {
        return true;
    }
    req.ext_fields.contains_key(UNIQUE_KEY_QUERY)
        && content_mac(secret_key, req, false)
            .verify_slice(&given)
            .is_ok()
}

fn content_mac(secret_key: &str, req: &RemotingCommand, skip_unique_flag: bool) -> HmacSha1 {
    let mut fields: Vec<(&String, &String)> = req
        .ext_fields
        .iter()
        .filter(|(k, _)| {
            k.as_str() != SIGNATURE && !(skip_unique_flag && k.as_str() == UNIQUE_KEY_QUERY)
        })
        .collect();
    fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
    // HMAC takes a key of any length.
    let mut mac = HmacSha1::new_from_slice(secret_key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    for (_, value) in fields {
        mac.update(value.as_bytes());
    }
    mac.update(&req.body);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vector the crates.io RocketMQ client checks its signer against (the same
    /// HmacSHA1 + base64 Java's `AclSigner` computes).
    #[test]
    fn signature_matches_an_independent_hmac_sha1() {
        let mut req = RemotingCommand::request(10)
            .with_ext("topic", "TopicA")
            .with_ext("a", "1")
            .with_body(&b"hello"[..]);
        let creds = Credentials {
            access_key: "RocketMQ".into(),
            secret_key: "12345678".into(),
        };
        creds.sign(&mut req);
        // Content: values by key order (AccessKey, a, topic) then the body.
        let content = b"RocketMQ1TopicAhello";
        let mut mac = HmacSha1::new_from_slice(b"12345678").expect("key");
        mac.update(content);
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(req.ext(SIGNATURE), Some(expected.as_str()));
        assert!(signature_valid("12345678", &req));
        assert!(!signature_valid("12345679", &req));
        let mut other_body = req.clone();
        other_body.body = bytes::Bytes::from_static(b"hellO");
        assert!(!signature_valid("12345678", &other_body));
        let mut other_topic = req.clone();
        other_topic
            .ext_fields
            .insert("topic".into(), "TopicB".into());
        assert!(!signature_valid("12345678", &other_topic));
        let mut garbled = req.clone();
        garbled
            .ext_fields
            .insert(SIGNATURE.into(), "%%%not base64".into());
        assert!(!signature_valid("12345678", &garbled));
        let mut unsigned = req;
        unsigned.ext_fields.remove(SIGNATURE);
        assert!(!signature_valid("12345678", &unsigned));
    }

    #[test]
    fn the_unique_key_flag_is_accepted_signed_or_not() {
        let creds = Credentials {
            access_key: "RocketMQ".into(),
            secret_key: "12345678".into(),
        };
        let mut signed_with = RemotingCommand::request(12)
            .with_ext("topic", "T")
            .with_ext(UNIQUE_KEY_QUERY, "true");
        creds.sign(&mut signed_with);
        assert!(signature_valid("12345678", &signed_with));
        let mut without = RemotingCommand::request(12).with_ext("topic", "T");
        creds.sign(&mut without);
        without
            .ext_fields
            .insert(UNIQUE_KEY_QUERY.into(), "true".into());
        assert!(signature_valid("12345678", &without));
    }
}

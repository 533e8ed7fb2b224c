//! RocketMQ's remoting frames: a length-prefixed frame carrying a JSON or a
//! binary ("ROCKETMQ") header and an opaque body.
//!
//! Decoding is as lenient as the Java broker where real clients rely on it (missing
//! `remark`, ext values as JSON numbers or booleans, unknown keys) and strict where a peer
//! could hurt us: the declared length is checked against [`MAX_FRAME_LEN`] before anything is
//! allocated for it, and every length inside a header is bounds-checked.

pub mod codes;
pub mod tls;

use std::collections::HashMap;
use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};
use tokio_util::codec::{Decoder, Encoder};

/// Largest frame, the 4-byte length prefix included (RocketMQ's Netty frame limit).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Flag bit: this frame is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit: this request wants no response.
pub const FLAG_ONEWAY: i32 = 2;

/// The version we report in responses: a 4.9.x broker (clients gate features on it).
pub const BROKER_VERSION: i32 = 409;

/// Language code `JAVA`, what a server answers with to be safe with old clients.
pub const LANGUAGE_JAVA: u8 = 0;

const LANGUAGES: [&str; 13] = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST",
];
const LANGUAGE_OTHER: u8 = 7;

/// How a header is encoded (the high byte of the frame's second word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializeType {
    /// Type 0: a JSON object.
    #[default]
    Json,
    /// Type 1: RocketMQ's binary layout.
    RocketMq,
}

impl SerializeType {
    fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SerializeType::Json => "JSON",
            SerializeType::RocketMq => "ROCKETMQ",
        }
    }
}

/// A request or a response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemotingCommand {
    /// Request code, or response code in a response.
    pub code: i32,
    /// Sender's language code (JAVA = 0, …, RUST = 12).
    pub language: u8,
    /// Sender's version.
    pub version: i32,
    /// Request id; a response echoes it.
    pub opaque: i32,
    /// [`FLAG_RESPONSE`], [`FLAG_ONEWAY`].
    pub flag: i32,
    /// Human-readable text, usually an error.
    pub remark: Option<String>,
    /// The custom header, every value rendered as a string.
    pub ext_fields: HashMap<String, String>,
    /// The body.
    pub body: Bytes,
    /// How the header was (or will be) encoded.
    pub serialize_type: SerializeType,
}

impl RemotingCommand {
    /// A request with `code` and a fresh header.
    pub fn request(code: i32) -> Self {
        RemotingCommand {
            code,
            language: LANGUAGE_JAVA,
            version: BROKER_VERSION,
            ..Default::default()
        }
    }

    /// A response to `self` (opaque and serialize type copied) with `code`.
    #[must_use]
    pub fn response(&self, code: i32) -> Self {
        RemotingCommand {
            code,
            language: LANGUAGE_JAVA,
            version: BROKER_VERSION,
            opaque: self.opaque,
            flag: FLAG_RESPONSE,
            serialize_type: self.serialize_type,
            ..Default::default()
        }
    }

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// Whether this request wants no answer.
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// Builder: sets the remark.
    #[must_use]
    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    /// Builder: adds an ext field.
    #[must_use]
    pub fn with_ext(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.ext_fields.insert(key.to_owned(), value.to_string());
        self
    }

    /// Builder: sets the body.
    #[must_use]
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// An ext field.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.get(key).map(String::as_str)
    }

    /// The language's name.
    pub fn language_name(&self) -> &'static str {
        LANGUAGES
            .get(usize::from(self.language))
            .copied()
            .unwrap_or("OTHER")
    }

    /// Encodes the whole frame (length prefix included).
    ///
    /// # Errors
    /// [`FrameError::TooLong`] if the frame would exceed [`MAX_FRAME_LEN`].
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), FrameError> {
        let header = match self.serialize_type {
            SerializeType::Json => self.json_header(),
            SerializeType::RocketMq => self.binary_header(),
        };
        let total = 4 + header.len() + self.body.len();
        if total + 4 > MAX_FRAME_LEN || header.len() > 0x00FF_FFFF {
            return Err(FrameError::TooLong(total + 4));
        }
        out.reserve(total + 4);
        out.put_u32(total as u32);
        out.put_u32((u32::from(self.serialize_type.code()) << 24) | header.len() as u32);
        out.put_slice(&header);
        out.put_slice(&self.body);
        Ok(())
    }

    fn json_header(&self) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("code".into(), Value::from(self.code));
        if !self.ext_fields.is_empty() || self.is_response() {
            let ext: Map<String, Value> = self
                .ext_fields
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            m.insert("extFields".into(), Value::Object(ext));
        }
        m.insert("flag".into(), Value::from(self.flag));
        m.insert("language".into(), Value::from(self.language_name()));
        m.insert("opaque".into(), Value::from(self.opaque));
        if let Some(r) = &self.remark {
            m.insert("remark".into(), Value::String(r.clone()));
        }
        m.insert(
            "serializeTypeCurrentRPC".into(),
            Value::from(self.serialize_type.name()),
        );
        m.insert("version".into(), Value::from(self.version));
        serde_json::to_vec(&Value::Object(m)).unwrap_or_default()
    }

    fn binary_header(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64);
        b.put_i16(self.code as i16);
        b.put_u8(self.language);
        b.put_i16(self.version as i16);
        b.put_i32(self.opaque);
        b.put_i32(self.flag);
        match &self.remark {
            Some(r) if !r.is_empty() => {
                b.put_i32(r.len() as i32);
                b.put_slice(r.as_bytes());
            }
            _ => b.put_i32(0),
        }
        let mut ext = Vec::new();
        for (k, v) in &self.ext_fields {
            if k.is_empty() || v.is_empty() || k.len() > i16::MAX as usize {
                continue;
            }
            ext.put_i16(k.len() as i16);
            ext.put_slice(k.as_bytes());
            ext.put_i32(v.len() as i32);
            ext.put_slice(v.as_bytes());
        }
        b.put_i32(ext.len() as i32);
        b.put_slice(&ext);
        b
    }
}

/// Most bytes one coalesced write gathers.
const MAX_COALESCED_WRITE: usize = 1 << 20;

/// Encodes `first` and whatever else is already queued in `rx` (up to about 1 MiB) into
/// `buf`, replacing its content, so that one socket write carries them all. A command that
/// cannot be encoded (over the frame limit) is logged and dropped.
pub fn encode_queued(
    first: RemotingCommand,
    rx: &mut tokio::sync::mpsc::Receiver<RemotingCommand>,
    buf: &mut BytesMut,
) {
    buf.clear();
    let mut next = Some(first);
    while let Some(c) = next {
        if let Err(e) = c.encode(buf) {
            tracing::error!(error = %e, code = c.code, "frame not encodable; dropped");
        }
        next = if buf.len() < MAX_COALESCED_WRITE {
            rx.try_recv().ok()
        } else {
            None
        };
    }
}

/// Why a byte stream cannot go on being read as frames; the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The declared length is over the limit (or the frame to send would be).
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLong(usize),
    /// The declared length cannot hold the header-length word.
    #[error("frame length {0} is too short")]
    TooShort(i64),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What one frame held.
#[derive(Debug)]
pub enum Inbound {
    /// A well-formed command.
    Command(RemotingCommand),
    /// A frame whose header could not be decoded; the stream is still in step, so the
    /// connection answers with an error (using the opaque if it could be salvaged) and goes on.
    Malformed {
        /// The opaque, when it could be read.
        opaque: Option<i32>,
        /// Whether the sender asked for no response (when that could be read).
        oneway: bool,
        /// The serialize type the answer should use.
        serialize_type: SerializeType,
        /// What was wrong.
        reason: String,
    },
}

/// Tokio codec for remoting frames.
#[derive(Debug, Default, Clone, Copy)]
pub struct RemotingCodec;

impl Decoder for RemotingCodec {
    type Item = Inbound;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let declared = i64::from(i32::from_be_bytes([src[0], src[1], src[2], src[3]]));
        if declared < 4 {
            return Err(FrameError::TooShort(declared));
        }
        // Checked before any allocation for the frame.
        if declared as usize + 4 > MAX_FRAME_LEN {
            return Err(FrameError::TooLong(declared as usize + 4));
        }
        let frame_len = declared as usize;
        if src.len() < 4 + frame_len {
            src.reserve(4 + frame_len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let frame = src.split_to(frame_len).freeze();
        Ok(Some(decode_frame_body(frame)))
    }
}

impl Encoder<RemotingCommand> for RemotingCodec {
    type Error = FrameError;

    fn encode(&mut self, item: RemotingCommand, dst: &mut BytesMut) -> Result<(), FrameError> {
        item.encode(dst)
    }
}

/// Decodes a frame without its length prefix: the header word, the header, the body.
pub fn decode_frame_body(mut frame: Bytes) -> Inbound {
    let word = frame.get_u32();
    let ser = (word >> 24) as u8;
    let header_len = (word & 0x00FF_FFFF) as usize;
    let serialize_type = match ser {
        0 => SerializeType::Json,
        1 => SerializeType::RocketMq,
        other => {
            return Inbound::Malformed {
                opaque: None,
                oneway: false,
                serialize_type: SerializeType::Json,
                reason: format!("unknown serialize type {other}"),
            }
        }
    };
    if header_len > frame.len() {
        let (opaque, oneway) = salvage(serialize_type, &frame);
        return Inbound::Malformed {
            opaque,
            oneway,
            serialize_type,
            reason: format!(
                "header length {header_len} exceeds the {} bytes left in the frame",
                frame.len()
            ),
        };
    }
    let header = frame.split_to(header_len);
    let decoded = match serialize_type {
        SerializeType::Json => decode_json_header(&header),
        SerializeType::RocketMq => decode_binary_header(&header),
    };
    match decoded {
        Ok(mut cmd) => {
            cmd.serialize_type = serialize_type;
            cmd.body = frame;
            Inbound::Command(cmd)
        }
        Err(reason) => {
            let (opaque, oneway) = salvage(serialize_type, &header);
            Inbound::Malformed {
                opaque,
                oneway,
                serialize_type,
                reason,
            }
        }
    }
}

/// Best-effort opaque and oneway flag from a header that did not decode.
fn salvage(ser: SerializeType, header: &[u8]) -> (Option<i32>, bool) {
    match ser {
        SerializeType::RocketMq if header.len() >= 13 => {
            let opaque = i32::from_be_bytes([header[5], header[6], header[7], header[8]]);
            let flag = i32::from_be_bytes([header[9], header[10], header[11], header[12]]);
            (Some(opaque), flag & FLAG_ONEWAY != 0)
        }
        SerializeType::RocketMq => (None, false),
        SerializeType::Json => (
            json_number_after(header, b"\"opaque\"").map(|v| v as i32),
            json_number_after(header, b"\"flag\"").is_some_and(|f| f as i32 & FLAG_ONEWAY != 0),
        ),
    }
}

/// The integer after `"key":` in text that is not valid JSON as a whole.
fn json_number_after(text: &[u8], key: &[u8]) -> Option<i64> {
    let at = text.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &text[at..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
    let rest = rest.strip_prefix(b":")?;
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let digits: Vec<u8> = rest[start..]
        .iter()
        .copied()
        .enumerate()
        .take_while(|&(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-'))
        .map(|(_, b)| b)
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

fn int_field(v: Option<&Value>, name: &str, required: bool) -> Result<i64, String> {
    match v {
        None | Some(Value::Null) if !required => Ok(0),
        None | Some(Value::Null) => Err(format!("header lacks `{name}`")),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("`{name}` is not an integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| format!("`{name}` is not an integer")),
        Some(_) => Err(format!("`{name}` is not an integer")),
    }
}

fn decode_json_header(header: &[u8]) -> Result<RemotingCommand, String> {
    let value: Value =
        serde_json::from_slice(header).map_err(|e| format!("header is not JSON: {e}"))?;
    let Value::Object(obj) = value else {
        return Err("header is not a JSON object".into());
    };
    let code = int_field(obj.get("code"), "code", true)?;
    let language = match obj.get("language") {
        Some(Value::String(name)) => LANGUAGES
            .iter()
            .position(|l| l == name)
            .map_or(LANGUAGE_OTHER, |i| i as u8),
        Some(Value::Number(n)) => n.as_u64().map_or(LANGUAGE_OTHER, |n| n as u8),
        _ => LANGUAGE_JAVA,
    };
    let mut ext_fields = HashMap::new();
    match obj.get("extFields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(ext)) => {
            for (k, v) in ext {
                let text = match v {
                    Value::Null => continue,
                    Value::String(s) => s.clone(),
                    Value::Bool(b) => b.to_string(),
                    Value::Number(n) => n.to_string(),
                    other => other.to_string(),
                };
                ext_fields.insert(k.clone(), text);
            }
        }
        Some(_) => return Err("`extFields` is not an object".into()),
    }
    let remark = match obj.get("remark") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    Ok(RemotingCommand {
        code: i32::try_from(code).map_err(|_| "`code` out of range".to_owned())?,
        language,
        version: int_field(obj.get("version"), "version", false)? as i32,
        opaque: int_field(obj.get("opaque"), "opaque", false)? as i32,
        flag: int_field(obj.get("flag"), "flag", false)? as i32,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::Json,
    })
}

fn take<'a>(buf: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], String> {
    if buf.len() < n {
        return Err(format!(
            "binary header truncated in {what}: needs {n} bytes, {} left",
            buf.len()
        ));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn take_len(buf: &mut &[u8], what: &str) -> Result<usize, String> {
    let b = take(buf, 4, what)?;
    let n = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    usize::try_from(n).map_err(|_| format!("negative {what} length {n}"))
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

fn decode_binary_header(header: &[u8]) -> Result<RemotingCommand, String> {
    let mut buf = header;
    let fixed = take(&mut buf, 13, "fixed part")?;
    let code = i16::from_be_bytes([fixed[0], fixed[1]]);
    let language = fixed[2];
    let version = i16::from_be_bytes([fixed[3], fixed[4]]);
    let opaque = i32::from_be_bytes([fixed[5], fixed[6], fixed[7], fixed[8]]);
    let flag = i32::from_be_bytes([fixed[9], fixed[10], fixed[11], fixed[12]]);
    let remark_len = take_len(&mut buf, "remark")?;
    let remark = if remark_len == 0 {
        None
    } else {
        Some(utf8(take(&mut buf, remark_len, "remark")?, "remark")?)
    };
    let ext_len = take_len(&mut buf, "extFields")?;
    let mut ext = take(&mut buf, ext_len, "extFields")?;
    let mut ext_fields = HashMap::new();
    while !ext.is_empty() {
        let kl = take(&mut ext, 2, "ext key length")?;
        let kl = i16::from_be_bytes([kl[0], kl[1]]);
        let kl = usize::try_from(kl).map_err(|_| format!("negative ext key length {kl}"))?;
        let key = utf8(take(&mut ext, kl, "ext key")?, "ext key")?;
        let vl = take_len(&mut ext, "ext value")?;
        let value = utf8(take(&mut ext, vl, "ext value")?, "ext value")?;
        if !key.is_empty() {
            ext_fields.insert(key, value);
        }
    }
    Ok(RemotingCommand {
        code: i32::from(code),
        language,
        version: i32::from(version),
        opaque,
        flag,
        remark,
        ext_fields,
        body: Bytes::new(),
        serialize_type: SerializeType::RocketMq,
    })
}

impl fmt::Display for RemotingCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "code={} opaque={} flag={} body={}B",
            self.code,
            self.opaque,
            self.flag,
            self.body.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(cmd: &RemotingCommand) -> RemotingCommand {
        let mut buf = BytesMut::new();
        cmd.encode(&mut buf).expect("encode");
        let mut codec = RemotingCodec;
        match codec.decode(&mut buf).expect("decode") {
            Some(Inbound::Command(c)) => {
                assert!(buf.is_empty());
                c
            }
            other => panic!("not a command: {other:?}"),
        }
    }

    #[test]
    fn lenient_json_header_as_java_and_rust_clients_send_it() {
        let header = br#"{"code":310,"extFields":{"a":"pg","e":3,"k":false,"bname":"b"},"flag":0,"language":"RUST","opaque":7,"version":474}"#;
        let mut frame = BytesMut::new();
        frame.put_u32(4 + header.len() as u32 + 2);
        frame.put_u32(header.len() as u32);
        frame.put_slice(header);
        frame.put_slice(b"hi");
        let Some(Inbound::Command(c)) = RemotingCodec.decode(&mut frame).expect("ok") else {
            panic!("not decoded");
        };
        assert_eq!(c.code, 310);
        assert_eq!(c.opaque, 7);
        assert_eq!(c.ext("e"), Some("3"));
        assert_eq!(c.ext("k"), Some("false"));
        assert_eq!(c.language_name(), "RUST");
        assert_eq!(c.remark, None);
        assert_eq!(&c.body[..], b"hi");
    }

    #[test]
    fn oversized_length_is_refused_before_allocation() {
        let mut buf = BytesMut::from(&[0x7F, 0xFF, 0xFF, 0xFF][..]);
        assert!(matches!(
            RemotingCodec.decode(&mut buf),
            Err(FrameError::TooLong(_))
        ));
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn garbage_json_keeps_the_opaque() {
        let header = br#"{"code":10,"opaque":42,"flag":0, garbage"#;
        let mut frame = BytesMut::new();
        frame.put_u32(4 + header.len() as u32);
        frame.put_u32(header.len() as u32);
        frame.put_slice(header);
        match RemotingCodec.decode(&mut frame).expect("framed") {
            Some(Inbound::Malformed { opaque, .. }) => assert_eq!(opaque, Some(42)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn header_longer_than_frame_is_malformed_not_fatal() {
        let mut frame = BytesMut::new();
        frame.put_u32(8);
        frame.put_u32(1000);
        frame.put_u32(0);
        frame.put_u32(5); // the next frame starts here
        match RemotingCodec.decode(&mut frame).expect("framed") {
            Some(Inbound::Malformed { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(frame.len(), 4);
    }

    fn arb_command() -> impl Strategy<Value = RemotingCommand> {
        (
            any::<i16>(),
            0u8..13,
            any::<i16>(),
            any::<i32>(),
            0i32..4,
            proptest::option::of("[a-z ]{1,20}"),
            proptest::collection::hash_map("[a-zA-Z_]{1,8}", "[ -~]{1,12}", 0..6),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<bool>(),
        )
            .prop_map(
                |(code, language, version, opaque, flag, remark, ext, body, binary)| {
                    RemotingCommand {
                        code: i32::from(code),
                        language,
                        version: i32::from(version),
                        opaque,
                        flag,
                        remark,
                        ext_fields: ext,
                        body: Bytes::from(body),
                        serialize_type: if binary {
                            SerializeType::RocketMq
                        } else {
                            SerializeType::Json
                        },
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn both_encodings_round_trip(cmd in arb_command()) {
            let back = roundtrip(&cmd);
            prop_assert_eq!(back, cmd);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = RemotingCodec.decode(&mut buf) {}
        }

        #[test]
        fn arbitrary_frame_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 4..256)) {
            let _ = decode_frame_body(Bytes::from(bytes));
        }
    }
}

//! The producer's fields of a record: what a put hands to the codec, and what a read
//! record turns back into ([`RecordView::to_message`](super::RecordView::to_message)).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::format;

/// A message as a producer hands it to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic: 1..=127 chars of `[%|a-zA-Z0-9_-]`.
    pub topic: String,
    /// Queue within the topic (at most `i32::MAX`).
    pub queue_id: u32,
    /// The producer's opaque flag.
    pub flag: i32,
    /// The body, stored as is.
    pub body: Vec<u8>,
    /// Properties in RocketMQ's encoding (`name 0x01 value 0x02 …`); see
    /// [`format::encode_properties`]. A `__CRC32#` property in here is replaced by the store.
    pub properties: String,
    /// SYSFLAG; the host-family bits are set by the store.
    pub sys_flag: i32,
    /// The producer's timestamp (ms).
    pub born_timestamp: i64,
    /// The producer's address.
    pub born_host: SocketAddr,
    /// RECONSUMETIMES.
    pub reconsume_times: i32,
    /// PREPARED TRANSACTION OFFSET.
    pub prepared_transaction_offset: i64,
}

impl Message {
    /// A message with no properties, born now on 127.0.0.1:0.
    pub fn new(topic: impl Into<String>, queue_id: u32, body: impl Into<Vec<u8>>) -> Self {
        Message {
            topic: topic.into(),
            queue_id,
            flag: 0,
            body: body.into(),
            properties: String::new(),
            sys_flag: 0,
            born_timestamp: crate::clock::wall_millis(),
            born_host: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
        }
    }

    /// Adds a property (builder style). Names and values must not contain 0x01 or 0x02.
    #[must_use]
    pub fn with_property(mut self, key: &str, value: &str) -> Self {
        if !self.properties.is_empty()
            && !self
                .properties
                .ends_with(char::from(format::PROPERTY_SEPARATOR))
        {
            self.properties.push(char::from(format::PROPERTY_SEPARATOR));
        }
        self.properties.push_str(key);
        self.properties
            .push(char::from(format::NAME_VALUE_SEPARATOR));
        self.properties.push_str(value);
        self
    }

    /// Removes every occurrence of a property (builder style).
    #[must_use]
    pub fn without_property(mut self, key: &str) -> Self {
        let kept: Vec<(&str, &str)> = format::parse_properties(&self.properties)
            .filter(|(k, _)| *k != key)
            .collect();
        self.properties = format::encode_properties(kept);
        self
    }

    /// Sets a property, replacing any value it had (builder style).
    #[must_use]
    pub fn with_property_replaced(self, key: &str, value: &str) -> Self {
        self.without_property(key).with_property(key, value)
    }

    /// The value of a property.
    pub fn property(&self, key: &str) -> Option<&str> {
        format::property(&self.properties, key)
    }

    /// Whether a SYNC_FLUSH put of this message waits for its flush (`WAIT` absent or not `false`).
    pub fn waits_for_store(&self) -> bool {
        self.property(format::keys::WAIT) != Some("false")
    }

    /// Whether the message enters a consume queue (transaction type NOT or COMMIT).
    pub fn advances_queue(&self) -> bool {
        format::enters_consume_queue(self.sys_flag)
    }
}

//! What clients send about themselves: the HEART_BEAT body and its parts, and the
//! connection lists admin tools are answered with (RocketMQ 4.9's JSON shapes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// HEART_BEAT body (`HeartbeatData`); every field optional, unknown ones ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HeartbeatData {
    /// The client id.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Producer groups.
    pub producer_data_set: Vec<ProducerData>,
    /// Consumer groups.
    pub consumer_data_set: Vec<ConsumerData>,
}

/// A producer group of a heartbeat.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProducerData {
    /// The group.
    pub group_name: String,
}

/// A consumer group of a heartbeat.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConsumerData {
    /// The group.
    pub group_name: String,
    /// `CONSUME_ACTIVELY` / `CONSUME_PASSIVELY`.
    pub consume_type: String,
    /// `CLUSTERING` / `BROADCASTING`.
    pub message_model: String,
    /// Where a new consumer starts.
    pub consume_from_where: String,
    /// Subscriptions.
    pub subscription_data_set: Vec<SubscriptionData>,
}

/// One subscription (`SubscriptionData`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct SubscriptionData {
    /// The topic.
    pub topic: String,
    /// The expression (`*`, `TagA || TagB`).
    pub sub_string: String,
    /// Version (client timestamp).
    pub sub_version: i64,
    /// `TAG` (the default when absent) or `SQL92`.
    pub expression_type: Option<String>,
    /// The tags of a TAG expression, as the client split them.
    pub tags_set: Vec<String>,
    /// Java `String.hashCode` of each tag.
    pub code_set: Vec<i32>,
    /// Filter classes (unsupported; kept as sent).
    pub class_filter_mode: bool,
}

/// Java's `String.hashCode`, which RocketMQ uses as a tag's code.
pub fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

impl SubscriptionData {
    /// The subscription as RocketMQ's `SubscriptionData` JSON, every field present (tags
    /// and codes derived from the expression when the client did not send them).
    pub fn to_rocketmq_json(&self) -> serde_json::Value {
        let tags: Vec<String> = if self.tags_set.is_empty() && self.is_tag() {
            self.sub_string
                .split("||")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        } else {
            self.tags_set.clone()
        };
        let codes: Vec<i32> = if self.code_set.is_empty() {
            tags.iter()
                .filter(|t| t.as_str() != "*")
                .map(|t| java_hash(t))
                .collect()
        } else {
            self.code_set.clone()
        };
        serde_json::json!({
            "classFilterMode": self.class_filter_mode,
            "topic": self.topic,
            "subString": self.sub_string,
            "tagsSet": tags,
            "codeSet": codes,
            "subVersion": self.sub_version,
            "expressionType": self.expression_type.as_deref().filter(|t| !t.is_empty()).unwrap_or("TAG"),
        })
    }

    /// Whether the expression is a TAG expression.
    pub fn is_tag(&self) -> bool {
        self.expression_type
            .as_deref()
            .is_none_or(|t| t.is_empty() || t.eq_ignore_ascii_case("TAG"))
    }
}

/// One connection as RocketMQ's admin answers list it (`Connection`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientConnection {
    /// The client id.
    pub client_id: String,
    /// Its address (`ip:port`).
    pub client_addr: String,
    /// Its language.
    pub language: String,
    /// Its version.
    pub version: i32,
}

/// A consumer group as GET_CONSUMER_CONNECTION_LIST answers it (`ConsumerConnection`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerConnection {
    /// The members' connections.
    pub connection_set: Vec<ClientConnection>,
    /// Topic → subscription (RocketMQ's `SubscriptionData` JSON).
    pub subscription_table: BTreeMap<String, serde_json::Value>,
    /// `CONSUME_ACTIVELY` / `CONSUME_PASSIVELY`.
    pub consume_type: String,
    /// `CLUSTERING` / `BROADCASTING`.
    pub message_model: String,
    /// Where a new consumer starts.
    pub consume_from_where: String,
}

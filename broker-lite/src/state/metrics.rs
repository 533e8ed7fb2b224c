//! What the broker counts as it works, under RocketMQ 5.1's metric names and labels
//! (`BrokerMetricsConstant`, `RemotingMetricsConstant`): messages and bytes in and out,
//! message sizes, request latency. The exporter (`exporter`) adds, at each scrape, what
//! is read from the broker's state (lag, connections, storage).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::remoting::codes::response;

/// Labels of what was stored (RocketMQ: topic, message_type, is_system).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InLabels {
    /// The topic.
    pub topic: String,
    /// `normal`, `fifo`, `delay` or `transaction`.
    pub message_type: String,
    /// A RocketMQ system topic.
    pub is_system: bool,
}

/// Labels of what was delivered (RocketMQ: topic, consumer_group, is_system).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutLabels {
    /// The topic.
    pub topic: String,
    /// The consumer group.
    pub consumer_group: String,
    /// A system topic or group.
    pub is_system: bool,
}

/// Labels of a request's latency (RocketMQ's `rocketmq_rpc_latency`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// Always `remoting`.
    pub protocol_type: &'static str,
    /// The request code's name in lower case (`send_message_v2`), or its number.
    pub request_code: String,
    /// The response code's name in lower case (`success`), or its number.
    pub response_code: String,
    /// A pull that was held for new messages.
    pub is_long_polling: bool,
    /// `success`, or `oneway` for a request that gets no answer.
    pub result: &'static str,
}

/// RocketMQ's message size buckets: 1 KiB, 4 KiB, 512 KiB, 1, 2 and 4 MiB.
const MESSAGE_SIZE_BUCKETS: [f64; 6] = [
    1024.0,
    4096.0,
    524_288.0,
    1_048_576.0,
    2_097_152.0,
    4_194_304.0,
];
/// RocketMQ's request latency buckets, in milliseconds.
const RPC_LATENCY_BUCKETS_MS: [f64; 9] = [1.0, 3.0, 5.0, 7.0, 10.0, 100.0, 1000.0, 2000.0, 3000.0];
/// Store append latency buckets, in microseconds (an ASYNC put is a few µs, a SYNC one a
/// disk flush).
const APPEND_LATENCY_BUCKETS_US: [f64; 10] = [
    5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0, 50_000.0,
];

/// The broker's counters and histograms. Cloning shares them. Disabled (the default,
/// `metricsExporterType=DISABLE`), every record call returns at once: nothing is
/// allocated or hashed on the request path for metrics nobody reads.
#[derive(Debug, Clone)]
pub struct BrokerMetrics {
    enabled: bool,
    messages_in: Family<InLabels, Counter>,
    throughput_in: Family<InLabels, Counter>,
    message_size: Family<InLabels, Histogram>,
    messages_out: Family<OutLabels, Counter>,
    throughput_out: Family<OutLabels, Counter>,
    send_to_dlq: Family<OutLabels, Counter>,
    rpc_latency: Family<RpcLabels, Histogram>,
    append_latency: Histogram,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics::new(false)
    }
}

impl BrokerMetrics {
    /// Whether calls record anything.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Metrics that record (`enabled`) or ignore every call.
    pub fn new(enabled: bool) -> Self {
        BrokerMetrics {
            enabled,
            messages_in: Family::default(),
            throughput_in: Family::default(),
            message_size: Family::new_with_constructor(|| Histogram::new(MESSAGE_SIZE_BUCKETS)),
            messages_out: Family::default(),
            throughput_out: Family::default(),
            send_to_dlq: Family::default(),
            rpc_latency: Family::new_with_constructor(|| Histogram::new(RPC_LATENCY_BUCKETS_MS)),
            append_latency: Histogram::new(APPEND_LATENCY_BUCKETS_US),
        }
    }
}

/// Whether RocketMQ counts `topic` as a system topic (`TopicValidator.isSystemTopic`).
pub fn is_system_topic(topic: &str) -> bool {
    topic.starts_with("rmq_sys_")
        || topic.starts_with("RMQ_SYS_")
        || matches!(
            topic,
            "TBW102"
                | "SCHEDULE_TOPIC_XXXX"
                | "BenchmarkTest"
                | "OFFSET_MOVED_EVENT"
                | "SELF_TEST_TOPIC"
                | "TRANS_CHECK_MAX_TIME_TOPIC"
        )
}

/// Whether RocketMQ counts `group` as a system group (`MixAll.isSysConsumerGroup`).
pub fn is_system_group(group: &str) -> bool {
    group.starts_with("CID_RMQ_SYS_")
}

/// Retry and dead-letter topics are left out of the in/out counts (RocketMQ's rule).
fn is_retry_or_dlq(topic: &str) -> bool {
    topic.starts_with("%RETRY%") || topic.starts_with("%DLQ%")
}

impl BrokerMetrics {
    /// Counts `count` messages of `bytes` stored in `topic`.
    pub fn stored(&self, topic: &str, message_type: &str, count: u64, bytes: u64) {
        if !self.enabled || is_retry_or_dlq(topic) || count == 0 {
            return;
        }
        let labels = InLabels {
            topic: topic.to_owned(),
            message_type: message_type.to_owned(),
            is_system: is_system_topic(topic),
        };
        self.messages_in.get_or_create(&labels).inc_by(count);
        self.throughput_in.get_or_create(&labels).inc_by(bytes);
        self.message_size
            .get_or_create(&labels)
            .observe(bytes as f64 / count as f64);
    }

    /// Counts `count` messages of `bytes` delivered to `group` from `topic`.
    pub fn delivered(&self, topic: &str, group: &str, count: u64, bytes: u64) {
        if !self.enabled || is_retry_or_dlq(topic) || count == 0 {
            return;
        }
        let labels = OutLabels {
            topic: topic.to_owned(),
            consumer_group: group.to_owned(),
            is_system: is_system_topic(topic) || is_system_group(group),
        };
        self.messages_out.get_or_create(&labels).inc_by(count);
        self.throughput_out.get_or_create(&labels).inc_by(bytes);
    }

    /// Counts a message of `group` moved to its dead-letter queue.
    pub fn sent_to_dlq(&self, topic: &str, group: &str) {
        if !self.enabled {
            return;
        }
        self.send_to_dlq
            .get_or_create(&OutLabels {
                topic: topic.to_owned(),
                consumer_group: group.to_owned(),
                is_system: is_system_group(group),
            })
            .inc();
    }

    /// Records one request's time from arrival to its answer being queued.
    pub fn request(
        &self,
        code_name: Option<&str>,
        code: i32,
        response_code: Option<i32>,
        long_polling: bool,
        took: Duration,
    ) {
        if !self.enabled {
            return;
        }
        let labels = RpcLabels {
            protocol_type: "remoting",
            request_code: code_name.map_or_else(|| code.to_string(), str::to_ascii_lowercase),
            response_code: response_code.map_or_else(String::new, response_name),
            is_long_polling: long_polling,
            result: if response_code.is_some() {
                "success"
            } else {
                "oneway"
            },
        };
        self.rpc_latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64() * 1000.0);
    }

    /// Records one store append (a put or a batch put) and how long it took.
    pub fn appended(&self, took: Duration) {
        if !self.enabled {
            return;
        }
        self.append_latency
            .observe(took.as_secs_f64() * 1_000_000.0);
    }

    /// Registers every counter and histogram in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rocketmq_messages_in",
            "Messages stored, by topic",
            self.messages_in.clone(),
        );
        registry.register(
            "rocketmq_throughput_in",
            "Bytes stored (record sizes), by topic",
            self.throughput_in.clone(),
        );
        registry.register(
            "rocketmq_message_size",
            "Stored record size in bytes",
            self.message_size.clone(),
        );
        registry.register(
            "rocketmq_messages_out",
            "Messages delivered by pulls, by topic and consumer group",
            self.messages_out.clone(),
        );
        registry.register(
            "rocketmq_throughput_out",
            "Bytes delivered by pulls, by topic and consumer group",
            self.throughput_out.clone(),
        );
        registry.register(
            "rocketmq_send_to_dlq_messages",
            "Messages moved to a consumer group's dead-letter queue",
            self.send_to_dlq.clone(),
        );
        registry.register(
            "rocketmq_rpc_latency",
            "Remoting request latency in milliseconds, arrival to answer",
            self.rpc_latency.clone(),
        );
        registry.register(
            "mqstore_append_latency_microseconds",
            "Time of one store append (put or batch put), in microseconds",
            self.append_latency.clone(),
        );
    }
}

/// A response code's RocketMQ name in lower case, or its number.
pub fn response_name(code: i32) -> String {
    let name = match code {
        response::SUCCESS => "success",
        response::SYSTEM_ERROR => "system_error",
        response::SYSTEM_BUSY => "system_busy",
        response::REQUEST_CODE_NOT_SUPPORTED => "request_code_not_supported",
        response::FLUSH_DISK_TIMEOUT => "flush_disk_timeout",
        response::SLAVE_NOT_AVAILABLE => "slave_not_available",
        response::FLUSH_SLAVE_TIMEOUT => "flush_slave_timeout",
        response::MESSAGE_ILLEGAL => "message_illegal",
        response::SERVICE_NOT_AVAILABLE => "service_not_available",
        response::NO_PERMISSION => "no_permission",
        response::TOPIC_NOT_EXIST => "topic_not_exist",
        response::PULL_NOT_FOUND => "pull_not_found",
        response::PULL_RETRY_IMMEDIATELY => "pull_retry_immediately",
        response::PULL_OFFSET_MOVED => "pull_offset_moved",
        response::QUERY_NOT_FOUND => "query_not_found",
        response::SUBSCRIPTION_PARSE_FAILED => "subscription_parse_failed",
        response::SUBSCRIPTION_NOT_EXIST => "subscription_not_exist",
        response::SUBSCRIPTION_NOT_LATEST => "subscription_not_latest",
        response::SUBSCRIPTION_GROUP_NOT_EXIST => "subscription_group_not_exist",
        other => return other.to_string(),
    };
    name.to_owned()
}

/// RocketMQ's message type of a message with these properties
/// (`TopicMessageType.parseFromMessageProperty`), as its metric label.
pub fn message_type(properties: &str) -> &'static str {
    let has = |key: &str| mqstore::format::property(properties, key).is_some();
    if mqstore::format::property(properties, "TRAN_MSG") == Some("true") {
        "transaction"
    } else if has("DELAY") || has("TIMER_DELIVER_MS") || has("TIMER_DELAY_SEC") {
        "delay"
    } else if has("__SHARDINGKEY") {
        "fifo"
    } else {
        "normal"
    }
}

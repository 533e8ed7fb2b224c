//! Sends (SEND_MESSAGE, SEND_MESSAGE_V2, SEND_BATCH_MESSAGE): header, batch body, topic checks
//! and auto-creation, the DELAY / retry / transaction rewrites, and the store's answer.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use mqstore::format::{self, keys};
use mqstore::{Message, PutResult, PutStatus};

use crate::broker::Broker;
use crate::delivery::half_messages::{self};
use crate::remoting::codes::{request, response};
use crate::remoting::RemotingCommand;
use crate::state::topics::{self, RETRY_GROUP_TOPIC_PREFIX};

use super::{field, opt_field, random_below, reject, reply, Handled};

/// SendMessageRequestHeader, from V1 (full names) or V2 (letters) ext fields.
struct SendHeader {
    topic: String,
    default_topic: String,
    default_topic_queue_nums: u32,
    queue_id: i32,
    sys_flag: i32,
    born_timestamp: i64,
    flag: i32,
    properties: String,
    reconsume_times: i32,
    batch: bool,
    max_reconsume_times: Option<i32>,
}

impl SendHeader {
    fn parse(req: &RemotingCommand) -> Result<Self, String> {
        let v2 = req.code == request::SEND_MESSAGE_V2 || req.code == request::SEND_BATCH_MESSAGE;
        let k = |long: &'static str, short: &'static str| if v2 { short } else { long };
        let _producer_group: String = field(req, k("producerGroup", "a"))?;
        Ok(SendHeader {
            topic: field(req, k("topic", "b"))?,
            default_topic: opt_field(req, k("defaultTopic", "c"))?
                .unwrap_or_else(|| topics::AUTO_CREATE_TOPIC.to_owned()),
            default_topic_queue_nums: opt_field(req, k("defaultTopicQueueNums", "d"))?.unwrap_or(4),
            queue_id: field(req, k("queueId", "e"))?,
            sys_flag: opt_field(req, k("sysFlag", "f"))?.unwrap_or(0),
            born_timestamp: opt_field(req, k("bornTimestamp", "g"))?.unwrap_or(0),
            flag: opt_field(req, k("flag", "h"))?.unwrap_or(0),
            properties: opt_field(req, k("properties", "i"))?.unwrap_or_default(),
            reconsume_times: opt_field(req, k("reconsumeTimes", "j"))?.unwrap_or(0),
            batch: opt_field(req, k("batch", "m"))?.unwrap_or(false)
                || req.code == request::SEND_BATCH_MESSAGE,
            max_reconsume_times: opt_field(req, k("maxReconsumeTimes", "l"))?,
        })
    }
}

/// Decodes a batch body: per message `total, magic, bodyCRC, flag, bodyLen, body,
/// propsLen(i16), props`.
fn decode_batch(mut body: &[u8]) -> Result<Vec<(i32, Vec<u8>, String)>, String> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if b.len() < n {
            return Err("batch body truncated".into());
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Ok(h)
    }
    fn int(b: &mut &[u8]) -> Result<i32, String> {
        let x = take(b, 4)?;
        Ok(i32::from_be_bytes([x[0], x[1], x[2], x[3]]))
    }
    let mut out = Vec::new();
    while !body.is_empty() {
        let total = int(&mut body)?;
        let start_len = body.len();
        let _magic = int(&mut body)?;
        let _crc = int(&mut body)?;
        let flag = int(&mut body)?;
        let body_len = usize::try_from(int(&mut body)?).map_err(|_| "negative body length")?;
        let msg_body = take(&mut body, body_len)?.to_vec();
        let pl = take(&mut body, 2)?;
        let props_len = usize::try_from(i16::from_be_bytes([pl[0], pl[1]]))
            .map_err(|_| "negative properties length")?;
        let props = std::str::from_utf8(take(&mut body, props_len)?)
            .map_err(|_| "properties are not UTF-8")?
            .to_owned();
        if usize::try_from(total).ok() != Some(4 + start_len - body.len()) {
            return Err(format!("batch entry declares {total} bytes"));
        }
        out.push((flag, msg_body, props));
    }
    if out.is_empty() {
        return Err("empty batch".into());
    }
    Ok(out)
}

/// Adds the `extra` properties whose names `msg` does not already have.
fn with_missing_properties(mut msg: Message, extra: &[(&str, &str)]) -> Message {
    for (k, v) in extra {
        if msg.property(k).is_none() {
            msg = msg.with_property(k, v);
        }
    }
    msg
}

impl Broker {
    /// SEND_MESSAGE, SEND_MESSAGE_V2 or SEND_BATCH_MESSAGE from a client at `born_host`
    /// (also the console's test message, through the same checks and counters).
    ///
    /// # Errors
    /// A [`Reject`](super::Reject) with RocketMQ's code and remark for a send refused
    /// (bad header, unknown topic, no permission, a slave, a full or busy store, …).
    pub fn send(&self, born_host: SocketAddr, req: &RemotingCommand) -> Handled {
        if !self.config.is_master() {
            // Before anything else: a slave creates no topic for a send it cannot store.
            return reject(
                response::SERVICE_NOT_AVAILABLE,
                "service not available now: this broker is a slave (brokerRole=SLAVE); send to its master",
            );
        }
        let h = SendHeader::parse(req)?;
        if let Err(e) = topics::validate_topic(&h.topic) {
            return reject(response::SYSTEM_ERROR, e);
        }
        if topics::is_not_allowed_send(&h.topic) {
            return reject(
                response::SYSTEM_ERROR,
                format!("Sending message to topic[{}] is forbidden.", h.topic),
            );
        }
        let config = if h.topic.starts_with(topics::RETRY_GROUP_TOPIC_PREFIX) {
            let group = &h.topic[topics::RETRY_GROUP_TOPIC_PREFIX.len()..];
            Some(
                self.topics
                    .get(&h.topic)
                    .unwrap_or_else(|| self.topics.ensure_retry_topic(group)),
            )
        } else {
            self.topics
                .get_or_auto_create(&h.topic, &h.default_topic, h.default_topic_queue_nums)
        };
        let Some(config) = config else {
            return reject(
                response::TOPIC_NOT_EXIST,
                format!("topic[{}] not exist, apply first please!", h.topic),
            );
        };
        // A broker without write permission is drained through its routes (clients go
        // elsewhere); only ordered topics, whose clients keep to their queue, are refused.
        if !self.live.writable() && config.order {
            return reject(
                response::NO_PERMISSION,
                format!(
                    "the broker[{}] sending message is forbidden",
                    self.config.broker_ip1
                ),
            );
        }
        if !config.writable() {
            return reject(
                response::NO_PERMISSION,
                format!("the topic[{}] sending message is forbidden", h.topic),
            );
        }
        let queue_id = if h.queue_id < 0 {
            random_below(config.write_queue_nums.max(1))
        } else {
            let q = h.queue_id as u32;
            if q >= config.read_queue_nums.max(config.write_queue_nums) {
                return reject(
                    response::SYSTEM_ERROR,
                    format!(
                        "request queueId[{q}] is illegal, {:?} Producer: {born_host}",
                        config.topic_name
                    ),
                );
            }
            q
        };
        let cluster = [("CLUSTER", self.config.broker_cluster_name.as_str())];
        let template = Message {
            topic: h.topic.clone(),
            queue_id,
            flag: h.flag,
            body: Vec::new(),
            properties: String::new(),
            sys_flag: h.sys_flag,
            born_timestamp: h.born_timestamp,
            born_host,
            reconsume_times: h.reconsume_times,
            prepared_transaction_offset: 0,
        };
        let (result, uniq) = if h.batch {
            let entries = match decode_batch(&req.body) {
                Ok(e) => e,
                Err(e) => return reject(response::MESSAGE_ILLEGAL, e),
            };
            let batch_props: Vec<(&str, &str)> = format::parse_properties(&h.properties)
                .chain(cluster.iter().copied())
                .collect();
            let mut msgs: Vec<Message> = Vec::with_capacity(entries.len());
            for (flag, body, properties) in entries {
                let msg = Message {
                    flag,
                    body,
                    properties,
                    ..template.clone()
                };
                match self.route_sent(
                    with_missing_properties(msg, &batch_props),
                    h.max_reconsume_times,
                ) {
                    Ok(m) => msgs.push(m),
                    Err((code, remark)) => return reject(code, remark),
                }
            }
            let uniq: Vec<&str> = msgs
                .iter()
                .filter_map(|m| m.property(keys::UNIQ_KEY))
                .collect();
            let uniq = uniq.join(",");
            let waits = msgs.iter().all(Message::waits_for_store);
            let put = self.timed_append(|| self.store.put_batch(&msgs));
            (self.replicated(put, waits), uniq)
        } else {
            let msg = with_missing_properties(
                Message {
                    body: req.body.to_vec(),
                    properties: h.properties.clone(),
                    ..template
                },
                &cluster,
            );
            let msg = match self.route_sent(msg, h.max_reconsume_times) {
                Ok(m) => m,
                Err((code, remark)) => return reject(code, remark),
            };
            let uniq = msg.property(keys::UNIQ_KEY).unwrap_or_default().to_owned();
            let put = self.timed_append(|| self.store.put(&msg));
            (self.replicated(put, msg.waits_for_store()), uniq)
        };
        // Stored, whatever the status says about flushing or the slave.
        if let Ok(PutResult {
            appended: Some(a), ..
        }) = &result
        {
            self.metrics.stored(
                &h.topic,
                crate::state::metrics::message_type(&h.properties),
                u64::from(a.msg_count),
                a.wrote_bytes,
            );
        }
        self.send_response(req, queue_id, result, &uniq)
    }

    /// Runs a store append, timing it for `mqstore_append_latency_microseconds`.
    /// Runs an append, timing it for the append-latency histogram when metrics are on (off,
    /// the send path reads no clock for it).
    fn timed_append<T>(&self, append: impl FnOnce() -> T) -> T {
        if !self.metrics.enabled() {
            return append();
        }
        let started = std::time::Instant::now();
        let out = append();
        self.metrics.appended(started.elapsed());
        out
    }

    fn send_response(
        &self,
        req: &RemotingCommand,
        queue_id: u32,
        result: mqstore::Result<PutResult>,
        uniq: &str,
    ) -> Handled {
        let result = match result {
            Ok(r) => r,
            Err(mqstore::Error::DiskFull { .. }) => {
                return reject(
                    response::SYSTEM_ERROR,
                    "disk full: the message was not stored",
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "store failed a put");
                return reject(response::SYSTEM_ERROR, format!("store error: {e}"));
            }
        };
        let code = match result.status {
            PutStatus::PutOk => response::SUCCESS,
            PutStatus::FlushDiskTimeout => response::FLUSH_DISK_TIMEOUT,
            PutStatus::FlushSlaveTimeout => response::FLUSH_SLAVE_TIMEOUT,
            PutStatus::SlaveNotAvailable => response::SLAVE_NOT_AVAILABLE,
            PutStatus::MessageIllegal | PutStatus::PropertiesSizeExceeded => {
                response::MESSAGE_ILLEGAL
            }
            PutStatus::ServiceNotAvailable => response::SERVICE_NOT_AVAILABLE,
            PutStatus::DiskFull => {
                return reject(
                    response::SERVICE_NOT_AVAILABLE,
                    "service not available now: the broker's disk is full \
                     (above diskSpaceWarningLevelRatio); the message was not stored",
                );
            }
            PutStatus::OsPageCacheBusy => {
                return reject(
                    response::SYSTEM_ERROR,
                    "[PC_SYNCHRONIZED]broker busy, start flow control for a while",
                );
            }
            _ => response::SYSTEM_ERROR,
        };
        let Some(appended) = result.appended.filter(|_| {
            matches!(
                code,
                response::SUCCESS
                    | response::FLUSH_DISK_TIMEOUT
                    | response::FLUSH_SLAVE_TIMEOUT
                    | response::SLAVE_NOT_AVAILABLE
            )
        }) else {
            return reject(code, result.status.as_str());
        };
        self.stats
            .messages_stored
            .fetch_add(u64::from(appended.msg_count), Ordering::Relaxed);
        let mut resp = req
            .response(code)
            .with_ext("msgId", appended.msg_id())
            .with_ext("queueId", queue_id)
            .with_ext("queueOffset", appended.queue_offset.0)
            .with_ext("MSG_REGION", &self.config.region_id)
            .with_ext("TRACE_ON", self.config.trace_on);
        if !uniq.is_empty() {
            resp = resp.with_ext("transactionId", uniq);
        }
        reply(resp)
    }

    /// The send path's rules for one message: a `%RETRY%` message past its
    /// retries goes to the dead-letter queue; a transaction's prepare becomes a half
    /// message; a `DELAY` goes through the schedule topic.
    pub(super) fn route_sent(
        &self,
        msg: Message,
        max_reconsume_times: Option<i32>,
    ) -> Result<Message, (i32, String)> {
        let mut msg = msg;
        if let Some(group) = msg.topic.strip_prefix(RETRY_GROUP_TOPIC_PREFIX) {
            let group = group.to_owned();
            let Some(config) = self
                .subscriptions
                .find_or_create(&group, self.live.read().auto_create_subscription_group)
            else {
                return Err((
                    response::SUBSCRIPTION_GROUP_NOT_EXIST,
                    format!("subscription group not exist, {group}"),
                ));
            };
            let max = max_reconsume_times.unwrap_or(config.retry_max_times);
            if msg.reconsume_times >= max {
                let (topic, queue) = self.dead_letter(&group);
                tracing::info!(
                    group,
                    reconsume = msg.reconsume_times,
                    "retry message sent to the dead-letter queue"
                );
                self.metrics.sent_to_dlq(&topic, &group);
                msg.topic = topic;
                msg.queue_id = queue;
                msg = msg.without_property(keys::DELAY);
            }
        }
        if half_messages::is_prepare(&msg) {
            if self.live.read().reject_transaction_message {
                return Err((
                    response::NO_PERMISSION,
                    "the broker rejects transaction messages (rejectTransactionMessage)".into(),
                ));
            }
            return Ok(half_messages::to_half(msg));
        }
        self.apply_delay(msg)
            .map_err(|e| (response::MESSAGE_ILLEGAL, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn batch_body_decodes_and_rejects_lies() {
        let mut b = Vec::new();
        for (body, props) in [(&b"one"[..], "TAGS\u{1}A"), (&b"three"[..], "")] {
            let total = 4 + 4 + 4 + 4 + 4 + body.len() + 2 + props.len();
            b.put_i32(total as i32);
            b.put_i32(0);
            b.put_i32(0);
            b.put_i32(7);
            b.put_i32(body.len() as i32);
            b.put_slice(body);
            b.put_i16(props.len() as i16);
            b.put_slice(props.as_bytes());
        }
        let d = decode_batch(&b).expect("decodes");
        assert_eq!(d.len(), 2);
        assert_eq!(d[1].1, b"three");
        assert_eq!(d[0].2, "TAGS\u{1}A");
        b[3] = 99;
        assert!(decode_batch(&b).is_err());
        assert!(decode_batch(&b[..10]).is_err());
    }

    #[test]
    fn merged_properties_keep_inner_values() {
        let mut m = Message::new("T", 0, Vec::new());
        m.properties = "UNIQ_KEY\u{1}a\u{2}TAGS\u{1}x".into();
        let p = with_missing_properties(m, &[("UNIQ_KEY", "b"), ("CLUSTER", "c")]).properties;
        assert_eq!(format::property(&p, "UNIQ_KEY"), Some("a"));
        assert_eq!(format::property(&p, "CLUSTER"), Some("c"));
        assert_eq!(format::property(&p, "TAGS"), Some("x"));
    }
}

//! Delivery semantics on top of plain sends and pulls (§11): delay levels on the send
//! path, consumer send-back with retry and dead-letter topics, transaction end and
//! check-back, queue locks for orderly consumers, and the admin requests that go with
//! them.

use mqstore::format::{self, keys, SCHEDULE_TOPIC};
use mqstore::{Message, PhysicalOffset, PutStatus, QueueOffset};

use crate::broker::{error, field, opt_field, random_below, Broker, Outcome};
use crate::codes::{request, response};
use crate::locks::{LockBatchBody, MessageQueue};
use crate::remoting::{RemotingCommand, FLAG_ONEWAY};
use crate::subscriptions::SubscriptionGroupConfig;
use crate::topics::{DLQ_GROUP_TOPIC_PREFIX, RETRY_GROUP_TOPIC_PREFIX};
use crate::transaction::{self, props, CHECK_GROUP, CHECK_MAX_TOPIC, HALF_TOPIC, OP_TOPIC};

/// Property naming the topic a retried message came from.
pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
/// Property naming the first delivery's offset message id.
pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
/// Delay level of a first retry (10 s at RocketMQ's defaults); each retry adds one.
const FIRST_RETRY_DELAY_LEVEL: i32 = 3;

/// What the check round did (logged; read by tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Check-backs sent to a producer.
    pub checked: u64,
    /// Check-backs due whose producer group had no live connection.
    pub no_producer: u64,
    /// Half messages discarded after `transactionCheckMax` checks.
    pub discarded: u64,
}

/// Why a delay could not be applied.
fn bad_delay(raw: &str, max: usize) -> String {
    format!("DELAY `{raw}` is not a delay level (0 = none, 1..={max}; larger levels are capped)")
}

impl Broker {
    /// Applies `DELAY` (§11.1): a message with a level > 0 (capped at the highest) waits in
    /// the schedule topic, queue `level - 1`, with its real topic and queue in properties.
    pub(crate) fn apply_delay(&self, msg: Message) -> Result<Message, String> {
        let Some(raw) = msg.property(keys::DELAY).map(str::to_owned) else {
            return Ok(msg);
        };
        let max = self.schedule.levels().len();
        let level: i64 = raw.trim().parse().map_err(|_| bad_delay(&raw, max))?;
        if level < 0 {
            return Err(bad_delay(&raw, max));
        }
        if level == 0 || !msg.advances_queue() {
            return Ok(msg);
        }
        let level = (level as u64).min(max as u64);
        let topic = msg.topic.clone();
        let queue = msg.queue_id.to_string();
        let mut delayed = msg
            .with_property_replaced(keys::DELAY, &level.to_string())
            .with_property_replaced(keys::REAL_TOPIC, &topic)
            .with_property_replaced(keys::REAL_QID, &queue);
        SCHEDULE_TOPIC.clone_into(&mut delayed.topic);
        delayed.queue_id = (level - 1) as u32;
        Ok(delayed)
    }

    /// The dead-letter destination of `group` (one queue, created if missing).
    fn dead_letter(&self, group: &str) -> (String, u32) {
        let topic = format!("{DLQ_GROUP_TOPIC_PREFIX}{group}");
        self.topics.ensure_topic(&topic, 1);
        (topic, 0)
    }

    /// The send path's rules for one message (§11.2, §11.3): a `%RETRY%` message past its
    /// retries goes to the dead-letter queue; a transaction's prepare becomes a half
    /// message; a `DELAY` goes through the schedule topic.
    pub(crate) fn route_sent(
        &self,
        msg: Message,
        max_reconsume_times: Option<i32>,
    ) -> Result<Message, (i32, String)> {
        let mut msg = msg;
        if let Some(group) = msg.topic.strip_prefix(RETRY_GROUP_TOPIC_PREFIX) {
            let group = group.to_owned();
            let Some(config) = self.subscriptions.find_or_create(&group) else {
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
                msg.topic = topic;
                msg.queue_id = queue;
                msg = msg.without_property(keys::DELAY);
            }
        }
        if transaction::is_prepare(&msg) {
            if self.config.reject_transaction_message {
                return Err((
                    response::NO_PERMISSION,
                    "the broker rejects transaction messages (rejectTransactionMessage)".into(),
                ));
            }
            return Ok(transaction::to_half(msg));
        }
        self.apply_delay(msg)
            .map_err(|e| (response::MESSAGE_ILLEGAL, e))
    }

    /// CONSUMER_SEND_MSG_BACK (§11.2): the consumer failed the message at `offset`; store
    /// a copy for `%RETRY%group` after a delay, or in `%DLQ%group` when retries are used up.
    pub(crate) fn send_back(&self, req: &RemotingCommand) -> Outcome {
        let parsed = (|| -> Result<_, String> {
            Ok((
                field::<u64>(req, "offset")?,
                field::<String>(req, "group")?,
                opt_field::<i32>(req, "delayLevel")?.unwrap_or(0),
                opt_field::<i32>(req, "maxReconsumeTimes")?,
            ))
        })();
        let (offset, group, delay_level, header_max) = match parsed {
            Ok(p) => p,
            Err(e) => return error(req, response::SYSTEM_ERROR, e),
        };
        let Some(config) = self.subscriptions.find_or_create(&group) else {
            return error(
                req,
                response::SUBSCRIPTION_GROUP_NOT_EXIST,
                format!("subscription group not exist, {group}"),
            );
        };
        if config.retry_queue_nums == 0 {
            return Outcome::Reply(req.response(response::SUCCESS));
        }
        let Ok(Some(record)) = self.store.read(PhysicalOffset(offset)) else {
            return error(
                req,
                response::SYSTEM_ERROR,
                format!("look message by offset failed, {offset}"),
            );
        };
        let Ok(v) = record.view() else {
            return error(
                req,
                response::SYSTEM_ERROR,
                format!("look message by offset failed, {offset}"),
            );
        };
        if !format::enters_consume_queue(v.sys_flag) || v.topic == HALF_TOPIC {
            return error(
                req,
                response::SYSTEM_ERROR,
                format!("the record at {offset} is not a consumable message"),
            );
        }
        let mut msg = v.to_message();
        if msg.property(RETRY_TOPIC).is_none() {
            msg = msg.with_property(RETRY_TOPIC, v.topic);
        }
        if msg.property(ORIGIN_MESSAGE_ID).is_none() {
            msg = msg.with_property(
                ORIGIN_MESSAGE_ID,
                &format::offset_msg_id(v.store_host, offset),
            );
        }
        let max = header_max.unwrap_or(config.retry_max_times);
        msg = msg.without_property(keys::DELAY);
        if v.reconsume_times >= max || delay_level < 0 {
            let (topic, queue) = self.dead_letter(&group);
            tracing::info!(
                group,
                offset,
                reconsume = v.reconsume_times,
                "message sent to the dead-letter queue"
            );
            msg.topic = topic;
            msg.queue_id = queue;
        } else {
            let retry = self.topics.ensure_retry_topic(&group);
            msg.topic.clone_from(&retry.topic_name);
            msg.queue_id = random_below(config.retry_queue_nums.min(retry.write_queue_nums).max(1));
            let level = if delay_level == 0 {
                FIRST_RETRY_DELAY_LEVEL + v.reconsume_times
            } else {
                delay_level
            };
            msg = msg.with_property(keys::DELAY, &level.to_string());
        }
        msg.reconsume_times = v.reconsume_times + 1;
        drop(record);
        let msg = match self.apply_delay(msg) {
            Ok(m) => m,
            Err(e) => return error(req, response::SYSTEM_ERROR, e),
        };
        match self.store.put(&msg) {
            Ok(r) if r.appended.is_some() => {
                self.note_stored(1);
                Outcome::Reply(req.response(response::SUCCESS))
            }
            Ok(r) => error(req, response::SYSTEM_ERROR, r.status.as_str()),
            Err(e) => error(req, response::SYSTEM_ERROR, format!("store error: {e}")),
        }
    }

    /// END_TRANSACTION (§11.3): commit or roll back the half message the header names.
    pub(crate) fn end_transaction(&self, req: &RemotingCommand) -> Outcome {
        let parsed = (|| -> Result<_, String> {
            Ok((
                field::<String>(req, "producerGroup")?,
                field::<u64>(req, "tranStateTableOffset")?,
                field::<u64>(req, "commitLogOffset")?,
                field::<i32>(req, "commitOrRollback")?,
                opt_field::<bool>(req, "fromTransactionCheck")?.unwrap_or(false),
            ))
        })();
        let (group, queue_offset, log_offset, kind, from_check) = match parsed {
            Ok(p) => p,
            Err(e) => return error(req, response::SYSTEM_ERROR, e),
        };
        let commit = match kind {
            format::TRANSACTION_NOT_TYPE => {
                tracing::debug!(
                    group,
                    queue_offset,
                    from_check,
                    "transaction state unknown; left for check-back"
                );
                return Outcome::Reply(req.response(response::SUCCESS));
            }
            format::TRANSACTION_COMMIT_TYPE => true,
            format::TRANSACTION_ROLLBACK_TYPE => false,
            other => {
                return error(
                    req,
                    response::SYSTEM_ERROR,
                    format!(
                    "commitOrRollback {other} is none of 0 (unknown), 8 (commit), 12 (rollback)"
                ),
                )
            }
        };
        let Ok(Some(record)) = self.store.read(PhysicalOffset(log_offset)) else {
            return error(
                req,
                response::SYSTEM_ERROR,
                "Find prepared transaction message failed",
            );
        };
        let Ok(v) = record.view() else {
            return error(
                req,
                response::SYSTEM_ERROR,
                "Find prepared transaction message failed",
            );
        };
        if v.topic != HALF_TOPIC {
            return error(
                req,
                response::SYSTEM_ERROR,
                format!("the record at {log_offset} is not a prepared transaction message"),
            );
        }
        if v.property(props::PGROUP) != Some(group.as_str()) {
            return error(req, response::SYSTEM_ERROR, "The producer group wrong");
        }
        if v.queue_offset as u64 != queue_offset {
            return error(
                req,
                response::SYSTEM_ERROR,
                "The transaction state table offset wrong",
            );
        }
        if v.physical_offset as u64 != log_offset {
            return error(req, response::SYSTEM_ERROR, "The commit log offset wrong");
        }
        let uniq = v.property(keys::UNIQ_KEY).map(str::to_owned);
        if self.transactions.is_resolved(queue_offset, uniq.as_deref()) {
            tracing::info!(
                group,
                queue_offset,
                "transaction already resolved; END_TRANSACTION ignored"
            );
            return Outcome::Reply(req.response(response::SUCCESS));
        }
        if commit {
            let Some(real) = transaction::committed(&v) else {
                return error(
                    req,
                    response::SYSTEM_ERROR,
                    "the half message names no real topic",
                );
            };
            drop(record);
            let real = match self.apply_delay(real) {
                Ok(m) => m,
                Err(e) => return error(req, response::SYSTEM_ERROR, e),
            };
            match self.store.put(&real) {
                Ok(r) if r.appended.is_some() => self.note_stored(1),
                Ok(r) => return error(req, response::SYSTEM_ERROR, r.status.as_str()),
                Err(e) => return error(req, response::SYSTEM_ERROR, format!("store error: {e}")),
            }
        } else {
            drop(record);
        }
        if let Err(e) = self.write_op(queue_offset) {
            // The commit stands; without the op message the half message is checked
            // back again and the producer's answer is then ignored as resolved.
            tracing::error!(error = %e, queue_offset, "could not record a transaction resolution");
        }
        self.transactions
            .mark_resolved(queue_offset, uniq.as_deref());
        tracing::debug!(group, queue_offset, commit, from_check, "transaction ended");
        Outcome::Reply(req.response(response::SUCCESS))
    }

    fn write_op(&self, half_queue_offset: u64) -> Result<(), String> {
        let uniq = self.transactions.new_uniq_key();
        let op = transaction::op_message(half_queue_offset, self.config.broker_addr(), &uniq);
        match self.store.put(&op) {
            Ok(r) if r.appended.is_some() => Ok(()),
            Ok(r) => Err(r.status.as_str().to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// One check round (§11.3, `transactionCheckInterval`): every half message older
    /// than `transactionTimeOut` without a resolution is re-appended to the half queue
    /// (so the round's offset can advance) and its producer group asked
    /// CHECK_TRANSACTION_STATE; after `transactionCheckMax` checks it is discarded into
    /// `TRANS_CHECK_MAX_TIME_TOPIC`.
    pub fn check_transactions(&self) -> CheckReport {
        let mut report = CheckReport::default();
        let store = &self.store;
        self.transactions.read_ops(store);
        let round_start = crate::topics::now_millis();
        let min = store.min_offset_in_queue(HALF_TOPIC, 0).0;
        let max = store.max_offset_in_queue(HALF_TOPIC, 0).0;
        let mut at = self
            .offsets
            .query(CHECK_GROUP, HALF_TOPIC, 0)
            .and_then(|o| u64::try_from(o).ok())
            .unwrap_or(min)
            .max(min);
        let file_reserved_ms = i64::from(store.config().file_reserved_time) * 3_600_000;
        while at < max {
            let Some(phys) = store.commit_log_offset_in_queue(HALF_TOPIC, 0, QueueOffset(at))
            else {
                at += 1;
                continue;
            };
            let Ok(Some(record)) = store.read(phys) else {
                at += 1;
                continue;
            };
            let Ok(v) = record.view() else {
                at += 1;
                continue;
            };
            let uniq = v.property(keys::UNIQ_KEY).map(str::to_owned);
            if self.transactions.is_resolved(at, uniq.as_deref()) {
                at += 1;
                continue;
            }
            if v.store_timestamp >= round_start {
                break;
            }
            let now = crate::topics::now_millis();
            let age = now - v.born_timestamp;
            let immunity = v
                .property(props::CHECK_IMMUNITY)
                .and_then(|s| s.parse::<i64>().ok())
                .map_or(self.config.transaction_timeout.as_millis() as i64, |s| {
                    s * 1000
                });
            if age < immunity {
                break;
            }
            let times: u32 = v
                .property(props::CHECK_TIMES)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let mut msg = v.to_message();
            if times >= self.config.transaction_check_max || age > file_reserved_ms {
                CHECK_MAX_TOPIC.clone_into(&mut msg.topic);
                msg.queue_id = 0;
                drop(record);
                match store.put(&msg) {
                    Ok(r) if r.appended.is_some() => {
                        tracing::info!(
                            half_offset = at,
                            checks = times,
                            "half message discarded after its last check"
                        );
                        report.discarded += 1;
                        self.transactions.mark_resolved(at, uniq.as_deref());
                    }
                    _ => break,
                }
                at += 1;
                continue;
            }
            msg = msg.with_property_replaced(props::CHECK_TIMES, &(times + 1).to_string());
            let group = v.property(props::PGROUP).unwrap_or_default().to_owned();
            drop(record);
            let appended = match store.put(&msg) {
                Ok(r) => match r.appended {
                    Some(a)
                        if r.status == PutStatus::PutOk
                            || r.status == PutStatus::FlushDiskTimeout =>
                    {
                        a
                    }
                    _ => break,
                },
                Err(e) => {
                    tracing::error!(error = %e, "could not re-append a half message; check round stopped");
                    break;
                }
            };
            if self.send_check(&group, &appended) {
                report.checked += 1;
            } else {
                report.no_producer += 1;
            }
            at += 1;
        }
        self.offsets.commit(
            CHECK_GROUP,
            HALF_TOPIC,
            0,
            i64::try_from(at).unwrap_or(i64::MAX),
        );
        let op_from = self
            .offsets
            .query(CHECK_GROUP, OP_TOPIC, 0)
            .and_then(|o| u64::try_from(o).ok())
            .unwrap_or(0);
        let op_at = transaction::op_offset_after(store, op_from, at);
        self.offsets.commit(
            CHECK_GROUP,
            OP_TOPIC,
            0,
            i64::try_from(op_at).unwrap_or(i64::MAX),
        );
        self.transactions.forget_below(at);
        if report != CheckReport::default() {
            tracing::info!(?report, half_offset = at, "transaction check round");
        }
        report
    }

    /// Sends CHECK_TRANSACTION_STATE (oneway) for the half message just re-appended at
    /// `appended` to a live producer of `group`; false when none is connected.
    fn send_check(&self, group: &str, appended: &mqstore::Appended) -> bool {
        let Some(channel) = self.clients.producer_channel(group) else {
            tracing::debug!(group, "no live producer for a transaction check");
            return false;
        };
        let Ok(Some(record)) = self.store.read(appended.physical_offset) else {
            return false;
        };
        let Ok(v) = record.view() else {
            return false;
        };
        let Some(body) = transaction::check_body(
            &v,
            appended.physical_offset,
            appended.queue_offset.0,
            v.store_timestamp,
            self.store.config().max_message_size,
        ) else {
            return false;
        };
        let uniq = v.property(keys::UNIQ_KEY).unwrap_or_default();
        let mut cmd = RemotingCommand::request(request::CHECK_TRANSACTION_STATE)
            .with_ext("tranStateTableOffset", appended.queue_offset.0)
            .with_ext("commitLogOffset", appended.physical_offset.0)
            .with_ext("msgId", uniq)
            .with_ext("transactionId", uniq)
            .with_ext(
                "offsetMsgId",
                format::offset_msg_id(v.store_host, appended.physical_offset.0),
            )
            .with_body(body);
        cmd.flag = FLAG_ONEWAY;
        cmd.opaque = self.clients.next_opaque();
        if channel.tx.try_send(cmd).is_err() {
            tracing::warn!(group, remote = %channel.remote, "transaction check not queued (connection busy or closed)");
            return false;
        }
        true
    }

    /// LOCK_BATCH_MQ (§13.9): locks (or renews) the queues for the client; answers the
    /// ones it holds. Queues of an unknown topic, or beyond its queue count, are refused
    /// with TOPIC_NOT_EXIST and nothing in the request is locked.
    pub(crate) fn lock_batch(&self, req: &RemotingCommand) -> Outcome {
        let body: LockBatchBody = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => return error(req, response::SYSTEM_ERROR, format!("lock body: {e}")),
        };
        if let Some(bad) = body.mq_set.iter().find(|q| !self.queue_exists(q)) {
            return error(
                req,
                response::TOPIC_NOT_EXIST,
                format!(
                    "topic[{}] queue {} does not exist on this broker; nothing locked",
                    bad.topic, bad.queue_id
                ),
            );
        }
        let locked = self.locks.try_lock(
            &body.consumer_group,
            &body.client_id,
            &body.mq_set,
            self.config.rebalance_lock_max_live_time,
        );
        let reply = serde_json::json!({ "lockOKMQSet": locked });
        Outcome::Reply(req.response(response::SUCCESS).with_body(reply.to_string()))
    }

    fn queue_exists(&self, q: &MessageQueue) -> bool {
        self.topics.get(&q.topic).is_some_and(|c| {
            q.queue_id >= 0 && (q.queue_id as u32) < c.read_queue_nums.max(c.write_queue_nums)
        })
    }

    /// UNLOCK_BATCH_MQ: releases the client's locks on the queues.
    pub(crate) fn unlock_batch(&self, req: &RemotingCommand) -> Outcome {
        let body: LockBatchBody = match serde_json::from_slice(&req.body) {
            Ok(b) => b,
            Err(e) => return error(req, response::SYSTEM_ERROR, format!("unlock body: {e}")),
        };
        self.locks
            .unlock(&body.consumer_group, &body.client_id, &body.mq_set);
        Outcome::Reply(req.response(response::SUCCESS))
    }

    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: body = a SubscriptionGroupConfig.
    pub(crate) fn put_subscription_group(&self, req: &RemotingCommand) -> Outcome {
        match serde_json::from_slice::<SubscriptionGroupConfig>(&req.body) {
            Ok(c) if !c.group_name.is_empty() => {
                tracing::info!(group = %c.group_name, "subscription group created or updated");
                self.subscriptions.put(c);
                Outcome::Reply(req.response(response::SUCCESS))
            }
            Ok(_) => error(req, response::SYSTEM_ERROR, "groupName is empty"),
            Err(e) => error(
                req,
                response::SYSTEM_ERROR,
                format!("subscription group body: {e}"),
            ),
        }
    }

    /// DELETE_EXPIRED_COMMITLOG: the next cleanup passes delete expired files whatever the
    /// hour; one runs now.
    pub(crate) fn delete_expired_now(&self, req: &RemotingCommand) -> Outcome {
        self.store.delete_expired_files_manually();
        match self.store.run_cleanup() {
            Ok(r) => {
                tracing::info!(
                    removed = r.removed.len(),
                    "expired files deleted on request"
                );
                Outcome::Reply(req.response(response::SUCCESS))
            }
            Err(e) => error(req, response::SYSTEM_ERROR, format!("cleanup: {e}")),
        }
    }

    /// Counts stored messages.
    pub(crate) fn note_stored(&self, n: u64) {
        self.stats
            .messages_stored
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
}

//! Transactions: END_TRANSACTION (commit or roll back a half message) and the check round
//! that asks producers about halves left open.

use mqstore::format::{self, keys};
use mqstore::{PhysicalOffset, PutStatus, QueueOffset};

use crate::broker::Broker;
use crate::delivery::half_messages::{
    self, props, CHECK_GROUP, CHECK_MAX_TOPIC, HALF_TOPIC, OP_TOPIC,
};
use crate::remoting::codes::{request, response};
use crate::remoting::RemotingCommand;
use crate::remoting::FLAG_ONEWAY;

use super::{field, opt_field, reject, reply, Handled};

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

impl Broker {
    /// END_TRANSACTION: commit or roll back the half message the header names.
    pub(super) fn end_transaction(&self, req: &RemotingCommand) -> Handled {
        let parsed = (|| -> Result<_, String> {
            Ok((
                field::<String>(req, "producerGroup")?,
                field::<u64>(req, "tranStateTableOffset")?,
                field::<u64>(req, "commitLogOffset")?,
                field::<i32>(req, "commitOrRollback")?,
                opt_field::<bool>(req, "fromTransactionCheck")?.unwrap_or(false),
            ))
        })();
        let (group, queue_offset, log_offset, kind, from_check) = parsed?;
        let commit = match kind {
            format::TRANSACTION_NOT_TYPE => {
                tracing::debug!(
                    group,
                    queue_offset,
                    from_check,
                    "transaction state unknown; left for check-back"
                );
                return reply(req.response(response::SUCCESS));
            }
            format::TRANSACTION_COMMIT_TYPE => true,
            format::TRANSACTION_ROLLBACK_TYPE => false,
            other => {
                return reject(
                    response::SYSTEM_ERROR,
                    format!(
                    "commitOrRollback {other} is none of 0 (unknown), 8 (commit), 12 (rollback)"
                ),
                )
            }
        };
        let Ok(Some(record)) = self.store.read(PhysicalOffset(log_offset)) else {
            return reject(
                response::SYSTEM_ERROR,
                "Find prepared transaction message failed",
            );
        };
        let Ok(v) = record.view() else {
            return reject(
                response::SYSTEM_ERROR,
                "Find prepared transaction message failed",
            );
        };
        if v.topic != HALF_TOPIC {
            return reject(
                response::SYSTEM_ERROR,
                format!("the record at {log_offset} is not a prepared transaction message"),
            );
        }
        if v.property(props::PGROUP) != Some(group.as_str()) {
            return reject(response::SYSTEM_ERROR, "The producer group wrong");
        }
        if v.queue_offset as u64 != queue_offset {
            return reject(
                response::SYSTEM_ERROR,
                "The transaction state table offset wrong",
            );
        }
        if v.physical_offset as u64 != log_offset {
            return reject(response::SYSTEM_ERROR, "The commit log offset wrong");
        }
        let uniq = v.property(keys::UNIQ_KEY).map(str::to_owned);
        if self.transactions.is_resolved(queue_offset, uniq.as_deref()) {
            tracing::info!(
                group,
                queue_offset,
                "transaction already resolved; END_TRANSACTION ignored"
            );
            return reply(req.response(response::SUCCESS));
        }
        if commit {
            let Some(real) = half_messages::committed(&v) else {
                return reject(
                    response::SYSTEM_ERROR,
                    "the half message names no real topic",
                );
            };
            drop(record);
            let real = self.apply_delay(real)?;
            match self.store.put(&real) {
                Ok(r) if r.appended.is_some() => self.note_stored(1),
                Ok(r) => return reject(response::SYSTEM_ERROR, r.status.as_str()),
                Err(e) => return reject(response::SYSTEM_ERROR, format!("store error: {e}")),
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
        reply(req.response(response::SUCCESS))
    }

    pub(super) fn write_op(&self, half_queue_offset: u64) -> Result<(), String> {
        let uniq = self.transactions.new_uniq_key();
        let op = half_messages::op_message(half_queue_offset, self.config.broker_addr(), &uniq);
        match self.store.put(&op) {
            Ok(r) if r.appended.is_some() => Ok(()),
            Ok(r) => Err(r.status.as_str().to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// One check round (every `transactionCheckInterval`): every half message older
    /// than `transactionTimeOut` without a resolution is re-appended to the half queue
    /// (so the round's offset can advance) and its producer group asked
    /// CHECK_TRANSACTION_STATE; after `transactionCheckMax` checks it is discarded into
    /// `TRANS_CHECK_MAX_TIME_TOPIC`.
    pub fn check_transactions(&self) -> CheckReport {
        let mut report = CheckReport::default();
        let store = &self.store;
        self.transactions.read_ops(store);
        let round_start = crate::state::metadata::now_millis();
        let min = store.min_offset_in_queue(HALF_TOPIC, 0).0;
        let max = store.max_offset_in_queue(HALF_TOPIC, 0).0;
        let mut at = self
            .offsets
            .query(CHECK_GROUP, HALF_TOPIC, 0)
            .and_then(|o| u64::try_from(o).ok())
            .unwrap_or(min)
            .max(min);
        let file_reserved_ms =
            i64::try_from(store.config().file_reserved_time.as_millis()).unwrap_or(i64::MAX);
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
            let now = crate::state::metadata::now_millis();
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
        let op_at = half_messages::op_offset_after(store, op_from, at);
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
    pub(super) fn send_check(&self, group: &str, appended: &mqstore::Appended) -> bool {
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
        let Some(body) = half_messages::check_body(
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
}

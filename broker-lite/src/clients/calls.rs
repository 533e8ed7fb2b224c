//! The broker's own requests to connected clients: oneway notices to a consumer group, and
//! calls that wait for the client's answer (matched by opaque and connection).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::Duration;

use super::{Channel, ConnectedClients};
use crate::remoting::codes::request;
use crate::remoting::{RemotingCommand, FLAG_ONEWAY};

/// Why a request to a client got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The connection's outbound queue is full or the connection is gone.
    #[error("the request could not be queued on the client's connection")]
    NotSent,
    /// Nothing came back in time (or the connection closed meanwhile).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl ConnectedClients {
    /// A fresh opaque for a server-initiated request.
    pub fn next_opaque(&self) -> i32 {
        self.next_opaque.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends NOTIFY_CONSUMER_IDS_CHANGED (oneway) to every member of `group`. A member
    /// whose queue is full misses it; clients rebalance every 20 s anyway.
    pub fn notify_ids_changed(&self, group: &str) {
        self.oneway_to_consumers(group, || {
            RemotingCommand::request(request::NOTIFY_CONSUMER_IDS_CHANGED)
                .with_ext("consumerGroup", group)
        });
    }

    /// Sends the request `make` builds, oneway, to every member of consumer group `group`;
    /// returns how many it was queued for (a member whose queue is full misses it).
    pub fn oneway_to_consumers(&self, group: &str, make: impl Fn() -> RemotingCommand) -> usize {
        let mut queued = 0;
        for ch in self.consumer_channels(group) {
            let mut cmd = make();
            cmd.flag = FLAG_ONEWAY;
            cmd.opaque = self.next_opaque();
            if ch.tx.try_send(cmd).is_ok() {
                queued += 1;
            } else {
                tracing::debug!(group, remote = %ch.remote, "request to a consumer not queued");
            }
        }
        queued
    }

    /// Sends `cmd` to a client over its connection and waits (blocking the calling thread:
    /// call from the blocking pool) for the answer, at most `timeout`.
    ///
    /// # Errors
    /// [`CallError`] when it could not be sent or nothing came back in time.
    pub fn call(
        &self,
        channel: &Channel,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, CallError> {
        let opaque = self.next_opaque();
        cmd.opaque = opaque;
        cmd.flag &= !FLAG_ONEWAY;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.lock_awaiting().insert(opaque, (channel.id, tx));
        let result = if channel.tx.try_send(cmd).is_ok() {
            rx.recv_timeout(timeout)
                .map_err(|_| CallError::Timeout(timeout))
        } else {
            Err(CallError::NotSent)
        };
        self.lock_awaiting().remove(&opaque);
        result
    }

    /// An answer that arrived on connection `channel_id`: handed to the [`call`](Self::call)
    /// waiting for it. False when nobody waits (late, or not from the connection asked).
    pub fn answer(&self, channel_id: u64, response: RemotingCommand) -> bool {
        let mut awaiting = self.lock_awaiting();
        let asked_there =
            matches!(awaiting.get(&response.opaque), Some((from, _)) if *from == channel_id);
        asked_there
            && awaiting
                .remove(&response.opaque)
                .is_some_and(|(_, tx)| tx.try_send(response).is_ok())
    }

    fn lock_awaiting(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<i32, (u64, std::sync::mpsc::SyncSender<RemotingCommand>)>>
    {
        self.awaiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

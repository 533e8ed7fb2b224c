//! Registration with RocketMQ name servers (`namesrvAddr`, `;`-separated): REGISTER_BROKER
//! with every topic at start, every `registerNameServerPeriod` and as soon as the topic
//! table changes; UNREGISTER_BROKER at shutdown.
//!
//! Each name server has its own task and its own long-lived connection: a name server
//! drops the routes of a broker whose registering connection closes (RocketMQ's
//! `BrokerHousekeepingService`), so a connection per registration would undo each one as
//! it closed. One name server that is down, slow or answers nonsense is logged and tried
//! again at the next period; it never delays the others or the broker.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::client::Client;
use crate::remoting::codes::{request, response};
use crate::remoting::RemotingCommand;

/// The `bodyCrc32` header: RocketMQ's `UtilAll.crc32` of the body, the same masked CRC the
/// store writes into records (a name server recomputes it and refuses a mismatch).
pub fn body_crc32(body: &[u8]) -> i32 {
    // 31 bits: always a non-negative i32.
    mqstore::format::crc32(body) as i32
}

/// The REGISTER_BROKER body: RocketMQ 5's `RegisterBrokerBody` uncompressed, i.e. a
/// `TopicConfigAndMappingSerializeWrapper` (every topic, the table's data version, no
/// static-topic mappings) and an empty filter-server list. RocketMQ 4.9 name servers read
/// the same text and skip the fields they do not know.
pub fn register_body(broker: &Broker) -> String {
    let broker_permission = broker.live.read().broker_permission;
    let topics: serde_json::Map<String, serde_json::Value> = broker
        .topics
        .all()
        .into_iter()
        .map(|t| t.advertised(broker_permission))
        .filter_map(|t| Some((t.topic_name.clone(), serde_json::to_value(t).ok()?)))
        .collect();
    let version = broker.topics.data_version();
    serde_json::json!({
        "topicConfigSerializeWrapper": {
            "topicConfigTable": topics,
            "dataVersion": {
                "stateVersion": 0,
                "timestamp": version.timestamp,
                "counter": version.counter,
            },
            "topicQueueMappingInfoMap": {},
            "topicQueueMappingDetailMap": {},
            "mappingDataVersion": { "stateVersion": 0, "timestamp": 0, "counter": 0 },
        },
        "filterServerList": [],
    })
    .to_string()
}

/// The REGISTER_BROKER request: RocketMQ's `RegisterBrokerRequestHeader` and the body of
/// [`register_body`].
pub fn register_request(broker: &Broker) -> RemotingCommand {
    let c = &broker.config;
    let body = register_body(broker);
    let ha = SocketAddr::new(c.broker_ip1, c.ha_port());
    RemotingCommand::request(request::REGISTER_BROKER)
        .with_ext("brokerName", &c.broker_name)
        .with_ext("brokerAddr", c.broker_addr())
        .with_ext("clusterName", &c.broker_cluster_name)
        .with_ext("haServerAddr", ha)
        .with_ext("brokerId", c.broker_id)
        .with_ext("enableActingMaster", false)
        .with_ext("compressed", false)
        .with_ext("bodyCrc32", body_crc32(body.as_bytes()))
        .with_body(body)
}

/// The UNREGISTER_BROKER request.
pub fn unregister_request(broker: &Broker) -> RemotingCommand {
    let c = &broker.config;
    RemotingCommand::request(request::UNREGISTER_BROKER)
        .with_ext("brokerName", &c.broker_name)
        .with_ext("brokerAddr", c.broker_addr())
        .with_ext("clusterName", &c.broker_cluster_name)
        .with_ext("brokerId", c.broker_id)
}

/// One name server and the connection kept to it.
struct NameServerLink {
    addr: String,
    timeout: Duration,
    client: Option<Client>,
}

impl NameServerLink {
    /// Sends `cmd` on the kept connection, opening it first if there is none; a
    /// connection that turns out closed is replaced once. Any failure drops the
    /// connection, so the next call starts on a fresh one.
    async fn call(&mut self, cmd: &RemotingCommand) -> Result<RemotingCommand, String> {
        for fresh in [self.client.is_none(), true] {
            if fresh {
                self.client = None;
                let sock = self
                    .addr
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| format!("cannot resolve {}", self.addr))?;
                let client = tokio::time::timeout(self.timeout, Client::connect(sock))
                    .await
                    .map_err(|_| format!("connect timed out after {:?}", self.timeout))?
                    .map_err(|e| format!("cannot connect: {e}"))?;
                self.client = Some(client);
            }
            let Some(client) = &self.client else {
                continue;
            };
            match client.invoke(cmd.clone(), self.timeout).await {
                Ok(resp) if resp.code == response::SUCCESS => return Ok(resp),
                Ok(resp) => {
                    return Err(format!(
                        "answered code {} {}",
                        resp.code,
                        resp.remark.unwrap_or_default()
                    ))
                }
                Err(crate::client::ClientError::Closed) if !fresh => {
                    // The kept connection died (the name server restarted): once more on
                    // a new one.
                    self.client = None;
                }
                Err(e) => {
                    self.client = None;
                    return Err(e.to_string());
                }
            }
        }
        Err("connection closed".into())
    }
}

/// Keeps this broker registered with every name server of `namesrvAddr` until `stop`,
/// then unregisters from each.
pub async fn run(broker: Arc<Broker>, stop: CancellationToken) {
    let tasks: Vec<_> = broker
        .config
        .namesrv_addr
        .iter()
        .map(|addr| {
            tokio::spawn(keep_registered(
                Arc::clone(&broker),
                addr.clone(),
                stop.clone(),
            ))
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

async fn keep_registered(broker: Arc<Broker>, addr: String, stop: CancellationToken) {
    let mut link = NameServerLink {
        addr,
        timeout: broker.config.register_broker_timeout,
        client: None,
    };
    let mut topics_changed = broker.topics.watch();
    let mut tick = tokio::time::interval(broker.config.register_name_server_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut registered = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
            changed = topics_changed.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
        // A registration outlasting the stop is abandoned: shutdown never waits for
        // more than one timeout per name server.
        let registration = register_request(&broker);
        let outcome = tokio::select! {
            () = stop.cancelled() => break,
            r = link.call(&registration) => r,
        };
        match outcome {
            Ok(resp) => {
                if registered {
                    tracing::debug!(namesrv = %link.addr, "registered");
                } else {
                    tracing::info!(namesrv = %link.addr, "registered with the name server");
                    registered = true;
                }
                // A slave learns its master from the answer.
                if !broker.config.is_master() {
                    broker
                        .ha
                        .learn_master(resp.ext("masterAddr"), resp.ext("haServerAddr"));
                }
            }
            Err(e) => {
                registered = false;
                tracing::warn!(
                    namesrv = %link.addr,
                    error = %e,
                    retry_in = ?broker.config.register_name_server_period,
                    "registration failed"
                );
            }
        }
    }
    if let Err(e) = link.call(&unregister_request(&broker)).await {
        tracing::warn!(namesrv = %link.addr, error = %e, "unregistration failed");
    }
}

#[cfg(test)]
mod tests {
    use super::body_crc32;

    #[test]
    fn body_crc_is_rocketmqs_masked_crc32() {
        // crc32("123456789") = 0xCBF43926; the sign bit cleared: 0x4BF43926.
        assert_eq!(body_crc32(b"123456789"), 0x4BF4_3926);
        assert!(body_crc32(&[0xFF; 64]) >= 0);
    }
}

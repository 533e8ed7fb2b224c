//! Registration with external RocketMQ name servers (`namesrvAddr`): REGISTER_BROKER
//! at start and every `registerNameServerPeriod`, UNREGISTER_BROKER at shutdown.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::broker::Broker;
use crate::outbound::Client;
use crate::remoting::codes::{request, response};
use crate::remoting::RemotingCommand;

const TIMEOUT: Duration = Duration::from_secs(3);

fn resolve(addr: &str) -> Option<SocketAddr> {
    addr.to_socket_addrs().ok()?.next()
}

/// The REGISTER_BROKER request (uncompressed body, CRC of the body in the header).
pub fn register_request(broker: &Broker) -> RemotingCommand {
    let c = &broker.config;
    let topics: serde_json::Map<String, serde_json::Value> = broker
        .topics
        .all()
        .into_iter()
        .filter_map(|t| Some((t.topic_name.clone(), serde_json::to_value(t).ok()?)))
        .collect();
    let body = serde_json::json!({
        "topicConfigSerializeWrapper": {
            "topicConfigTable": topics,
            "dataVersion": { "timestamp": crate::metadata::now_millis(), "counter": 0 },
        },
        "filterServerList": [],
    })
    .to_string();
    let ha = SocketAddr::new(c.broker_ip1, c.ha_port());
    RemotingCommand::request(request::REGISTER_BROKER)
        .with_ext("brokerName", &c.broker_name)
        .with_ext("brokerAddr", c.broker_addr())
        .with_ext("clusterName", &c.broker_cluster_name)
        .with_ext("haServerAddr", ha)
        .with_ext("brokerId", c.broker_id)
        .with_ext("compressed", false)
        .with_ext("bodyCrc32", crc32fast::hash(body.as_bytes()) as i32)
        .with_body(body)
}

async fn call(addr: &str, cmd: RemotingCommand) -> Result<RemotingCommand, String> {
    let sock = resolve(addr).ok_or_else(|| format!("cannot resolve {addr}"))?;
    let client = Client::connect(sock).await.map_err(|e| e.to_string())?;
    let resp = client
        .invoke(cmd, TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if resp.code == response::SUCCESS {
        Ok(resp)
    } else {
        Err(format!(
            "code {} {}",
            resp.code,
            resp.remark.unwrap_or_default()
        ))
    }
}

/// Registers until `stop`, then unregisters.
pub async fn run(broker: Arc<Broker>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(broker.config.register_name_server_period);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {
                for addr in &broker.config.namesrv_addr {
                    match call(addr, register_request(&broker)).await {
                        Ok(resp) => {
                            tracing::debug!(namesrv = %addr, "registered");
                            // A slave learns its master from the answer.
                            if !broker.config.is_master() {
                                broker.ha.learn_master(resp.ext("masterAddr"), resp.ext("haServerAddr"));
                            }
                        }
                        Err(e) => tracing::warn!(namesrv = %addr, error = %e, "registration failed"),
                    }
                }
            }
        }
    }
    let c = &broker.config;
    for addr in &c.namesrv_addr {
        let cmd = RemotingCommand::request(request::UNREGISTER_BROKER)
            .with_ext("brokerName", &c.broker_name)
            .with_ext("brokerAddr", c.broker_addr())
            .with_ext("clusterName", &c.broker_cluster_name)
            .with_ext("brokerId", c.broker_id);
        if let Err(e) = call(addr, cmd).await.map(drop) {
            tracing::warn!(namesrv = %addr, error = %e, "unregistration failed");
        }
    }
}

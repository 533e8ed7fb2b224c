//! A slave's copy of its master's metadata (RocketMQ's `SlaveSynchronize`): every 10 s,
//! over remoting, the topic configs (GET_ALL_TOPIC_CONFIG), consumer offsets
//! (GET_ALL_CONSUMER_OFFSET), delay-level progress (GET_ALL_DELAY_OFFSET) and subscription
//! groups (GET_ALL_SUBSCRIPTIONGROUP_CONFIG). Offsets only move forward, so a consumer that
//! committed to the slave while the master was down keeps its progress.

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::Duration;

use crate::broker::Broker;
use crate::client::Client;
use crate::remoting::codes::{request, response};
use crate::remoting::RemotingCommand;

/// How often a slave copies its master's metadata (RocketMQ: 10 s).
pub const INTERVAL: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(3);

/// Copies what the master has; logs and gives up this round on any failure.
pub async fn copy_from_master(broker: &Arc<Broker>) {
    let Some(addr) = broker.ha.master_addr() else {
        return;
    };
    match fetch(&addr).await {
        Ok(tables) => {
            let b = Arc::clone(broker);
            let applied = tokio::task::spawn_blocking(move || apply(&b, &tables)).await;
            match applied {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(master = %addr, "metadata copy refused: {e}"),
                Err(e) => tracing::warn!(master = %addr, error = %e, "metadata copy failed"),
            }
        }
        Err(e) => tracing::debug!(master = %addr, "cannot copy the master's metadata: {e}"),
    }
}

/// The four answers, in the order [`apply`] takes them.
struct Tables {
    topics: String,
    offsets: String,
    delay: String,
    groups: String,
}

async fn fetch(addr: &str) -> Result<Tables, String> {
    let sock = addr
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or_else(|| format!("cannot resolve {addr}"))?;
    let client = Client::connect(sock).await.map_err(|e| e.to_string())?;
    let mut bodies = Vec::with_capacity(4);
    for code in [
        request::GET_ALL_TOPIC_CONFIG,
        request::GET_ALL_CONSUMER_OFFSET,
        request::GET_ALL_DELAY_OFFSET,
        request::GET_ALL_SUBSCRIPTIONGROUP_CONFIG,
    ] {
        let resp = client
            .invoke(RemotingCommand::request(code), TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if resp.code != response::SUCCESS {
            return Err(format!("request {code}: code {}", resp.code));
        }
        bodies.push(String::from_utf8_lossy(&resp.body).into_owned());
    }
    let mut it = bodies.into_iter();
    let mut next = || it.next().unwrap_or_default();
    Ok(Tables {
        topics: next(),
        offsets: next(),
        delay: next(),
        groups: next(),
    })
}

fn apply(broker: &Broker, t: &Tables) -> Result<(), String> {
    let topics = broker.topics.adopt(&t.topics)?;
    let offsets = broker.offsets.adopt(&t.offsets)?;
    broker.schedule.adopt(&t.delay)?;
    let groups = broker.subscriptions.adopt(&t.groups)?;
    if topics + offsets + groups > 0 {
        tracing::debug!(topics, offsets, groups, "copied the master's metadata");
    }
    Ok(())
}

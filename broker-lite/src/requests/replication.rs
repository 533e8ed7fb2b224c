//! What replication adds to the request table: GET_BROKER_RUNTIME_INFO (the store's
//! offsets and each slave's acknowledged offset and lag) and REGISTER_BROKER on the
//! built-in route service, so that a slave of this group can announce itself and learn
//! its master's addresses (as from RocketMQ's name server).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::broker::Broker;
use crate::ha::LinkState;
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;

use super::{field, reject, Handled, Outcome};

/// A registered group member not heard from for this long leaves the route (RocketMQ's
/// name server: 120 s).
pub(crate) const MEMBER_TTL: Duration = Duration::from_secs(120);

impl Broker {
    /// GET_BROKER_RUNTIME_INFO's body: a `KVTable` (`{"table":{…}}`, every value a string).
    pub(super) fn runtime_info(&self) -> String {
        serde_json::json!({ "table": self.runtime_table() }).to_string()
    }

    /// The broker's runtime state as GET_BROKER_RUNTIME_INFO reports it (RocketMQ's key
    /// names where they exist): store offsets, dispatch, replication.
    pub fn runtime_table(&self) -> BTreeMap<&'static str, String> {
        let store = &self.store;
        let mut t: BTreeMap<&'static str, String> = BTreeMap::new();
        t.insert("brokerVersionDesc", "V4_9_4".into());
        t.insert("brokerRole", self.config.store.broker_role.as_str().into());
        t.insert("commitLogMinOffset", store.min_offset().0.to_string());
        t.insert("commitLogMaxOffset", store.max_offset().0.to_string());
        t.insert(
            "dispatchBehindBytes",
            store.dispatch_behind_bytes().to_string(),
        );
        // Rates over the last minute of progress samples (RocketMQ prints three windows
        // here; tools read the first number). Ours for "transferred" counts messages whose
        // consumption was committed.
        let put_tps = format!("{:.2}", self.progress.total_put_tps());
        let get_tps = format!("{:.2}", self.progress.total_consume_tps());
        t.insert("putTps", put_tps);
        t.insert("getTransferedTps", get_tps.clone());
        t.insert("getTransferredTps", get_tps);
        t.insert(
            "msgPutTotalTodayNow",
            self.stats
                .messages_stored
                .load(Ordering::Relaxed)
                .to_string(),
        );
        t.insert(
            "sendThreadPoolQueueSize",
            self.stats
                .sends_in_flight
                .load(Ordering::Relaxed)
                .to_string(),
        );
        t.insert(
            "earliestMessageTimeStamp",
            store.earliest_message_time().to_string(),
        );
        if let Some(used) = self.disk_used_percent() {
            t.insert(
                "commitLogDiskRatio",
                format!("{:.2}", f64::from(used) / 100.0),
            );
        }
        t.insert("bootTimestamp", self.started_at_ms.to_string());
        t.insert("brokerActive", self.config.is_master().to_string());
        if self.config.is_master() {
            let end = store.max_offset().0;
            let slaves = self.ha.slaves();
            t.insert("haConnections", slaves.len().to_string());
            t.insert("haPushMaxOffset", self.ha.push_max().to_string());
            let list: Vec<String> = slaves
                .iter()
                .map(|s| {
                    format!(
                        "{} acked={} lag={}",
                        s.addr,
                        s.acked,
                        end.saturating_sub(s.acked)
                    )
                })
                .collect();
            t.insert("haSlaves", list.join("; "));
        } else {
            t.insert("haMasterAddress", self.ha.master_ha().unwrap_or_default());
            let link = match self.ha.link() {
                LinkState::NoMaster => "no master address yet".to_owned(),
                LinkState::Connecting => "connecting".to_owned(),
                LinkState::Connected { master_offset } => {
                    format!("connected (master sent up to {master_offset})")
                }
                LinkState::Refused { reason, .. } => format!("stopped: {reason}"),
            };
            t.insert("haLink", link);
        }
        t
    }

    /// REGISTER_BROKER from another broker of this group (on the route port).
    pub(super) fn register_group_member(&self, req: &RemotingCommand) -> Handled {
        let name: String = field(req, "brokerName")?;
        let addr: String = field(req, "brokerAddr")?;
        let id: u64 = field(req, "brokerId")?;
        if name != self.config.broker_name || id == self.config.broker_id {
            return reject(
                response::SYSTEM_ERROR,
                format!(
                    "this built-in route service serves only broker group {} (brokerId {}); \
                     run RocketMQ's name server to join broker {name} id {id}",
                    self.config.broker_name, self.config.broker_id
                ),
            );
        }
        self.ha.note_member(id, &addr);
        let mut resp = req.response(response::SUCCESS);
        if self.config.is_master() {
            let ha = std::net::SocketAddr::new(self.config.broker_ip1, self.config.ha_port());
            resp = resp
                .with_ext("masterAddr", self.config.broker_addr())
                .with_ext("haServerAddr", ha);
        }
        Ok(Outcome::Reply(resp))
    }

    /// UNREGISTER_BROKER from a member of this group stopping (on the route port).
    pub(super) fn unregister_group_member(&self, req: &RemotingCommand) -> Handled {
        let name: String = field(req, "brokerName")?;
        let id: u64 = field(req, "brokerId")?;
        if name == self.config.broker_name {
            self.ha.forget_member(id);
        }
        Ok(Outcome::Reply(req.response(response::SUCCESS)))
    }
}

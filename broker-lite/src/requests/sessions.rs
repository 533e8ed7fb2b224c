//! Client sessions: HEART_BEAT, UNREGISTER_CLIENT, GET_CONSUMER_LIST_BY_GROUP.

use crate::broker::Broker;
use crate::clients::{Channel, HeartbeatData};
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;

use super::{reject, reply, Handled};

impl Broker {
    pub(super) fn heartbeat(&self, channel: &Channel, req: &RemotingCommand) -> Handled {
        let data: HeartbeatData = match serde_json::from_slice(&req.body) {
            Ok(d) => d,
            Err(e) => return reject(response::SYSTEM_ERROR, format!("heartbeat body: {e}")),
        };
        for c in &data.consumer_data_set {
            self.topics.ensure_retry_topic(&c.group_name);
            self.subscriptions.find_or_create(
                &c.group_name,
                self.live.read().auto_create_subscription_group,
            );
        }
        for group in self
            .clients
            .heartbeat(channel, &data, req.language_name(), req.version)
        {
            tracing::info!(group, client = %data.client_id, "consumer joined");
            self.clients.notify_ids_changed(&group);
        }
        reply(
            req.response(response::SUCCESS)
                .with_ext("IS_SUB_CHANGE", true)
                .with_ext("IS_SUPPORT_HEART_BEAT_V2", false),
        )
    }

    pub(super) fn unregister(&self, channel: &Channel, req: &RemotingCommand) -> Handled {
        let changed = self.clients.unregister(
            channel.id,
            req.ext("producerGroup"),
            req.ext("consumerGroup"),
        );
        for group in changed {
            self.clients.notify_ids_changed(&group);
        }
        reply(req.response(response::SUCCESS))
    }

    pub(super) fn consumer_list(&self, req: &RemotingCommand) -> Handled {
        let group = req.ext("consumerGroup").unwrap_or_default();
        let ids = self.clients.consumer_ids(group);
        if ids.is_empty() {
            return reject(
                response::SYSTEM_ERROR,
                format!("no consumer for this group, {group}"),
            );
        }
        let body = serde_json::json!({ "consumerIdList": ids });
        reply(req.response(response::SUCCESS).with_body(body.to_string()))
    }
}

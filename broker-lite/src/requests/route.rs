//! The built-in route service (GET_ROUTEINFO_BY_TOPIC, GET_BROKER_CLUSTER_INFO), also served
//! on the name-server port so clients can run without a name server.

use crate::broker::Broker;
use crate::remoting::codes::{request, response};
use crate::remoting::RemotingCommand;
use crate::state::topics::{self, TopicConfig};

impl Broker {
    /// This broker group: this broker and the members that registered with it (a slave
    /// also lists its master), by brokerId.
    pub(super) fn broker_data(&self) -> serde_json::Value {
        let mut addrs = serde_json::Map::new();
        addrs.insert(
            self.config.broker_id.to_string(),
            self.config.broker_addr().to_string().into(),
        );
        for (id, addr) in self.ha.members(super::replication::MEMBER_TTL) {
            addrs.insert(id.to_string(), addr.into());
        }
        serde_json::json!({
            "cluster": self.config.broker_cluster_name,
            "brokerName": self.config.broker_name,
            "brokerAddrs": addrs,
            "zoneName": null,
            "enableActingMaster": false,
        })
    }

    pub(super) fn route(&self, req: &RemotingCommand) -> RemotingCommand {
        if req.code == request::GET_BROKER_CLUSTER_INFO {
            let body = serde_json::json!({
                "brokerAddrTable": { self.config.broker_name.clone(): self.broker_data() },
                "clusterAddrTable": { self.config.broker_cluster_name.clone(): [self.config.broker_name] },
            });
            return req.response(response::SUCCESS).with_body(body.to_string());
        }
        let topic = req.ext("topic").unwrap_or_default();
        let config = match self.topics.get(topic) {
            Some(c) => c,
            None if topic.starts_with(topics::RETRY_GROUP_TOPIC_PREFIX) => TopicConfig::new(
                topic,
                1,
                crate::remoting::codes::perm::READ | crate::remoting::codes::perm::WRITE,
            ),
            None => {
                return req.response(response::TOPIC_NOT_EXIST).with_remark(format!(
                    "No topic route info in name server for the topic: {topic}"
                ));
            }
        };
        let config = config.advertised(self.live.read().broker_permission);
        let body = serde_json::json!({
            "orderTopicConf": null,
            "queueDatas": [{
                "brokerName": self.config.broker_name,
                "readQueueNums": config.read_queue_nums,
                "writeQueueNums": config.write_queue_nums,
                "perm": config.perm,
                "topicSysFlag": config.topic_sys_flag,
                "topicSynFlag": config.topic_sys_flag,
            }],
            "brokerDatas": [self.broker_data()],
            "filterServerTable": {},
            "topicQueueMappingInfo": null,
        });
        req.response(response::SUCCESS).with_body(body.to_string())
    }
}

//! Administration: topics (create, list), subscription groups (create, list), client
//! config check, deleting expired CommitLog files now.

use crate::broker::Broker;
use crate::remoting::codes::response;
use crate::remoting::RemotingCommand;
use crate::subscriptions::SubscriptionGroupConfig;
use crate::topics::{self, TopicConfig};

use super::{field, opt_field, reject, reply, Handled};

impl Broker {
    pub(super) fn create_topic(&self, req: &RemotingCommand) -> Handled {
        let parsed = (|| -> Result<TopicConfig, String> {
            let topic: String = field(req, "topic")?;
            let read: u32 = opt_field(req, "readQueueNums")?.unwrap_or(16);
            let write: u32 = opt_field(req, "writeQueueNums")?.unwrap_or(16);
            let mut c = TopicConfig::new(&topic, read, 6);
            c.write_queue_nums = write;
            c.perm = opt_field(req, "perm")?.unwrap_or(6);
            c.topic_filter_type =
                opt_field(req, "topicFilterType")?.unwrap_or_else(|| "SINGLE_TAG".into());
            c.topic_sys_flag = opt_field(req, "topicSysFlag")?.unwrap_or(0);
            c.order = opt_field(req, "order")?.unwrap_or(false);
            Ok(c)
        })();
        let config = parsed?;
        if let Err(e) = topics::validate_topic(&config.topic_name) {
            return reject(response::SYSTEM_ERROR, e);
        }
        if topics::is_not_allowed_send(&config.topic_name)
            || config.topic_name == topics::AUTO_CREATE_TOPIC
        {
            return reject(
                response::SYSTEM_ERROR,
                format!(
                    "The topic[{}] is conflict with system topic.",
                    config.topic_name
                ),
            );
        }
        if config.read_queue_nums == 0
            || config.write_queue_nums == 0
            || config.read_queue_nums > 1024
            || config.write_queue_nums > 1024
        {
            return reject(
                response::SYSTEM_ERROR,
                "queue numbers must be within 1..=1024",
            );
        }
        tracing::info!(topic = %config.topic_name, queues = config.write_queue_nums, "topic created or updated");
        self.topics.put(config);
        reply(req.response(response::SUCCESS))
    }

    /// UPDATE_AND_CREATE_SUBSCRIPTIONGROUP: body = a SubscriptionGroupConfig.
    pub(super) fn put_subscription_group(&self, req: &RemotingCommand) -> Handled {
        match serde_json::from_slice::<SubscriptionGroupConfig>(&req.body) {
            Ok(c) if !c.group_name.is_empty() => {
                tracing::info!(group = %c.group_name, "subscription group created or updated");
                self.subscriptions.put(c);
                reply(req.response(response::SUCCESS))
            }
            Ok(_) => reject(response::SYSTEM_ERROR, "groupName is empty"),
            Err(e) => reject(
                response::SYSTEM_ERROR,
                format!("subscription group body: {e}"),
            ),
        }
    }

    /// DELETE_EXPIRED_COMMITLOG: the next cleanup passes delete expired files whatever the
    /// hour; one runs now.
    pub(super) fn delete_expired_now(&self, req: &RemotingCommand) -> Handled {
        self.store.delete_expired_files_manually();
        match self.store.run_cleanup() {
            Ok(r) => {
                tracing::info!(
                    removed = r.removed.len(),
                    "expired files deleted on request"
                );
                reply(req.response(response::SUCCESS))
            }
            Err(e) => reject(response::SYSTEM_ERROR, format!("cleanup: {e}")),
        }
    }
}

//! What each request code needs from an ACL account: the `access` column of the request
//! table. RocketMQ 4.9's `PlainAccessValidator.parse` is the model; where it checks
//! nothing (every code outside its switch) broker-lite still asks for a valid signature,
//! and it asks for `admin` on every request that changes or dumps broker-wide state.

use crate::acl::{Needs, Perm, Resource};
use crate::clients::HeartbeatData;
use crate::remoting::codes::request;
use crate::remoting::RemotingCommand;

use super::field;

/// A request code's need: fixed, or read from the request.
#[derive(Debug, Clone, Copy)]
pub enum Access {
    /// Any account whose signature verifies.
    Signed,
    /// An account with `admin: true`.
    Admin,
    /// Permissions on the topics and groups the request names.
    Resources(fn(&RemotingCommand) -> Result<Needs, String>),
}

impl Access {
    /// What `req` needs, or why that cannot be told from it.
    ///
    /// # Errors
    /// A header or body that does not say which topic or group it is about.
    pub fn needs(self, req: &RemotingCommand) -> Result<Needs, String> {
        match self {
            Access::Signed => Ok(Needs::signed()),
            Access::Admin => Ok(Needs::admin()),
            Access::Resources(f) => f(req),
        }
    }
}

/// A send: PUB on the topic; a send to a group's retry topic: SUB on the group.
pub(super) fn send(req: &RemotingCommand) -> Result<Needs, String> {
    let key = if req.code == request::SEND_MESSAGE {
        "topic"
    } else {
        "b"
    };
    let topic: String = field(req, key)?;
    Ok(match Resource::of_topic(&topic) {
        group @ Resource::Group(_) => Needs::signed().and(group, Perm::SUB),
        topic => Needs::signed().and(topic, Perm::PUB),
    })
}

/// A pull: SUB on the topic and on the consumer group.
pub(super) fn pull(req: &RemotingCommand) -> Result<Needs, String> {
    topic_and_group(req, "consumerGroup")
}

/// Offsets of a group in a queue: SUB on both.
pub(super) fn group_offset(req: &RemotingCommand) -> Result<Needs, String> {
    topic_and_group(req, "consumerGroup")
}

fn topic_and_group(req: &RemotingCommand, group_key: &str) -> Result<Needs, String> {
    let topic: String = field(req, "topic")?;
    let group: String = field(req, group_key)?;
    Ok(Needs::signed()
        .and(Resource::of_topic(&topic), Perm::SUB)
        .and(Resource::Group(group), Perm::SUB))
}

/// Reading a topic's queues or messages: SUB on the topic.
pub(super) fn topic_sub(req: &RemotingCommand) -> Result<Needs, String> {
    let topic: String = field(req, "topic")?;
    Ok(Needs::signed().and(Resource::of_topic(&topic), Perm::SUB))
}

/// Acting as a member of a consumer group: SUB on the group.
pub(super) fn group_sub(req: &RemotingCommand) -> Result<Needs, String> {
    let group: String = field(req, "consumerGroup")?;
    Ok(Needs::signed().and(Resource::Group(group), Perm::SUB))
}

/// A consumer sending a message back for retry: SUB on its group.
pub(super) fn send_back(req: &RemotingCommand) -> Result<Needs, String> {
    let group: String = field(req, "group")?;
    Ok(Needs::signed().and(Resource::Group(group), Perm::SUB))
}

/// A heartbeat: SUB on every consumer group it joins and every topic it subscribes.
pub(super) fn heartbeat(req: &RemotingCommand) -> Result<Needs, String> {
    let data: HeartbeatData =
        serde_json::from_slice(&req.body).map_err(|e| format!("heartbeat body: {e}"))?;
    let mut needs = Needs::signed();
    for c in &data.consumer_data_set {
        needs = needs.and(Resource::Group(c.group_name.clone()), Perm::SUB);
        for s in &c.subscription_data_set {
            needs = needs.and(Resource::of_topic(&s.topic), Perm::SUB);
        }
    }
    Ok(needs)
}

/// Locking queues for an orderly consumer: SUB on the group.
pub(super) fn lock(req: &RemotingCommand) -> Result<Needs, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Group {
        consumer_group: String,
    }
    let body: Group = serde_json::from_slice(&req.body).map_err(|e| format!("lock body: {e}"))?;
    Ok(Needs::signed().and(Resource::Group(body.consumer_group), Perm::SUB))
}

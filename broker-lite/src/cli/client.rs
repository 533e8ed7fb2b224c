//! The client subcommands (`send`, `consume`, `query`, `topic`, `status`, `offsets`, …):
//! each connects to a running broker or name server with our [`Client`](broker_lite::Client).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use broker_lite::acl::Credentials;
use broker_lite::client::ops::{self, Outgoing};
use broker_lite::remoting::codes::request;
use broker_lite::remoting::tls::ClientTls;
use bytes::Bytes;
use clap::Subcommand;
/// The client subcommands: each connects to a running broker (or name server).
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Sends messages.
    Send {
        #[arg(long, default_value = "127.0.0.1:10911")]
        broker: SocketAddr,
        #[arg(long)]
        topic: String,
        /// The body (default: `message <n>`).
        #[arg(long)]
        body: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        /// KEYS (`<n>` is replaced by the message number).
        #[arg(long)]
        keys: Option<String>,
        #[arg(long, default_value_t = 1)]
        count: u64,
        /// Queue (-1: the broker picks).
        #[arg(long, default_value_t = -1)]
        queue: i32,
        #[arg(long, default_value = "broker_lite_cli")]
        group: String,
        /// DELAY level: deliver after that level's delay (`messageDelayLevel`).
        #[arg(long)]
        delay: Option<u32>,
    },
    /// Finds messages by key (KEYS or UNIQ_KEY, within a time range) or by offset message
    /// id, and prints them.
    Query {
        #[arg(long, default_value = "127.0.0.1:10911")]
        broker: SocketAddr,
        /// The topic (with --key).
        #[arg(long, required_unless_present = "id")]
        topic: Option<String>,
        /// A key.
        #[arg(long, conflicts_with = "id", requires = "topic")]
        key: Option<String>,
        /// An offset message id (the msgId a send printed).
        #[arg(long)]
        id: Option<String>,
        /// Earliest store time (ms since the epoch).
        #[arg(long, default_value_t = 0)]
        begin: i64,
        /// Latest store time (ms since the epoch; default: now).
        #[arg(long)]
        end: Option<i64>,
        /// Most messages to return.
        #[arg(long, default_value_t = 32)]
        max: u32,
    },
    /// Asks the broker to delete expired CommitLog files now (DELETE_EXPIRED_COMMITLOG).
    DeleteExpired {
        #[arg(long, default_value = "127.0.0.1:10911")]
        broker: SocketAddr,
    },
    /// Pulls messages of a topic for a group from its committed offsets, prints them and
    /// commits the new offsets.
    Consume {
        #[arg(long, default_value = "127.0.0.1:10911")]
        broker: SocketAddr,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        group: String,
        /// TAG expression (`*`, `A || B`).
        #[arg(long, default_value = "*")]
        tag: String,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long without a new message.
        #[arg(long, default_value_t = 2000)]
        idle_ms: u64,
    },
    /// The clusters a name server knows: each broker group and its brokers by id
    /// (mqadmin's `clusterList`).
    Cluster {
        #[arg(long, default_value = "127.0.0.1:9876")]
        namesrv: SocketAddr,
    },
    /// Topic administration.
    Topic {
        #[command(subcommand)]
        action: TopicAction,
    },
    /// The broker's role, CommitLog offsets and replication: each slave's acknowledged
    /// offset and lag in bytes (on a master), the link to the master (on a slave).
    Status {
        #[arg(long, default_value = "127.0.0.1:10911")]
        broker: SocketAddr,
    },
    /// A group's progress and lag per queue.
    Offsets {
        #[arg(long, default_value = "127.0.0.1:10911")]
        broker: SocketAddr,
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
    },
}

/// What `topic` does.
#[derive(Subcommand, Debug)]
pub enum TopicAction {
    /// Creates or updates a topic on one broker, or with --cluster on every master of a
    /// cluster that a name server lists (mqadmin's `updateTopic -c`).
    Create {
        #[arg(long, default_value = "127.0.0.1:10911", conflicts_with = "cluster")]
        broker: SocketAddr,
        #[arg(long)]
        topic: String,
        #[arg(long, default_value_t = 4)]
        queues: u32,
        /// Every master of this cluster (needs --namesrv).
        #[arg(long, requires = "namesrv")]
        cluster: Option<String>,
        /// The name server to ask for the cluster's brokers.
        #[arg(long, requires = "cluster")]
        namesrv: Option<SocketAddr>,
    },
    /// A topic's route as a name server serves it: each group's queues and brokers.
    Route {
        #[arg(long, default_value = "127.0.0.1:9876")]
        namesrv: SocketAddr,
        #[arg(long)]
        topic: String,
    },
    /// Lists topics.
    List {
        #[arg(long, default_value = "127.0.0.1:10911")]
        broker: SocketAddr,
    },
}

/// How the client subcommands connect: TLS or not, signing or not.
pub struct ClientSettings {
    /// The ACL account requests are signed with.
    pub credentials: Option<Credentials>,
    /// TLS towards the broker.
    pub tls: Option<ClientTls>,
}

static CLIENT: OnceLock<ClientSettings> = OnceLock::new();

/// Sets how every client subcommand of this process connects (once, before [`run`]).
pub fn set_settings(settings: ClientSettings) {
    let _ = CLIENT.set(settings);
}

/// Connects a client subcommand as `--tls-ca` and `--access-key` say.
async fn connect(addr: SocketAddr) -> Result<broker_lite::Client, ops::OpError> {
    let settings = CLIENT.get();
    let mut client = match settings.and_then(|s| s.tls.as_ref()) {
        Some(tls) => broker_lite::Client::connect_tls(addr, tls).await?,
        None => ops::connect(addr).await?,
    };
    client.set_credentials(settings.and_then(|s| s.credentials.clone()));
    Ok(client)
}

/// Runs one client subcommand.
///
/// # Errors
/// What went wrong, for the user.
pub async fn run(cmd: ClientCommand) -> Result<(), String> {
    let e = |e: ops::OpError| e.to_string();
    match cmd {
        ClientCommand::Send {
            broker,
            topic,
            body,
            tag,
            keys,
            count,
            queue,
            group,
            delay,
        } => {
            let client = connect(broker).await.map_err(e)?;
            for n in 0..count {
                let m = Outgoing {
                    topic: topic.clone(),
                    queue_id: queue,
                    body: Bytes::from(body.clone().unwrap_or_else(|| format!("message {n}"))),
                    tags: tag.clone(),
                    keys: keys.as_ref().map(|k| k.replace("<n>", &n.to_string())),
                    uniq_key: None,
                    delay_level: delay,
                };
                let r = ops::send(&client, &group, &m).await.map_err(e)?;
                println!(
                    "sent msgId={} queueId={} queueOffset={} code={}",
                    r.msg_id, r.queue_id, r.queue_offset, r.code
                );
            }
            Ok(())
        }
        ClientCommand::Consume {
            broker,
            topic,
            group,
            tag,
            count,
            idle_ms,
        } => {
            consume(
                broker,
                &topic,
                &group,
                &tag,
                count,
                Duration::from_millis(idle_ms),
            )
            .await
        }
        ClientCommand::Topic { action } => match action {
            TopicAction::Create {
                topic,
                queues,
                cluster: Some(cluster),
                namesrv: Some(namesrv),
                ..
            } => create_in_cluster(namesrv, &cluster, &topic, queues).await,
            TopicAction::Create {
                broker,
                topic,
                queues,
                ..
            } => {
                let client = connect(broker).await.map_err(e)?;
                ops::create_topic(&client, &topic, queues)
                    .await
                    .map_err(e)?;
                println!("topic {topic} created with {queues} queues");
                Ok(())
            }
            TopicAction::Route { namesrv, topic } => {
                let client = connect(namesrv).await.map_err(e)?;
                let route = ops::topic_route(&client, &topic).await.map_err(e)?;
                for q in &route.queue_datas {
                    println!(
                        "queues\t{}\tread={}\twrite={}\tperm={}",
                        q.broker_name, q.read_queue_nums, q.write_queue_nums, q.perm
                    );
                }
                for g in &route.broker_datas {
                    for (id, addr) in &g.broker_addrs {
                        println!("broker\t{}\t{id}\t{addr}", g.broker_name);
                    }
                }
                Ok(())
            }
            TopicAction::List { broker } => {
                let client = connect(broker).await.map_err(e)?;
                let table = ops::topics(&client).await.map_err(e)?;
                for t in table.topic_config_table.values() {
                    println!(
                        "{}\tread={}\twrite={}\tperm={}",
                        t.topic_name, t.read_queue_nums, t.write_queue_nums, t.perm
                    );
                }
                Ok(())
            }
        },
        ClientCommand::Cluster { namesrv } => {
            let client = connect(namesrv).await.map_err(e)?;
            let info = ops::cluster_info(&client).await.map_err(e)?;
            for (cluster, names) in &info.cluster_addr_table {
                for name in names {
                    let Some(group) = info.broker_addr_table.get(name) else {
                        continue;
                    };
                    for (id, addr) in &group.broker_addrs {
                        println!("{cluster}\t{name}\t{id}\t{addr}");
                    }
                }
            }
            Ok(())
        }
        ClientCommand::Query {
            broker,
            topic,
            key,
            id,
            begin,
            end,
            max,
        } => {
            let client = connect(broker).await.map_err(e)?;
            let found = match (id, key, topic) {
                (Some(id), _, _) => vec![ops::view_by_id(&client, &id).await.map_err(e)?],
                (None, Some(key), Some(topic)) => {
                    let end = end.unwrap_or_else(broker_lite::state::metadata::now_millis);
                    ops::query_by_key(&client, &topic, &key, max, begin, end)
                        .await
                        .map_err(e)?
                }
                _ => return Err("give --id, or --topic and --key".into()),
            };
            for m in &found {
                println!(
                    "topic={} queue={} offset={} msgId={} storeTime={} keys={} uniqKey={} body={}",
                    m.topic,
                    m.queue_id,
                    m.queue_offset,
                    m.msg_id,
                    m.store_timestamp,
                    m.property("KEYS").unwrap_or(""),
                    m.property("UNIQ_KEY").unwrap_or(""),
                    String::from_utf8_lossy(&m.body)
                );
            }
            println!("found {} messages", found.len());
            Ok(())
        }
        ClientCommand::Status { broker } => {
            let client = connect(broker).await.map_err(e)?;
            for (k, v) in ops::runtime_info(&client).await.map_err(e)? {
                println!("{k}\t{v}");
            }
            Ok(())
        }
        ClientCommand::DeleteExpired { broker } => {
            let client = connect(broker).await.map_err(e)?;
            ops::delete_expired(&client).await.map_err(e)?;
            println!("expired CommitLog files deleted");
            Ok(())
        }
        ClientCommand::Offsets {
            broker,
            group,
            topic,
        } => {
            let client = connect(broker).await.map_err(e)?;
            let queues = ops::queue_count(&client, &topic).await.map_err(e)?;
            println!("queue\tconsumer\tbroker\tlag");
            let mut total = 0;
            for q in 0..queues {
                let max = ops::queue_number(&client, request::GET_MAX_OFFSET, &topic, q, None)
                    .await
                    .map_err(e)?
                    .unwrap_or(0);
                let committed = ops::queue_number(
                    &client,
                    request::QUERY_CONSUMER_OFFSET,
                    &topic,
                    q,
                    Some(&group),
                )
                .await
                .map_err(e)?;
                let lag = max - committed.unwrap_or(0).min(max);
                total += lag;
                println!(
                    "{q}\t{}\t{max}\t{lag}",
                    committed.map_or_else(|| "-".to_owned(), |c| c.to_string())
                );
            }
            println!("total lag {total}");
            Ok(())
        }
    }
}

/// `topic create --cluster`: the topic on every master of the cluster, then waits (10 s
/// at most) until the name server's route lists every one of them, since each master
/// announces the new topic to the name servers on its own.
async fn create_in_cluster(
    namesrv: SocketAddr,
    cluster: &str,
    topic: &str,
    queues: u32,
) -> Result<(), String> {
    let e = |e: ops::OpError| e.to_string();
    let client = connect(namesrv).await.map_err(e)?;
    let masters = ops::create_topic_in_cluster(&client, cluster, topic, queues)
        .await
        .map_err(e)?;
    for (name, addr) in &masters {
        println!("topic {topic} created with {queues} queues on {name} ({addr})");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = match ops::topic_route(&client, topic).await {
            Ok(route) => masters
                .iter()
                .filter(|(name, _)| {
                    route
                        .queue_datas
                        .iter()
                        .any(|q| &q.broker_name == name && q.write_queue_nums == queues)
                })
                .count(),
            Err(_) => 0,
        };
        if listed == masters.len() {
            println!("route of {topic} on {namesrv} lists {listed} broker groups");
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the topic was created, but after 10 s the route on {namesrv} lists {listed} of {} groups (are the brokers registered with it?)",
                masters.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn consume(
    broker: SocketAddr,
    topic: &str,
    group: &str,
    tag: &str,
    count: Option<u64>,
    idle: Duration,
) -> Result<(), String> {
    let e = |e: ops::OpError| e.to_string();
    let client = connect(broker).await.map_err(e)?;
    let queues = ops::queue_count(&client, topic).await.map_err(e)?;
    let mut next = Vec::new();
    for q in 0..queues {
        let committed = ops::queue_number(
            &client,
            request::QUERY_CONSUMER_OFFSET,
            topic,
            q,
            Some(group),
        )
        .await
        .map_err(e)?;
        next.push(committed.unwrap_or(0).max(0) as u64);
    }
    let mut got = 0u64;
    let mut last_message = Instant::now();
    'outer: loop {
        let mut any = false;
        for q in 0..queues {
            let qi = q as usize;
            let req = ops::pull_request(group, topic, q, next[qi], 32, tag, None, None);
            let pulled = ops::pull(&client, req).await.map_err(e)?;
            for m in &pulled.messages {
                println!(
                    "queue={} offset={} msgId={} tags={} keys={} body={}",
                    m.queue_id,
                    m.queue_offset,
                    m.msg_id,
                    m.property("TAGS").unwrap_or(""),
                    m.property("KEYS").unwrap_or(""),
                    String::from_utf8_lossy(&m.body)
                );
                got += 1;
                if count.is_some_and(|c| got >= c) {
                    next[qi] = m.queue_offset as u64 + 1;
                    break 'outer;
                }
            }
            if pulled.next_begin_offset != next[qi] {
                any = true;
                next[qi] = pulled.next_begin_offset;
            }
        }
        if any {
            last_message = Instant::now();
        } else if last_message.elapsed() >= idle {
            break;
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for q in 0..queues {
        ops::commit(&client, group, topic, q, next[q as usize])
            .await
            .map_err(e)?;
    }
    println!("consumed {got} messages");
    Ok(())
}

//! `broker-lite`: serve the store over RocketMQ's remoting protocol, or talk to a running
//! broker (`send`, `consume`, `topic`, `offsets`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use broker_lite::acl::Credentials;
use broker_lite::ops::{self, Outgoing};
use broker_lite::remoting::codes::request;
use broker_lite::server::{serve, Listeners};
use broker_lite::tls::ClientTls;
use broker_lite::{Broker, BrokerConfig};
use bytes::Bytes;
use clap::{Parser, Subcommand};

mod verify;

#[derive(Parser, Debug)]
#[command(
    name = "broker-lite",
    version,
    about = "A RocketMQ 4.x-compatible broker over the mqstore message store"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    /// A RocketMQ-style broker.conf (`key=value`, RocketMQ's key names).
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Overrides `storePathRootDir`.
    #[arg(long)]
    store: Option<PathBuf>,
    /// Overrides `listenPort` (0 = any free port).
    #[arg(long)]
    port: Option<u16>,
    /// Overrides the route-service port (`namesrvListenPort`; 0 = any free port).
    #[arg(long)]
    namesrv_port: Option<u16>,
    /// Turns the built-in route service off.
    #[arg(long)]
    no_namesrv: bool,
    /// The client subcommands sign their requests with this ACL account (for a broker
    /// with `aclEnable=true`); needs --secret-key.
    #[arg(
        long,
        global = true,
        env = "ROCKETMQ_ACCESS_KEY",
        requires = "secret_key"
    )]
    access_key: Option<String>,
    /// The account's secret key.
    #[arg(
        long,
        global = true,
        env = "ROCKETMQ_SECRET_KEY",
        hide_env_values = true,
        requires = "access_key"
    )]
    secret_key: Option<String>,
    /// The client subcommands connect with TLS, trusting the certificates in this PEM file
    /// (for a broker with `tls.server.mode` permissive or enforcing).
    #[arg(long, global = true, env = "ROCKETMQ_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// The name the broker's certificate must carry (default: the address dialled).
    #[arg(long, global = true, requires = "tls_ca")]
    tls_server_name: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the broker (the default).
    Serve,
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
    /// Checks a stopped store directory offline: every record's structure and CRCs, every
    /// ConsumeQueue unit and index item against its record, the checkpoint. Exits 1 when
    /// it finds a problem. `--repair` cuts a torn tail and rebuilds the derived files.
    Verify {
        /// A broker.conf to read the store settings from (file sizes, directories).
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// The store directory (`storePathRootDir`).
        #[arg(long)]
        store: Option<PathBuf>,
        /// Repair: cut a torn CommitLog tail, rebuild queues, index and checkpoints.
        #[arg(long)]
        repair: bool,
        /// With --repair: also cut at damage below the durable point or followed by valid
        /// records, losing the records from there on (they are saved in repair-<ms>/).
        #[arg(long, requires = "repair")]
        discard_after_corruption: bool,
        /// Cut the CommitLog at this offset (a record boundary), saving the cut bytes, and
        /// rebuild the derived files: what a slave whose log diverged from its master's
        /// needs (its error names the offset).
        #[arg(long)]
        truncate_at: Option<u64>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
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

#[derive(Subcommand, Debug)]
enum TopicAction {
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let tls = match &cli.tls_ca {
        None => None,
        Some(ca) => match broker_lite::tls::client_config(ca) {
            Ok(config) => Some(ClientTls {
                config,
                server_name: cli.tls_server_name.clone(),
            }),
            Err(e) => {
                eprintln!("broker-lite: --tls-ca: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let _ = CLIENT.set(ClientSettings {
        credentials: cli.access_key.clone().zip(cli.secret_key.clone()).map(
            |(access_key, secret_key)| Credentials {
                access_key,
                secret_key,
            },
        ),
        tls,
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(256)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("broker-lite: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Verify {
        config,
        store,
        repair,
        discard_after_corruption,
        truncate_at,
        quiet,
    }) = cli.command
    {
        return verify::run(
            config.as_deref(),
            store,
            repair,
            discard_after_corruption,
            truncate_at,
            quiet,
        );
    }
    let result = match cli.command {
        None | Some(Command::Serve) => runtime.block_on(run_server(
            cli.config,
            cli.store,
            cli.port,
            cli.namesrv_port,
            cli.no_namesrv,
        )),
        Some(cmd) => runtime.block_on(run_client(cmd)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker-lite: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How the client subcommands connect: TLS or not, signing or not.
struct ClientSettings {
    credentials: Option<Credentials>,
    tls: Option<ClientTls>,
}

static CLIENT: OnceLock<ClientSettings> = OnceLock::new();

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

/// The defaults, with a broker.conf applied if one is given.
fn load_config(file: Option<&std::path::Path>) -> Result<BrokerConfig, String> {
    let mut config = BrokerConfig::default();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let unknown = config
            .apply(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for key in unknown {
            tracing::warn!(key, file = %path.display(), "unknown configuration key ignored");
        }
        config.config_file = Some(path.to_owned());
        if config.acl_file.is_none() {
            // RocketMQ keeps plain_acl.yml in conf/, beside broker.conf.
            config.acl_file = path.parent().map(|dir| dir.join("plain_acl.yml"));
        }
    }
    Ok(config)
}

async fn run_server(
    config_file: Option<PathBuf>,
    store: Option<PathBuf>,
    port: Option<u16>,
    namesrv_port: Option<u16>,
    no_namesrv: bool,
) -> Result<(), String> {
    let mut config = load_config(config_file.as_deref())?;
    if let Some(s) = store {
        config.store.store_path_root_dir = s;
    }
    if let Some(p) = port {
        config.listen_port = p;
    }
    if let Some(p) = namesrv_port {
        config.namesrv_listen_port = Some(p);
    }
    if no_namesrv {
        config.namesrv_listen_port = None;
    }
    // Bind first so that port 0 resolves to the real port before the store records it.
    let listeners = Listeners::bind(&config).await.map_err(|e| e.to_string())?;
    let bound = listeners.broker_addr().map_err(|e| e.to_string())?;
    config.listen_port = bound.port();
    if let Some(ha) = listeners.ha_addr() {
        config.ha_listen_port = Some(ha.port());
    }
    config.sync_store_host();
    let broker = tokio::task::spawn_blocking(move || Broker::open(config))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot start: {e}"))?;
    let root = std::fs::canonicalize(&broker.config.store.store_path_root_dir)
        .unwrap_or_else(|_| broker.config.store.store_path_root_dir.clone());
    let replication = match listeners.ha_addr() {
        Some(ha) => format!(
            "{} with HA on {ha}",
            broker.config.store.broker_role.as_str()
        ),
        None => format!(
            "SLAVE of {}",
            broker
                .ha
                .master_ha()
                .unwrap_or_else(|| "the master named by namesrvAddr".to_owned())
        ),
    };
    let routes = match listeners.routes_addr() {
        Some(a) => format!("route service on {a}"),
        None if broker.config.namesrv_addr.is_empty() => "no route service".to_owned(),
        None => format!("name servers {}", broker.config.namesrv_addr.join(";")),
    };
    let routes = match listeners.metrics_addr() {
        Some(m) => format!("{routes}, metrics on http://{m}/metrics"),
        None => routes,
    };
    let routes = match listeners.console_addr() {
        Some(c) => format!("{routes}, console on http://{c}/"),
        None => routes,
    };
    println!(
        "broker-lite listening on {bound} (clients dial {}), {routes}, {replication}, store at {}",
        broker.config.broker_addr(),
        root.display()
    );
    serve(broker, listeners, shutdown_signal())
        .await
        .map_err(|e| format!("store shutdown: {e}"))?;
    println!("broker-lite stopped cleanly");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}

async fn run_client(cmd: Command) -> Result<(), String> {
    let e = |e: ops::OpError| e.to_string();
    match cmd {
        Command::Serve | Command::Verify { .. } => unreachable_serve(),
        Command::Send {
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
        Command::Consume {
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
        Command::Topic { action } => match action {
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
        Command::Cluster { namesrv } => {
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
        Command::Query {
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
                    let end = end.unwrap_or_else(broker_lite::metadata::now_millis);
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
        Command::Status { broker } => {
            let client = connect(broker).await.map_err(e)?;
            for (k, v) in ops::runtime_info(&client).await.map_err(e)? {
                println!("{k}\t{v}");
            }
            Ok(())
        }
        Command::DeleteExpired { broker } => {
            let client = connect(broker).await.map_err(e)?;
            ops::delete_expired(&client).await.map_err(e)?;
            println!("expired CommitLog files deleted");
            Ok(())
        }
        Command::Offsets {
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

fn unreachable_serve() -> Result<(), String> {
    Err("`serve` and `verify` are handled before client commands".into())
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

//! The network side: listeners, connections, held pulls, housekeeping and an orderly
//! shutdown (after tokio's mini-redis).
//!
//! Each connection has a reader (frames in), a writer (a bounded queue of frames out) and
//! one task per request, so pipelined requests are answered as they complete and a held
//! pull never blocks the requests behind it. Processors run on blocking threads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::Broker;
use crate::clients::Channel;
use crate::config::{broker_key, BrokerConfig};
use crate::remoting::codes::response;
use crate::remoting::tls::TlsMode;
use crate::remoting::{encode_queued, Inbound, RemotingCodec, RemotingCommand};
use crate::requests::{self, is_send, Outcome, Port};

/// Requests one connection may have in progress (held pulls included) before the server
/// stops reading from it.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 512;
/// How long shutdown waits for in-flight requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared by every connection.
#[derive(Debug)]
struct Shared {
    broker: Arc<Broker>,
    /// Fires at shutdown: stop accepting and reading; held pulls answer at once.
    stop: CancellationToken,
    connections: Arc<Semaphore>,
    tasks: TaskTracker,
    next_id: AtomicU64,
    tls: Option<Tls>,
}

/// The bound listeners, before serving.
#[derive(Debug)]
pub struct Listeners {
    broker: TcpListener,
    routes: Option<TcpListener>,
    /// A master's HA port (served by plain threads, hence std's listener).
    ha: Option<std::net::TcpListener>,
    /// TLS on the broker and route ports (`tls.server.mode` not `disabled`).
    tls: Option<Tls>,
    /// The Prometheus endpoint (`metricsExporterType=PROM`).
    metrics: Option<TcpListener>,
    /// The web console (`consolePort`).
    console: Option<TcpListener>,
}

/// TLS as configured: the mode and the loaded certificate.
#[derive(Clone)]
struct Tls {
    mode: TlsMode,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Loads the certificate `tls.server.mode` needs.
fn load_tls(c: &BrokerConfig) -> std::io::Result<Option<Tls>> {
    if c.tls_server_mode == TlsMode::Disabled {
        return Ok(None);
    }
    let missing = |key: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{}={} needs {key}",
                broker_key::tls_server_mode,
                c.tls_server_mode
            ),
        )
    };
    let cert = c
        .tls_server_cert_path
        .as_deref()
        .ok_or_else(|| missing(broker_key::tls_server_cert_path))?;
    let key = c
        .tls_server_key_path
        .as_deref()
        .ok_or_else(|| missing(broker_key::tls_server_key_path))?;
    let config = crate::remoting::tls::server_config(cert, key)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(Some(Tls {
        mode: c.tls_server_mode,
        acceptor: tokio_rustls::TlsAcceptor::from(config),
    }))
}

impl Listeners {
    /// Binds the broker port and, if configured, the route-service port.
    ///
    /// # Errors
    /// The bind error, naming the address.
    pub async fn bind(c: &BrokerConfig) -> std::io::Result<Listeners> {
        // The certificate first: a bad one stops the start with nothing bound.
        let tls = load_tls(c)?;
        let addr = SocketAddr::new(c.listen_addr, c.listen_port);
        let b = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("bind {addr}: {e}")))?;
        let routes = match c.namesrv_listen_port {
            Some(port) => {
                let addr = SocketAddr::new(c.listen_addr, port);
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|e| std::io::Error::new(e.kind(), format!("bind {addr}: {e}")))?,
                )
            }
            None => None,
        };
        let ha = if c.is_master() {
            let addr = SocketAddr::new(c.listen_addr, c.ha_port());
            Some(
                std::net::TcpListener::bind(addr)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("bind {addr}: {e}")))?,
            )
        } else {
            None
        };
        let metrics = if c.metrics_prom {
            let addr = SocketAddr::new(c.metrics_prom_exporter_host, c.metrics_prom_exporter_port);
            Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|e| std::io::Error::new(e.kind(), format!("bind {addr}: {e}")))?,
            )
        } else {
            None
        };
        let console = match c.console_port {
            Some(port) => {
                let addr = SocketAddr::new(c.console_host, port);
                Some(
                    TcpListener::bind(addr)
                        .await
                        .map_err(|e| std::io::Error::new(e.kind(), format!("bind {addr}: {e}")))?,
                )
            }
            None => None,
        };
        Ok(Listeners {
            broker: b,
            routes,
            ha,
            tls,
            metrics,
            console,
        })
    }

    /// The console port actually bound (`consolePort`).
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The metrics port actually bound (`metricsExporterType=PROM`).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The HA port actually bound (masters only).
    pub fn ha_addr(&self) -> Option<SocketAddr> {
        self.ha.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The broker port actually bound.
    ///
    /// # Errors
    /// The socket's error.
    pub fn broker_addr(&self) -> std::io::Result<SocketAddr> {
        self.broker.local_addr()
    }

    /// The route-service port actually bound.
    pub fn routes_addr(&self) -> Option<SocketAddr> {
        self.routes.as_ref().and_then(|l| l.local_addr().ok())
    }
}

/// Serves until `shutdown` completes, then drains connections, persists the metadata and
/// shuts the store down cleanly.
///
/// # Errors
/// The store's shutdown error.
pub async fn serve(
    broker: Arc<Broker>,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), mqstore::Error> {
    let shared = Arc::new(Shared {
        connections: Arc::new(Semaphore::new(broker.config.max_connections)),
        broker: Arc::clone(&broker),
        stop: CancellationToken::new(),
        tasks: TaskTracker::new(),
        next_id: AtomicU64::new(1),
        tls: listeners.tls.clone(),
    });
    let mut accept = Vec::new();
    accept.push(tokio::spawn(accept_loop(
        Arc::clone(&shared),
        listeners.broker,
        Port::Broker,
    )));
    if let Some(l) = listeners.routes {
        accept.push(tokio::spawn(accept_loop(
            Arc::clone(&shared),
            l,
            Port::NameServer,
        )));
    }
    let replication = match start_replication(&broker, listeners.ha) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "replication could not start");
            Replicating::None
        }
    };
    let housekeeping = tokio::spawn(housekeeping(Arc::clone(&shared)));
    let exporter = listeners.metrics.map(|l| {
        tokio::spawn(crate::http::exporter::run(
            Arc::clone(&broker),
            l,
            shared.stop.clone(),
        ))
    });
    let console = listeners.console.map(|l| {
        tokio::spawn(crate::http::console::run(
            Arc::clone(&broker),
            l,
            shared.stop.clone(),
        ))
    });
    let registration = (!broker.config.namesrv_addr.is_empty()).then(|| {
        tokio::spawn(crate::cluster::register::run(
            Arc::clone(&broker),
            shared.stop.clone(),
        ))
    });

    shutdown.await;
    tracing::info!("shutting down: no new connections or requests");
    shared.stop.cancel();
    broker.waiters.wake_all();
    for a in accept {
        let _ = a.await;
    }
    shared.tasks.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, shared.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some requests were still running after {DRAIN_TIMEOUT:?}");
    }
    let _ = housekeeping.await;
    for http_port in [exporter, console].into_iter().flatten() {
        let _ = http_port.await;
    }
    if let Some(r) = registration {
        let _ = r.await;
    }
    drop(shared);
    let broker = Arc::clone(&broker);
    tokio::task::spawn_blocking(move || {
        // Replication stops first: its threads read and write the store.
        match replication {
            Replicating::Master(server) => server.stop(),
            Replicating::Slave(client) => client.stop(),
            Replicating::None => {}
        }
        broker.close()
    })
    .await
    .unwrap_or(Ok(()))
}

/// The replication threads this broker runs.
enum Replicating {
    Master(crate::ha::master::HaServer),
    Slave(crate::ha::slave::HaClient),
    None,
}

fn start_replication(
    broker: &Arc<Broker>,
    listener: Option<std::net::TcpListener>,
) -> std::io::Result<Replicating> {
    let store = Arc::clone(&broker.store);
    let repl = Arc::clone(&broker.ha);
    if broker.config.is_master() {
        return Ok(match listener {
            Some(l) => Replicating::Master(crate::ha::master::HaServer::start(
                l,
                store,
                repl,
                broker.acl.clone(),
            )?),
            None => Replicating::None,
        });
    }
    Ok(Replicating::Slave(crate::ha::slave::HaClient::start(
        store, repl,
    )?))
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, service: Port) {
    loop {
        let permit = tokio::select! {
            () = shared.stop.cancelled() => return,
            p = Arc::clone(&shared.connections).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            () = shared.stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                let shared2 = Arc::clone(&shared);
                shared.tasks.spawn(async move {
                    connection(shared2, stream, remote, service).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// How long a TLS client may take to say hello and finish its handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

async fn connection(shared: Arc<Shared>, stream: TcpStream, remote: SocketAddr, service: Port) {
    let Some(tls) = shared.tls.clone() else {
        let (read_half, write_half) = stream.into_split();
        return serve_connection(shared, read_half, write_half, remote, service).await;
    };
    let wants_tls = if tls.mode == TlsMode::Enforcing {
        true
    } else {
        // RocketMQ's rule: the first byte of a TLS handshake record means TLS.
        let mut first = [0u8; 1];
        let idle = shared.broker.config.channel_expired_timeout;
        match tokio::time::timeout(idle, stream.peek(&mut first)).await {
            Ok(Ok(1)) => first[0] == crate::remoting::tls::HANDSHAKE_RECORD,
            _ => return, // closed, failed or silent: nothing to serve
        }
    };
    if !wants_tls {
        let (read_half, write_half) = stream.into_split();
        return serve_connection(shared, read_half, write_half, remote, service).await;
    }
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => {
            let (read_half, write_half) = tokio::io::split(tls_stream);
            serve_connection(shared, read_half, write_half, remote, service).await;
        }
        Ok(Err(e)) => {
            tracing::info!(%remote, error = %e, "TLS handshake failed; connection closed");
        }
        Err(_) => tracing::info!(%remote, "TLS handshake not finished in time; connection closed"),
    }
}

async fn serve_connection<R, W>(
    shared: Arc<Shared>,
    read_half: R,
    mut write_half: W,
    remote: SocketAddr,
    service: Port,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<RemotingCommand>(shared.broker.config.max_outbound_frames);
    let channel = Channel { id, remote, tx };
    let closing = CancellationToken::new();
    tracing::debug!(id, %remote, ?service, "connection opened");

    let writer_closing = closing.clone();
    let writer = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        while let Some(cmd) = rx.recv().await {
            // Coalesce whatever else is queued into one write.
            encode_queued(cmd, &mut rx, &mut buf);
            tokio::select! {
                r = write_half.write_all(&buf) => if r.is_err() { break },
                // The peer stopped reading and its queue overflowed.
                () = writer_closing.cancelled() => break,
            }
        }
        let _ = write_half.shutdown().await;
    });

    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
    let mut frames = FramedRead::new(read_half, RemotingCodec);
    let idle = shared.broker.config.channel_expired_timeout;
    loop {
        let next = tokio::select! {
            () = shared.stop.cancelled() => break,
            () = closing.cancelled() => break,
            n = tokio::time::timeout(idle, frames.next()) => n,
        };
        let inbound = match next {
            Err(_) => {
                tracing::info!(id, %remote, "idle connection closed");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::info!(id, %remote, error = %e, "unreadable stream; connection closed");
                break;
            }
            Ok(Some(Ok(i))) => i,
        };
        let cmd = match inbound {
            Inbound::Command(c) => c,
            Inbound::Malformed {
                opaque,
                oneway,
                serialize_type,
                reason,
            } => {
                tracing::info!(id, %remote, reason, "malformed frame");
                if !oneway {
                    let mut resp =
                        RemotingCommand::request(response::SYSTEM_ERROR).with_remark(reason);
                    resp.flag = crate::remoting::FLAG_RESPONSE;
                    resp.opaque = opaque.unwrap_or(0);
                    resp.serialize_type = serialize_type;
                    if !queue_reply(&channel, &closing, resp) {
                        break;
                    }
                }
                continue;
            }
        };
        if cmd.is_response() {
            // An answer to a request the broker sent this client (a running-info call);
            // answers nobody waits for are dropped.
            shared.broker.clients.answer(channel.id, cmd);
            continue;
        }
        let permit = tokio::select! {
            () = shared.stop.cancelled() => break,
            () = closing.cancelled() => break,
            p = Arc::clone(&in_flight).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let shared2 = Arc::clone(&shared);
        let channel2 = channel.clone();
        let closing2 = closing.clone();
        shared.tasks.spawn(async move {
            let reply = handle(&shared2, &channel2, cmd, service).await;
            if let Some(reply) = reply {
                queue_reply(&channel2, &closing2, reply);
            }
            drop(permit);
        });
    }
    // Let the requests already taken finish (shutdown answers held pulls at once).
    let _ = tokio::time::timeout(
        DRAIN_TIMEOUT,
        in_flight.acquire_many(MAX_IN_FLIGHT_PER_CONNECTION as u32),
    )
    .await;
    let changed = shared.broker.clients.channel_closed(id);
    for group in changed {
        shared.broker.clients.notify_ids_changed(&group);
    }
    drop(channel);
    // The writer ends once every sender (this one, the clients registry's) is gone and the
    // queue is written, or at once when the peer stopped reading.
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        tracing::debug!(id, "writer did not finish; aborted");
        writer.abort();
    }
    tracing::debug!(id, %remote, "connection closed");
}

/// Queues a reply; a full queue means the peer does not read: close it.
fn queue_reply(channel: &Channel, closing: &CancellationToken, reply: RemotingCommand) -> bool {
    match channel.tx.try_send(reply) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::warn!(remote = %channel.remote, "outbound queue full (client not reading); closing");
            closing.cancel();
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// Answers one request and records its latency (`rocketmq_rpc_latency`).
async fn handle(
    shared: &Shared,
    channel: &Channel,
    cmd: RemotingCommand,
    service: Port,
) -> Option<RemotingCommand> {
    let received = Instant::now();
    let (code, oneway) = (cmd.code, cmd.is_oneway());
    let mut held = false;
    let reply = answer(shared, channel, cmd, service, received, &mut held).await;
    let metrics = &shared.broker.metrics;
    if metrics.enabled() {
        metrics.request(
            requests::route_of(service, code).map(|r| r.name),
            code,
            reply.as_ref().filter(|_| !oneway).map(|r| r.code),
            held,
            received.elapsed(),
        );
    }
    reply
}

async fn answer(
    shared: &Shared,
    channel: &Channel,
    cmd: RemotingCommand,
    service: Port,
    received: Instant,
    held: &mut bool,
) -> Option<RemotingCommand> {
    let broker = &shared.broker;
    tracing::trace!(code = cmd.code, opaque = cmd.opaque, flag = cmd.flag, ext = ?cmd.ext_fields, ?service, ser = ?cmd.serialize_type, "request");
    let send = is_send(cmd.code) && service == Port::Broker;
    // What an answer made here needs; the command itself moves to the processor.
    let oneway = cmd.is_oneway();
    let code = cmd.code;
    let reply = cmd.response(response::SUCCESS);
    if send {
        let waiting = broker.stats.sends_in_flight.fetch_add(1, Ordering::AcqRel);
        if waiting >= broker.config.send_thread_pool_queue_capacity {
            broker.stats.sends_in_flight.fetch_sub(1, Ordering::AcqRel);
            return busy(
                broker,
                oneway,
                reply,
                "[REJECTREQUEST]system busy, start flow control for a while",
            );
        }
    }
    let outcome = {
        let broker = Arc::clone(broker);
        let channel = channel.clone();
        let inline = requests::runs_inline(service, &broker, &cmd);
        let work = move || {
            if send && broker.send_waited_too_long(received) {
                return None;
            }
            Some(requests::process(service, &broker, &channel, &cmd, true))
        };
        if inline {
            Ok(work())
        } else {
            tokio::task::spawn_blocking(work).await
        }
    };
    if send {
        broker.stats.sends_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
    let outcome = match outcome {
        Ok(Some(o)) => o,
        Ok(None) => {
            return busy(
                broker,
                oneway,
                reply,
                "[TIMEOUT_CLEAN_QUEUE]broker busy, start flow control for a while",
            )
        }
        Err(e) => {
            tracing::error!(error = %e, code, "request processing panicked");
            return (!oneway).then(|| RemotingCommand {
                code: response::SYSTEM_ERROR,
                ..reply.with_remark("internal error")
            });
        }
    };
    match outcome {
        Outcome::Reply(r) => Some(r),
        Outcome::NoReply => None,
        Outcome::Hold(pull) => {
            *held = true;
            let held = pull;
            let wake = broker.waiters.wait(
                &held.topic,
                held.queue_id,
                held.offset,
                held.filter
                    .clone()
                    .map(|f| f as Arc<dyn mqstore::MessageFilter>),
            );
            // A message that arrived between the pull and the registration is not missed.
            let arrived = broker
                .store
                .max_offset_in_queue(&held.topic, held.queue_id)
                .0
                > held.offset;
            if !arrived && !shared.stop.is_cancelled() {
                tokio::select! {
                    _ = wake => {}
                    () = tokio::time::sleep(held.timeout) => {}
                    () = shared.stop.cancelled() => {}
                }
            }
            let broker = Arc::clone(broker);
            let channel = channel.clone();
            let request = held.request;
            match tokio::task::spawn_blocking(move || broker.process(&channel, &request, false))
                .await
            {
                Ok(Outcome::Reply(r)) => Some(r),
                _ => None,
            }
        }
    }
}

/// SYSTEM_BUSY for a send (`reply` is the request's response template); a oneway send is
/// counted as not stored instead.
fn busy(
    broker: &Broker,
    oneway: bool,
    reply: RemotingCommand,
    remark: &str,
) -> Option<RemotingCommand> {
    let n = broker.stats.busy_rejections.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(rejections = n, remark, "send path saturated");
    }
    if oneway {
        broker
            .stats
            .oneway_send_failures
            .fetch_add(1, Ordering::Relaxed);
        return None;
    }
    Some(RemotingCommand {
        code: response::SYSTEM_BUSY,
        ..reply.with_remark(remark)
    })
}

/// How often the ACL file is looked at for changes.
const ACL_RELOAD_POLL: Duration = Duration::from_secs(1);

fn reload_acl(acl: &crate::acl::Acl) {
    match acl.reload_if_changed() {
        None => {}
        Some(Ok(accounts)) => {
            tracing::info!(path = %acl.path().display(), accounts, "ACL file changed: new accounts in force");
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "ACL file changed but cannot be used; the last good accounts stay in force");
        }
    }
}

async fn housekeeping(shared: Arc<Shared>) {
    let broker = &shared.broker;
    let mut persist = tokio::time::interval(broker.config.flush_consumer_offset_interval);
    let mut expire = tokio::time::interval(Duration::from_secs(10));
    let mut check = tokio::time::interval(broker.config.transaction_check_interval);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    let mut copy = tokio::time::interval(crate::cluster::slave_sync::INTERVAL);
    copy.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let master = broker.config.is_master();
    let mut acl_poll = tokio::time::interval(ACL_RELOAD_POLL);
    acl_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sample = tokio::time::interval(crate::state::progress::SAMPLE_INTERVAL);
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => return,
            _ = acl_poll.tick(), if broker.acl.is_some() => {
                if let Some(acl) = &broker.acl {
                    reload_acl(acl);
                }
            }
            // A slave neither checks transactions (its master does) nor has its own
            // metadata: it copies the master's.
            _ = check.tick(), if master => {
                let b = Arc::clone(broker);
                let _ = tokio::task::spawn_blocking(move || b.check_transactions()).await;
            }
            _ = copy.tick(), if !master => {
                crate::cluster::slave_sync::copy_from_master(broker).await;
            }
            _ = persist.tick() => {
                let b = Arc::clone(broker);
                let _ = tokio::task::spawn_blocking(move || b.persist_offsets()).await;
            }
            // Reads a record's store time per lagging queue: off the I/O threads.
            _ = sample.tick() => {
                let b = Arc::clone(broker);
                let _ = tokio::task::spawn_blocking(move || {
                    let topics = b.topics.all();
                    b.progress.sample(&b.store, &topics, &b.offsets, crate::state::metadata::now_millis());
                })
                .await;
            }
            _ = expire.tick() => {
                for group in broker.clients.expire_idle(broker.config.channel_expired_timeout) {
                    broker.clients.notify_ids_changed(&group);
                }
            }
        }
    }
}

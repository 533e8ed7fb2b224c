//! A small remoting client: pipelined requests matched by opaque. Used by the client
//! subcommands, the name-server registration, the tests and the benchmark.

pub mod ops;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;

use crate::acl::Credentials;
use crate::remoting::tls::ClientTls;
use crate::remoting::{
    encode_queued, Inbound, RemotingCodec, RemotingCommand, SerializeType, FLAG_ONEWAY,
};

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting or writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No answer within the timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection closed before the answer came.
    #[error("connection closed")]
    Closed,
}

type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>>;

/// Set once the connection's reader has stopped: no response can arrive any more.
type Closed = Arc<std::sync::atomic::AtomicBool>;

/// One connection to a broker or name server.
#[derive(Debug)]
pub struct Client {
    out: mpsc::Sender<RemotingCommand>,
    pending: Pending,
    closed: Closed,
    next_opaque: AtomicI32,
    serialize_type: SerializeType,
    credentials: Option<Credentials>,
    /// Requests the server sent us (e.g. NOTIFY_CONSUMER_IDS_CHANGED).
    pub server_requests: Mutex<mpsc::Receiver<RemotingCommand>>,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Client {
    /// Connects.
    ///
    /// # Errors
    /// The connect error.
    pub async fn connect(addr: SocketAddr) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read_half, write_half) = stream.into_split();
        Ok(Client::over(read_half, write_half))
    }

    /// Connects with TLS, verifying the server's certificate as `tls` says.
    ///
    /// # Errors
    /// The connect error, or a failed handshake (an untrusted certificate, a server
    /// without TLS).
    pub async fn connect_tls(addr: SocketAddr, tls: &ClientTls) -> Result<Client, ClientError> {
        let name = tls.server_name_for(addr)?;
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&tls.config));
        let stream = connector.connect(name, stream).await?;
        let (read_half, write_half) = tokio::io::split(stream);
        Ok(Client::over(read_half, write_half))
    }

    /// A client over a connected byte stream's two halves.
    fn over<R, W>(read_half: R, mut write_half: W) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (out, mut out_rx) = mpsc::channel::<RemotingCommand>(4096);
        let pending: Pending = Arc::default();
        let (server_tx, server_rx) = mpsc::channel(64);
        let writer = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            while let Some(cmd) = out_rx.recv().await {
                encode_queued(cmd, &mut out_rx, &mut buf);
                if write_half.write_all(&buf).await.is_err() {
                    break;
                }
            }
        });
        let reader_pending = Arc::clone(&pending);
        let closed: Closed = Arc::default();
        let reader_closed = Arc::clone(&closed);
        let reader = tokio::spawn(async move {
            let mut frames = FramedRead::new(read_half, RemotingCodec);
            while let Some(Ok(inbound)) = frames.next().await {
                let Inbound::Command(cmd) = inbound else {
                    continue;
                };
                if cmd.is_response() {
                    let waiter = reader_pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&cmd.opaque);
                    if let Some(w) = waiter {
                        let _ = w.send(cmd);
                    }
                } else {
                    let _ = server_tx.try_send(cmd);
                }
            }
            // Connection gone: fail everything still waiting, and every later request
            // (the flag first, so that a request registered after the clearing sees it).
            reader_closed.store(true, Ordering::SeqCst);
            reader_pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        });
        Client {
            out,
            pending,
            closed,
            next_opaque: AtomicI32::new(1),
            serialize_type: SerializeType::Json,
            credentials: None,
            server_requests: Mutex::new(server_rx),
            reader,
            writer,
        }
    }

    /// Makes later requests use the binary (`ROCKETMQ`) header.
    pub fn use_binary_headers(&mut self, binary: bool) {
        self.serialize_type = if binary {
            SerializeType::RocketMq
        } else {
            SerializeType::Json
        };
    }

    /// Signs every later request with `credentials` (for a broker with `aclEnable=true`).
    pub fn set_credentials(&mut self, credentials: Option<Credentials>) {
        self.credentials = credentials;
    }

    /// Sends a request and waits for its response.
    ///
    /// # Errors
    /// [`ClientError::Timeout`], [`ClientError::Closed`].
    pub async fn invoke(
        &self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        cmd.opaque = opaque;
        cmd.serialize_type = self.serialize_type;
        if let Some(c) = &self.credentials {
            c.sign(&mut cmd);
        }
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(opaque, tx);
        if self.closed.load(Ordering::SeqCst) || self.out.send(cmd).await.is_err() {
            self.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&opaque);
            return Err(ClientError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&opaque);
                Err(ClientError::Timeout(timeout))
            }
        }
    }

    /// Answers a request the server sent (one of [`server_requests`](Self::server_requests));
    /// `response` is built with [`RemotingCommand::response`] of that request.
    ///
    /// # Errors
    /// [`ClientError::Closed`].
    pub async fn respond(&self, mut response: RemotingCommand) -> Result<(), ClientError> {
        response.serialize_type = self.serialize_type;
        self.out
            .send(response)
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Sends a oneway request.
    ///
    /// # Errors
    /// [`ClientError::Closed`].
    pub async fn oneway(&self, mut cmd: RemotingCommand) -> Result<(), ClientError> {
        cmd.opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        cmd.flag |= FLAG_ONEWAY;
        cmd.serialize_type = self.serialize_type;
        if let Some(c) = &self.credentials {
            c.sign(&mut cmd);
        }
        self.out.send(cmd).await.map_err(|_| ClientError::Closed)
    }
}

/// A message decoded from a pull or query body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Topic.
    pub topic: String,
    /// Queue.
    pub queue_id: i32,
    /// Queue offset.
    pub queue_offset: i64,
    /// CommitLog offset.
    pub physical_offset: i64,
    /// STORETIMESTAMP.
    pub store_timestamp: i64,
    /// The body.
    pub body: Vec<u8>,
    /// Properties (RocketMQ encoding).
    pub properties: String,
    /// The offset message id.
    pub msg_id: String,
    /// Deliveries before this one (RECONSUMETIMES).
    pub reconsume_times: i32,
    /// BORNTIMESTAMP (the producer's clock).
    pub born_timestamp: i64,
}

impl ReceivedMessage {
    /// A property.
    pub fn property(&self, key: &str) -> Option<&str> {
        mqstore::format::property(&self.properties, key)
    }
}

/// Splits a body of concatenated records (PULL_MESSAGE, QUERY_MESSAGE).
///
/// # Errors
/// A description of the first record that does not decode.
pub fn decode_messages(mut body: &[u8]) -> Result<Vec<ReceivedMessage>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        match mqstore::format::decode_record(body, true) {
            Ok(mqstore::format::Decoded::Message(v)) => {
                out.push(ReceivedMessage {
                    topic: v.topic.to_owned(),
                    queue_id: v.queue_id,
                    queue_offset: v.queue_offset,
                    physical_offset: v.physical_offset,
                    store_timestamp: v.store_timestamp,
                    body: v.body.to_vec(),
                    properties: v.user_properties().to_owned(),
                    msg_id: mqstore::format::offset_msg_id(v.store_host, v.physical_offset as u64),
                    reconsume_times: v.reconsume_times,
                    born_timestamp: v.born_timestamp,
                });
                body = &body[v.total_size as usize..];
            }
            Ok(mqstore::format::Decoded::Blank { .. }) => {
                return Err("blank record in a body".into())
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(out)
}

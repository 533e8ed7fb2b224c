//! The slave side: one thread that dials the master's HA port, says where its log ends,
//! appends every frame through [`MessageStore::append_replicated`] (which checks each
//! record before it counts) and acknowledges the new end after each append and at least
//! every `haSendHeartbeatInterval`. It reconnects 5 s after a failure.
//!
//! A frame that does not continue this log stops replication for good (until restart):
//! below this log's end the two logs have diverged, above it the master no longer holds the
//! bytes in between. Splicing either would make a copy that is not the master's log.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqstore::{MessageStore, PhysicalOffset, ReplicaError};

use super::{
    timed_out, LinkState, Replication, Worker, FRAME_HEADER, IO_SLICE, MAX_FRAME_BODY,
    RECONNECT_INTERVAL,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The running HA client, stopped and joined by [`HaClient::stop`] or on drop.
#[derive(Debug)]
pub struct HaClient {
    worker: Worker,
}

impl HaClient {
    /// Starts following the master `repl` knows of (or learns of later).
    ///
    /// # Errors
    /// The thread cannot start.
    pub fn start(store: Arc<MessageStore>, repl: Arc<Replication>) -> std::io::Result<HaClient> {
        let worker = Worker::spawn("ha-client", move |stop| run(&store, &repl, stop))?;
        Ok(HaClient { worker })
    }

    /// Stops and joins the thread. Idempotent.
    pub fn stop(&self) {
        self.worker.stop();
    }
}

/// Why a connection to the master ended.
enum Ended {
    /// Shutdown.
    Stopped,
    /// Try again after the reconnect interval.
    Retry(String),
    /// Do not try again: the logs do not continue each other.
    Refuse {
        slave_end: u64,
        master_offset: u64,
        reason: String,
    },
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::Acquire) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
}

fn run(store: &MessageStore, repl: &Replication, stop: &AtomicBool) {
    let mut warned_for = None;
    while !stop.load(Ordering::Acquire) {
        let Some(addr) = repl.master_ha() else {
            sleep_unless(stop, Duration::from_millis(500));
            continue;
        };
        if matches!(repl.link(), LinkState::Refused { .. }) {
            sleep_unless(stop, Duration::from_millis(500));
            continue;
        }
        repl.set_link(LinkState::Connecting);
        let stream = match connect(&addr) {
            Ok(s) => s,
            Err(e) => {
                if warned_for.as_deref() != Some(addr.as_str()) {
                    tracing::warn!(master = %addr, error = %e, "cannot reach the master's HA port; retrying every 5 s");
                    warned_for = Some(addr.clone());
                }
                sleep_unless(stop, RECONNECT_INTERVAL);
                continue;
            }
        };
        warned_for = None;
        tracing::info!(master = %addr, "connected to the master");
        let ended = follow(&stream, store, repl, stop);
        let _ = stream.shutdown(Shutdown::Both);
        match ended {
            Ended::Stopped => return,
            Ended::Retry(why) => {
                tracing::warn!(master = %addr, "replication connection ended: {why}; reconnecting in 5 s");
                repl.set_link(LinkState::Connecting);
                sleep_unless(stop, RECONNECT_INTERVAL);
            }
            Ended::Refuse {
                slave_end,
                master_offset,
                reason,
            } => {
                tracing::error!(master = %addr, slave_end, master_offset, "replication stopped: {reason}");
                repl.set_link(LinkState::Refused {
                    slave_end,
                    master_offset,
                    reason,
                });
            }
        }
    }
}

fn connect(addr: &str) -> std::io::Result<TcpStream> {
    let sock = addr
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("cannot resolve {addr}")))?;
    let stream = TcpStream::connect_timeout(&sock, CONNECT_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IO_SLICE))?;
    stream.set_write_timeout(Some(IO_SLICE))?;
    Ok(stream)
}

/// The state of one connection: what was reported and when anything last moved.
struct Link<'a> {
    stream: &'a TcpStream,
    repl: &'a Replication,
    stop: &'a AtomicBool,
    reported: u64,
    last_sent: Instant,
    last_read: Instant,
}

impl Link<'_> {
    fn report(&mut self, offset: u64) -> Result<(), Ended> {
        self.stream
            .write_all(&(offset as i64).to_be_bytes())
            .map_err(|e| Ended::Retry(format!("cannot send the offset: {e}")))?;
        self.reported = offset;
        self.last_sent = Instant::now();
        Ok(())
    }

    /// Reads what the socket has (at least one byte) into `buf`, sending heartbeats while
    /// waiting.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize, Ended> {
        let settings = self.repl.settings();
        loop {
            if self.stop.load(Ordering::Acquire) {
                return Err(Ended::Stopped);
            }
            match self.stream.read(buf) {
                Ok(0) => return Err(Ended::Retry("the master closed the connection".into())),
                Ok(n) => {
                    self.last_read = Instant::now();
                    return Ok(n);
                }
                Err(e) if timed_out(&e) || e.kind() == std::io::ErrorKind::Interrupted => {
                    if self.last_read.elapsed() > settings.housekeeping {
                        return Err(Ended::Retry(format!(
                            "nothing from the master for {} ms",
                            self.last_read.elapsed().as_millis()
                        )));
                    }
                }
                Err(e) => return Err(Ended::Retry(format!("read failed: {e}"))),
            }
            if self.last_sent.elapsed() >= settings.heartbeat {
                self.report(self.reported)?;
            }
        }
    }
}

fn follow(
    stream: &TcpStream,
    store: &MessageStore,
    repl: &Replication,
    stop: &AtomicBool,
) -> Ended {
    let mut link = Link {
        stream,
        repl,
        stop,
        reported: 0,
        last_sent: Instant::now(),
        last_read: Instant::now(),
    };
    match follow_frames(&mut link, store) {
        Ok(never) => match never {},
        Err(ended) => ended,
    }
}

fn follow_frames(
    link: &mut Link<'_>,
    store: &MessageStore,
) -> Result<std::convert::Infallible, Ended> {
    let start = store.replica_resume().0;
    link.report(start)?;
    // One read takes whatever the socket holds; every whole frame in it is appended and
    // acknowledged once (RocketMQ's slave reads into a 4 MiB buffer the same way).
    let mut buf = vec![0u8; FRAME_HEADER + MAX_FRAME_BODY];
    let (mut lo, mut hi) = (0usize, 0usize);
    loop {
        let mut appended = None;
        while hi - lo >= FRAME_HEADER {
            let header = &buf[lo..lo + FRAME_HEADER];
            let offset = i64::from_be_bytes(header[..8].try_into().unwrap_or([0; 8]));
            let size = i32::from_be_bytes(header[8..].try_into().unwrap_or([0; 4]));
            let (Ok(offset), Ok(size)) = (u64::try_from(offset), usize::try_from(size)) else {
                return Err(Ended::Retry(format!(
                    "malformed frame header (offset {offset}, size {size})"
                )));
            };
            if size > MAX_FRAME_BODY {
                return Err(Ended::Retry(format!(
                    "frame of {size} bytes exceeds the {MAX_FRAME_BODY}-byte limit"
                )));
            }
            if hi - lo < FRAME_HEADER + size {
                break;
            }
            let body = &buf[lo + FRAME_HEADER..lo + FRAME_HEADER + size];
            match store.append_replicated(PhysicalOffset(offset), body) {
                Ok(progress) => appended = Some((progress.visible_end.0, offset + size as u64)),
                Err(e) => return Err(refusal(e, offset)),
            }
            lo += FRAME_HEADER + size;
        }
        if let Some((visible, master_offset)) = appended {
            link.repl.set_link(LinkState::Connected { master_offset });
            if visible > link.reported {
                link.report(visible)?;
            }
        }
        if lo > 0 {
            buf.copy_within(lo..hi, 0);
            hi -= lo;
            lo = 0;
        }
        hi += link.read_some(&mut buf[hi..])?;
    }
}

/// How a refused frame ends the connection.
fn refusal(e: mqstore::Error, offset: u64) -> Ended {
    match e {
        mqstore::Error::Replica(ReplicaError::OffsetMismatch { expected, offered }) => {
            let reason = if offered < expected {
                format!(
                    "the master's log ends at {offered} but this slave holds bytes up to {expected}: \
                     the logs have diverged. Stop this broker and cut its CommitLog at {offered} \
                     (`broker-lite verify -c <slave.conf> --truncate-at {offered}`), then start it again"
                )
            } else {
                format!(
                    "the master sends from {offered} but this slave ends at {expected}: the master no \
                     longer holds the bytes in between. Move this slave's store away and start it \
                     empty to copy the master's last file on"
                )
            };
            Ended::Refuse {
                slave_end: expected,
                master_offset: offered,
                reason,
            }
        }
        mqstore::Error::ShutDown => Ended::Stopped,
        e => Ended::Retry(format!("frame at {offset} refused: {e}")),
    }
}

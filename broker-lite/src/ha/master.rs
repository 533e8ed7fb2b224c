//! The master side: accepts slaves on `haListenPort`; per slave, one thread reads its
//! offsets (the first says where to start, the rest are acks) and one streams CommitLog
//! bytes from there.
//!
//! Bad input closes only that connection, with a log line: an offset that is negative,
//! beyond this log's end (the slave's log has diverged) or below its start (cleanup removed
//! what the slave needs), an ack beyond the end, or silence longer than
//! `haHousekeepingInterval`. Before closing for a start offset it cannot serve, the master
//! sends one heartbeat frame naming where its log really ends (or starts), so that the
//! slave can tell the operator both offsets.

use std::io::{IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mqstore::{MessageStore, PhysicalOffset};

use crate::acl::Acl;

use super::{frame_header, timed_out, Replication, Worker, DATA_POLL, IO_SLICE};

/// How often the accept loop looks for new slaves and for shutdown.
const ACCEPT_POLL: Duration = Duration::from_millis(100);

/// The running HA server: the accept thread and, under it, one pair per slave. Stopped
/// and joined by [`HaServer::stop`] or on drop.
#[derive(Debug)]
pub struct HaServer {
    addr: SocketAddr,
    worker: Worker,
}

impl HaServer {
    /// Starts serving slaves on `listener`.
    ///
    /// # Errors
    /// The listener cannot be made non-blocking or the thread cannot start.
    /// With `acl`, only peers in its global white list are served.
    pub fn start(
        listener: TcpListener,
        store: Arc<MessageStore>,
        repl: Arc<Replication>,
        acl: Option<Arc<Acl>>,
    ) -> std::io::Result<HaServer> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let worker = Worker::spawn("ha-accept", move |stop| {
            accept_loop(&listener, &store, &repl, acl.as_deref(), stop);
        })?;
        Ok(HaServer { addr, worker })
    }

    /// The address slaves dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every slave connection and joins the threads. Idempotent.
    pub fn stop(&self) {
        self.worker.stop();
    }
}

fn accept_loop(
    listener: &TcpListener,
    store: &Arc<MessageStore>,
    repl: &Arc<Replication>,
    acl: Option<&Acl>,
    stop: &AtomicBool,
) {
    // The connections' threads watch their own flag, set when this loop ends.
    let stop_all = Arc::new(AtomicBool::new(false));
    let mut connections: Vec<(Arc<Connection>, JoinHandle<()>)> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, peer)) if acl.is_some_and(|a| !a.peer_allowed(peer.ip())) => {
                tracing::warn!(slave = %peer, "HA connection refused: ACL is on and the address is not in globalWhiteRemoteAddresses");
                drop(stream);
            }
            Ok((stream, peer)) => match Connection::start(stream, peer, store, repl, &stop_all) {
                Ok(c) => connections.push(c),
                Err(e) => tracing::warn!(slave = %peer, error = %e, "could not serve a slave"),
            },
            Err(e) if timed_out(&e) => std::thread::sleep(ACCEPT_POLL),
            Err(e) => {
                tracing::warn!(error = %e, "HA accept failed");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
        // A finished connection's thread is gone; one still closing is joined at the end.
        connections.retain(|(_, h)| !h.is_finished());
    }
    stop_all.store(true, Ordering::Release);
    for (c, h) in connections {
        c.close();
        let _ = h.join();
    }
}

/// What one slave's threads share.
#[derive(Clone)]
struct Serving {
    conn: Arc<Connection>,
    store: Arc<MessageStore>,
    repl: Arc<Replication>,
    stop: Arc<AtomicBool>,
}

impl Serving {
    /// Reads acks on a second thread and streams on this one until either ends.
    fn run(self) {
        let acks = self.clone();
        let reader = std::thread::Builder::new()
            .name("ha-acks".into())
            .spawn(move || {
                acks.conn.read_offsets(&acks.store, &acks.repl, &acks.stop);
            });
        let conn = &self.conn;
        match reader {
            Ok(reader) => {
                if let Err(e) = conn.transfer(&self.store, &self.repl, &self.stop) {
                    tracing::warn!(slave = %conn.peer, "{e}; closing the connection");
                }
                conn.close();
                let _ = reader.join();
            }
            Err(e) => {
                tracing::warn!(slave = %conn.peer, error = %e, "no thread for the slave's acks");
            }
        }
        conn.close();
        self.repl.remove_slave(conn.id);
        tracing::info!(slave = %conn.peer, "slave disconnected");
    }
}

/// One slave's connection.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    closed: AtomicBool,
}

impl Connection {
    fn start(
        stream: TcpStream,
        peer: SocketAddr,
        store: &Arc<MessageStore>,
        repl: &Arc<Replication>,
        stop: &Arc<AtomicBool>,
    ) -> std::io::Result<(Arc<Connection>, JoinHandle<()>)> {
        stream.set_nonblocking(false)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_SLICE))?;
        stream.set_write_timeout(Some(IO_SLICE))?;
        let id = repl.add_slave(peer);
        tracing::info!(slave = %peer, "slave connected");
        let conn = Arc::new(Connection {
            stream,
            peer,
            id,
            closed: AtomicBool::new(false),
        });
        let serving = Serving {
            conn: Arc::clone(&conn),
            store: Arc::clone(store),
            repl: Arc::clone(repl),
            stop: Arc::clone(stop),
        };
        let thread = std::thread::Builder::new()
            .name("ha-transfer".into())
            .spawn(move || serving.run());
        match thread {
            Ok(t) => Ok((conn, t)),
            Err(e) => {
                repl.remove_slave(id);
                Err(e)
            }
        }
    }

    fn close(&self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let _ = self.stream.shutdown(Shutdown::Both);
        }
    }

    fn done(&self, stop: &AtomicBool) -> bool {
        self.closed.load(Ordering::Acquire) || stop.load(Ordering::Acquire)
    }

    /// Reads the slave's 8-byte offsets until the connection ends.
    fn read_offsets(&self, store: &MessageStore, repl: &Replication, stop: &AtomicBool) {
        let housekeeping = repl.settings().housekeeping;
        let mut buf = [0u8; 8];
        let mut have = 0usize;
        let mut first = true;
        let mut last_read = Instant::now();
        while !self.done(stop) {
            match (&self.stream).read(&mut buf[have..]) {
                Ok(0) => break,
                Ok(n) => {
                    last_read = Instant::now();
                    have += n;
                    if have < buf.len() {
                        continue;
                    }
                    have = 0;
                    let value = i64::from_be_bytes(buf);
                    let end = store.max_offset().0;
                    let Ok(offset) = u64::try_from(value) else {
                        tracing::warn!(slave = %self.peer, value, "slave sent a negative offset; closing");
                        break;
                    };
                    if first {
                        first = false;
                        repl.slave_requested(self.id, offset);
                    } else if offset > end {
                        tracing::warn!(slave = %self.peer, acked = offset, master_end = end, "slave acknowledged bytes beyond the master's end; closing");
                        break;
                    } else {
                        repl.slave_acked(self.id, offset);
                    }
                }
                Err(e) if timed_out(&e) => {
                    if last_read.elapsed() > housekeeping {
                        tracing::warn!(slave = %self.peer, silent_ms = last_read.elapsed().as_millis() as u64, "no word from the slave; closing");
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(slave = %self.peer, error = %e, "slave connection ended");
                    break;
                }
            }
        }
        self.close();
    }

    /// Streams the CommitLog from where the slave asked until the connection ends.
    fn transfer(
        &self,
        store: &MessageStore,
        repl: &Replication,
        stop: &AtomicBool,
    ) -> Result<(), String> {
        let settings = repl.settings().clone();
        let requested = loop {
            if self.done(stop) {
                return Ok(());
            }
            let seen = repl.data_generation();
            if let Some(r) = repl.requested_of(self.id) {
                break r;
            }
            repl.wait_data(seen, DATA_POLL);
        };
        let (min, end) = (store.min_offset().0, store.max_offset().0);
        let mut next = if requested == 0 {
            // A slave with nothing starts at the master's last file, as RocketMQ's does.
            end - end % store.commit_log_file_size()
        } else {
            requested
        };
        if next > end {
            self.write_frame(end, &[], stop, settings.housekeeping)?;
            return Err(format!(
                "slave asks for offset {next} but this log ends at {end}: the slave's log has diverged"
            ));
        }
        if next < min {
            self.write_frame(min, &[], stop, settings.housekeeping)?;
            return Err(format!(
                "slave asks for offset {next} but this log starts at {min} (older files were deleted)"
            ));
        }
        tracing::info!(slave = %self.peer, from = next, "streaming the CommitLog to the slave");
        let mut last_write = Instant::now();
        while !self.done(stop) {
            let seen = repl.data_generation();
            if let Some(chunk) = store.read_raw(PhysicalOffset(next), settings.batch) {
                let bytes = chunk.bytes();
                self.write_frame(next, bytes, stop, settings.housekeeping)?;
                next += bytes.len() as u64;
                last_write = Instant::now();
                continue;
            }
            if next < store.min_offset().0 {
                return Err(format!(
                    "the slave is at {next}, which cleanup has deleted; it must be re-copied"
                ));
            }
            if last_write.elapsed() >= settings.heartbeat {
                self.write_frame(next, &[], stop, settings.housekeeping)?;
                last_write = Instant::now();
            }
            repl.wait_data(seen, DATA_POLL);
        }
        Ok(())
    }

    /// Writes one frame; gives up when the slave has taken nothing for `stall_limit`.
    fn write_frame(
        &self,
        offset: u64,
        body: &[u8],
        stop: &AtomicBool,
        stall_limit: Duration,
    ) -> Result<(), String> {
        let header = frame_header(offset, body.len());
        let mut slices = [IoSlice::new(&header), IoSlice::new(body)];
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        let mut last_progress = Instant::now();
        while rest.iter().any(|s| !s.is_empty()) {
            if self.done(stop) {
                return Err("connection closed".into());
            }
            match (&self.stream).write_vectored(rest) {
                Ok(0) => return Err("the slave stopped reading".into()),
                Ok(n) => {
                    IoSlice::advance_slices(&mut rest, n);
                    last_progress = Instant::now();
                }
                Err(e) if timed_out(&e) || e.kind() == std::io::ErrorKind::Interrupted => {
                    if last_progress.elapsed() > stall_limit {
                        return Err(format!(
                            "the slave took no bytes for {} ms",
                            last_progress.elapsed().as_millis()
                        ));
                    }
                }
                Err(e) => return Err(format!("write to the slave failed: {e}")),
            }
        }
        Ok(())
    }
}

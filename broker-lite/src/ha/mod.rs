//! Master/slave replication over RocketMQ's classic HA protocol (RocketMQ 4.9
//! `store/ha/HAService.java`, `HAConnection.java`; 5.x `DefaultHAService` speaks the same
//! bytes).
//!
//! Plain TCP on `haListenPort`, no remoting frames:
//! * slave → master: an 8-byte big-endian long, the slave's CommitLog end. The first one is
//!   where the master starts sending (0: the start of the master's last file); later ones
//!   are acknowledgements.
//! * master → slave: frames `{phyOffset: i64 BE, bodySize: i32 BE, body}` of raw CommitLog
//!   bytes, at most `haTransferBatchSize`, never crossing a file; `bodySize` 0 is a
//!   heartbeat.
//!
//! [`Replication`] is the state both sides share with the send path: the acknowledged
//! offsets a SYNC_MASTER send waits for (one waiter list, woken by every ack), the slaves
//! connected to a master, and a slave's link to its master.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mqstore::{BrokerRole, PutStatus};

use crate::config::BrokerConfig;

pub mod master;
pub mod slave;

/// The longest a writer sleeps before looking for new CommitLog bytes again (RocketMQ:
/// 100 ms); sends wake it sooner.
const DATA_POLL: Duration = Duration::from_millis(100);
/// The slave reconnects this long after a failed or closed connection (RocketMQ: 5 s).
const RECONNECT_INTERVAL: Duration = Duration::from_secs(5);
/// Socket reads and writes time out this often so the threads notice shutdown.
const IO_SLICE: Duration = Duration::from_millis(500);
/// Largest frame body a slave accepts (RocketMQ's slave read buffer is 4 MiB).
const MAX_FRAME_BODY: usize = 4 * 1024 * 1024;
/// Frame header: phyOffset (8) + bodySize (4).
const FRAME_HEADER: usize = 12;

/// The HA settings (RocketMQ `MessageStoreConfig` names).
#[derive(Debug, Clone)]
pub struct HaSettings {
    /// `haSendHeartbeatInterval`: idle time before a heartbeat (either direction).
    pub heartbeat: Duration,
    /// `haHousekeepingInterval`: a connection silent this long is closed.
    pub housekeeping: Duration,
    /// `haTransferBatchSize`: the largest frame body a master sends.
    pub batch: usize,
    /// `haSlaveFallbehindMax`: a SYNC_MASTER send with the best slave further behind than
    /// this is answered SLAVE_NOT_AVAILABLE at once.
    pub fall_behind_max: u64,
    /// `slaveTimeout`: how long a SYNC_MASTER send waits for a slave's ack.
    pub slave_timeout: Duration,
}

impl HaSettings {
    /// The settings in `config`.
    pub fn of(config: &BrokerConfig) -> HaSettings {
        HaSettings {
            heartbeat: config.ha_send_heartbeat_interval,
            housekeeping: config.ha_housekeeping_interval,
            batch: config.ha_transfer_batch_size.max(1),
            fall_behind_max: config.ha_slave_fallbehind_max,
            slave_timeout: config.slave_timeout,
        }
    }
}

/// One slave connected to this master.
#[derive(Debug, Clone)]
pub struct SlaveInfo {
    /// Its address (the HA connection's peer).
    pub addr: SocketAddr,
    /// Where it asked the stream to start, once it has.
    pub requested: Option<u64>,
    /// The highest CommitLog offset it acknowledged.
    pub acked: u64,
    /// When it connected.
    pub since: Instant,
}

/// A slave's link to its master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// No master address known yet (no `haMasterAddress`, no name-server answer).
    NoMaster,
    /// Connecting or waiting to reconnect.
    Connecting,
    /// Receiving; `master_offset` is where the last frame ended.
    Connected {
        /// End of the last frame received.
        master_offset: u64,
    },
    /// Replication stopped for good: the logs have diverged (or the master no longer has
    /// what this slave needs). Needs an operator; see the error.
    Refused {
        /// Where this slave's log ends.
        slave_end: u64,
        /// Where the master's stream starts.
        master_offset: u64,
        /// What happened and what to do.
        reason: String,
    },
}

#[derive(Debug)]
struct State {
    slaves: BTreeMap<u64, SlaveInfo>,
    next_id: u64,
    /// `push2SlaveMaxOffset`: the highest offset any slave acknowledged.
    push_max: u64,
    /// A slave's link to its master.
    link: LinkState,
    /// The master's HA address (from `haMasterAddress` or a name server's answer).
    master_ha: Option<String>,
    /// `master_ha` came from `haMasterAddress`: a name server's answer does not replace it.
    master_ha_configured: bool,
    /// The master's remoting address (for the metadata copy).
    master_addr: Option<String>,
    /// Other brokers of this group that registered with this broker's route service, by
    /// brokerId: their address and when they last did.
    members: BTreeMap<u64, (String, Instant)>,
}

/// Replication state shared by the HA threads and the send path.
#[derive(Debug)]
pub struct Replication {
    role: BrokerRole,
    settings: HaSettings,
    state: Mutex<State>,
    /// Woken by every ack (SYNC_MASTER waiters) and link change.
    acked: Condvar,
    /// Counts appends; the master's writers sleep on it.
    data: Mutex<u64>,
    grown: Condvar,
}

impl Replication {
    /// The state for a broker with `config`.
    pub fn new(config: &BrokerConfig) -> Replication {
        let master_ha = config.ha_master_address.clone();
        let master_addr = master_ha.as_deref().and_then(remoting_addr_of);
        Replication {
            role: config.store.broker_role,
            settings: HaSettings::of(config),
            state: Mutex::new(State {
                slaves: BTreeMap::new(),
                next_id: 1,
                push_max: 0,
                link: if master_ha.is_some() {
                    LinkState::Connecting
                } else {
                    LinkState::NoMaster
                },
                master_ha_configured: master_ha.is_some(),
                master_ha,
                master_addr,
                members: BTreeMap::new(),
            }),
            acked: Condvar::new(),
            data: Mutex::new(0),
            grown: Condvar::new(),
        }
    }

    /// This broker's role.
    pub fn role(&self) -> BrokerRole {
        self.role
    }

    /// The HA settings.
    pub fn settings(&self) -> &HaSettings {
        &self.settings
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the master's writers that the CommitLog grew.
    pub fn data_arrived(&self) {
        let mut n = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        *n = n.wrapping_add(1);
        self.grown.notify_all();
    }

    fn data_generation(&self) -> u64 {
        *self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps until the CommitLog grows past generation `seen` or `timeout` passes.
    fn wait_data(&self, seen: u64, timeout: Duration) {
        let guard = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        if *guard == seen {
            let _ = self
                .grown
                .wait_timeout(guard, timeout)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// SYNC_MASTER: after a send was stored with its record ending at `end`, waits for a
    /// slave to acknowledge it. `PutOk` once one has; `SlaveNotAvailable` at once when no
    /// slave is connected or the best is more than `haSlaveFallbehindMax` behind;
    /// `FlushSlaveTimeout` when none acknowledged within `slaveTimeout`.
    pub fn wait_for_slave(&self, end: u64) -> PutStatus {
        let deadline = Instant::now() + self.settings.slave_timeout;
        let mut st = self.lock();
        if st.slaves.is_empty() || end.saturating_sub(st.push_max) >= self.settings.fall_behind_max
        {
            return PutStatus::SlaveNotAvailable;
        }
        drop(st);
        self.data_arrived();
        st = self.lock();
        while st.push_max < end {
            let now = Instant::now();
            if now >= deadline {
                return PutStatus::FlushSlaveTimeout;
            }
            st = self
                .acked
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        PutStatus::PutOk
    }

    fn add_slave(&self, addr: SocketAddr) -> u64 {
        let mut st = self.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.slaves.insert(
            id,
            SlaveInfo {
                addr,
                requested: None,
                acked: 0,
                since: Instant::now(),
            },
        );
        id
    }

    fn remove_slave(&self, id: u64) {
        self.lock().slaves.remove(&id);
    }

    fn slave_requested(&self, id: u64, offset: u64) {
        if let Some(s) = self.lock().slaves.get_mut(&id) {
            s.requested = Some(offset);
        }
        self.data_arrived();
    }

    fn slave_acked(&self, id: u64, offset: u64) {
        let mut st = self.lock();
        if let Some(s) = st.slaves.get_mut(&id) {
            s.acked = s.acked.max(offset);
        }
        if offset > st.push_max {
            st.push_max = offset;
            self.acked.notify_all();
        }
    }

    fn requested_of(&self, id: u64) -> Option<u64> {
        self.lock().slaves.get(&id).and_then(|s| s.requested)
    }

    /// The slaves connected to this master.
    pub fn slaves(&self) -> Vec<SlaveInfo> {
        self.lock().slaves.values().cloned().collect()
    }

    /// The highest offset any slave acknowledged (`push2SlaveMaxOffset`).
    pub fn push_max(&self) -> u64 {
        self.lock().push_max
    }

    /// A slave's link to its master.
    pub fn link(&self) -> LinkState {
        self.lock().link.clone()
    }

    fn set_link(&self, link: LinkState) {
        self.lock().link = link;
    }

    /// The master's HA address, when known.
    pub fn master_ha(&self) -> Option<String> {
        self.lock().master_ha.clone()
    }

    /// The master's remoting address, when known.
    pub fn master_addr(&self) -> Option<String> {
        self.lock().master_addr.clone()
    }

    /// What a name server answered a registering slave (`masterAddr`, `haServerAddr`);
    /// `haMasterAddress` from the configuration wins over it.
    pub fn learn_master(&self, master_addr: Option<&str>, ha_addr: Option<&str>) {
        let mut st = self.lock();
        if let Some(a) = master_addr.filter(|a| !a.is_empty()) {
            st.master_addr = Some(a.to_owned());
        }
        if !st.master_ha_configured {
            if let Some(h) = ha_addr.filter(|a| !a.is_empty()) {
                // A master restarted on another port is followed there.
                st.master_ha = Some(h.to_owned());
                if st.link == LinkState::NoMaster {
                    st.link = LinkState::Connecting;
                }
            }
        }
    }
}

impl Replication {
    /// Notes a broker of this group registering with the built-in route service.
    pub fn note_member(&self, broker_id: u64, addr: &str) {
        self.lock()
            .members
            .insert(broker_id, (addr.to_owned(), Instant::now()));
    }

    /// Forgets a member that unregistered.
    pub fn forget_member(&self, broker_id: u64) {
        self.lock().members.remove(&broker_id);
    }

    /// The group's other brokers heard from within `ttl` (RocketMQ's name server drops a
    /// broker silent for 120 s), plus, on a slave, its master.
    pub fn members(&self, ttl: Duration) -> Vec<(u64, String)> {
        let st = self.lock();
        let mut out: Vec<(u64, String)> = st
            .members
            .iter()
            .filter(|(_, (_, seen))| seen.elapsed() < ttl)
            .map(|(id, (addr, _))| (*id, addr.clone()))
            .collect();
        if self.role == BrokerRole::Slave {
            if let Some(m) = &st.master_addr {
                if !out.iter().any(|(id, _)| *id == 0) {
                    out.push((0, m.clone()));
                }
            }
        }
        out
    }
}

/// The remoting address of a master whose HA port is `ha`: RocketMQ brokers listen for HA
/// on `listenPort + 1`.
fn remoting_addr_of(ha: &str) -> Option<String> {
    let (host, port) = ha.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    Some(format!("{host}:{}", port.checked_sub(1)?))
}

/// A named thread with a stop flag, stopped and joined by [`Worker::stop`] or on drop.
#[derive(Debug)]
struct Worker {
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Worker {
    /// Runs `body` on a thread named `name`; it should return soon after its flag is set.
    fn spawn(
        name: &str,
        body: impl FnOnce(&AtomicBool) + Send + 'static,
    ) -> std::io::Result<Worker> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || body(&flag))?;
        Ok(Worker {
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Sets the flag and joins the thread. Idempotent.
    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(h) = handle {
            let name = h.thread().name().unwrap_or("ha").to_owned();
            if h.join().is_err() {
                tracing::error!(thread = %name, "an HA thread panicked");
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A socket read or write that only timed out (the threads' shutdown check), not failed.
fn timed_out(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The 12-byte frame header.
fn frame_header(offset: u64, len: usize) -> [u8; FRAME_HEADER] {
    let mut h = [0u8; FRAME_HEADER];
    h[..8].copy_from_slice(&(offset as i64).to_be_bytes());
    h[8..].copy_from_slice(&(len as i32).to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_wait_statuses() {
        let mut c = BrokerConfig {
            slave_timeout: Duration::from_millis(200),
            ha_slave_fallbehind_max: 1000,
            ..BrokerConfig::default()
        };
        let r = Replication::new(&c);
        assert_eq!(
            r.wait_for_slave(10),
            PutStatus::SlaveNotAvailable,
            "no slave"
        );
        let id = r.add_slave("127.0.0.1:1".parse().expect("addr"));
        assert_eq!(
            r.wait_for_slave(5000),
            PutStatus::SlaveNotAvailable,
            "too far behind"
        );
        assert_eq!(r.wait_for_slave(10), PutStatus::FlushSlaveTimeout, "no ack");
        r.slave_acked(id, 10);
        assert_eq!(r.wait_for_slave(10), PutStatus::PutOk);
        r.remove_slave(id);
        assert_eq!(
            r.wait_for_slave(10),
            PutStatus::SlaveNotAvailable,
            "slave gone"
        );
        // A waiter is woken by the ack (a generous timeout: the machine may be loaded).
        c.slave_timeout = Duration::from_secs(60);
        let r = Replication::new(&c);
        let id = r.add_slave("127.0.0.1:1".parse().expect("addr"));
        std::thread::scope(|s| {
            let waiter = s.spawn(|| r.wait_for_slave(20));
            std::thread::sleep(Duration::from_millis(20));
            r.slave_acked(id, 25);
            assert_eq!(waiter.join().expect("join"), PutStatus::PutOk);
        });
    }

    #[test]
    fn a_learned_master_address_follows_the_name_server_and_a_configured_one_stays() {
        let r = Replication::new(&BrokerConfig::default());
        assert_eq!(r.link(), LinkState::NoMaster);
        r.learn_master(Some("10.0.0.1:10911"), Some("10.0.0.1:10912"));
        assert_eq!(r.master_ha().as_deref(), Some("10.0.0.1:10912"));
        assert_eq!(r.link(), LinkState::Connecting);
        r.learn_master(Some("10.0.0.1:20911"), Some("10.0.0.1:20912"));
        assert_eq!(r.master_ha().as_deref(), Some("10.0.0.1:20912"));
        assert_eq!(r.master_addr().as_deref(), Some("10.0.0.1:20911"));
        let c = BrokerConfig {
            ha_master_address: Some("10.0.0.9:10912".into()),
            ..BrokerConfig::default()
        };
        let r = Replication::new(&c);
        assert_eq!(r.master_addr().as_deref(), Some("10.0.0.9:10911"));
        r.learn_master(Some("10.0.0.1:10911"), Some("10.0.0.1:10912"));
        assert_eq!(r.master_ha().as_deref(), Some("10.0.0.9:10912"));
    }

    #[test]
    fn master_address_from_ha_address() {
        assert_eq!(
            remoting_addr_of("10.0.0.1:10912").as_deref(),
            Some("10.0.0.1:10911")
        );
        assert_eq!(remoting_addr_of("nonsense"), None);
    }
}

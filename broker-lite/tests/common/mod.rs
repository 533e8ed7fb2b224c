//! Starts the real `broker-lite` binary on free loopback ports.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Small files so that tests stay light on disk.
pub const SMALL_STORE: &str = "mappedFileSizeCommitLog=16777216\nmappedFileSizeConsumeQueue=60000\nmaxIndexNum=40000\nmaxHashSlotNum=10000\n";

pub struct RunningBroker {
    pub child: Child,
    pub addr: SocketAddr,
    pub routes: Option<SocketAddr>,
    /// A master's HA address.
    pub ha: Option<SocketAddr>,
    /// The Prometheus endpoint, when on.
    pub metrics: Option<SocketAddr>,
    /// The web console, when on.
    pub console: Option<SocketAddr>,
    stdout: BufReader<std::process::ChildStdout>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_broker-lite")
}

impl RunningBroker {
    /// Starts a broker on `dir` with `conf` appended to [`SMALL_STORE`].
    pub fn start(dir: &Path, conf: &str) -> RunningBroker {
        Self::start_on(dir, conf, 0, 0)
    }

    /// As [`start`](Self::start), on given ports (0 = any free one).
    pub fn start_on(dir: &Path, conf: &str, port: u16, namesrv_port: u16) -> RunningBroker {
        Self::start_with(
            dir,
            conf,
            &[
                "--port",
                &port.to_string(),
                "--namesrv-port",
                &namesrv_port.to_string(),
            ],
        )
    }

    /// A broker on `dir` with `conf` appended to [`SMALL_STORE`] and these arguments.
    pub fn start_with(dir: &Path, conf: &str, args: &[&str]) -> RunningBroker {
        let conf_path = dir.join("broker.conf");
        std::fs::write(&conf_path, format!("{SMALL_STORE}{conf}")).expect("write conf");
        let mut child = Command::new(binary())
            .arg("-c")
            .arg(&conf_path)
            .arg("--store")
            .arg(dir.join("store"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn broker-lite");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !line.contains("listening on") {
            line.clear();
            if stdout.read_line(&mut line).expect("read") == 0 || Instant::now() > deadline {
                let _ = child.kill();
                panic!("broker-lite did not start");
            }
        }
        // "broker-lite listening on A (clients dial B), route service on C, store at D"
        let word_after = |marker: &str| -> Option<String> {
            let at = line.find(marker)? + marker.len();
            Some(
                line[at..]
                    .split([' ', ',', ')'])
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            )
        };
        let addr = word_after("clients dial ")
            .and_then(|a| a.parse().ok())
            .expect("broker address");
        let routes = word_after("route service on ").and_then(|a| a.parse().ok());
        let ha = word_after("HA on ").and_then(|a| a.parse().ok());
        let metrics = word_after("metrics on http://")
            .and_then(|a| a.split('/').next().and_then(|a| a.parse().ok()));
        let console = word_after("console on http://")
            .and_then(|a| a.split('/').next().and_then(|a| a.parse().ok()));
        RunningBroker {
            child,
            addr,
            routes,
            ha,
            metrics,
            console,
            stdout,
        }
    }

    /// SIGTERM, then waits; returns (exit success, rest of stdout).
    pub fn terminate(mut self) -> (bool, String) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let mut rest = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                let _ = std::io::Read::read_to_string(&mut self.stdout, &mut rest);
                return (status.success(), rest);
            }
            assert!(
                Instant::now() < deadline,
                "broker-lite did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait").is_none()
    }
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a client subcommand against `addr`; returns stdout (panics on failure).
pub fn cli(args: &[&str]) -> String {
    let out = Command::new(binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run subcommand");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port P, with P + 1 (a master's default HA port), free now and below Linux's ephemeral
/// range (32768–60999): the kernel never hands such a port to an outgoing connection, so a
/// broker restarted on it finds it free again. (Ports from `bind(0)` lie in that range; a
/// restart on one of them, or on the port after it, failed with EADDRINUSE about once in a
/// few dozen runs.) Successive calls in one process return different pairs.
pub fn stable_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = u32::from(std::process::id() as u16);
    loop {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(i < 6000, "no free port pair below the ephemeral range");
        let p = 20_000 + ((seed * 7919 + i * 2) % 12_000) as u16;
        let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
        if free(p) && free(p + 1) {
            return p;
        }
    }
}

/// Copies a stopped broker's directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// One HTTP/1.1 exchange on a fresh connection: (status, head, body).
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request).expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_owned(), b.to_owned()))
        .unwrap_or_default();
    (status, head, body)
}

/// `GET path` with `extra_headers` (each ending in CRLF): (status, body).
pub fn http_get(addr: SocketAddr, path: &str, extra_headers: &str) -> (u16, String) {
    let (status, _, body) = http_exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra_headers}\r\n")
            .as_bytes(),
    );
    (status, body)
}

/// Sends half a request head (`partial`) and then nothing; asserts the server closes (or
/// answers) within 25 s instead of keeping the slow client.
pub fn assert_slow_client_dropped(addr: SocketAddr, partial: &[u8]) {
    let mut slow = std::net::TcpStream::connect(addr).expect("connect");
    slow.write_all(partial).expect("write");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let _ = slow.read(&mut buf); // the close (or a 408)
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the slow client was kept"
    );
}

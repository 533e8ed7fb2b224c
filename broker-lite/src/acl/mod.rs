//! Access control as RocketMQ's "plain ACL" does it (RocketMQ 4.4+, `aclEnable=true`):
//! accounts in `plain_acl.yml`, requests signed with the account's secret key, and a
//! permission per topic and consumer group.
//!
//! A request passes when, in this order (RocketMQ 4.9's `PlainPermissionManager.validate`):
//! 1. its peer address is in `globalWhiteRemoteAddresses`: nothing else is checked;
//! 2. it names an account (`AccessKey`) and comes from that account's
//!    `whiteRemoteAddress`: nothing else is checked;
//! 3. its `Signature` is the account's HMAC of the request (see [`sign`]), compared in
//!    constant time;
//! 4. the account holds what the request code needs ([`Needs`]): `admin: true` for
//!    administration, PUB or SUB on each topic and group it touches (a group's own entry or
//!    the account's default).
//!
//! A refusal never says whether an access key exists, and never echoes a secret.

mod accounts;
pub mod address;
pub mod sign;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

pub use accounts::{Account, Accounts, ParseError};
pub use sign::Credentials;

use crate::remoting::RemotingCommand;

/// A permission bit set (RocketMQ's `Permission` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Perm(u8);

impl Perm {
    /// Nothing, and it overrides any other bit.
    pub const DENY: Perm = Perm(1);
    /// Either PUB or SUB will do (what a route lookup needs).
    pub const ANY: Perm = Perm(2);
    /// Send.
    pub const PUB: Perm = Perm(4);
    /// Consume.
    pub const SUB: Perm = Perm(8);
    /// Both.
    pub const PUB_SUB: Perm = Perm(4 | 8);

    /// `DENY`, `PUB`, `SUB`, `PUB|SUB` or `SUB|PUB`.
    pub fn parse(text: &str) -> Option<Perm> {
        match text.trim() {
            "DENY" => Some(Perm::DENY),
            "PUB" => Some(Perm::PUB),
            "SUB" => Some(Perm::SUB),
            "PUB|SUB" | "SUB|PUB" => Some(Perm::PUB_SUB),
            _ => None,
        }
    }

    /// Whether holding `self` grants `needed` (RocketMQ's `Permission.checkPermission`).
    pub fn grants(self, needed: Perm) -> bool {
        if self.0 & Perm::DENY.0 != 0 {
            return false;
        }
        if needed.0 & Perm::ANY.0 != 0 {
            return self.0 & (Perm::PUB.0 | Perm::SUB.0) != 0;
        }
        needed.0 & self.0 != 0
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match *self {
            Perm::DENY => "DENY",
            Perm::ANY => "PUB or SUB",
            Perm::PUB => "PUB",
            Perm::SUB => "SUB",
            _ => "PUB|SUB",
        })
    }
}

/// What a permission is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    /// A topic.
    Topic(String),
    /// A consumer group (RocketMQ keys it by its `%RETRY%` topic).
    Group(String),
}

impl Resource {
    /// The resource a topic name stands for: a retry topic is its group.
    pub fn of_topic(topic: &str) -> Resource {
        match topic.strip_prefix(RETRY_PREFIX) {
            Some(group) => Resource::Group(group.to_owned()),
            None => Resource::Topic(topic.to_owned()),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Topic(t) => write!(f, "topic `{t}`"),
            Resource::Group(g) => write!(f, "group `{g}`"),
        }
    }
}

const RETRY_PREFIX: &str = "%RETRY%";

/// RocketMQ's message-trace topic: a PUB on it alone is always allowed (RocketMQ's rule,
/// so that tracing works for every producer).
const TRACE_TOPIC: &str = "RMQ_SYS_TRACE_TOPIC";

/// What a request needs beyond a valid signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// An account with `admin: true`.
    pub admin: bool,
    /// Each resource with the permission it needs.
    pub resources: Vec<(Resource, Perm)>,
}

impl Needs {
    /// An administration request.
    pub fn admin() -> Needs {
        Needs {
            admin: true,
            resources: Vec::new(),
        }
    }

    /// Only a valid signature.
    pub fn signed() -> Needs {
        Needs::default()
    }

    /// Adds `perm` on `resource`.
    #[must_use]
    pub fn and(mut self, resource: Resource, perm: Perm) -> Needs {
        self.resources.push((resource, perm));
        self
    }
}

/// The remark of every signature refusal: the same whether the access key is unknown or the
/// signature wrong, so that it tells nothing about which accounts exist.
pub const SIGNATURE_REFUSED: &str =
    "ACL: the request's signature does not verify (unknown AccessKey, wrong secret, or content changed after signing)";

/// The largest `plain_acl.yml` read; a larger file is refused unread.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// A `plain_acl.yml` that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AclError {
    /// The file could not be read (missing, unreadable, too large).
    #[error("{path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file's content is wrong.
    #[error("{path}: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        error: ParseError,
    },
}

/// The accounts of one `plain_acl.yml`, reloaded when the file changes.
#[derive(Debug)]
pub struct Acl {
    path: PathBuf,
    current: RwLock<Arc<Accounts>>,
    /// (modified time, length) of the file last read, good or bad.
    stamp: Mutex<Option<(SystemTime, u64)>>,
}

impl Acl {
    /// Reads `path`.
    ///
    /// # Errors
    /// The file is missing, too large or malformed (the error names the line).
    pub fn load(path: &Path) -> Result<Acl, AclError> {
        let (accounts, stamp) = read(path)?;
        tracing::info!(path = %path.display(), accounts = accounts.by_key.len(), white = accounts.global_white.len(), "ACL loaded");
        Ok(Acl {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(accounts)),
            stamp: Mutex::new(Some(stamp)),
        })
    }

    /// Accounts parsed from `plain_acl.yml` text (tests, fuzzing); never reloaded.
    ///
    /// # Errors
    /// The text's first fault.
    pub fn from_text(text: &str) -> Result<Acl, ParseError> {
        accounts::parse(text).map(Acl::from_accounts)
    }

    /// Accounts made from `accounts` (tests and embedding); never reloaded.
    pub fn from_accounts(accounts: Accounts) -> Acl {
        Acl {
            path: PathBuf::new(),
            current: RwLock::new(Arc::new(accounts)),
            stamp: Mutex::new(None),
        }
    }

    /// The file it reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file if its time or length changed. `None`: unchanged; `Some(Ok)`:
    /// new accounts in force; `Some(Err)`: the last good accounts stay in force.
    pub fn reload_if_changed(&self) -> Option<Result<usize, AclError>> {
        if self.path.as_os_str().is_empty() {
            return None;
        }
        let now = stamp_of(&self.path).ok();
        let mut stamp = self.stamp.lock().unwrap_or_else(PoisonError::into_inner);
        if now.is_some() && now == *stamp {
            return None;
        }
        if now.is_none() && stamp.is_none() {
            return None; // still missing: said once
        }
        *stamp = now;
        drop(stamp);
        Some(read(&self.path).map(|(accounts, _)| {
            let n = accounts.by_key.len();
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(accounts);
            n
        }))
    }

    fn accounts(&self) -> Arc<Accounts> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Checks `req` from `peer`; `needs` is what its code needs, or why that could not be
    /// told from the request. `Err` is the refusal's remark.
    ///
    /// # Errors
    /// The remark of a NO_PERMISSION answer.
    pub fn check(
        &self,
        peer: IpAddr,
        req: &RemotingCommand,
        needs: Result<Needs, String>,
        code_name: &str,
    ) -> Result<(), String> {
        let accounts = self.accounts();
        if accounts.global_white.iter().any(|p| p.matches(peer)) {
            return Ok(());
        }
        let Some(access_key) = req.ext(sign::ACCESS_KEY) else {
            return Err(format!(
                "ACL: {code_name} carries no AccessKey; this broker takes signed requests only"
            ));
        };
        let Some(account) = accounts.by_key.get(access_key) else {
            // The same work as for a known key: the time tells nothing either.
            let _ = sign::signature_valid(access_key, req);
            return Err(SIGNATURE_REFUSED.into());
        };
        if account.white.matches(peer) {
            return Ok(());
        }
        if !sign::signature_valid(&account.secret_key, req) {
            return Err(SIGNATURE_REFUSED.into());
        }
        let needs = needs.map_err(|why| format!("ACL: {code_name}: {why}"))?;
        if needs.resources.len() == 1
            && needs.resources[0] == (Resource::Topic(TRACE_TOPIC.into()), Perm::PUB)
        {
            return Ok(());
        }
        if needs.admin && !account.admin {
            return Err(format!(
                "ACL: {code_name} needs an admin account; AccessKey {access_key} is not one"
            ));
        }
        if account.admin && account.perms.is_empty() {
            return Ok(());
        }
        for (resource, needed) in &needs.resources {
            if !owned(account, resource).grants(*needed) {
                return Err(format!(
                    "ACL: AccessKey {access_key} has no {needed} permission on {resource}"
                ));
            }
        }
        Ok(())
    }

    /// Whether `access_key` names an admin account whose secret is `secret_key` (HTTP Basic
    /// credentials on the metrics port). Compared in constant time; an unknown key costs
    /// the same.
    pub fn admin_password_matches(&self, access_key: &str, secret_key: &str) -> bool {
        use hmac::{KeyInit, Mac};
        let accounts = self.accounts();
        let account = accounts.by_key.get(access_key);
        let expected = account.map_or(access_key, |a| a.secret_key.as_str());
        // Equal-length digests compared with HMAC's constant-time check.
        let digest = |s: &str| {
            let mut mac =
                <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(b"broker-lite basic auth")
                    .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
            mac.update(s.as_bytes());
            mac
        };
        let matches = digest(secret_key)
            .verify_slice(&digest(expected).finalize().into_bytes())
            .is_ok();
        matches && account.is_some_and(|a| a.admin)
    }

    /// Whether a broker of the same group at `peer` (a slave: its HA stream, its copy of
    /// the master's metadata, its registration) may connect: those requests carry no
    /// signature, so the peer must be in `globalWhiteRemoteAddresses`.
    pub fn peer_allowed(&self, peer: IpAddr) -> bool {
        self.accounts().global_white.iter().any(|p| p.matches(peer))
    }
}

fn owned(account: &Account, resource: &Resource) -> Perm {
    account
        .perms
        .get(resource)
        .copied()
        .unwrap_or(match resource {
            Resource::Topic(_) => account.default_topic,
            Resource::Group(_) => account.default_group,
        })
}

fn stamp_of(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.modified()?, m.len()))
}

fn read(path: &Path) -> Result<(Accounts, (SystemTime, u64)), AclError> {
    let read_error = |reason: String| AclError::Read {
        path: path.to_owned(),
        reason,
    };
    let stamp = stamp_of(path).map_err(|e| read_error(e.to_string()))?;
    if stamp.1 > MAX_FILE_BYTES {
        return Err(read_error(format!(
            "{} bytes; the limit is {MAX_FILE_BYTES}",
            stamp.1
        )));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| read_error(e.to_string()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(read_error(format!(
            "grew past the {MAX_FILE_BYTES}-byte limit while read"
        )));
    }
    let accounts = accounts::parse(&text).map_err(|error| AclError::Parse {
        path: path.to_owned(),
        error,
    })?;
    Ok((accounts, stamp))
}

/// One account for [`accounts_of`]: access key, secret key, admin, default topic
/// permission, default group permission, explicit permissions.
pub type AccountSpec<'a> = (&'a str, &'a str, bool, Perm, Perm, &'a [(Resource, Perm)]);

/// An accounts table made in code (tests, embedding), with no per-account white address.
pub fn accounts_of(global_white: &[&str], list: &[AccountSpec<'_>]) -> Accounts {
    Accounts {
        global_white: global_white
            .iter()
            .filter_map(|p| address::AddressPattern::parse(p).ok())
            .collect(),
        by_key: list
            .iter()
            .map(|(ak, sk, admin, dt, dg, perms)| {
                (
                    (*ak).to_owned(),
                    Account {
                        access_key: (*ak).to_owned(),
                        secret_key: (*sk).to_owned(),
                        white: address::AddressPattern::Nothing,
                        admin: *admin,
                        default_topic: *dt,
                        default_group: *dg,
                        perms: perms.iter().cloned().collect::<HashMap<_, _>>(),
                    },
                )
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn acl() -> Acl {
        Acl::from_accounts(accounts_of(
            &["10.10.0.*"],
            &[
                (
                    "producer1",
                    "secret-p",
                    false,
                    Perm::DENY,
                    Perm::SUB,
                    &[
                        (Resource::Topic("orders".into()), Perm::PUB_SUB),
                        (Resource::Topic("closed".into()), Perm::DENY),
                        (Resource::Group("blocked".into()), Perm::DENY),
                    ],
                ),
                ("admin-ak", "secret-a", true, Perm::DENY, Perm::DENY, &[]),
            ],
        ))
    }

    fn signed(ak: &str, sk: &str) -> RemotingCommand {
        let mut r = RemotingCommand::request(10).with_ext("topic", "orders");
        Credentials {
            access_key: ak.into(),
            secret_key: sk.into(),
        }
        .sign(&mut r);
        r
    }

    const PEER: &str = "127.0.0.1";

    #[test]
    fn the_order_of_the_checks() {
        let acl = acl();
        let pub_orders = || Ok(Needs::signed().and(Resource::Topic("orders".into()), Perm::PUB));
        // White-listed peer: unsigned is fine.
        let bare = RemotingCommand::request(10);
        assert!(acl.check(ip("10.10.0.9"), &bare, pub_orders(), "X").is_ok());
        // Otherwise an AccessKey is needed, and a signature that verifies.
        let e = acl
            .check(ip(PEER), &bare, pub_orders(), "X")
            .expect_err("unsigned");
        assert!(e.contains("no AccessKey"), "{e}");
        let good = signed("producer1", "secret-p");
        assert!(acl.check(ip(PEER), &good, pub_orders(), "X").is_ok());
        let wrong_secret = signed("producer1", "secret-x");
        let unknown = signed("nobody-ak", "secret-p");
        let e1 = acl
            .check(ip(PEER), &wrong_secret, pub_orders(), "X")
            .expect_err("bad");
        let e2 = acl
            .check(ip(PEER), &unknown, pub_orders(), "X")
            .expect_err("bad");
        assert_eq!(e1, e2, "a refusal must not tell whether the key exists");
        assert!(!e1.contains("secret-p") && !e1.contains("secret-x"), "{e1}");
        // Permissions: explicit entries, then defaults, DENY wins.
        let allows = |who: &RemotingCommand, r: Resource, p: Perm| {
            acl.check(ip(PEER), who, Ok(Needs::signed().and(r, p)), "X")
                .is_ok()
        };
        let topic = |t: &str| Resource::Topic(t.into());
        let group = |g: &str| Resource::Group(g.into());
        assert!(!allows(&good, topic("closed"), Perm::PUB));
        assert!(!allows(&good, topic("other"), Perm::SUB));
        assert!(allows(&good, group("g"), Perm::SUB));
        assert!(!allows(&good, group("blocked"), Perm::SUB));
        assert!(allows(&good, topic(TRACE_TOPIC), Perm::PUB));
        let e = acl
            .check(
                ip(PEER),
                &good,
                Ok(Needs::admin()),
                "UPDATE_AND_CREATE_TOPIC",
            )
            .expect_err("admin");
        assert!(e.contains("admin"), "{e}");
        let admin = signed("admin-ak", "secret-a");
        assert!(acl.check(ip(PEER), &admin, Ok(Needs::admin()), "X").is_ok());
        assert!(allows(&admin, topic("any"), Perm::PUB));
        let e = acl
            .check(ip(PEER), &good, Err("missing `topic`".into()), "SEND")
            .expect_err("untellable");
        assert!(e.contains("missing `topic`"), "{e}");
        assert!(acl.peer_allowed(ip("10.10.0.1")));
        assert!(!acl.peer_allowed(ip(PEER)));
    }

    #[test]
    fn grants_follow_rocketmqs_table() {
        assert!(Perm::PUB_SUB.grants(Perm::PUB));
        assert!(Perm::SUB.grants(Perm::ANY));
        assert!(!Perm::SUB.grants(Perm::PUB));
        assert!(!Perm::DENY.grants(Perm::ANY));
        assert_eq!(
            Resource::of_topic("%RETRY%g1"),
            Resource::Group("g1".into())
        );
        assert_eq!(Resource::of_topic("t"), Resource::Topic("t".into()));
    }

    #[test]
    fn a_bad_reload_keeps_the_last_good_accounts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("plain_acl.yml");
        let good = "accounts:\n  - accessKey: producer1\n    secretKey: secret-p\n    defaultTopicPerm: PUB\n";
        std::fs::write(&path, good).expect("write");
        let acl = Acl::load(&path).expect("loads");
        assert!(acl.reload_if_changed().is_none(), "unchanged");
        let req = signed("producer1", "secret-p");
        let need = || Ok(Needs::signed().and(Resource::Topic("t".into()), Perm::PUB));
        assert!(acl.check(ip(PEER), &req, need(), "X").is_ok());
        std::fs::write(&path, "accounts:\n  - accessKey: [broken\n").expect("write");
        let e = acl.reload_if_changed().expect("changed").expect_err("bad");
        assert!(e.to_string().contains("line 3"), "{e}"); // where the parser gave up
        assert!(
            acl.check(ip(PEER), &req, need(), "X").is_ok(),
            "last good kept"
        );
        // (A different length: two writes within one clock tick can share a modified time.)
        std::fs::write(&path, "accounts:\n  - accessKey: producer1\n    secretKey: secret-p\n    defaultTopicPerm: DENY\n").expect("write");
        assert_eq!(acl.reload_if_changed().expect("changed").expect("good"), 1);
        assert!(
            acl.check(ip(PEER), &req, need(), "X").is_err(),
            "new rules in force"
        );
        let huge = std::fs::File::create(&path).expect("create");
        huge.set_len(MAX_FILE_BYTES + 1).expect("grow");
        let e = acl.reload_if_changed().expect("changed").expect_err("huge");
        assert!(e.to_string().contains("limit"), "{e}");
        assert!(matches!(
            Acl::load(&dir.path().join("absent.yml")),
            Err(AclError::Read { .. })
        ));
    }
}

//! `plain_acl.yml`: the global white list and the accounts, parsed and checked as a
//! whole (a file with any bad entry is refused, never half applied).

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::{Yaml, YamlLoader};

use super::address::AddressPattern;
use super::{Perm, Resource};

/// What the file holds, ready to check requests against.
#[derive(Debug, Default)]
pub struct Accounts {
    /// `globalWhiteRemoteAddresses`: requests from these pass every check.
    pub global_white: Vec<AddressPattern>,
    /// Accounts by access key.
    pub by_key: HashMap<String, Account>,
}

/// One entry of `accounts`.
pub struct Account {
    /// `accessKey`.
    pub access_key: String,
    /// `secretKey` (never printed).
    pub secret_key: String,
    /// `whiteRemoteAddress`: requests naming this account from here pass without a
    /// signature or permission check (RocketMQ's rule).
    pub white: AddressPattern,
    /// `admin`.
    pub admin: bool,
    /// `defaultTopicPerm`.
    pub default_topic: Perm,
    /// `defaultGroupPerm`.
    pub default_group: Perm,
    /// `topicPerms` and `groupPerms`.
    pub perms: HashMap<Resource, Perm>,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("white", &self.white)
            .field("admin", &self.admin)
            .field("default_topic", &self.default_topic)
            .field("default_group", &self.default_group)
            .field("perms", &self.perms)
            .finish()
    }
}

/// Why a `plain_acl.yml` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line of the fault, when it can be placed.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// Parses the file's text.
///
/// # Errors
/// The first fault, with its line where one can be named.
pub fn parse(text: &str) -> Result<Accounts, ParseError> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| ParseError {
        line: Some(e.marker().line()),
        reason: e.info().to_owned(),
    })?;
    let at = |needle: &str, reason: String| ParseError {
        line: line_of(text, needle),
        reason,
    };
    let Some(doc) = docs.first() else {
        return Ok(Accounts::default());
    };
    if !matches!(doc, Yaml::Hash(_)) {
        return Err(ParseError {
            line: Some(1),
            reason: "the top level is not a mapping".into(),
        });
    }
    let mut out = Accounts::default();
    for entry in list(
        &doc["globalWhiteRemoteAddresses"],
        "globalWhiteRemoteAddresses",
    )
    .map_err(|r| at("globalWhiteRemoteAddresses", r))?
    {
        let text = scalar(entry).ok_or_else(|| {
            at(
                "globalWhiteRemoteAddresses",
                "a globalWhiteRemoteAddresses entry is not a string".into(),
            )
        })?;
        out.global_white
            .push(AddressPattern::parse(&text).map_err(|r| at(&text, r))?);
    }
    let accounts = list(&doc["accounts"], "accounts").map_err(|r| at("accounts", r))?;
    for (i, a) in accounts.iter().enumerate() {
        let account = parse_account(a).map_err(|(needle, reason)| {
            at(
                needle.as_deref().unwrap_or("accounts"),
                format!("account {}: {reason}", i + 1),
            )
        })?;
        let key = account.access_key.clone();
        if out.by_key.insert(key.clone(), account).is_some() {
            return Err(at(
                &key,
                format!("account {}: accessKey `{key}` appears twice", i + 1),
            ));
        }
    }
    Ok(out)
}

/// An account, or (the text to find its line by, why it is refused).
fn parse_account(a: &Yaml) -> Result<Account, (Option<String>, String)> {
    if !matches!(a, Yaml::Hash(_)) {
        return Err((None, "not a mapping".into()));
    }
    let access_key = scalar(&a["accessKey"])
        .filter(|k| !k.is_empty())
        .ok_or((None, "`accessKey` is missing or empty".to_owned()))?;
    let secret_key = scalar(&a["secretKey"]).filter(|k| !k.is_empty()).ok_or((
        Some(access_key.clone()),
        "`secretKey` is missing or empty".to_owned(),
    ))?;
    if access_key.chars().count() <= 6 || secret_key.chars().count() <= 6 {
        // RocketMQ's rule (PlainPermissionManager.checkPlainAccessConfig).
        return Err((
            Some(access_key),
            "`accessKey` and `secretKey` must be longer than 6 characters".into(),
        ));
    }
    let white_text = scalar(&a["whiteRemoteAddress"]).unwrap_or_default();
    let white = AddressPattern::parse(&white_text).map_err(|r| (Some(white_text.clone()), r))?;
    let admin = match &a["admin"] {
        Yaml::Boolean(b) => *b,
        Yaml::BadValue | Yaml::Null => false,
        other => match scalar(other).as_deref() {
            Some("true") => true,
            Some("false") => false,
            _ => return Err((Some(access_key), "`admin` is not true or false".into())),
        },
    };
    let perm_field = |key: &str| -> Result<Perm, (Option<String>, String)> {
        match scalar(&a[key]) {
            None => Ok(Perm::DENY),
            Some(text) => Perm::parse(&text)
                .ok_or_else(|| (Some(key.to_owned()), format!("`{key}`: {text:?} {PERMS}"))),
        }
    };
    let default_topic = perm_field("defaultTopicPerm")?;
    let default_group = perm_field("defaultGroupPerm")?;
    let mut perms = HashMap::new();
    for (key, is_topic) in [("topicPerms", true), ("groupPerms", false)] {
        for entry in list(&a[key], key).map_err(|r| (Some(key.to_owned()), r))? {
            let text = scalar(entry)
                .ok_or_else(|| (Some(key.to_owned()), format!("a `{key}` entry is not text")))?;
            let Some((name, perm)) = text.split_once('=') else {
                return Err((Some(text.clone()), format!("`{text}` is not `name=PERM`")));
            };
            let perm = Perm::parse(perm)
                .ok_or_else(|| (Some(text.clone()), format!("`{text}`: {PERMS}")))?;
            let name = name.trim().to_owned();
            let resource = if is_topic {
                Resource::Topic(name)
            } else {
                Resource::Group(name)
            };
            perms.insert(resource, perm);
        }
    }
    Ok(Account {
        access_key,
        secret_key,
        white,
        admin,
        default_topic,
        default_group,
        perms,
    })
}

const PERMS: &str = "is not one of DENY, PUB, SUB, PUB|SUB, SUB|PUB";

/// A YAML list (absent or null = empty).
fn list<'a>(y: &'a Yaml, what: &str) -> Result<&'a [Yaml], String> {
    match y {
        Yaml::Array(items) => Ok(items),
        Yaml::BadValue | Yaml::Null => Ok(&[]),
        _ => Err(format!("`{what}` is not a list")),
    }
}

/// A scalar as text (YAML reads `12345678` as a number; RocketMQ takes it as the key).
fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The first line holding `needle`, to point at a semantic fault.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "\
globalWhiteRemoteAddresses:
  - 10.10.103.*
  - 192.168.0.*

accounts:
  - accessKey: RocketMQ
    secretKey: 12345678
    whiteRemoteAddress:
    admin: false
    defaultTopicPerm: DENY
    defaultGroupPerm: SUB
    topicPerms:
      - topicA=DENY
      - topicB=PUB|SUB
      - topicC=SUB
    groupPerms:
      # the group should convert to retry topic
      - groupA=DENY
      - groupB=PUB|SUB
      - groupC=SUB

  - accessKey: rocketmq2
    secretKey: 12345678
    whiteRemoteAddress: 192.168.1.*
    # if it is admin, it could access all resources
    admin: true
";

    #[test]
    fn rocketmqs_example_file_parses() {
        let a = parse(EXAMPLE).expect("parses");
        assert_eq!(a.global_white.len(), 2);
        let rmq = &a.by_key["RocketMQ"];
        assert_eq!(rmq.secret_key, "12345678");
        assert!(!rmq.admin);
        assert_eq!(rmq.white, AddressPattern::Nothing);
        assert_eq!(rmq.default_topic, Perm::DENY);
        assert_eq!(rmq.default_group, Perm::SUB);
        assert_eq!(rmq.perms[&Resource::Topic("topicB".into())], Perm::PUB_SUB);
        assert_eq!(rmq.perms[&Resource::Group("groupA".into())], Perm::DENY);
        let admin = &a.by_key["rocketmq2"];
        assert!(admin.admin);
        assert!(admin.white.matches("192.168.1.20".parse().expect("ip")));
        assert!(!format!("{rmq:?}").contains("12345678"), "secret printed");
    }

    #[test]
    fn faults_name_their_line() {
        let cases = [
            // An unclosed bracket is noticed at the end of the input.
            ("accounts:\n  - accessKey: [unclosed\n", 3),
            ("accounts:\n  - accessKey: abcdefg\n    secretKey: x: y\n", 3),
            (
                "accounts:\n  - accessKey: abcdefg\n    secretKey: 12345678\n    topicPerms:\n      - t=WRITE\n",
                5,
            ),
            (
                "accounts:\n  - accessKey: abcdefg\n    secretKey: 12345678\n    whiteRemoteAddress: 10.0.0.300\n",
                4,
            ),
            (
                "accounts:\n  - accessKey: abcdefg\n    secretKey: 12345678\n  - accessKey: abcdefg\n    secretKey: 87654321\n",
                2,
            ),
            ("globalWhiteRemoteAddresses:\n  - 1.2.3\n", 2),
        ];
        for (text, line) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, Some(line), "{text}: {e}");
        }
        let e =
            parse("accounts:\n  - accessKey: abc\n    secretKey: 12345678\n").expect_err("short");
        assert!(e.reason.contains("longer than 6"), "{e}");
        assert!(parse("").expect("empty").by_key.is_empty());
    }
}

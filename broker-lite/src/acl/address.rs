//! White-list address patterns as `plain_acl.yml` writes them (RocketMQ 4.9's
//! `RemoteAddressStrategyFactory`), plus CIDR blocks.
//!
//! | form | matches |
//! |---|---|
//! | empty | nothing |
//! | `*`, `*.*.*.*`, `*:*:*:*:*:*:*:*` | every address |
//! | `192.168.0.1`, `::1` | that address |
//! | `192.168.0.*`, `192.168.1-10.*`, `10.0.0.5-20` | each segment `*`, `n` or `n-m` |
//! | `192.168.0.{1,2,3}` | those last segments |
//! | `192.168.0.1,10.0.0.2` | any of the listed patterns |
//! | `10.0.0.0/8`, `fd00::/8` | the block |

use std::net::IpAddr;

/// One parsed white-list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressPattern {
    /// Every address.
    Any,
    /// No address (an empty entry).
    Nothing,
    /// A CIDR block (a single address is a /32 or /128).
    Net(ipnet::IpNet),
    /// IPv4 by segment: each an inclusive range.
    Segments([(u8, u8); 4]),
    /// Any of these.
    OneOf(Vec<AddressPattern>),
}

impl AddressPattern {
    /// Parses one entry.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn parse(text: &str) -> Result<AddressPattern, String> {
        let s = text.trim();
        if s.is_empty() {
            return Ok(AddressPattern::Nothing);
        }
        if matches!(s, "*" | "*.*.*.*" | "*:*:*:*:*:*:*:*") {
            return Ok(AddressPattern::Any);
        }
        if let Some(open) = s.find('{') {
            let Some(items) = s[open + 1..].strip_suffix('}') else {
                return Err(format!("`{s}`: `{{` without a closing `}}` at the end"));
            };
            let prefix = &s[..open];
            return items
                .split(',')
                .map(|item| Self::single(&format!("{prefix}{}", item.trim())))
                .collect::<Result<Vec<_>, _>>()
                .map(AddressPattern::OneOf);
        }
        if s.contains(',') {
            return s
                .split(',')
                .map(Self::parse)
                .collect::<Result<Vec<_>, _>>()
                .map(AddressPattern::OneOf);
        }
        Self::single(s)
    }

    fn single(s: &str) -> Result<AddressPattern, String> {
        let s = s.trim();
        if s.contains('/') {
            return s
                .parse::<ipnet::IpNet>()
                .map(AddressPattern::Net)
                .map_err(|_| format!("`{s}` is not a CIDR block"));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(AddressPattern::Net(ipnet::IpNet::from(ip)));
        }
        let parts: Vec<&str> = s.split('.').collect();
        if parts.len() != 4 {
            return Err(format!(
                "`{s}` is not an address, a CIDR block or a four-segment IPv4 pattern"
            ));
        }
        let mut segments = [(0u8, 0u8); 4];
        for (slot, part) in segments.iter_mut().zip(&parts) {
            *slot = segment(part).ok_or_else(|| {
                format!("`{s}`: segment `{part}` is not `*`, a number or `n-m` within 0-255")
            })?;
        }
        Ok(AddressPattern::Segments(segments))
    }

    /// Whether `ip` matches. An IPv4-mapped IPv6 address is matched as IPv4.
    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        match self {
            AddressPattern::Any => true,
            AddressPattern::Nothing => false,
            AddressPattern::Net(net) => net.contains(&ip),
            AddressPattern::Segments(ranges) => match ip {
                IpAddr::V4(v4) => ranges
                    .iter()
                    .zip(v4.octets())
                    .all(|(&(lo, hi), octet)| (lo..=hi).contains(&octet)),
                IpAddr::V6(_) => false,
            },
            AddressPattern::OneOf(all) => all.iter().any(|p| p.matches(ip)),
        }
    }
}

fn segment(part: &str) -> Option<(u8, u8)> {
    let part = part.trim();
    if part == "*" {
        return Some((0, 255));
    }
    if let Some((lo, hi)) = part.split_once('-') {
        let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
        return (lo <= hi).then_some((lo, hi));
    }
    let n = part.parse().ok()?;
    Some((n, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn rocketmq_forms_and_cidr() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("", &[], &["127.0.0.1"]),
            ("*", &["1.2.3.4", "::1"], &[]),
            ("*.*.*.*", &["10.0.0.1"], &[]),
            ("192.168.0.*", &["192.168.0.7"], &["192.168.1.7"]),
            (
                "192.168.1-10.*",
                &["192.168.5.1", "192.168.10.255"],
                &["192.168.11.1"],
            ),
            (
                "10.0.0.5-20",
                &["10.0.0.5", "10.0.0.20"],
                &["10.0.0.4", "10.0.0.21"],
            ),
            ("192.168.0.{1,2}", &["192.168.0.2"], &["192.168.0.3"]),
            ("1.1.1.1,2.2.2.*", &["2.2.2.9", "1.1.1.1"], &["1.1.1.2"]),
            (
                "10.0.0.0/8",
                &["10.200.0.1", "::ffff:10.0.0.1"],
                &["11.0.0.1"],
            ),
            ("127.0.0.1", &["127.0.0.1"], &["127.0.0.2"]),
            ("fd00::/8", &["fd12::1"], &["fe80::1", "10.0.0.1"]),
        ];
        for (pattern, yes, no) in cases {
            let p = AddressPattern::parse(pattern).expect(pattern);
            for a in *yes {
                assert!(p.matches(ip(a)), "{pattern} should match {a}");
            }
            for a in *no {
                assert!(!p.matches(ip(a)), "{pattern} should not match {a}");
            }
        }
    }

    #[test]
    fn malformed_patterns_are_errors() {
        for bad in [
            "192.168.0",
            "192.168.0.256",
            "192.168.9-1.*",
            "10.0.0.0/33",
            "a.b.c.d",
            "192.168.0.{1,2",
            "192.168.0.{1,x}",
        ] {
            assert!(AddressPattern::parse(bad).is_err(), "{bad}");
        }
    }
}

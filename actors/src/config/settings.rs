//! The parts of `slipway.yaml` the actors read: mail, the outbox, webhooks.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// Durations written the human way in settings: `60s`, `10m`, `1h 30m`.
pub mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// Deserializes `"10m"` and friends.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// How mail leaves slipway. Without `smtp`, mail is written as `.eml` files under
/// `DATA/mail/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// The SMTP server.
    pub host: String,
    /// Its port (default: 25 with `none`, 587 with `starttls`, 465 with `tls`).
    #[serde(default)]
    pub port: Option<u16>,
    /// `none`, `starttls` or `tls`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// Login, if the server wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `username`.
    #[serde(default)]
    pub password: Option<String>,
}

/// Transport security towards the SMTP server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (only for a server on the same machine or network).
    None,
    /// Upgrade with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// Notifications: sender address and retry policy for every delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySettings {
    /// The `From:` of slipway's mail.
    pub from: String,
    /// Attempts before a delivery is given up (an event says so).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time.
    #[serde(with = "duration")]
    pub first_retry: Duration,
    /// The longest wait between two attempts.
    #[serde(with = "duration")]
    pub max_retry: Duration,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            from: "slipway@localhost".into(),
            max_attempts: 10,
            first_retry: Duration::from_secs(2),
            max_retry: Duration::from_secs(600),
        }
    }
}

/// The build queue (`builds:` in slipway.yaml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildSettings {
    /// Builds that run at once; the others wait in a first-in, first-out queue.
    pub parallel: usize,
    /// Niceness (0–19) of local builds' processes: like git's pack work, builds yield
    /// the CPU to the server's own event delivery and handshakes.
    pub nice: i32,
}

impl Default for BuildSettings {
    fn default() -> Self {
        BuildSettings {
            parallel: 2,
            nice: 15,
        }
    }
}

/// Deployments (`deploy:` in slipway.yaml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeploySettings {
    /// An agent not heard from for this long has lost the lifecycle event it was
    /// running: the event fails and so does its host.
    #[serde(with = "duration")]
    pub agent_timeout: Duration,
    /// How often the alarms of running and baking deployments are read.
    #[serde(with = "duration")]
    pub alarm_interval: Duration,
    /// The bearer token Alertmanager's webhook must send to `POST /alertmanager`
    /// (`http_config: { authorization: { credentials: TOKEN } }`); without it the
    /// endpoint is off. At least 16 characters.
    pub alertmanager_token: Option<String>,
    /// A firing alert Alertmanager has not sent again for this long no longer counts
    /// (Alertmanager re-sends firing alerts every `repeat_interval`, 4h by default; keep
    /// it below this). Without it, an alert silenced after it fired would never end.
    #[serde(with = "duration")]
    pub alert_max_age: Duration,
}

impl Default for DeploySettings {
    fn default() -> Self {
        DeploySettings {
            agent_timeout: Duration::from_secs(60),
            alarm_interval: Duration::from_secs(10),
            alertmanager_token: None,
            alert_max_age: Duration::from_secs(12 * 3600),
        }
    }
}

/// Webhook delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSettings {
    /// Hosts, addresses or networks (`10.0.0.0/8`) webhooks may reach even though they
    /// are loopback, private or link-local. Everything else in those ranges is refused.
    pub allow: Vec<AllowedTarget>,
    /// How long one POST may take.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow: Vec::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

/// An entry of `webhooks.allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedTarget {
    /// A host name, compared case-insensitively.
    Host(String),
    /// An address or network.
    Network(IpAddr, u8),
}

impl<'de> Deserialize<'de> for AllowedTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AllowedTarget::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl AllowedTarget {
    /// Parses `host`, `1.2.3.4`, `10.0.0.0/8` or `::1`.
    pub fn parse(s: &str) -> Result<AllowedTarget, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        if let Ok(ip) = addr.parse::<IpAddr>() {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
            };
            return Ok(AllowedTarget::Network(ip, bits));
        }
        if bits.is_some() || s.is_empty() || s.contains(char::is_whitespace) {
            return Err(format!(
                "`{s}` is not a host, an address or a network like 10.0.0.0/8"
            ));
        }
        Ok(AllowedTarget::Host(s.to_ascii_lowercase()))
    }

    /// Whether this entry covers `host` (as written in the URL) resolved to `ip`.
    pub fn covers(&self, host: &str, ip: IpAddr) -> bool {
        match self {
            AllowedTarget::Host(h) => h.eq_ignore_ascii_case(host.trim_matches(['[', ']'])),
            AllowedTarget::Network(net, bits) => in_network(ip, *net, *bits),
        }
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V4(_)) => a
            .to_ipv4_mapped()
            .is_some_and(|v4| in_network(IpAddr::V4(v4), net, bits)),
        _ => false,
    }
}

/// Whether `ip` is loopback, private, link-local or otherwise not a public address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 0
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64) // 100.64/10 CGNAT
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link-local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_internal(IpAddr::V4(v4)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn allow_entries_cover_hosts_addresses_and_networks() {
        let lo = AllowedTarget::parse("127.0.0.0/8").unwrap();
        assert!(lo.covers("x", "127.0.0.5".parse().unwrap()));
        assert!(!lo.covers("x", "10.0.0.1".parse().unwrap()));
        let one = AllowedTarget::parse("::1").unwrap();
        assert!(one.covers("[::1]", "::1".parse().unwrap()));
        let host = AllowedTarget::parse("Hooks.Internal").unwrap();
        assert!(host.covers("hooks.internal", "10.0.0.1".parse().unwrap()));
        assert!(AllowedTarget::parse("10.0.0.0/40").is_err());
        assert!(AllowedTarget::parse("a b").is_err());
    }
}

//! The DNS settings of a sandbox, as the SDK sends them, and their validation.
//!
//! The serde shape (JSON shown; every field may be omitted):
//!
//! ```json
//! {
//!   "nameservers": ["198.51.100.53", "[2001:db8::53]:5353"],
//!   "query_timeout_ms": 5000,
//!   "rebind_protection": true,
//!   "deny_domains": ["tracker.example.com"],
//!   "deny_domain_suffixes": [".ads.example"]
//! }
//! ```
//!
//! A nameserver is an IP address (port 53) or an `address:port`; an empty list means the
//! host's own resolvers, which the supervisor reads and passes in. `query_timeout_ms` is
//! per nameserver tried; `null` means 5000 ms.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::filter::{DenyList, DenyListError};

/// How long one nameserver is given to answer when the SDK does not say.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_millis(5000);

/// The longest `query_timeout_ms` accepted: no answer is worth an hour, and the bound keeps
/// deadlines far from the clock's limits.
pub const MAX_QUERY_TIMEOUT_MS: u64 = 3_600_000;

/// The standard DNS port, used for a nameserver given without one.
const DNS_PORT: u16 = 53;

/// The DNS settings of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Where queries are forwarded, tried in order; empty means the host's resolvers.
    pub nameservers: Vec<String>,
    /// How long each nameserver is given, in milliseconds; `None` means 5000.
    pub query_timeout_ms: Option<u64>,
    /// Drop answers that point a name at an internal address (see `rebind`).
    pub rebind_protection: bool,
    /// Names answered NXDOMAIN, matched exactly.
    pub deny_domains: Vec<String>,
    /// Zones answered NXDOMAIN, apex included; the leading dot is optional.
    pub deny_domain_suffixes: Vec<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            query_timeout_ms: None,
            rebind_protection: true,
            deny_domains: Vec::new(),
            deny_domain_suffixes: Vec::new(),
        }
    }
}

/// Why a DNS configuration was rejected; each variant names the bad field or entry.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DnsConfigError {
    /// A nameserver is neither an IP address nor an `address:port`, or its port is 0.
    #[error("nameserver {entry:?} is not an IP address or address:port with a non-zero port")]
    InvalidNameserver {
        /// The entry as configured.
        entry: String,
    },
    /// No nameserver was configured and the host has none either.
    #[error("no nameserver: none configured and the host has none")]
    NoNameservers,
    /// `query_timeout_ms` is 0.
    #[error("query_timeout_ms must be at least 1")]
    ZeroQueryTimeout,
    /// `query_timeout_ms` is above [`MAX_QUERY_TIMEOUT_MS`].
    #[error("query_timeout_ms {0} is above {MAX_QUERY_TIMEOUT_MS}")]
    QueryTimeoutTooLong(u64),
    /// An entry of `deny_domains` or `deny_domain_suffixes` is not a domain name.
    #[error(transparent)]
    DenyList(#[from] DenyListError),
}

/// A validated configuration, with the host's resolvers filled in where needed.
#[derive(Debug, Clone)]
pub(crate) struct ValidDnsConfig {
    pub(crate) nameservers: Vec<SocketAddr>,
    pub(crate) query_timeout: Duration,
    pub(crate) rebind_protection: bool,
    pub(crate) deny_list: DenyList,
}

impl DnsConfig {
    /// Checks every entry; whether the host has resolvers for an empty list is only known
    /// when the sandbox starts.
    pub fn check(&self) -> Result<(), DnsConfigError> {
        let stand_in = [SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, DNS_PORT))];
        self.validate(&stand_in).map(|_| ())
    }

    /// Validates the settings; `host_nameservers` are used when none are configured.
    pub(crate) fn validate(
        &self,
        host_nameservers: &[SocketAddr],
    ) -> Result<ValidDnsConfig, DnsConfigError> {
        let mut nameservers = self
            .nameservers
            .iter()
            .map(|entry| parse_nameserver(entry))
            .collect::<Result<Vec<_>, _>>()?;
        if nameservers.is_empty() {
            nameservers = host_nameservers.to_vec();
        }
        if nameservers.is_empty() {
            return Err(DnsConfigError::NoNameservers);
        }
        let query_timeout = match self.query_timeout_ms {
            None => DEFAULT_QUERY_TIMEOUT,
            Some(0) => return Err(DnsConfigError::ZeroQueryTimeout),
            Some(ms) if ms > MAX_QUERY_TIMEOUT_MS => {
                return Err(DnsConfigError::QueryTimeoutTooLong(ms))
            }
            Some(ms) => Duration::from_millis(ms),
        };
        Ok(ValidDnsConfig {
            nameservers,
            query_timeout,
            rebind_protection: self.rebind_protection,
            deny_list: DenyList::new(&self.deny_domains, &self.deny_domain_suffixes)?,
        })
    }
}

fn parse_nameserver(entry: &str) -> Result<SocketAddr, DnsConfigError> {
    let parsed = entry.parse::<SocketAddr>().ok().or_else(|| {
        entry
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, DNS_PORT))
    });
    match parsed {
        Some(server) if server.port() != 0 => Ok(server),
        _ => Err(DnsConfigError::InvalidNameserver {
            entry: entry.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Vec<SocketAddr> {
        vec!["127.0.0.53:53".parse().expect("address")]
    }

    #[test]
    fn an_empty_object_is_the_default_and_uses_the_host_resolvers() {
        let config: DnsConfig = serde_json::from_str("{}").expect("parses");
        assert_eq!(config, DnsConfig::default());
        let valid = config.validate(&host()).expect("valid");
        assert_eq!(valid.nameservers, host());
        assert_eq!(valid.query_timeout, DEFAULT_QUERY_TIMEOUT);
        assert!(valid.rebind_protection);
    }

    #[test]
    fn the_sdk_shape_parses_with_a_null_timeout_and_nameservers_with_or_without_port() {
        let config: DnsConfig = serde_json::from_str(
            r#"{"nameservers": ["198.51.100.53", "203.0.113.53:5353", "[2001:db8::53]:53", "2001:db8::54"],
                "query_timeout_ms": null, "rebind_protection": false,
                "deny_domains": ["a.example"], "deny_domain_suffixes": [".b.example"]}"#,
        )
        .expect("parses");
        let valid = config.validate(&host()).expect("valid");
        let expected: Vec<SocketAddr> = [
            "198.51.100.53:53",
            "203.0.113.53:5353",
            "[2001:db8::53]:53",
            "[2001:db8::54]:53",
        ]
        .iter()
        .map(|s| s.parse().expect("address"))
        .collect();
        assert_eq!(valid.nameservers, expected);
        assert!(!valid.rebind_protection);
        assert_eq!(valid.query_timeout, DEFAULT_QUERY_TIMEOUT);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<DnsConfig>(r#"{"nameserver": []}"#).is_err());
    }

    #[test]
    fn bad_settings_are_errors_naming_the_field_or_entry() {
        let with = |edit: fn(&mut DnsConfig)| {
            let mut config = DnsConfig::default();
            edit(&mut config);
            config.validate(&host()).unwrap_err()
        };
        let bad_server = |entry: &str| DnsConfigError::InvalidNameserver {
            entry: entry.into(),
        };
        assert_eq!(
            with(|c| c.nameservers = vec!["dns.example".into()]),
            bad_server("dns.example")
        );
        assert_eq!(
            with(|c| c.nameservers = vec!["198.51.100.53:0".into()]),
            bad_server("198.51.100.53:0")
        );
        assert_eq!(
            with(|c| c.query_timeout_ms = Some(0)),
            DnsConfigError::ZeroQueryTimeout
        );
        assert_eq!(
            with(|c| c.query_timeout_ms = Some(u64::MAX)),
            DnsConfigError::QueryTimeoutTooLong(u64::MAX)
        );
        assert!(matches!(
            with(|c| c.deny_domains = vec!["".into()]),
            DnsConfigError::DenyList(DenyListError::Empty {
                field: "deny_domains",
                ..
            })
        ));
        assert!(matches!(
            with(|c| c.deny_domain_suffixes = vec!["a..b".into()]),
            DnsConfigError::DenyList(DenyListError::NotADomainName {
                field: "deny_domain_suffixes",
                ..
            })
        ));
        assert_eq!(
            DnsConfig::default().validate(&[]).unwrap_err(),
            DnsConfigError::NoNameservers
        );
    }
}

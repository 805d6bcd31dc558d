//! A sandbox's network as the SDK stores it in the sandbox's config (the `network` key), and
//! its validation. The JSON:
//!
//! ```json
//! {
//!   "policy": "public_only",
//!   "dns": {"nameservers": ["198.51.100.53"], "deny_domains": ["blocked.example.com"]},
//!   "ports": [{"host_address": "127.0.0.1", "host_port": 8080, "guest_port": 80, "protocol": "tcp"}],
//!   "max_connections": null,
//!   "tls": {"intercepted_ports": [443], "bypass": ["*.internal.example"],
//!           "verify_upstream": true, "upstream_ca_certs": ["/abs/test-ca.pem"],
//!           "ca_cert": null, "ca_key": null, "block_quic": false}
//! }
//! ```
//!
//! `policy` is a preset's name (`none`, `public_only`, `allow_all`) or a policy object (see
//! `policy`); every key may be omitted, and an absent `network` is the default: public only.
//! An absent `tls` intercepts nothing: the guest's TLS passes untouched.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dns::{DnsConfig, DnsConfigError};
use crate::policy::Policy;
use crate::tls::bypass::{BypassError, BypassList};

/// The connections a sandbox may hold at once when the SDK does not say.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// The most connections a sandbox may be given: each holds two 256 KiB buffers at most.
pub const MAX_CONNECTIONS_LIMIT: usize = 16384;

/// The network of one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSpec {
    pub policy: PolicySpec,
    pub dns: DnsConfig,
    /// Published ports, in the user's order.
    pub ports: Vec<PublishedPort>,
    pub max_connections: Option<usize>,
    /// TLS interception; `None` intercepts nothing.
    pub tls: Option<TlsSpec>,
}

/// Which TLS flows are intercepted, and how the real servers are trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// TCP ports whose TLS is intercepted.
    #[serde(default = "default_intercepted_ports")]
    pub intercepted_ports: Vec<NonZeroU16>,
    /// Server names never intercepted (`name` or `*.suffix`).
    #[serde(default)]
    pub bypass: Vec<String>,
    /// Verify the real server against the host's store and `upstream_ca_certs`.
    #[serde(default = "verify_by_default")]
    pub verify_upstream: bool,
    /// Absolute paths of PEM files of CAs the real servers may chain to.
    #[serde(default)]
    pub upstream_ca_certs: Vec<PathBuf>,
    /// The user's CA pair (absolute paths, both or neither); neither is the home's CA.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    #[serde(default)]
    pub ca_key: Option<PathBuf>,
    /// Refuse UDP to an intercepted port, so HTTP/3 clients fall back to TCP.
    #[serde(default)]
    pub block_quic: bool,
}

fn default_intercepted_ports() -> Vec<NonZeroU16> {
    vec![NonZeroU16::new(443).expect("443 is not zero")]
}

fn verify_by_default() -> bool {
    true
}

impl TlsSpec {
    /// Whether TCP (or, with `block_quic`, UDP) flows to `port` are intercepted.
    pub fn intercepts(&self, port: u16) -> bool {
        self.intercepted_ports.iter().any(|p| p.get() == port)
    }

    /// The bypass list, validated.
    pub fn bypass_list(&self) -> Result<BypassList, BypassError> {
        BypassList::new(&self.bypass)
    }

    fn validate(&self) -> Result<(), TlsSpecError> {
        if self.intercepted_ports.is_empty() {
            return Err(TlsSpecError::NoPorts);
        }
        let mut seen = BTreeSet::new();
        for port in &self.intercepted_ports {
            if !seen.insert(port.get()) {
                return Err(TlsSpecError::DuplicatePort(port.get()));
            }
        }
        self.bypass_list()?;
        for (field, path) in self
            .upstream_ca_certs
            .iter()
            .map(|path| ("upstream_ca_certs", path))
            .chain(self.ca_cert.iter().map(|path| ("ca_cert", path)))
            .chain(self.ca_key.iter().map(|path| ("ca_key", path)))
        {
            if !path.is_absolute() {
                return Err(TlsSpecError::RelativePath {
                    field,
                    path: path.clone(),
                });
            }
        }
        if self.ca_cert.is_some() != self.ca_key.is_some() {
            return Err(TlsSpecError::HalfCaPair);
        }
        Ok(())
    }
}

/// A `tls` section the supervisor refuses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TlsSpecError {
    #[error("intercepted_ports is empty")]
    NoPorts,
    #[error("intercepted_ports: {0} is named twice")]
    DuplicatePort(u16),
    #[error("bypass: {0}")]
    Bypass(#[from] BypassError),
    #[error("{field}: {path} is not an absolute path")]
    RelativePath { field: &'static str, path: PathBuf },
    #[error("ca_cert and ca_key are given together or not at all")]
    HalfCaPair,
}

/// A preset by name, or a policy of the user's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PolicySpec {
    Preset(Preset),
    Custom(Policy),
}

impl PolicySpec {
    /// The policy the flows are decided by.
    pub fn policy(&self) -> Policy {
        match self {
            PolicySpec::Preset(Preset::None) => Policy::none(),
            PolicySpec::Preset(Preset::PublicOnly) => Policy::public_only(),
            PolicySpec::Preset(Preset::AllowAll) => Policy::allow_all(),
            PolicySpec::Custom(policy) => policy.clone(),
        }
    }
}

impl Default for PolicySpec {
    fn default() -> Self {
        Self::Preset(Preset::PublicOnly)
    }
}

/// The SDK's `Network.none()`, `.public_only()` and `.allow_all()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    None,
    PublicOnly,
    AllowAll,
}

/// One host port forwarded into the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedPort {
    #[serde(default = "loopback")]
    pub host_address: IpAddr,
    pub host_port: NonZeroU16,
    pub guest_port: NonZeroU16,
    #[serde(default)]
    pub protocol: PortProtocol,
}

fn loopback() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

impl PublishedPort {
    pub fn host_socket(&self) -> SocketAddr {
        SocketAddr::new(self.host_address, self.host_port.get())
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    #[default]
    Tcp,
    Udp,
}

impl std::fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        })
    }
}

/// A network the supervisor refuses, naming the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SpecError {
    #[error("network.ports: host port {address}/{protocol} is published twice")]
    DuplicatePort {
        address: SocketAddr,
        protocol: PortProtocol,
    },
    #[error("network.max_connections: {0} is outside 1..={MAX_CONNECTIONS_LIMIT}")]
    MaxConnections(usize),
    #[error("network.dns: {0}")]
    Dns(#[from] DnsConfigError),
    #[error("network.tls.{0}")]
    Tls(#[from] TlsSpecError),
}

impl NetworkSpec {
    /// The policy the flows are decided by.
    pub fn policy(&self) -> Policy {
        self.policy.policy()
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS)
    }

    /// Checks what serde cannot: ports published once, a connection cap in range, DNS
    /// entries that parse, a `tls` section that makes sense.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.dns.check()?;
        if let Some(tls) = &self.tls {
            tls.validate()?;
        }
        if let Some(max) = self.max_connections {
            if !(1..=MAX_CONNECTIONS_LIMIT).contains(&max) {
                return Err(SpecError::MaxConnections(max));
            }
        }
        let mut seen = BTreeSet::new();
        for port in &self.ports {
            if !seen.insert((port.host_socket(), port.protocol)) {
                return Err(SpecError::DuplicatePort {
                    address: port.host_socket(),
                    protocol: port.protocol,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<NetworkSpec, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn empty_object_is_public_only_with_default_dns_and_no_ports() {
        let spec = parse("{}").unwrap();
        assert_eq!(spec.policy(), Policy::public_only());
        assert_eq!(spec.dns, DnsConfig::default());
        assert!(spec.ports.is_empty());
        assert_eq!(spec.max_connections(), DEFAULT_MAX_CONNECTIONS);
    }

    #[test]
    fn presets_by_name() {
        for (name, policy) in [
            ("none", Policy::none()),
            ("public_only", Policy::public_only()),
            ("allow_all", Policy::allow_all()),
        ] {
            let spec = parse(&format!(r#"{{"policy": "{name}"}}"#)).unwrap();
            assert_eq!(spec.policy(), policy, "{name}");
        }
    }

    #[test]
    fn custom_policy_object() {
        let spec = parse(
            r#"{"policy": {"default_egress": "deny", "rules": [
                {"action": "allow", "destination": "10.0.0.0/8", "port": 80}]}}"#,
        )
        .unwrap();
        let policy = spec.policy();
        assert_eq!(policy.rules.len(), 1);
    }

    #[test]
    fn unknown_preset_is_refused() {
        assert!(parse(r#"{"policy": "public"}"#).is_err());
    }

    #[test]
    fn published_port_defaults_to_tcp_on_loopback() {
        let spec = parse(r#"{"ports": [{"host_port": 8080, "guest_port": 80}]}"#).unwrap();
        let port = spec.ports[0];
        assert_eq!(port.host_socket(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(port.protocol, PortProtocol::Tcp);
    }

    #[test]
    fn port_zero_is_refused() {
        assert!(parse(r#"{"ports": [{"host_port": 0, "guest_port": 80}]}"#).is_err());
        assert!(parse(r#"{"ports": [{"host_port": 80, "guest_port": 65536}]}"#).is_err());
    }

    #[test]
    fn a_port_published_twice_is_refused_but_tcp_and_udp_may_share_it() {
        let twice = parse(
            r#"{"ports": [{"host_port": 53, "guest_port": 53},
                          {"host_port": 53, "guest_port": 5353}]}"#,
        )
        .unwrap();
        assert!(matches!(
            twice.validate(),
            Err(SpecError::DuplicatePort { .. })
        ));
        let both = parse(
            r#"{"ports": [{"host_port": 53, "guest_port": 53},
                          {"host_port": 53, "guest_port": 53, "protocol": "udp"}]}"#,
        )
        .unwrap();
        assert_eq!(both.validate(), Ok(()));
    }

    #[test]
    fn max_connections_must_be_in_range() {
        let zero = parse(r#"{"max_connections": 0}"#).unwrap();
        assert_eq!(zero.validate(), Err(SpecError::MaxConnections(0)));
        let fine = parse(r#"{"max_connections": 4}"#).unwrap();
        assert_eq!(fine.max_connections(), 4);
    }

    #[test]
    fn bad_dns_entries_are_refused() {
        let spec = parse(r#"{"dns": {"nameservers": ["not an address"]}}"#).unwrap();
        assert!(matches!(spec.validate(), Err(SpecError::Dns(_))));
        let spec = parse(r#"{"dns": {"deny_domains": ["bad..name"]}}"#).unwrap();
        assert!(matches!(spec.validate(), Err(SpecError::Dns(_))));
    }

    fn tls_error(json: &str) -> Option<TlsSpecError> {
        match parse(json).unwrap().validate() {
            Ok(()) => None,
            Err(SpecError::Tls(error)) => Some(error),
            Err(other) => panic!("not a tls error: {other}"),
        }
    }

    #[test]
    fn an_empty_tls_object_intercepts_443_verifying_upstream() {
        let spec = parse(r#"{"tls": {}}"#).unwrap();
        let tls = spec.tls.as_ref().unwrap();
        assert!(tls.intercepts(443) && !tls.intercepts(8443));
        assert!(tls.verify_upstream && !tls.block_quic);
        assert_eq!(spec.validate(), Ok(()));
        assert_eq!(parse("{}").unwrap().tls, None);
        assert_eq!(parse(r#"{"tls": null}"#).unwrap().tls, None);
    }

    #[test]
    fn the_contract_example_parses_and_validates() {
        let spec = parse(
            r#"{"tls": {"intercepted_ports": [443, 8443],
                "bypass": ["*.internal.example", "pinned.example.com"],
                "verify_upstream": true, "upstream_ca_certs": ["/abs/path/test-ca.pem"],
                "ca_cert": null, "ca_key": null, "block_quic": true}}"#,
        )
        .unwrap();
        assert_eq!(spec.validate(), Ok(()));
        let tls = spec.tls.unwrap();
        assert!(tls.bypass_list().unwrap().matches("a.internal.example"));
        assert!(tls.intercepts(8443) && tls.block_quic);
    }

    #[test]
    fn tls_ports_must_be_some_distinct_and_in_range() {
        assert_eq!(
            tls_error(r#"{"tls": {"intercepted_ports": []}}"#),
            Some(TlsSpecError::NoPorts)
        );
        assert_eq!(
            tls_error(r#"{"tls": {"intercepted_ports": [443, 443]}}"#),
            Some(TlsSpecError::DuplicatePort(443))
        );
        assert!(parse(r#"{"tls": {"intercepted_ports": [0]}}"#).is_err());
        assert!(parse(r#"{"tls": {"intercepted_ports": [65536]}}"#).is_err());
    }

    #[test]
    fn tls_paths_must_be_absolute_and_the_ca_pair_whole() {
        assert!(matches!(
            tls_error(r#"{"tls": {"upstream_ca_certs": ["ca.pem"]}}"#),
            Some(TlsSpecError::RelativePath {
                field: "upstream_ca_certs",
                ..
            })
        ));
        assert!(matches!(
            tls_error(r#"{"tls": {"ca_cert": "rel/ca.pem", "ca_key": "/k"}}"#),
            Some(TlsSpecError::RelativePath {
                field: "ca_cert",
                ..
            })
        ));
        assert_eq!(
            tls_error(r#"{"tls": {"ca_cert": "/ca.pem"}}"#),
            Some(TlsSpecError::HalfCaPair)
        );
        assert_eq!(
            tls_error(r#"{"tls": {"ca_cert": "/c", "ca_key": "/k"}}"#),
            None
        );
    }

    #[test]
    fn a_bad_bypass_pattern_or_unknown_tls_key_is_refused() {
        assert!(matches!(
            tls_error(r#"{"tls": {"bypass": ["a.*.example"]}}"#),
            Some(TlsSpecError::Bypass(_))
        ));
        assert!(parse(r#"{"tls": {"intercept": [443]}}"#).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(parse(r#"{"polcy": "none"}"#).is_err());
    }
}

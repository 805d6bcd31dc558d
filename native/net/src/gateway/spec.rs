//! A sandbox's network as the SDK stores it in the sandbox's config (the `network` key), and
//! its validation. The JSON:
//!
//! ```json
//! {
//!   "policy": "public_only",
//!   "dns": {"nameservers": ["198.51.100.53"], "deny_domains": ["blocked.example.com"]},
//!   "ports": [{"host_address": "127.0.0.1", "host_port": 8080, "guest_port": 80, "protocol": "tcp"}],
//!   "max_connections": null
//! }
//! ```
//!
//! `policy` is a preset's name (`none`, `public_only`, `allow_all`) or a policy object (see
//! `policy`); every key may be omitted, and an absent `network` is the default: public only.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::dns::{DnsConfig, DnsConfigError};
use crate::policy::Policy;

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
    /// entries that parse.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.dns.check()?;
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

    #[test]
    fn unknown_keys_are_refused() {
        assert!(parse(r#"{"polcy": "none"}"#).is_err());
    }
}

//! The policy's vocabulary, in the serde shape the SDK sends (see the module doc of
//! `policy` for the JSON): actions, directions, protocols, rules and the policy itself.

use super::destination::Destination;
use super::ports::PortRange;
use serde::{Deserialize, Serialize};

/// What happens to a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

/// Which flows a rule applies to: opened by the sandbox, opened towards it, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Egress,
    Ingress,
    Any,
}

impl Direction {
    pub fn covers(self, flow: FlowDirection) -> bool {
        match self {
            Direction::Any => true,
            Direction::Egress => flow == FlowDirection::Egress,
            Direction::Ingress => flow == FlowDirection::Ingress,
        }
    }
}

/// The direction of one real flow, which is never "any".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlowDirection {
    /// Opened by the sandbox; the peer is the destination it dials.
    Egress,
    /// Opened towards the sandbox through a published port; the peer is the remote client.
    Ingress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmpv4,
    Icmpv6,
}

impl Protocol {
    pub fn is_icmp(self) -> bool {
        matches!(self, Protocol::Icmpv4 | Protocol::Icmpv6)
    }
}

/// One rule: an absent destination, protocol or port range matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub action: Action,
    #[serde(default)]
    pub direction: Direction,
    #[serde(default)]
    pub destination: Option<Destination>,
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// Written `port` in JSON, the SDK's field name (`Rule(port=...)`).
    #[serde(default, rename = "port", alias = "ports")]
    pub ports: Option<PortRange>,
}

/// The rules in order, first match wins within a direction, and each direction's default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub default_egress: Action,
    pub default_ingress: Action,
    pub rules: Vec<Rule>,
}

/// The SDK's `NetworkPolicy()` defaults: no egress, published ports reachable.
impl Default for Policy {
    fn default() -> Self {
        Self {
            default_egress: Action::Deny,
            default_ingress: Action::Allow,
            rules: Vec::new(),
        }
    }
}

impl Policy {
    /// Whether an egress rule denies a domain or suffix: then a flow's first bytes may name
    /// a denied host whatever its address, and are worth reading.
    pub fn denies_domains(&self) -> bool {
        self.rules.iter().any(|rule| {
            rule.action == Action::Deny
                && rule.direction.covers(FlowDirection::Egress)
                && matches!(
                    rule.destination,
                    Some(Destination::Domain(_) | Destination::Suffix(_))
                )
        })
    }

    pub fn default_for(&self, flow: FlowDirection) -> Action {
        match flow {
            FlowDirection::Egress => self.default_egress,
            FlowDirection::Ingress => self.default_ingress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: serde_json::Value) -> Policy {
        serde_json::from_value(serde_json::json!({ "rules": rules })).expect("policy")
    }

    #[test]
    fn only_an_egress_deny_of_a_name_or_zone_denies_domains() {
        assert!(
            policy(serde_json::json!([{"action": "deny", "destination": "a.test"}]))
                .denies_domains()
        );
        assert!(policy(
            serde_json::json!([{"action": "deny", "direction": "any", "destination": ".a.test"}])
        )
        .denies_domains());
        for rules in [
            serde_json::json!([{"action": "allow", "destination": "a.test"}]),
            serde_json::json!([{"action": "deny", "direction": "ingress", "destination": "a.test"}]),
            serde_json::json!([{"action": "deny", "destination": "10.0.0.0/8"}]),
            serde_json::json!([{"action": "deny", "destination": "public"}]),
        ] {
            assert!(!policy(rules.clone()).denies_domains(), "{rules}");
        }
    }
}

//! A rule as text in the `--net-rule` grammar, `<action>[:<dir>]@<target>[:<proto>[:<ports>]]`
//! (upstream microsandbox's CLI grammar), for the flow log's `rule_text` and wherever a rule
//! is shown to a person. The SDK's `Rule.__str__` writes the same text for the same rule; both
//! are tested against `tests/fixtures/net_rules.json`.
//!
//! - the direction is left out for `egress` (the grammar's default);
//! - the target is the destination as rules write it (`*`, a group, a suffix `.example.com`,
//!   a domain, a CIDR), a one-address CIDR as the bare address, and IPv6 in brackets so its
//!   colons do not read as field separators (`[2001:db8::/32]`); a one-label domain as
//!   `domain=localhost` (alone it would read as a group); a rule without destination
//!   matches every peer and is written `*`;
//! - the protocol is left out when absent unless ports follow, where it is `any`.

use std::fmt;

use ipnet::IpNet;

use super::destination::Destination;
use super::types::{Action, Direction, Protocol, Rule};

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(action_word(self.action))?;
        match self.direction {
            Direction::Egress => {}
            Direction::Ingress => f.write_str(":ingress")?,
            Direction::Any => f.write_str(":any")?,
        }
        f.write_str("@")?;
        match &self.destination {
            None => f.write_str("*")?,
            Some(Destination::Cidr(net)) => write_net(f, net)?,
            // One label alone would read as a (misspelt) group.
            Some(Destination::Domain(name)) if !name.to_string().contains('.') => {
                write!(f, "domain={name}")?
            }
            Some(destination) => write!(f, "{destination}")?,
        }
        match (self.protocol, self.ports) {
            (None, None) => Ok(()),
            (protocol, None) => write!(f, ":{}", protocol_word(protocol)),
            (protocol, Some(ports)) => write!(f, ":{}:{ports}", protocol_word(protocol)),
        }
    }
}

fn action_word(action: Action) -> &'static str {
    match action {
        Action::Allow => "allow",
        Action::Deny => "deny",
    }
}

fn protocol_word(protocol: Option<Protocol>) -> &'static str {
    match protocol {
        None => "any",
        Some(Protocol::Tcp) => "tcp",
        Some(Protocol::Udp) => "udp",
        Some(Protocol::Icmpv4) => "icmpv4",
        Some(Protocol::Icmpv6) => "icmpv6",
    }
}

fn write_net(f: &mut fmt::Formatter<'_>, net: &IpNet) -> fmt::Result {
    let single = net.prefix_len() == net.max_prefix_len();
    match (net, single) {
        (IpNet::V4(net), true) => write!(f, "{}", net.addr()),
        (IpNet::V4(net), false) => write!(f, "{net}"),
        (IpNet::V6(net), true) => write!(f, "[{}]", net.addr()),
        (IpNet::V6(net), false) => write!(f, "[{net}]"),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    /// Shared with the SDK's tests of `Rule.__str__`.
    const FIXTURE: &str = include_str!("../../../../tests/fixtures/net_rules.json");

    #[derive(Deserialize)]
    struct Case {
        rule: Rule,
        text: String,
    }

    #[test]
    fn every_rule_of_the_shared_fixture_is_written_as_its_text() {
        let cases: Vec<Case> = serde_json::from_str(FIXTURE).expect("the fixture parses");
        assert!(cases.len() >= 20, "{} cases", cases.len());
        for case in cases {
            assert_eq!(case.rule.to_string(), case.text);
        }
    }

    #[test]
    fn a_rule_without_destination_is_written_with_the_any_target() {
        let rule: Rule =
            serde_json::from_str(r#"{"action": "deny", "protocol": "udp"}"#).expect("a rule");
        assert_eq!(rule.to_string(), "deny@*:udp");
    }
}

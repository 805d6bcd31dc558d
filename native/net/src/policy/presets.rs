//! The three presets of the SDK's `Network`, as ordinary policies.
//!
//! DNS is egress like any other flow: the sandbox's resolver is the gateway, which belongs to
//! the `host` group, so a preset that lets the sandbox resolve names says so with explicit
//! rules allowing UDP and TCP port 53 to `host`, placed before anything that denies `host`.
//! The evaluator has no special case for DNS.

use super::destination::Destination;
use super::groups::DestGroup;
use super::ports::PortRange;
use super::types::{Action, Direction, Policy, Protocol, Rule};
use std::num::NonZeroU16;

/// The port DNS queries go to, over UDP and, for long answers, TCP.
const DNS_PORT: NonZeroU16 = NonZeroU16::new(53).expect("53 is not 0");

/// What `public_only` denies: every group but `public`.
const NON_PUBLIC_GROUPS: [DestGroup; 6] = [
    DestGroup::Loopback,
    DestGroup::Private,
    DestGroup::LinkLocal,
    DestGroup::Metadata,
    DestGroup::Multicast,
    DestGroup::Host,
];

impl Policy {
    /// No egress at all, DNS included (there is no rule allowing it), and no ingress.
    pub fn none() -> Self {
        Self {
            default_egress: Action::Deny,
            default_ingress: Action::Deny,
            rules: Vec::new(),
        }
    }

    /// The default: DNS at the gateway, then every non-public group denied on egress, then
    /// the public internet allowed. The denials are rules rather than a default so that a
    /// refused flow names the group that refused it. They are egress-only because clients
    /// of published ports arrive from the host's loopback.
    pub fn public_only() -> Self {
        let denials = NON_PUBLIC_GROUPS.into_iter().map(|group| Rule {
            action: Action::Deny,
            direction: Direction::Egress,
            destination: Some(Destination::Group(group)),
            protocol: None,
            ports: None,
        });
        let rules = dns_at_the_gateway().into_iter().chain(denials).collect();
        Self {
            default_egress: Action::Allow,
            default_ingress: Action::Allow,
            rules,
        }
    }

    /// Everything allowed both ways; the DNS rules are kept so that the flow log names them.
    pub fn allow_all() -> Self {
        let rules = dns_at_the_gateway().to_vec();
        Self {
            default_egress: Action::Allow,
            default_ingress: Action::Allow,
            rules,
        }
    }
}

fn dns_at_the_gateway() -> [Rule; 2] {
    [Protocol::Udp, Protocol::Tcp].map(|protocol| Rule {
        action: Action::Allow,
        direction: Direction::Egress,
        destination: Some(Destination::Group(DestGroup::Host)),
        protocol: Some(protocol),
        ports: Some(PortRange::single(DNS_PORT)),
    })
}

//! The three presets of the SDK's `Network`, as ordinary policies.
//!
//! The gateway's DNS service is always reachable (its transport is no policy flow); each
//! query is decided by its name instead ([`super::Evaluator::decide_query`]), so the presets
//! need no rules for DNS: under `none` every name is answered NXDOMAIN, under `public_only`
//! and `allow_all` every name resolves.

use super::destination::Destination;
use super::groups::DestGroup;
use super::types::{Action, Direction, Policy, Rule};

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
    /// No egress at all, no name resolved (every query is denied by the default), and no
    /// ingress.
    pub fn none() -> Self {
        Self {
            default_egress: Action::Deny,
            default_ingress: Action::Deny,
            rules: Vec::new(),
        }
    }

    /// The default: every non-public group denied on egress, then the public internet
    /// allowed. The denials are rules rather than a default so that a
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
        let rules = denials.collect();
        Self {
            default_egress: Action::Allow,
            default_ingress: Action::Allow,
            rules,
        }
    }

    /// Everything allowed both ways.
    pub fn allow_all() -> Self {
        Self {
            default_egress: Action::Allow,
            default_ingress: Action::Allow,
            rules: Vec::new(),
        }
    }
}

//! The evaluator: decides one flow against a policy, sans-IO (the caller brings the flow's
//! facts; nothing here reads a clock, a socket or the host's interfaces).
//!
//! Rules are tried in order and the first that matches decides; a rule applies to a flow when
//! its direction covers the flow's (`any` covers both), its protocol is absent or the flow's,
//! its port range is absent or holds the flow's port (a rule with ports never matches ICMP,
//! which has none), and its destination is absent or matches the peer. No match leaves the
//! direction's default. A policy changed while the sandbox runs is a new evaluator.
//!
//! DNS queries are decided by name ([`Evaluator::decide_query`]), before any address exists:
//! the rules are walked in order, egress ones only, and a rule "speaks about" a name when its
//! destination is absent, `*` or `public`, or a domain or suffix that matches the name. The
//! first allow that speaks about it allows; the first deny that speaks about it and has
//! neither protocol nor ports denies (a deny of one port of a name says nothing about
//! resolving it); every other rule is skipped. No decision leaves the egress default. So
//! under a default-deny policy allowing only `api.example.com`, no other name resolves.

use super::destination::{Destination, Peer};
use super::groups::DestGroup;
use super::groups::{canonical, HostAddresses};
use super::types::{Action, FlowDirection, Policy, Protocol, Rule};
use std::net::IpAddr;

#[cfg(test)]
mod randomized;
#[cfg(test)]
mod tests;

/// One flow to decide, as the supervisor sees it.
#[derive(Debug, Clone, Copy)]
pub struct Flow<'a> {
    pub direction: FlowDirection,
    pub protocol: Protocol,
    /// The destination of an egress flow, the remote client of an ingress flow.
    pub peer: IpAddr,
    /// `None` for ICMP.
    pub port: Option<u16>,
    /// The names the sandbox resolved `peer` from through the gateway's DNS.
    pub resolved_domains: &'a [String],
}

/// The decision, and what made it, so the supervisor can log a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    pub decided_by: DecidedBy,
}

/// A TCP connect decided before the flow has shown which of its destination's names it
/// means (see [`Evaluator::decide_connect`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectVerdict {
    pub verdict: Verdict,
    /// Allowed only for a name the flow still has to show: without one, it is denied.
    pub name_required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// The index of the rule in the policy's `rules`.
    Rule(usize),
    /// No rule matched: the default of the flow's direction.
    Default,
}

/// A policy and the host's addresses, ready to decide flows.
#[derive(Debug, Clone)]
pub struct Evaluator {
    policy: Policy,
    host: HostAddresses,
}

impl Evaluator {
    pub fn new(policy: Policy, host: HostAddresses) -> Self {
        Self { policy, host }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether the guest may resolve `name` (any case, a trailing dot ignored).
    pub fn decide_query(&self, name: &str) -> Verdict {
        let decided = self.policy.rules.iter().position(|rule| {
            rule.direction.covers(FlowDirection::Egress)
                && speaks_about(rule.destination.as_ref(), name)
                && (rule.action == Action::Allow
                    || (rule.protocol.is_none() && rule.ports.is_none()))
        });
        self.verdict(decided, FlowDirection::Egress)
    }

    /// Replaces the policy, keeping the host's addresses.
    pub fn with_policy(&self, policy: Policy) -> Self {
        Self {
            policy,
            host: self.host.clone(),
        }
    }

    pub fn decide(&self, flow: &Flow<'_>) -> Verdict {
        let ip = canonical(flow.peer);
        let peer = Peer {
            ip,
            group: self.host.classify(ip),
            resolved_domains: flow.resolved_domains,
        };
        let decided = self
            .policy
            .rules
            .iter()
            .position(|rule| rule_matches(rule, flow, &peer));
        self.verdict(decided, flow.direction)
    }

    fn verdict(&self, decided: Option<usize>, direction: FlowDirection) -> Verdict {
        match decided {
            Some(index) => Verdict {
                action: self.policy.rules[index].action,
                decided_by: DecidedBy::Rule(index),
            },
            None => Verdict {
                action: self.policy.default_for(direction),
                decided_by: DecidedBy::Default,
            },
        }
    }
}

/// Whether a rule with `destination` says anything about resolving `name`: addresses and
/// groups other than `public` do not (a name's addresses are not known before it resolves).
fn speaks_about(destination: Option<&Destination>, name: &str) -> bool {
    match destination {
        None | Some(Destination::Any) | Some(Destination::Group(DestGroup::Public)) => true,
        Some(Destination::Domain(domain)) => domain.is(name),
        Some(Destination::Suffix(suffix)) => suffix.is_apex_or_parent_of(name),
        Some(Destination::Group(_) | Destination::Cidr(_)) => false,
    }
}

impl Evaluator {
    /// Decides a connect whose destination was resolved for several names. With all of them
    /// the flow is denied as soon as one is (`deny ads.cdn.test` before `allow
    /// api.cdn.test`, both served from one address); but the flow means one name, which its
    /// first bytes show (SNI or Host). So when all the names deny while one of them alone
    /// allows, the connect is allowed with the first such name's verdict, on condition that
    /// the flow then names an allowed host.
    pub fn decide_connect(&self, flow: &Flow<'_>) -> ConnectVerdict {
        let all = self.decide(flow);
        let names = flow.resolved_domains;
        let one_allows = (all.action == Action::Deny && names.len() > 1)
            .then(|| {
                names
                    .iter()
                    .map(|name| {
                        self.decide(&Flow {
                            resolved_domains: std::slice::from_ref(name),
                            ..*flow
                        })
                    })
                    .find(|verdict| verdict.action == Action::Allow)
            })
            .flatten();
        match one_allows {
            Some(verdict) => ConnectVerdict {
                verdict,
                name_required: true,
            },
            None => ConnectVerdict {
                verdict: all,
                name_required: false,
            },
        }
    }
}

fn rule_matches(rule: &Rule, flow: &Flow<'_>, peer: &Peer<'_>) -> bool {
    rule.direction.covers(flow.direction)
        && rule
            .protocol
            .is_none_or(|protocol| protocol == flow.protocol)
        && rule.ports.is_none_or(|ports| {
            !flow.protocol.is_icmp() && flow.port.is_some_and(|port| ports.contains(port))
        })
        && rule
            .destination
            .as_ref()
            .is_none_or(|destination| destination.matches(peer))
}

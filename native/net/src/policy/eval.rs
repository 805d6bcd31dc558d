//! The evaluator: decides one flow against a policy, sans-IO (the caller brings the flow's
//! facts; nothing here reads a clock, a socket or the host's interfaces).
//!
//! Rules are tried in order and the first that matches decides; a rule applies to a flow when
//! its direction covers the flow's (`any` covers both), its protocol is absent or the flow's,
//! its port range is absent or holds the flow's port (a rule with ports never matches ICMP,
//! which has none), and its destination is absent or matches the peer. No match leaves the
//! direction's default. A policy changed while the sandbox runs is a new evaluator.

use super::destination::Peer;
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
        match decided {
            Some(index) => Verdict {
                action: self.policy.rules[index].action,
                decided_by: DecidedBy::Rule(index),
            },
            None => Verdict {
                action: self.policy.default_for(flow.direction),
                decided_by: DecidedBy::Default,
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

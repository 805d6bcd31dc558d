//! A policy swapped into the running loop ([`super::Gateway::set_policy`]): every later flow
//! and DNS query is decided by it, and every open flow is decided again at once, those it
//! denies closed (TCP: a RST to the guest and the host socket closed; UDP: the relay, or a
//! published port's client mapping, dropped; pings: the ping socket closed), each logged with
//! the reason `policy changed`.

use std::net::{IpAddr, SocketAddr};

use super::flow_log::{endpoint, reason, Decided};
use super::EventLoop;
use crate::policy::{Action as Decision, FlowDirection, Policy, Protocol, Verdict};

impl EventLoop {
    pub(super) fn change_policy(&mut self, policy: Policy) {
        let evaluator = self.stack.evaluator().with_policy(policy);
        self.stack.set_evaluator(evaluator);
        let closed = self.recheck_tcp() + self.recheck_udp() + self.recheck_pings();
        log::info!("network policy changed; {closed} open flows it denies were closed");
    }

    /// Logs `verdict` on an open flow if it denies it; whether it does.
    fn denied_now(
        &mut self,
        direction: FlowDirection,
        protocol: Protocol,
        (src, dst): (String, String),
        verdict: Verdict,
        names: &[String],
        sni: Option<String>,
    ) -> bool {
        if verdict.action == Decision::Allow {
            return false;
        }
        self.log_decision(Decided {
            direction,
            protocol,
            src,
            dst,
            verdict,
            names,
            sni,
            reason: Some(reason::POLICY_CHANGED),
        });
        true
    }

    fn recheck_tcp(&mut self) -> usize {
        let now = self.now();
        let mut closed = 0;
        for open in self.host_tcp.open_flows() {
            let facts = &open.facts;
            let (verdict, names) = match (facts.direction, &facts.sni) {
                (FlowDirection::Egress, Some(host)) => {
                    (self.decide_with_named_host(facts, host), vec![host.clone()])
                }
                (FlowDirection::Egress, None) => {
                    self.decide_egress(Protocol::Tcp, facts.dst.ip(), Some(facts.dst.port()))
                }
                (FlowDirection::Ingress, _) => (
                    self.decide_ingress(Protocol::Tcp, facts.src.ip(), facts.dst.port()),
                    Vec::new(),
                ),
            };
            let ends = (facts.src.to_string(), facts.dst.to_string());
            let sni = facts.sni.clone();
            if self.denied_now(facts.direction, Protocol::Tcp, ends, verdict, &names, sni) {
                self.abort_flow(now, open.flow_id, reason::POLICY_CHANGED);
                closed += 1;
            }
        }
        closed
    }

    fn recheck_udp(&mut self) -> usize {
        let mut closed = 0;
        for (id, guest, dst) in self.udp.open_flows() {
            let (verdict, names) = self.decide_egress(Protocol::Udp, dst.ip(), Some(dst.port()));
            let ends = (guest.to_string(), dst.to_string());
            if self.denied_now(
                FlowDirection::Egress,
                Protocol::Udp,
                ends,
                verdict,
                &names,
                None,
            ) {
                self.udp_close(id, reason::POLICY_CHANGED);
                closed += 1;
            }
        }
        let guest_v4 = IpAddr::V4(self.link.guest_v4);
        for (gateway_port, client, guest_port) in self.published.udp_clients() {
            let verdict = self.decide_ingress(Protocol::Udp, client.ip(), guest_port);
            let guest = SocketAddr::new(guest_v4, guest_port);
            let ends = (client.to_string(), guest.to_string());
            if self.denied_now(
                FlowDirection::Ingress,
                Protocol::Udp,
                ends,
                verdict,
                &[],
                None,
            ) {
                self.published.drop_udp_client(gateway_port);
                closed += 1;
            }
        }
        closed
    }

    fn recheck_pings(&mut self) -> usize {
        let guest = IpAddr::V4(self.link.guest_v4);
        let mut closed = 0;
        for (id, dst) in self.pings.open_flows() {
            let dst = IpAddr::V4(dst);
            let (verdict, names) = self.decide_egress(Protocol::Icmpv4, dst, None);
            let ends = (endpoint(guest, None), endpoint(dst, None));
            if self.denied_now(
                FlowDirection::Egress,
                Protocol::Icmpv4,
                ends,
                verdict,
                &names,
                None,
            ) {
                self.ping_close(id);
                closed += 1;
            }
        }
        closed
    }
}

//! The UDP relay: each guest flow (its source and a destination) the policy allows gets a
//! connected host socket; datagrams go out as they come and answers come back as frames from
//! the destination's address. Idle flows are closed after a minute, as a NAT would.
//!
//! A guest datagram to the gateway on a port that a published UDP port's client maps to goes
//! back to that client instead (see `ports`).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Interest, Token};

use super::flow_log::{reason, Decided, FlowFacts};
use super::tokens::Owner;
use super::EventLoop;
use crate::policy::{Action as Decision, FlowDirection, Protocol};
use crate::wire::classified::UdpDatagram;
use crate::wire::emit;

/// How long a UDP flow lives without traffic (Linux conntrack keeps unreplied UDP for 30 s,
/// replied for 120 s; one minute serves both).
const UDP_IDLE: Duration = Duration::from_secs(60);
/// UDP flows at once; beyond it the oldest idle one makes room.
const MAX_UDP_FLOWS: usize = 256;

#[derive(Debug)]
struct UdpFlow {
    guest: SocketAddr,
    /// The destination as the guest addressed it (replies come from it).
    dst: SocketAddr,
    socket: UdpSocket,
    token: Token,
    last_used: Instant,
    facts: FlowFacts,
}

#[derive(Debug, Default)]
pub struct UdpState {
    flows: BTreeMap<u64, UdpFlow>,
    by_tuple: HashMap<(SocketAddr, SocketAddr), u64>,
    next_id: u64,
}

impl UdpState {
    pub fn has_flows(&self) -> bool {
        !self.flows.is_empty()
    }

    /// Every relayed flow: its id and its guest and destination addresses.
    pub fn open_flows(&self) -> Vec<(u64, SocketAddr, SocketAddr)> {
        self.flows
            .iter()
            .map(|(&id, flow)| (id, flow.guest, flow.dst))
            .collect()
    }
}

impl EventLoop {
    /// A datagram from the guest that is not a DNS query to the gateway.
    pub(super) fn guest_udp(&mut self, datagram: UdpDatagram<'_>, frame: &[u8]) {
        let (guest, dst) = (datagram.tuple.src, datagram.tuple.dst);
        // Published UDP ports reach the guest from the gateway's IPv4 address only.
        if dst.ip() == self.link.gateway_v4
            && self.published_udp_reply(dst.port(), datagram.payload)
        {
            return;
        }
        let id = match self.udp.by_tuple.get(&(guest, dst)) {
            Some(&id) => id,
            None => {
                if self
                    .tls
                    .as_ref()
                    .is_some_and(|tls| tls.blocks_udp(dst.port()))
                {
                    log::debug!("UDP {guest} -> {dst} refused: {}", reason::QUIC_BLOCKED);
                    self.log_refusal(Protocol::Udp, guest, dst, reason::QUIC_BLOCKED);
                    self.refuse(frame);
                    return;
                }
                let (verdict, names) =
                    self.decide_egress(Protocol::Udp, dst.ip(), Some(dst.port()));
                self.log_decision(Decided {
                    direction: FlowDirection::Egress,
                    protocol: Protocol::Udp,
                    src: guest.to_string(),
                    dst: dst.to_string(),
                    verdict,
                    names: &names,
                    sni: None,
                    reason: None,
                });
                if verdict.action == Decision::Deny {
                    log::debug!("UDP {guest} -> {dst} denied by the policy");
                    self.refuse(frame);
                    return;
                }
                let mut facts = FlowFacts::new(FlowDirection::Egress, Protocol::Udp, guest, dst);
                facts.domain = super::flow_log::logged_domain(
                    self.stack.evaluator().policy(),
                    verdict,
                    &names,
                );
                let Some(id) = self.open_udp_flow(guest, dst, facts) else {
                    return;
                };
                id
            }
        };
        if let Some(flow) = self.udp.flows.get_mut(&id) {
            flow.last_used = Instant::now();
            match flow.socket.send(datagram.payload) {
                Ok(count) => flow.facts.bytes_sent += count as u64,
                Err(error) => log::debug!("UDP {guest} -> {dst}: {error}"),
            }
        }
    }

    /// Opens the flow of (guest, dst), which the policy allowed.
    fn open_udp_flow(
        &mut self,
        guest: SocketAddr,
        dst: SocketAddr,
        facts: FlowFacts,
    ) -> Option<u64> {
        if self.udp.flows.len() >= MAX_UDP_FLOWS {
            let oldest = self
                .udp
                .flows
                .iter()
                .min_by_key(|(_, flow)| flow.last_used)
                .map(|(&id, _)| id)?;
            self.udp_close(oldest, reason::IDLE);
        }
        let target = self.host_destination(dst);
        let local: SocketAddr = match target {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let mut socket = match UdpSocket::bind(local).and_then(|socket| {
            socket.connect(target)?;
            Ok(socket)
        }) {
            Ok(socket) => socket,
            Err(error) => {
                log::debug!("UDP flow to {target}: {error}");
                return None;
            }
        };
        let id = self.udp.next_id;
        self.udp.next_id += 1;
        let token = self.register(&mut socket, Owner::Udp(id), Interest::READABLE)?;
        self.udp.by_tuple.insert((guest, dst), id);
        self.udp.flows.insert(
            id,
            UdpFlow {
                guest,
                dst,
                socket,
                token,
                last_used: Instant::now(),
                facts,
            },
        );
        Some(id)
    }

    pub(super) fn udp_readable(&mut self, id: u64) {
        loop {
            let Some(flow) = self.udp.flows.get_mut(&id) else {
                return;
            };
            match flow.socket.recv(&mut self.scratch) {
                Ok(count) => {
                    flow.last_used = Instant::now();
                    flow.facts.bytes_received += count as u64;
                    let (src, guest) = (flow.dst, flow.guest);
                    let payload = self.scratch[..count].to_vec();
                    let ip_id = self.ip_id();
                    let frames =
                        emit::udp_frames(self.macs, src, guest, &payload, self.link.mtu, ip_id);
                    self.send_frames(frames);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // ECONNREFUSED: the host got a port unreachable for an earlier datagram.
                Err(error) => {
                    log::debug!("UDP flow {id}: {error}");
                    return;
                }
            }
        }
    }

    pub(super) fn udp_expire(&mut self, now: Instant) {
        let idle: Vec<u64> = self
            .udp
            .flows
            .iter()
            .filter(|(_, flow)| now.saturating_duration_since(flow.last_used) >= UDP_IDLE)
            .map(|(&id, _)| id)
            .collect();
        for id in idle {
            self.udp_close(id, reason::IDLE);
        }
    }

    pub(super) fn udp_close(&mut self, id: u64, why: &'static str) {
        if let Some(mut flow) = self.udp.flows.remove(&id) {
            self.udp.by_tuple.remove(&(flow.guest, flow.dst));
            let _ = self.poll.registry().deregister(&mut flow.socket);
            self.tokens.release(flow.token);
            self.log_close(&flow.facts, why);
        }
    }
}

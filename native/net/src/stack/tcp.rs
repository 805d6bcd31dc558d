//! The stack: a smoltcp interface that owns the gateway address and, with AnyIP, every other
//! destination, and one smoltcp socket per guest TCP flow that its dial opened.
//!
//! A flow is `Dialing` (its SYN kept aside, no socket) or `Open` (a socket). Only `on_dialed`
//! creates a listening socket, for the flow's destination, and replays the SYN in the same
//! call: so at most one socket ever listens, and it can only take its own flow's SYN. A socket
//! that did not take it is dropped at once and the guest gets a RST.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{Socket as TcpSocket, SocketBuffer, State};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, HardwareAddress, IpAddress, IpCidr, IpListenEndpoint,
};

use super::config::{ConfigError, NetConfig, StackOptions, IPV6_PREFIX};
use super::device::FrameDevice;
use super::flow::{Action, DialError, Event, FlowError, FlowId, IngressError};
use super::reset::reset_for_syn;
use crate::policy::Verdict;
use crate::policy::{Action as Decision, Evaluator, Flow as PolicyFlow, FlowDirection, Protocol};
use crate::wire::classified::{Classified, FlowTuple, Gateway, TcpSegment};
use crate::wire::classify::Classifier;
use crate::wire::emit::LinkAddresses;
use crate::wire::outbound::OutboundQueue;

/// The names the guest resolved an address from, for the policy's domain rules.
pub trait ResolvedNames {
    fn names_for(&self, ip: IpAddr) -> Vec<String>;
}

/// No DNS pins: domain rules match nothing.
pub struct NoResolvedNames;

impl ResolvedNames for NoResolvedNames {
    fn names_for(&self, _ip: IpAddr) -> Vec<String> {
        Vec::new()
    }
}

/// How the policy decided one guest SYN, for the flow log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynDecision {
    pub tuple: FlowTuple,
    /// The flow it opened, if allowed.
    pub flow_id: Option<FlowId>,
    pub outcome: SynOutcome,
    /// The names pinned to the destination when it was decided.
    pub names: Vec<String>,
    /// Allowed only if the flow's first bytes name an allowed host (see
    /// `Evaluator::decide_connect`).
    pub name_required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynOutcome {
    Decided(Verdict),
    /// Refused before the policy was asked: `max_connections` flows are open.
    ConnectionLimit,
}

/// What became of one guest frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// The stack took it (a TCP segment, ARP for the gateway or a ping to it).
    Handled,
    /// Not the stack's to handle: UDP, fragments, IPv6, malformed or ignored frames.
    NotHandled(Classified<'a>),
}

enum FlowState {
    Dialing {
        syn: TcpSegment,
        syn_frame: Vec<u8>,
        guest_mac: EthernetAddress,
    },
    Open {
        socket: SocketHandle,
        guest_fin_reported: bool,
    },
}

struct TcpFlow {
    tuple: FlowTuple,
    state: FlowState,
}

pub struct Stack {
    config: NetConfig,
    options: StackOptions,
    interface: Interface,
    device: FrameDevice,
    sockets: SocketSet<'static>,
    classifier: Classifier,
    evaluator: Evaluator,
    flows: BTreeMap<FlowId, TcpFlow>,
    by_tuple: HashMap<FlowTuple, FlowId>,
    actions: VecDeque<Action>,
    decisions: VecDeque<SynDecision>,
    next_flow_id: u64,
    /// Where the search for a free gateway port of the next ingress connection starts.
    next_ingress_port: u16,
}

/// The gateway ports connections into the guest come from: the IANA dynamic range, as a host
/// would pick them.
const INGRESS_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// The port of the gateway's DNS service, whose TCP flows no policy decides.
const GATEWAY_DNS_PORT: u16 = 53;

/// The gateway's link-local address. The guest never addresses it, but Linux sends its
/// reachability probes of the gateway (unicast neighbour solicitations) from its own
/// link-local address, and smoltcp only answers a source on a prefix it has.
const GATEWAY_LINK_LOCAL: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const LINK_LOCAL_PREFIX: u8 = 64;

fn instant(since_origin: Duration) -> Instant {
    Instant::from_micros(i64::try_from(since_origin.as_micros()).unwrap_or(i64::MAX))
}

impl Stack {
    /// `now` is the time since the event loop's origin, as for every later call.
    pub fn new(
        config: NetConfig,
        options: StackOptions,
        evaluator: Evaluator,
        now: Duration,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        options.validate(&config)?;
        let mut device = FrameDevice::new(config.frame_mtu(), options.outbound_queue_len);
        let mut interface_config = Config::new(HardwareAddress::Ethernet(config.gateway_mac));
        interface_config.random_seed = options.random_seed;
        let mut interface = Interface::new(interface_config, &mut device, instant(now));
        interface.update_ip_addrs(|addresses| {
            // A fresh interface has no addresses and room for three (the crate's
            // `iface-max-addr-count-3`): these pushes cannot fail.
            let _ = addresses.push(IpCidr::new(config.gateway_v4.into(), config.prefix));
            if let Some(ipv6) = config.ipv6 {
                let _ = addresses.push(IpCidr::new(ipv6.gateway.into(), IPV6_PREFIX));
                let _ = addresses.push(IpCidr::new(GATEWAY_LINK_LOCAL.into(), LINK_LOCAL_PREFIX));
            }
        });
        // Every destination the guest routes to the gateway is terminated here.
        interface.set_any_ip(true);
        let classifier = Classifier::new(Gateway {
            mac: config.gateway_mac,
            ipv4: config.gateway_v4,
            ipv6: config.ipv6.map(|ipv6| ipv6.gateway),
        });
        Ok(Self {
            config,
            options,
            interface,
            device,
            sockets: SocketSet::new(Vec::new()),
            classifier,
            evaluator,
            flows: BTreeMap::new(),
            by_tuple: HashMap::new(),
            actions: VecDeque::new(),
            decisions: VecDeque::new(),
            next_flow_id: 0,
            next_ingress_port: *INGRESS_PORTS.start(),
        })
    }

    /// Takes one Ethernet frame from the guest.
    pub fn receive_frame<'a>(
        &mut self,
        now: Duration,
        frame: &'a [u8],
        names: &dyn ResolvedNames,
    ) -> Received<'a> {
        match self.classifier.classify(frame) {
            Classified::Tcp(segment) if self.carries(segment.tuple.dst.ip()) => {
                self.receive_tcp(now, frame, segment, names);
                Received::Handled
            }
            Classified::ArpRequestForGateway { .. }
            | Classified::ArpReplyForGateway { .. }
            | Classified::NeighborSolicitationForGateway { .. }
            | Classified::NeighborAdvertisementForGateway { .. } => {
                self.deliver(now, frame);
                Received::Handled
            }
            // Only pings to the gateway itself: smoltcp would answer any address under AnyIP,
            // faking reachability of hosts nobody pinged.
            Classified::EchoRequest(echo) if self.classifier.gateway().owns(echo.dst) => {
                self.deliver(now, frame);
                Received::Handled
            }
            other => Received::NotHandled(other),
        }
    }

    /// Whether the link carries `ip`'s family: IPv6 only when the guest was given an address.
    fn carries(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() || self.config.ipv6.is_some()
    }

    /// Takes one event from the host side.
    pub fn handle(&mut self, now: Duration, event: Event) -> Result<(), FlowError> {
        match event {
            Event::Dialed { flow_id, result } => self.on_dialed(now, flow_id, result),
            Event::HostEof { flow_id } => {
                let socket = self.open_socket(flow_id)?;
                self.sockets.get_mut::<TcpSocket>(socket).close();
                self.poll(now);
                Ok(())
            }
            Event::HostReset { flow_id } => {
                let socket = self.open_socket(flow_id)?;
                self.sockets.get_mut::<TcpSocket>(socket).abort();
                self.poll(now);
                Ok(())
            }
        }
    }

    /// Opens a connection from the gateway to the guest's `guest_port` for `peer`, a client of
    /// a published port, decided by the policy as ingress. Data moves as for any open flow; a
    /// guest that refuses the port resets the flow, which ends in [`Action::Close`].
    pub fn connect_to_guest(
        &mut self,
        now: Duration,
        guest_port: u16,
        peer: SocketAddr,
    ) -> Result<FlowId, IngressError> {
        if !self.has_room_for_a_flow() {
            return Err(IngressError::TooManyConnections(self.flows.len()));
        }
        let verdict = self.evaluator.decide(&PolicyFlow {
            direction: FlowDirection::Ingress,
            protocol: Protocol::Tcp,
            peer: peer.ip(),
            port: Some(guest_port),
            resolved_domains: &[],
        });
        if verdict.action == Decision::Deny {
            return Err(IngressError::Denied(peer.ip()));
        }
        let local_port = self.free_ingress_port()?;
        let buffer_len = self.options.socket_buffer_len;
        let mut socket = guest_socket(buffer_len);
        let guest = IpAddress::from(self.config.guest_v4);
        let gateway = IpAddress::from(self.config.gateway_v4);
        socket
            .connect(
                self.interface.context(),
                (guest, guest_port),
                (gateway, local_port),
            )
            .map_err(|_| IngressError::NoGatewayPort)?;
        let handle = self.sockets.add(socket);
        let tuple = FlowTuple {
            src: SocketAddr::new(self.config.guest_v4.into(), guest_port),
            dst: SocketAddr::new(self.config.gateway_v4.into(), local_port),
        };
        let flow_id = FlowId(self.next_flow_id);
        self.next_flow_id += 1;
        self.by_tuple.insert(tuple, flow_id);
        self.flows.insert(
            flow_id,
            TcpFlow {
                tuple,
                state: FlowState::Open {
                    socket: handle,
                    guest_fin_reported: false,
                },
            },
        );
        self.poll(now);
        Ok(flow_id)
    }

    /// The evaluator the stack decides flows with, for the caller's UDP and ICMP flows.
    pub fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }

    /// Decides every later SYN with `evaluator`; flows already open are the caller's to
    /// decide again.
    pub fn set_evaluator(&mut self, evaluator: Evaluator) {
        self.evaluator = evaluator;
    }

    /// How the next guest SYN was decided, in the order they came (gateway DNS flows, which
    /// no policy decides, are left out).
    pub fn next_decision(&mut self) -> Option<SynDecision> {
        self.decisions.pop_front()
    }

    /// The next piece of host work, in the order it arose.
    pub fn next_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Lets smoltcp send what its sockets hold and run its timers; call after moving data.
    pub fn poll(&mut self, now: Duration) {
        self.interface
            .poll(instant(now), &mut self.device, &mut self.sockets);
        self.device.clear_incoming();
        self.reap_flows();
    }

    /// How long the event loop may sleep before the next `poll` is due.
    pub fn poll_delay(&mut self, now: Duration) -> Option<Duration> {
        self.interface
            .poll_delay(instant(now), &self.sockets)
            .map(|delay| Duration::from_micros(delay.total_micros()))
    }

    /// Encoded frames for QEMU's socket.
    pub fn to_guest(&mut self) -> &mut OutboundQueue {
        self.device.outbound()
    }

    /// Flows the stack holds, dialing ones included.
    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Frames smoltcp built that the outbound queue could not take (TCP resends them).
    pub fn refused_frames(&self) -> u64 {
        self.device.refused_frames()
    }

    /// Bytes the guest socket takes now: read no more than this from the host.
    pub fn guest_send_capacity(&self, flow_id: FlowId) -> Result<usize, FlowError> {
        let socket = self.sockets.get::<TcpSocket>(self.open_socket(flow_id)?);
        if !socket.may_send() {
            return Ok(0);
        }
        Ok(socket.send_capacity() - socket.send_queue())
    }

    /// Queues host bytes for the guest, as many as fit; returns how many.
    pub fn send_to_guest(&mut self, flow_id: FlowId, data: &[u8]) -> Result<usize, FlowError> {
        let socket = self.open_socket(flow_id)?;
        self.sockets
            .get_mut::<TcpSocket>(socket)
            .send_slice(data)
            .map_err(|_| FlowError::SendClosed(flow_id))
    }

    /// The guest's address and port on `flow_id`.
    pub fn flow_source(&self, flow_id: FlowId) -> Option<SocketAddr> {
        self.flows.get(&flow_id).map(|flow| flow.tuple.src)
    }

    /// Whether the guest may still send on `flow_id`: it has not sent FIN (or reset). A flow
    /// whose handshake is not complete yet may still send: its socket is in SYN-RECEIVED,
    /// where smoltcp's `may_recv` is false although every byte is still to come.
    pub fn guest_may_send(&self, flow_id: FlowId) -> bool {
        self.open_socket(flow_id).is_ok_and(|socket| {
            let socket = self.sockets.get::<TcpSocket>(socket);
            socket.may_recv() || matches!(socket.state(), State::SynReceived | State::Listen)
        })
    }

    /// Bytes from the guest waiting for the host.
    pub fn guest_data_len(&self, flow_id: FlowId) -> Result<usize, FlowError> {
        let socket = self.open_socket(flow_id)?;
        Ok(self.sockets.get::<TcpSocket>(socket).recv_queue())
    }

    /// Offers the guest's bytes to `write` (e.g. a host socket write) and drops from the
    /// socket only the count it returns; returns that count. 0 when nothing waits.
    pub fn write_guest_data(
        &mut self,
        flow_id: FlowId,
        write: impl FnOnce(&[u8]) -> usize,
    ) -> Result<usize, FlowError> {
        let socket = self.open_socket(flow_id)?;
        let taken = self.sockets.get_mut::<TcpSocket>(socket).recv(|pending| {
            let taken = write(pending).min(pending.len());
            (taken, taken)
        });
        Ok(taken.unwrap_or(0))
    }

    fn open_socket(&self, flow_id: FlowId) -> Result<SocketHandle, FlowError> {
        match self.flows.get(&flow_id).map(|flow| &flow.state) {
            Some(FlowState::Open { socket, .. }) => Ok(*socket),
            Some(FlowState::Dialing { .. }) => Err(FlowError::NotConnected(flow_id)),
            None => Err(FlowError::Unknown(flow_id)),
        }
    }

    fn deliver(&mut self, now: Duration, frame: &[u8]) {
        self.device.deliver(frame);
        self.poll(now);
    }

    fn receive_tcp(
        &mut self,
        now: Duration,
        frame: &[u8],
        segment: TcpSegment,
        names: &dyn ResolvedNames,
    ) {
        let Some(&flow_id) = self.by_tuple.get(&segment.tuple) else {
            if segment.opens_flow() {
                self.open_flow(frame, segment, names);
            } else {
                // smoltcp answers a segment of no connection with a RST (RFC 9293 3.10.7.1).
                self.deliver(now, frame);
            }
            return;
        };
        let dialing = matches!(
            self.flows.get(&flow_id).map(|flow| &flow.state),
            Some(FlowState::Dialing { .. })
        );
        if !dialing {
            self.deliver(now, frame);
        } else if segment.flags.rst {
            // The guest gave up before the dial finished; its late result finds no flow.
            self.forget_flow(flow_id);
        }
        // Otherwise a retransmitted SYN while dialing: the kept one is replayed later.
    }

    fn open_flow(&mut self, frame: &[u8], syn: TcpSegment, names: &dyn ResolvedNames) {
        let guest_mac = EthernetFrame::new_unchecked(frame).src_addr();
        let peer = syn.tuple.dst.ip();
        // The gateway's DNS service is always reachable: its queries are decided by name.
        let gateway_dns =
            self.classifier.gateway().owns(peer) && syn.tuple.dst.port() == GATEWAY_DNS_PORT;
        let names = if gateway_dns {
            Vec::new()
        } else {
            names.names_for(peer)
        };
        let decided = |outcome| SynDecision {
            tuple: syn.tuple,
            flow_id: None,
            outcome,
            names: names.clone(),
            name_required: false,
        };
        if !self.has_room_for_a_flow() {
            if !gateway_dns {
                self.decisions
                    .push_back(decided(SynOutcome::ConnectionLimit));
            }
            self.reset(guest_mac, &syn);
            return;
        }
        let connect = (!gateway_dns).then(|| {
            self.evaluator.decide_connect(&PolicyFlow {
                direction: FlowDirection::Egress,
                protocol: Protocol::Tcp,
                peer,
                port: Some(syn.tuple.dst.port()),
                resolved_domains: &names,
            })
        });
        let verdict = connect.map(|connect| connect.verdict);
        if let Some(verdict) = verdict.filter(|v| v.action == Decision::Deny) {
            self.decisions
                .push_back(decided(SynOutcome::Decided(verdict)));
            self.reset(guest_mac, &syn);
            return;
        }
        let flow_id = FlowId(self.next_flow_id);
        self.next_flow_id += 1;
        self.by_tuple.insert(syn.tuple, flow_id);
        self.flows.insert(
            flow_id,
            TcpFlow {
                tuple: syn.tuple,
                state: FlowState::Dialing {
                    syn,
                    syn_frame: frame.to_vec(),
                    guest_mac,
                },
            },
        );
        if let Some(connect) = connect {
            self.decisions.push_back(SynDecision {
                flow_id: Some(flow_id),
                name_required: connect.name_required,
                ..decided(SynOutcome::Decided(connect.verdict))
            });
        }
        self.actions.push_back(Action::Dial {
            flow_id,
            dst: syn.tuple.dst,
        });
    }

    fn on_dialed(
        &mut self,
        now: Duration,
        flow_id: FlowId,
        result: Result<(), DialError>,
    ) -> Result<(), FlowError> {
        let Some(flow) = self.flows.get(&flow_id) else {
            return Err(FlowError::Unknown(flow_id));
        };
        let FlowState::Dialing {
            syn,
            ref syn_frame,
            guest_mac,
        } = flow.state
        else {
            return Err(FlowError::NotDialing(flow_id));
        };
        let syn_frame = syn_frame.clone();
        match result {
            Ok(()) => self.replay_syn(now, flow_id, syn, &syn_frame, guest_mac),
            Err(DialError::Refused) => {
                self.forget_flow(flow_id);
                self.reset(guest_mac, &syn);
            }
            // Silence, like a network that lost the SYN: the guest retransmits, and its next
            // SYN is a new flow and a new dial, so a transient failure heals by itself. An ICMP
            // unreachable would end the guest's connect for good on one failed try.
            Err(DialError::Unreachable | DialError::TimedOut) => self.forget_flow(flow_id),
        }
        Ok(())
    }

    fn replay_syn(
        &mut self,
        now: Duration,
        flow_id: FlowId,
        syn: TcpSegment,
        syn_frame: &[u8],
        guest_mac: EthernetAddress,
    ) {
        let buffer_len = self.options.socket_buffer_len;
        let mut socket = guest_socket(buffer_len);
        let destination = syn.tuple.dst;
        let endpoint = IpListenEndpoint {
            addr: Some(destination.ip().into()),
            port: destination.port(),
        };
        if socket.listen(endpoint).is_err() {
            // Port 0: nothing to connect the guest to.
            self.forget_flow(flow_id);
            self.reset(guest_mac, &syn);
            return;
        }
        let handle = self.sockets.add(socket);
        if let Some(flow) = self.flows.get_mut(&flow_id) {
            flow.state = FlowState::Open {
                socket: handle,
                guest_fin_reported: false,
            };
        }
        self.deliver(now, syn_frame);
        if self.sockets.get::<TcpSocket>(handle).state() == State::Listen {
            // smoltcp rejected the SYN (e.g. options it refuses): no socket may stay
            // listening, or it could catch another flow's SYN.
            self.sockets.remove(handle);
            self.forget_flow(flow_id);
            self.actions.push_back(Action::Close { flow_id });
            self.reset(guest_mac, &syn);
        }
    }

    /// Reports guest FINs and drops flows whose socket has closed.
    fn reap_flows(&mut self) {
        let mut closed = Vec::new();
        for (&flow_id, flow) in self.flows.iter_mut() {
            let FlowState::Open {
                socket,
                ref mut guest_fin_reported,
            } = flow.state
            else {
                continue;
            };
            let tcp = self.sockets.get::<TcpSocket>(socket);
            let guest_closed = matches!(
                tcp.state(),
                State::CloseWait | State::LastAck | State::Closing | State::TimeWait
            );
            if guest_closed && tcp.recv_queue() == 0 && !*guest_fin_reported {
                *guest_fin_reported = true;
                self.actions.push_back(Action::ShutdownWrite { flow_id });
            }
            if tcp.state() == State::Closed {
                closed.push((flow_id, socket));
            }
        }
        for (flow_id, socket) in closed {
            self.sockets.remove(socket);
            self.forget_flow(flow_id);
            self.actions.push_back(Action::Close { flow_id });
        }
    }

    /// Whether a new flow fits under `max_connections`, making room by ending a flow in
    /// TIME-WAIT if need be: such a flow carries nothing any more, and where the host closed
    /// first (as HTTP servers do) its 2 MSL would otherwise hold the slots of a busy guest's
    /// last minute of connections. The guest picks a fresh port for its next connection, so
    /// no old segment can be taken for a new flow's.
    fn has_room_for_a_flow(&mut self) -> bool {
        if self.flows.len() < self.options.max_connections {
            return true;
        }
        let waiting = self
            .flows
            .iter()
            .find_map(|(&flow_id, flow)| match flow.state {
                FlowState::Open { socket, .. }
                    if self.sockets.get::<TcpSocket>(socket).state() == State::TimeWait =>
                {
                    Some((flow_id, socket))
                }
                _ => None,
            });
        let Some((flow_id, socket)) = waiting else {
            return false;
        };
        self.sockets.remove(socket);
        self.forget_flow(flow_id);
        self.actions.push_back(Action::Close { flow_id });
        true
    }

    /// A gateway port no live flow into the guest uses, searched round-robin so a port is
    /// reused as late as possible (the guest may still hold its TIME-WAIT).
    fn free_ingress_port(&mut self) -> Result<u16, IngressError> {
        let gateway = IpAddr::V4(self.config.gateway_v4);
        let span = usize::from(INGRESS_PORTS.end() - INGRESS_PORTS.start()) + 1;
        for _ in 0..span {
            let port = self.next_ingress_port;
            self.next_ingress_port = if port == *INGRESS_PORTS.end() {
                *INGRESS_PORTS.start()
            } else {
                port + 1
            };
            let taken = self
                .by_tuple
                .keys()
                .any(|tuple| tuple.dst == SocketAddr::new(gateway, port));
            if !taken {
                return Ok(port);
            }
        }
        Err(IngressError::NoGatewayPort)
    }

    /// Drops a flow's bookkeeping (its socket, if any, is the caller's to remove).
    fn forget_flow(&mut self, flow_id: FlowId) {
        if let Some(flow) = self.flows.remove(&flow_id) {
            self.by_tuple.remove(&flow.tuple);
        }
    }

    fn reset(&mut self, guest_mac: EthernetAddress, syn: &TcpSegment) {
        let link = LinkAddresses {
            gateway: self.config.gateway_mac,
            guest: guest_mac,
        };
        if let Some(frame) = reset_for_syn(link, syn) {
            // A full queue drops the RST: the guest's retransmitted SYN gets another.
            let _ = self.device.outbound().push(&frame);
        }
    }
}

/// A socket facing the guest. Nagle's algorithm is off: the stack relays what the host's
/// socket delivered, already segmented by the real peer, and holding a small write until the
/// guest acknowledges the previous one cost every answer written in two parts (a head, then
/// its body) the guest's delayed ACK — 43-46 ms per kept-alive request on TCG, 3.5 ms without.
fn guest_socket(buffer_len: usize) -> TcpSocket<'static> {
    let mut socket = TcpSocket::new(
        SocketBuffer::new(vec![0; buffer_len]),
        SocketBuffer::new(vec![0; buffer_len]),
    );
    socket.set_nagle_enabled(false);
    socket
}

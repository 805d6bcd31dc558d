//! DNS at the gateway, the I/O half: guest queries over UDP and over TCP (a flow to the
//! gateway's port 53 that the stack terminates and this module answers), and the forwarder's
//! sockets to the nameservers: one UDP socket per address family and one TCP connection per
//! retry over TCP. The resolver (`crate::dns`) decides everything else.
//!
//! The gateway's DNS service is always reachable (its transport is no policy flow); each
//! query is decided by its name (`Evaluator::decide_query`) before the resolver sees it, and
//! a denied name is answered NXDOMAIN without leaving the sandbox, so under `Network.none()`,
//! or a default-deny policy allowing one name, no other query reaches a nameserver. Every
//! answer and refusal is a `dns` record of the flow log, and every address an answer gives
//! is pinned to its names for as long as its TTL says.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UdpSocket};
use mio::{Interest, Token};

use hickory_proto::op::{Header, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::BinDecodable;

use super::flow_log::{self, reason, DnsDecision, FlowRecord};
use super::tokens::{self, Owner};
use super::EventLoop;
use crate::dns::{plain_name, question, Action, Question, ResolvedAddress, Resolver, Transport};
use crate::policy::{Action as Decision, Flow, FlowDirection, Protocol, Verdict};
use crate::stack::{Event, FlowId};
use crate::wire::classified::UdpDatagram;
use crate::wire::emit;

/// The longest DNS message (a TCP message's length is 16 bits).
const MAX_MESSAGE: usize = 65535;
/// How long a TCP connection to a nameserver may stay open; the resolver's own timeout moves
/// the query on to the next server long before.
const UPSTREAM_TCP_LIFETIME: Duration = Duration::from_secs(30);
/// How long a guest's DNS-over-TCP connection is kept after the guest has sent its last
/// query, for the answers still on their way.
const GUEST_TCP_LINGER: Duration = Duration::from_secs(15);
/// Bytes of queries a guest TCP connection may have waiting: a few full-size messages.
const GUEST_TCP_INBOX: usize = 4 * (MAX_MESSAGE + 2);

/// Who asked a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    Udp(SocketAddr),
    Tcp(FlowId),
}

/// A guest query as the resolver carries it to its answer: who asked, what, and how the
/// policy decided the name when it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asker {
    client: Client,
    /// The guest's address and port.
    src: SocketAddr,
    question: Option<Question>,
    verdict: Option<Verdict>,
}

/// One guest DNS-over-TCP connection.
#[derive(Debug, Default)]
struct GuestTcp {
    /// Bytes from the guest not yet a whole query.
    inbox: Vec<u8>,
    /// Length-prefixed answers not yet in the guest socket.
    outbox: Vec<u8>,
    /// When the guest sent FIN.
    finished_at: Option<Duration>,
    eof_reported: bool,
}

/// One TCP connection to a nameserver, for one query.
#[derive(Debug)]
struct UpstreamTcp {
    server: SocketAddr,
    stream: TcpStream,
    token: Token,
    /// The framed query still to send.
    outbox: Vec<u8>,
    inbox: Vec<u8>,
    opened: Instant,
}

pub struct DnsState {
    pub resolver: Resolver<Asker>,
    udp_v4: Option<UdpSocket>,
    udp_v6: Option<UdpSocket>,
    guest_tcp: BTreeMap<FlowId, GuestTcp>,
    upstream_tcp: BTreeMap<u64, UpstreamTcp>,
    next_upstream: u64,
}

impl DnsState {
    pub fn new(resolver: Resolver<Asker>) -> Self {
        Self {
            resolver,
            udp_v4: None,
            udp_v6: None,
            guest_tcp: BTreeMap::new(),
            upstream_tcp: BTreeMap::new(),
            next_upstream: 0,
        }
    }

    pub fn has_connections(&self) -> bool {
        !self.guest_tcp.is_empty() || !self.upstream_tcp.is_empty()
    }
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 2);
    // Messages are at most 65,535 bytes (`MAX_MESSAGE`).
    out.extend_from_slice(&(message.len() as u16).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// The first whole length-prefixed message in `buffer`, taken out of it.
fn take_framed(buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let len = usize::from(u16::from_be_bytes([*buffer.first()?, *buffer.get(1)?]));
    if buffer.len() < 2 + len {
        return None;
    }
    let message = buffer[2..2 + len].to_vec();
    buffer.drain(..2 + len);
    Some(message)
}

/// A query type as the flow log writes it: its mnemonic, or its number.
fn qtype_text(query_type: RecordType) -> String {
    match query_type {
        RecordType::Unknown(number) => number.to_string(),
        known => known.to_string(),
    }
}

/// A response code as DNS tools write it.
fn rcode_text(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".to_owned(),
        ResponseCode::FormErr => "FORMERR".to_owned(),
        ResponseCode::ServFail => "SERVFAIL".to_owned(),
        ResponseCode::NXDomain => "NXDOMAIN".to_owned(),
        ResponseCode::NotImp => "NOTIMP".to_owned(),
        ResponseCode::Refused => "REFUSED".to_owned(),
        other => u16::from(other).to_string(),
    }
}

impl EventLoop {
    pub(super) fn dns_guest_query_udp(&mut self, datagram: UdpDatagram<'_>) {
        let guest = datagram.tuple.src;
        self.dns_guest_query(Client::Udp(guest), guest, Transport::Udp, datagram.payload);
    }

    /// Decides a guest query by its name and hands it to the resolver.
    fn dns_guest_query(
        &mut self,
        client: Client,
        src: SocketAddr,
        transport: Transport,
        bytes: &[u8],
    ) {
        let question = question(bytes);
        let verdict = question.as_ref().map(|question| {
            self.stack
                .evaluator()
                .decide_query(&plain_name(&question.name))
        });
        let denied = verdict.is_some_and(|verdict| verdict.action == Decision::Deny);
        let asker = Asker {
            client,
            src,
            question,
            verdict,
        };
        let now = Instant::now();
        let action = if denied {
            self.dns
                .resolver
                .on_denied_guest_query(asker, transport, bytes, now)
        } else {
            self.dns
                .resolver
                .on_guest_query(asker, transport, bytes, now)
        };
        self.dns_act(action);
    }

    /// A guest TCP flow to the gateway's port 53 (the stack's policy check allowed it).
    pub(super) fn dns_open_tcp(&mut self, now: Duration, flow_id: FlowId) {
        self.dns.guest_tcp.insert(flow_id, GuestTcp::default());
        self.report(
            now,
            Event::Dialed {
                flow_id,
                result: Ok(()),
            },
        );
    }

    pub(super) fn dns_guest_finished(&mut self, flow_id: FlowId) {
        let now = self.now();
        if let Some(connection) = self.dns.guest_tcp.get_mut(&flow_id) {
            connection.finished_at = Some(now);
        }
    }

    pub(super) fn dns_close(&mut self, flow_id: FlowId) {
        self.dns.guest_tcp.remove(&flow_id);
    }

    /// Moves queries out of and answers into the guest's DNS-over-TCP flows.
    pub(super) fn dns_pump(&mut self, now: Duration) {
        let flows: Vec<FlowId> = self.dns.guest_tcp.keys().copied().collect();
        for flow_id in flows {
            self.dns_read_queries(flow_id);
            self.dns_write_answers(now, flow_id);
        }
    }

    fn dns_read_queries(&mut self, flow_id: FlowId) {
        let Some(connection) = self.dns.guest_tcp.get_mut(&flow_id) else {
            return;
        };
        let room = GUEST_TCP_INBOX.saturating_sub(connection.inbox.len());
        let inbox = &mut connection.inbox;
        let _ = self.stack.write_guest_data(flow_id, |bytes| {
            let count = bytes.len().min(room);
            inbox.extend_from_slice(&bytes[..count]);
            count
        });
        let Some(src) = self.stack.flow_source(flow_id) else {
            return;
        };
        while let Some(query) = self
            .dns
            .guest_tcp
            .get_mut(&flow_id)
            .and_then(|connection| take_framed(&mut connection.inbox))
        {
            self.dns_guest_query(Client::Tcp(flow_id), src, Transport::Tcp, &query);
        }
    }

    fn dns_write_answers(&mut self, now: Duration, flow_id: FlowId) {
        let Some(connection) = self.dns.guest_tcp.get_mut(&flow_id) else {
            return;
        };
        if !connection.outbox.is_empty() {
            if let Ok(sent) = self.stack.send_to_guest(flow_id, &connection.outbox) {
                connection.outbox.drain(..sent);
            }
        }
        let lingered = connection
            .finished_at
            .is_some_and(|at| now.saturating_sub(at) >= GUEST_TCP_LINGER);
        let answered = connection.finished_at.is_some()
            && connection.outbox.is_empty()
            && self.dns.resolver.pending_count() == 0;
        if (answered || lingered) && !connection.eof_reported {
            connection.eof_reported = true;
            self.report(now, Event::HostEof { flow_id });
        }
    }

    pub(super) fn dns_udp_readable(&mut self, token: Token) {
        let mut buffer = vec![0; MAX_MESSAGE];
        loop {
            let socket = if token == tokens::DNS_UDP_V4 {
                self.dns.udp_v4.as_ref()
            } else {
                self.dns.udp_v6.as_ref()
            };
            let Some(socket) = socket else {
                return;
            };
            match socket.recv_from(&mut buffer) {
                Ok((count, server)) => {
                    self.dns_upstream_answer(server, Transport::Udp, &buffer[..count])
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                // An ICMP error of an earlier datagram: the resolver times that server out.
                Err(error) => log::debug!("DNS socket: {error}"),
            }
        }
    }

    fn dns_upstream_answer(&mut self, server: SocketAddr, transport: Transport, bytes: &[u8]) {
        let evaluator = self.stack.evaluator();
        // An internal address survives rebinding protection only where a rule lets the guest
        // reach it: the rules decide, as they will for the flow itself.
        let allow_internal = |resolved: &ResolvedAddress| {
            let names = resolved.names();
            evaluator
                .decide(&Flow {
                    direction: FlowDirection::Egress,
                    protocol: Protocol::Tcp,
                    peer: resolved.address,
                    port: None,
                    resolved_domains: &names,
                })
                .action
                == Decision::Allow
        };
        let action = self.dns.resolver.on_upstream_answer(
            server,
            transport,
            bytes,
            Instant::now(),
            &allow_internal,
        );
        self.dns_act(action);
    }

    fn dns_act(&mut self, action: Action<Asker>) {
        match action {
            Action::SendUdp { server, bytes } => self.dns_send_udp(server, &bytes),
            Action::SendTcp { server, bytes } => self.dns_send_tcp(server, &bytes),
            Action::Reply {
                client,
                bytes,
                resolved,
            } => {
                let now = Instant::now();
                for address in &resolved {
                    self.pins
                        .record(address.address, address.names(), address.ttl, now);
                }
                self.log_dns(&client, &bytes, &resolved);
                self.dns_reply(client.client, &bytes);
            }
            Action::Drop => {}
        }
    }

    /// The `dns` record of an answer or a refusal.
    fn log_dns(&mut self, asker: &Asker, reply: &[u8], resolved: &[ResolvedAddress]) {
        if !self.flow_log.is_enabled() {
            return;
        }
        let (Some(question), Some(verdict)) = (&asker.question, asker.verdict) else {
            return;
        };
        let Ok(header) = Header::from_bytes(reply) else {
            return;
        };
        let by_deny_list = self.dns.resolver.deny_list_denies(&question.name);
        let (action, (rule, rule_text), why) = if by_deny_list {
            (
                Decision::Deny,
                (None, "default".to_owned()),
                Some(reason::DENY_DOMAINS),
            )
        } else {
            let policy = self.stack.evaluator().policy();
            let why = (verdict.action == Decision::Deny).then_some(reason::DENIED);
            (verdict.action, flow_log::decided_by(policy, verdict), why)
        };
        let record = FlowRecord::Dns(DnsDecision {
            time: std::time::SystemTime::now(),
            protocol: match asker.client {
                Client::Udp(_) => Protocol::Udp,
                Client::Tcp(_) => Protocol::Tcp,
            },
            src: asker.src.to_string(),
            name: plain_name(&question.name),
            qtype: qtype_text(question.query_type),
            action,
            rule,
            rule_text,
            rcode: rcode_text(header.metadata.response_code),
            answers: resolved.iter().map(|r| r.address.to_string()).collect(),
            reason: why,
        });
        self.flow_log.record(record, Instant::now());
    }

    fn dns_reply(&mut self, client: Client, bytes: &[u8]) {
        match client {
            Client::Udp(guest) => {
                // From the gateway address of the guest's family, which it asked.
                let gateway_ip = match guest.ip() {
                    IpAddr::V6(_) => self.link.ipv6.map(|ipv6| IpAddr::V6(ipv6.gateway)),
                    IpAddr::V4(_) => Some(IpAddr::V4(self.link.gateway_v4)),
                };
                let Some(gateway_ip) = gateway_ip else {
                    return;
                };
                let gateway = SocketAddr::new(gateway_ip, 53);
                let id = self.ip_id();
                let frames = emit::udp_frames(self.macs, gateway, guest, bytes, self.link.mtu, id);
                self.send_frames(frames);
            }
            Client::Tcp(flow_id) => {
                if let Some(connection) = self.dns.guest_tcp.get_mut(&flow_id) {
                    connection.outbox.extend_from_slice(&framed(bytes));
                }
            }
        }
    }

    fn dns_send_udp(&mut self, server: SocketAddr, bytes: &[u8]) {
        let (slot, token, local): (_, _, SocketAddr) = if server.is_ipv4() {
            (
                &mut self.dns.udp_v4,
                tokens::DNS_UDP_V4,
                (Ipv4Addr::UNSPECIFIED, 0).into(),
            )
        } else {
            (
                &mut self.dns.udp_v6,
                tokens::DNS_UDP_V6,
                (Ipv6Addr::UNSPECIFIED, 0).into(),
            )
        };
        if slot.is_none() {
            match UdpSocket::bind(local) {
                Ok(mut socket) => {
                    if let Err(error) =
                        self.poll
                            .registry()
                            .register(&mut socket, token, Interest::READABLE)
                    {
                        log::warn!("registering the DNS socket: {error}");
                        return;
                    }
                    *slot = Some(socket);
                }
                Err(error) => {
                    log::warn!("opening a DNS socket for {server}: {error}");
                    return;
                }
            }
        }
        if let Some(socket) = slot.as_ref() {
            if let Err(error) = socket.send_to(bytes, server) {
                // The resolver's timeout moves the query on to the next nameserver.
                log::debug!("DNS query to {server}: {error}");
            }
        }
    }

    fn dns_send_tcp(&mut self, server: SocketAddr, bytes: &[u8]) {
        let mut stream = match TcpStream::connect(server) {
            Ok(stream) => stream,
            Err(error) => {
                log::debug!("DNS over TCP to {server}: {error}");
                return;
            }
        };
        let id = self.dns.next_upstream;
        self.dns.next_upstream += 1;
        let interest = Interest::READABLE | Interest::WRITABLE;
        let Some(token) = self.register(&mut stream, Owner::DnsTcp(id), interest) else {
            return;
        };
        self.dns.upstream_tcp.insert(
            id,
            UpstreamTcp {
                server,
                stream,
                token,
                outbox: framed(bytes),
                inbox: Vec::new(),
                opened: Instant::now(),
            },
        );
    }

    pub(super) fn dns_tcp_ready(&mut self, id: u64, event: &mio::event::Event) {
        let Some(connection) = self.dns.upstream_tcp.get_mut(&id) else {
            return;
        };
        if event.is_writable() && !connection.outbox.is_empty() {
            match connection.stream.write(&connection.outbox) {
                Ok(count) => {
                    connection.outbox.drain(..count);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return self.dns_drop_upstream(id),
            }
        }
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match connection.stream.read(&mut buffer) {
                Ok(0) => return self.dns_drop_upstream(id),
                Ok(count) => connection.inbox.extend_from_slice(&buffer[..count]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.dns_drop_upstream(id),
            }
            if connection.inbox.len() > MAX_MESSAGE + 2 {
                break;
            }
        }
        let server = connection.server;
        if let Some(answer) = take_framed(&mut connection.inbox) {
            self.dns_drop_upstream(id);
            self.dns_upstream_answer(server, Transport::Tcp, &answer);
        }
    }

    fn dns_drop_upstream(&mut self, id: u64) {
        if let Some(mut connection) = self.dns.upstream_tcp.remove(&id) {
            let _ = self.poll.registry().deregister(&mut connection.stream);
            self.tokens.release(connection.token);
        }
    }

    pub(super) fn dns_expire(&mut self, now: Instant) {
        for action in self.dns.resolver.on_timeout(now) {
            self.dns_act(action);
        }
        let stale: Vec<u64> = self
            .dns
            .upstream_tcp
            .iter()
            .filter(|(_, c)| now.saturating_duration_since(c.opened) > UPSTREAM_TCP_LIFETIME)
            .map(|(&id, _)| id)
            .collect();
        for id in stale {
            self.dns_drop_upstream(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_types_and_response_codes_are_written_as_dns_tools_write_them() {
        assert_eq!(qtype_text(RecordType::AAAA), "AAAA");
        assert_eq!(qtype_text(RecordType::TXT), "TXT");
        assert_eq!(qtype_text(RecordType::Unknown(65280)), "65280");
        assert_eq!(rcode_text(ResponseCode::NXDomain), "NXDOMAIN");
        assert_eq!(rcode_text(ResponseCode::NoError), "NOERROR");
        assert_eq!(rcode_text(ResponseCode::ServFail), "SERVFAIL");
        assert_eq!(rcode_text(ResponseCode::Refused), "REFUSED");
    }

    #[test]
    fn framed_messages_are_taken_whole_and_in_order() {
        let mut buffer = framed(b"first");
        buffer.extend_from_slice(&framed(b"second"));
        buffer.extend_from_slice(&[0, 9, b'p']);
        assert_eq!(take_framed(&mut buffer).as_deref(), Some(&b"first"[..]));
        assert_eq!(take_framed(&mut buffer).as_deref(), Some(&b"second"[..]));
        assert_eq!(take_framed(&mut buffer), None);
        assert_eq!(buffer, [0, 9, b'p']);
    }
}

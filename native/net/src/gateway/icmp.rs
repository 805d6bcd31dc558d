//! ICMP echo (ping) from the guest to anything but the gateway, relayed through the host's
//! unprivileged ping sockets (`socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`).
//!
//! Linux allows those only to groups in `net.ipv4.ping_group_range`; where the host allows
//! none (the default `1 0`), each ping is refused with an ICMP "administratively prohibited"
//! to the guest, so `ping` fails at once, and the reason is logged once per sandbox.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Interest, Token};

use super::flow_log::{endpoint, Decided};
use super::tokens::Owner;
use super::EventLoop;
use crate::policy::{Action as Decision, FlowDirection, Protocol};
use crate::wire::classified::EchoRequest;
use crate::wire::emit::{self, Ipv4Route};

/// How long a ping flow lives after its last request (a `ping` sends one a second).
const PING_IDLE: Duration = Duration::from_secs(10);
const MAX_PING_FLOWS: usize = 64;
const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
const ICMP_HEADER_LEN: usize = 8;

#[derive(Debug)]
struct PingFlow {
    dst: Ipv4Addr,
    /// The guest's identifier: the kernel replaces it with the ping socket's own.
    guest_ident: u16,
    socket: UdpSocket,
    token: Token,
    last_used: Instant,
}

#[derive(Debug, Default)]
pub struct PingState {
    flows: BTreeMap<u64, PingFlow>,
    by_key: HashMap<(Ipv4Addr, u16), u64>,
    next_id: u64,
    /// Whether the host's refusal was logged already.
    refusal_logged: bool,
}

impl PingState {
    pub fn has_flows(&self) -> bool {
        !self.flows.is_empty()
    }

    /// Every ping flow and its destination.
    pub fn open_flows(&self) -> Vec<(u64, Ipv4Addr)> {
        self.flows
            .iter()
            .map(|(&id, flow)| (id, flow.dst))
            .collect()
    }
}

/// A non-blocking IPv4 ping socket.
fn ping_socket() -> io::Result<UdpSocket> {
    // SAFETY: plain socket(2); the descriptor is owned by the socket built from it.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMP,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns. A ping socket is a datagram socket:
    // send and recv carry one ICMP message each.
    let socket = unsafe { std::net::UdpSocket::from_raw_fd(fd) };
    Ok(UdpSocket::from_std(socket))
}

/// An echo request's ICMP message; the kernel fills in the identifier and the checksum.
fn echo_request(seq_no: u16, payload: &[u8]) -> Vec<u8> {
    let mut message = vec![ECHO_REQUEST, 0, 0, 0, 0, 0];
    message.extend_from_slice(&seq_no.to_be_bytes());
    message.extend_from_slice(payload);
    message
}

/// The sequence number and data of an echo reply as a ping socket receives it.
fn parse_echo_reply(message: &[u8]) -> Option<(u16, &[u8])> {
    if message.len() < ICMP_HEADER_LEN || message[0] != ECHO_REPLY {
        return None;
    }
    Some((
        u16::from_be_bytes([message[6], message[7]]),
        &message[ICMP_HEADER_LEN..],
    ))
}

impl EventLoop {
    pub(super) fn guest_echo(&mut self, echo: EchoRequest<'_>, frame: &[u8]) {
        let IpAddr::V4(dst) = echo.dst else {
            // No ICMPv6 ping sockets are relayed: the guest learns at once that it may not.
            log::debug!("ping to {} refused: ICMPv6 echo is not relayed", echo.dst);
            self.refuse(frame);
            return;
        };
        let known = self.pings.by_key.contains_key(&(dst, echo.ident));
        if !known {
            let (verdict, names) = self.decide_egress(Protocol::Icmpv4, echo.dst, None);
            self.log_decision(Decided {
                direction: FlowDirection::Egress,
                protocol: Protocol::Icmpv4,
                src: endpoint(echo.src, None),
                dst: endpoint(echo.dst, None),
                verdict,
                names: &names,
                sni: None,
                reason: None,
            });
            if verdict.action == Decision::Deny {
                log::debug!("ping to {dst} denied by the policy");
                self.refuse(frame);
                return;
            }
        }
        let Some(id) = self.ping_flow(dst, echo.ident) else {
            self.refuse(frame);
            return;
        };
        if let Some(flow) = self.pings.flows.get_mut(&id) {
            flow.last_used = Instant::now();
            let request = echo_request(echo.seq_no, echo.payload);
            if let Err(error) = flow.socket.send(&request) {
                log::debug!("ping to {dst}: {error}");
            }
        }
    }

    fn ping_flow(&mut self, dst: Ipv4Addr, guest_ident: u16) -> Option<u64> {
        if let Some(&id) = self.pings.by_key.get(&(dst, guest_ident)) {
            return Some(id);
        }
        if self.pings.flows.len() >= MAX_PING_FLOWS {
            return None;
        }
        let target = self.host_destination(SocketAddr::new(IpAddr::V4(dst), 0));
        let mut socket = match ping_socket().and_then(|socket| {
            socket.connect(target)?;
            Ok(socket)
        }) {
            Ok(socket) => socket,
            Err(error) => {
                if !self.pings.refusal_logged {
                    self.pings.refusal_logged = true;
                    log::warn!(
                        "ping from the sandbox refused: the host gives no ping socket ({error}); \
                         allow it with sysctl net.ipv4.ping_group_range"
                    );
                }
                return None;
            }
        };
        let id = self.pings.next_id;
        self.pings.next_id += 1;
        let token = self.register(&mut socket, Owner::Ping(id), Interest::READABLE)?;
        self.pings.by_key.insert((dst, guest_ident), id);
        self.pings.flows.insert(
            id,
            PingFlow {
                dst,
                guest_ident,
                socket,
                token,
                last_used: Instant::now(),
            },
        );
        Some(id)
    }

    pub(super) fn ping_readable(&mut self, id: u64) {
        loop {
            let Some(flow) = self.pings.flows.get(&id) else {
                return;
            };
            match flow.socket.recv(&mut self.scratch) {
                Ok(count) => {
                    let Some((seq_no, data)) = parse_echo_reply(&self.scratch[..count]) else {
                        continue;
                    };
                    let route = Ipv4Route {
                        src: flow.dst,
                        dst: self.link.guest_v4,
                    };
                    let reply = emit::echo_reply(self.macs, route, flow.guest_ident, seq_no, data);
                    self.send_frames(vec![reply]);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    log::debug!("ping socket: {error}");
                    return;
                }
            }
        }
    }

    pub(super) fn ping_expire(&mut self, now: Instant) {
        let idle: Vec<u64> = self
            .pings
            .flows
            .iter()
            .filter(|(_, flow)| now.saturating_duration_since(flow.last_used) >= PING_IDLE)
            .map(|(&id, _)| id)
            .collect();
        for id in idle {
            self.ping_close(id);
        }
    }

    pub(super) fn ping_close(&mut self, id: u64) {
        if let Some(mut flow) = self.pings.flows.remove(&id) {
            self.pings.by_key.remove(&(flow.dst, flow.guest_ident));
            let _ = self.poll.registry().deregister(&mut flow.socket);
            self.tokens.release(flow.token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_leaves_identifier_and_checksum_to_the_kernel() {
        assert_eq!(
            echo_request(0x0102, b"hi"),
            [8, 0, 0, 0, 0, 0, 1, 2, b'h', b'i']
        );
    }

    #[test]
    fn echo_reply_gives_sequence_and_data_and_ignores_other_messages() {
        let reply = [0, 0, 0xab, 0xcd, 0, 7, 0, 9, b'x'];
        assert_eq!(parse_echo_reply(&reply), Some((9, &b"x"[..])));
        assert_eq!(parse_echo_reply(&[3, 1, 0, 0, 0, 0, 0, 0]), None);
        assert_eq!(parse_echo_reply(&[0, 0, 0]), None);
    }
}

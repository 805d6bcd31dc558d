//! Published ports: host sockets bound before the VM starts (so a busy port fails the start
//! at once, with nothing left behind) and forwarded into the guest. A TCP client becomes a
//! stack flow from the gateway to the guest port; a UDP client gets a gateway port of its
//! own, so the guest's answers find their way back to it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UdpSocket};
use mio::{Interest, Registry};

use super::flow_log::{Decided, FlowFacts};
use super::spec::{PortProtocol, PublishedPort};
use super::tokens::{Owner, Tokens};
use super::EventLoop;
use super::GatewayError;
use crate::policy::{Action as Decision, FlowDirection, Protocol};
use crate::wire::emit;

/// How long a UDP client's mapping lives without traffic.
const UDP_CLIENT_IDLE: Duration = Duration::from_secs(60);
/// The gateway ports UDP clients are given (below the TCP ingress range of the stack, so the
/// two never meet).
const UDP_CLIENT_PORTS: std::ops::RangeInclusive<u16> = 32768..=49151;
/// UDP clients at once; beyond it the oldest mapping is recycled.
const MAX_UDP_CLIENTS: usize = 1024;

enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

struct Entry {
    port: PublishedPort,
    socket: Socket,
}

#[derive(Debug, Clone, Copy)]
struct UdpClient {
    entry: usize,
    client: SocketAddr,
    last_used: Instant,
}

#[derive(Default)]
pub struct Published {
    entries: Vec<Entry>,
    /// Gateway port → the client it stands for.
    clients: HashMap<u16, UdpClient>,
    by_client: HashMap<(usize, SocketAddr), u16>,
    next_port: u16,
}

impl Published {
    pub fn bind(
        ports: &[PublishedPort],
        registry: &Registry,
        tokens: &mut Tokens,
    ) -> Result<Self, GatewayError> {
        let mut entries = Vec::with_capacity(ports.len());
        for (index, port) in ports.iter().enumerate() {
            let address = port.host_socket();
            let failed = |source: io::Error| {
                if source.kind() == io::ErrorKind::AddrInUse {
                    GatewayError::PortInUse {
                        address,
                        protocol: port.protocol,
                    }
                } else {
                    GatewayError::Publish {
                        address,
                        protocol: port.protocol,
                        source,
                    }
                }
            };
            let token = tokens.allocate(Owner::Published(index));
            let socket = match port.protocol {
                PortProtocol::Tcp => {
                    let mut listener = TcpListener::bind(address).map_err(failed)?;
                    registry
                        .register(&mut listener, token, Interest::READABLE)
                        .map_err(failed)?;
                    Socket::Tcp(listener)
                }
                PortProtocol::Udp => {
                    let mut socket = UdpSocket::bind(address).map_err(failed)?;
                    registry
                        .register(&mut socket, token, Interest::READABLE)
                        .map_err(failed)?;
                    Socket::Udp(socket)
                }
            };
            log::info!(
                "publishing {address}/{} on guest port {}",
                port.protocol,
                port.guest_port
            );
            entries.push(Entry {
                port: *port,
                socket,
            });
        }
        Ok(Self {
            entries,
            next_port: *UDP_CLIENT_PORTS.start(),
            ..Self::default()
        })
    }

    pub fn has_udp_clients(&self) -> bool {
        !self.clients.is_empty()
    }

    /// Every UDP client mapping: its gateway port, the client and the guest port it reaches.
    pub fn udp_clients(&self) -> Vec<(u16, SocketAddr, u16)> {
        self.clients
            .iter()
            .filter_map(|(&port, client)| {
                let entry = self.entries.get(client.entry)?;
                Some((port, client.client, entry.port.guest_port.get()))
            })
            .collect()
    }

    /// Forgets the UDP client mapped to `gateway_port`.
    pub fn drop_udp_client(&mut self, gateway_port: u16) {
        if let Some(client) = self.clients.remove(&gateway_port) {
            self.by_client.remove(&(client.entry, client.client));
        }
    }

    pub fn expire_udp_clients(&mut self, now: Instant) {
        let by_client = &mut self.by_client;
        self.clients.retain(|_, client| {
            let alive = now.saturating_duration_since(client.last_used) < UDP_CLIENT_IDLE;
            if !alive {
                by_client.remove(&(client.entry, client.client));
            }
            alive
        });
    }

    /// The gateway port of `client` of entry `entry`, given one if it has none.
    fn gateway_port(&mut self, entry: usize, client: SocketAddr, now: Instant) -> u16 {
        if let Some(&port) = self.by_client.get(&(entry, client)) {
            if let Some(mapping) = self.clients.get_mut(&port) {
                mapping.last_used = now;
            }
            return port;
        }
        if self.clients.len() >= MAX_UDP_CLIENTS {
            if let Some((&port, mapping)) = self.clients.iter().min_by_key(|(_, m)| m.last_used) {
                self.by_client.remove(&(mapping.entry, mapping.client));
                self.clients.remove(&port);
            }
        }
        let mut port = self.next_port;
        while self.clients.contains_key(&port) {
            port = if port == *UDP_CLIENT_PORTS.end() {
                *UDP_CLIENT_PORTS.start()
            } else {
                port + 1
            };
        }
        self.next_port = if port == *UDP_CLIENT_PORTS.end() {
            *UDP_CLIENT_PORTS.start()
        } else {
            port + 1
        };
        self.clients.insert(
            port,
            UdpClient {
                entry,
                client,
                last_used: now,
            },
        );
        self.by_client.insert((entry, client), port);
        port
    }
}

impl EventLoop {
    pub(super) fn published_ready(&mut self, index: usize) {
        match self.published.entries.get(index).map(|entry| &entry.socket) {
            Some(Socket::Tcp(_)) => self.accept_tcp_clients(index),
            Some(Socket::Udp(_)) => self.receive_udp_clients(index),
            None => {}
        }
    }

    fn accept_tcp_clients(&mut self, index: usize) {
        loop {
            let Some(Entry {
                port,
                socket: Socket::Tcp(listener),
            }) = self.published.entries.get(index)
            else {
                return;
            };
            let guest_port = port.guest_port.get();
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    log::warn!("accepting on published port {}: {error}", port.host_port);
                    return;
                }
            };
            let guest = SocketAddr::new(self.link.guest_v4.into(), guest_port);
            if !self.ingress_allowed(Protocol::Tcp, peer, guest) {
                // Dropping the stream closes the client's connection.
                log::info!("published port client {peer} refused by the policy");
                continue;
            }
            let now = self.now();
            match self.stack.connect_to_guest(now, guest_port, peer) {
                Ok(flow_id) => {
                    let facts = FlowFacts::new(FlowDirection::Ingress, Protocol::Tcp, peer, guest);
                    self.adopt_open(flow_id, stream, facts);
                }
                Err(error) => log::info!("published port client {peer} refused: {error}"),
            }
        }
    }

    fn receive_udp_clients(&mut self, index: usize) {
        loop {
            let Some(Entry {
                port,
                socket: Socket::Udp(socket),
            }) = self.published.entries.get(index)
            else {
                return;
            };
            let guest_port = port.guest_port.get();
            let (count, client) = match socket.recv_from(&mut self.scratch) {
                Ok(received) => received,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    log::debug!("published UDP port {}: {error}", port.host_port);
                    return;
                }
            };
            let guest = SocketAddr::new(self.link.guest_v4.into(), guest_port);
            let known = self.published.by_client.contains_key(&(index, client));
            if !known && !self.ingress_allowed(Protocol::Udp, client, guest) {
                log::info!("published UDP port client {client} refused by the policy");
                continue;
            }
            let gateway_port = self.published.gateway_port(index, client, Instant::now());
            let src = SocketAddr::new(self.link.gateway_v4.into(), gateway_port);
            let dst = SocketAddr::new(self.link.guest_v4.into(), guest_port);
            let payload = self.scratch[..count].to_vec();
            let id = self.ip_id();
            let frames = emit::udp_frames(self.macs, src, dst, &payload, self.link.mtu, id);
            self.send_frames(frames);
        }
    }

    /// Decides and logs a published port's client `peer` reaching `guest`.
    fn ingress_allowed(&mut self, protocol: Protocol, peer: SocketAddr, guest: SocketAddr) -> bool {
        let verdict = self.decide_ingress(protocol, peer.ip(), guest.port());
        self.log_decision(Decided {
            direction: FlowDirection::Ingress,
            protocol,
            src: peer.to_string(),
            dst: guest.to_string(),
            verdict,
            names: &[],
            sni: None,
            reason: None,
        });
        verdict.action == Decision::Allow
    }

    /// Sends a guest datagram to the gateway's `gateway_port` back to the published port's
    /// client it stands for; false if it stands for none.
    pub(super) fn published_udp_reply(&mut self, gateway_port: u16, payload: &[u8]) -> bool {
        let Some(mapping) = self.published.clients.get_mut(&gateway_port) else {
            return false;
        };
        mapping.last_used = Instant::now();
        let mapping = *mapping;
        if let Some(Entry {
            socket: Socket::Udp(socket),
            ..
        }) = self.published.entries.get(mapping.entry)
        {
            if let Err(error) = socket.send_to(payload, mapping.client) {
                log::debug!(
                    "answer to published port client {}: {error}",
                    mapping.client
                );
            }
        }
        true
    }
}

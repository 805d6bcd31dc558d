//! The loop itself: QEMU's socket in and out, the dispatch of readiness events and of the
//! frames the stack leaves to the caller, and the timers.
//!
//! One iteration: wait for readiness (or the next timer), note which sockets became ready,
//! read the guest's frames, carry out the stack's actions, move data on every flow, let
//! smoltcp send and run its timers, and write the guest's frames to QEMU.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UnixStream;
use mio::{Events, Interest, Poll, Token, Waker};

use super::dns::DnsState;
use super::flow_log::FlowLog;
use super::icmp::PingState;
use super::intercepting::TlsInterception;
use super::ports::Published;
use super::tcp::HostTcp;
use super::tokens::{self, Owner, Tokens};
use super::udp::UdpState;
use super::{Control, Counters, EventLoop, GatewayConfig, GatewayError};
use crate::dns::{HostDns, Resolver, DEFAULT_MAX_PENDING};
use crate::policy::{Evaluator, Flow, FlowDirection, HostAddresses, Protocol, Verdict};
use crate::secrets::SharedSecrets;
use crate::stack::{Received, ResolvedNames, Stack, StackOptions};
use crate::wire::classified::{Classified, Gateway as GatewayAddresses};
use crate::wire::classify::Classifier;
use crate::wire::emit::{self, LinkAddresses};
use crate::wire::framing::FrameDecoder;
use crate::wire::reassembly::{Reassembler, ReassemblyLimits};

/// Reads of QEMU's socket per iteration before other sockets get their turn (each read takes
/// up to the decoder's 256 KiB).
const QEMU_READS_PER_ITERATION: usize = 8;
/// How often idle flows are looked for while any UDP, ping or dialing flow exists.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// The most addresses remembered with the names the guest resolved them from.
const MAX_PINS: usize = 4096;
/// The most names one address is remembered with (a CDN address serves many).
const MAX_NAMES_PER_PIN: usize = 32;
/// The shortest time a pin lives, whatever the answer's TTL. A TTL of 0 means "do not cache"
/// to resolvers, yet the guest connects right after the answer, and applications keep
/// addresses longer than the TTL: Java caches them 30 s by default, Chrome's host cache
/// 60 s. One minute covers both, and a longer floor would keep an address open for a name
/// after its owner moved it.
pub const MIN_PIN_TTL: Duration = Duration::from_secs(60);
/// The longest: TTLs may be up to 68 years (RFC 2181); a day bounds how long an address
/// stays open for a name without the guest asking again.
pub const MAX_PIN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The names each address was resolved from through the gateway's DNS, each until its
/// answer's TTL (clamped to [`MIN_PIN_TTL`]..=[`MAX_PIN_TTL`]) runs out.
#[derive(Debug, Default)]
pub struct Pins {
    by_address: HashMap<IpAddr, Vec<Pin>>,
}

#[derive(Debug, Clone)]
struct Pin {
    name: String,
    expires: Instant,
}

impl Pins {
    /// Pins `address` to `names` (lower case, no trailing dot) for `ttl` seconds from `now`.
    pub fn record(&mut self, address: IpAddr, names: Vec<String>, ttl: u32, now: Instant) {
        let address = crate::policy::groups::canonical(address);
        let lifetime = Duration::from_secs(u64::from(ttl)).clamp(MIN_PIN_TTL, MAX_PIN_TTL);
        let expires = now + lifetime;
        if self.by_address.len() >= MAX_PINS && !self.by_address.contains_key(&address) {
            self.forget_expired(now);
            if self.by_address.len() >= MAX_PINS {
                // Bounded memory over completeness: a forgotten pin only stops domain rules
                // from matching that address until it is resolved again.
                self.by_address.clear();
            }
        }
        let pins = self.by_address.entry(address).or_default();
        pins.retain(|pin| pin.expires > now);
        for name in names {
            if let Some(pin) = pins.iter_mut().find(|pin| pin.name == name) {
                pin.expires = pin.expires.max(expires);
            } else if pins.len() < MAX_NAMES_PER_PIN {
                pins.push(Pin { name, expires });
            }
        }
    }

    /// The names `address` is pinned to at `now`.
    pub fn names_at(&self, address: IpAddr, now: Instant) -> Vec<String> {
        self.by_address.get(&address).map_or_else(Vec::new, |pins| {
            pins.iter()
                .filter(|pin| pin.expires > now)
                .map(|pin| pin.name.clone())
                .collect()
        })
    }

    fn forget_expired(&mut self, now: Instant) {
        self.by_address.retain(|_, pins| {
            pins.retain(|pin| pin.expires > now);
            !pins.is_empty()
        });
    }
}

impl ResolvedNames for Pins {
    fn names_for(&self, ip: IpAddr) -> Vec<String> {
        self.names_at(crate::policy::groups::canonical(ip), Instant::now())
    }
}

impl EventLoop {
    pub fn new(
        config: GatewayConfig,
        qemu: StdUnixStream,
        counters: Arc<Counters>,
        control: Arc<Control>,
    ) -> Result<Self, GatewayError> {
        config.spec.validate()?;
        let poll = Poll::new().map_err(GatewayError::io("creating the network poller"))?;
        let waker = Arc::new(
            Waker::new(poll.registry(), tokens::WAKER)
                .map_err(GatewayError::io("creating the network waker"))?,
        );
        qemu.set_nonblocking(true)
            .map_err(GatewayError::io("QEMU's network socket"))?;
        let mut qemu = UnixStream::from_std(qemu);
        poll.registry()
            .register(
                &mut qemu,
                tokens::QEMU,
                Interest::READABLE | Interest::WRITABLE,
            )
            .map_err(GatewayError::io("registering QEMU's network socket"))?;
        let link = config.link;
        let host_addresses: HostAddresses = config
            .host
            .addresses
            .iter()
            .copied()
            .filter(|ip| !ip.is_loopback())
            .chain([IpAddr::V4(link.gateway_v4)])
            .chain(link.ipv6.map(|ipv6| IpAddr::V6(ipv6.gateway)))
            .collect();
        let evaluator = Evaluator::new(config.spec.policy(), host_addresses);
        let options = StackOptions {
            max_connections: config.spec.max_connections(),
            random_seed: config.random_seed,
            ..StackOptions::default()
        };
        let origin = Instant::now();
        let stack = Stack::new(link, options, evaluator, Duration::ZERO)?;
        let resolver = Resolver::new(
            &config.spec.dns,
            &HostDns {
                nameservers: config.host.nameservers.clone(),
                // AAAA answers only reach a guest with an IPv6 address (the supervisor gives it
                // one only when the host has an IPv6 route); an IPv4-only guest would try an
                // address it has no route to.
                has_ipv6_route: link.ipv6.is_some(),
                max_pending: DEFAULT_MAX_PENDING,
                id_seed: config.random_seed.rotate_left(17),
            },
        )?;
        let intercepts = config.spec.tls.is_some() || !config.secrets.is_empty();
        let tls = intercepts
            .then(|| TlsInterception::new(config.spec.tls.as_ref(), &config.home_ca))
            .transpose()?;
        let mut tokens = Tokens::default();
        let published = Published::bind(&config.spec.ports, poll.registry(), &mut tokens)?;
        let gateway_addresses = GatewayAddresses {
            mac: link.gateway_mac,
            ipv4: link.gateway_v4,
            ipv6: link.ipv6.map(|ipv6| ipv6.gateway),
        };
        Ok(Self {
            poll,
            waker,
            origin,
            link,
            macs: LinkAddresses {
                gateway: link.gateway_mac,
                guest: config.guest_mac,
            },
            qemu,
            qemu_readable: true,
            qemu_writable: true,
            decoder: FrameDecoder::new(),
            frame: Vec::new(),
            stack,
            reassembled: Classifier::new(gateway_addresses),
            reassembler: Reassembler::new(ReassemblyLimits::default()),
            tokens,
            host_tcp: HostTcp::default(),
            dns: DnsState::new(resolver),
            udp: UdpState::default(),
            pings: PingState::default(),
            published,
            pins: Pins::default(),
            flow_log: FlowLog::new(config.flow_log),
            tls,
            secrets: SharedSecrets::new(config.secrets),
            on_terminate: config.on_terminate,
            control,
            next_ip_id: (config.random_seed & 0xffff) as u16,
            busy: false,
            counters,
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
        })
    }

    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Time since the loop's origin, the stack's clock.
    pub(super) fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    pub fn run(mut self) {
        self.warn_of_bypassed_secret_hosts();
        let mut events = Events::with_capacity(256);
        loop {
            let timeout = self.next_timeout();
            if let Err(error) = self.poll.poll(&mut events, timeout) {
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                log::error!("network loop: poll failed: {error}");
                return;
            }
            for event in events.iter() {
                match event.token() {
                    tokens::WAKER => {
                        if !self.take_requests() {
                            log::debug!("network loop: stopped");
                            return;
                        }
                    }
                    tokens::QEMU => {
                        self.qemu_readable |= event.is_readable() || event.is_read_closed();
                        self.qemu_writable |= event.is_writable();
                    }
                    token => self.on_ready(token, event),
                }
            }
            if !self.iterate() {
                log::debug!("network loop: QEMU closed its network socket");
                return;
            }
        }
    }

    /// Carries out what the supervisor asked; false once it asked the loop to stop.
    fn take_requests(&mut self) -> bool {
        let control = self.control.clone();
        let mut requests = control.lock();
        if requests.stop {
            return false;
        }
        if let Some(policy) = requests.policy.take() {
            self.change_policy(policy);
        }
        if let Some(secrets) = requests.secrets.take() {
            self.change_secrets(secrets);
        }
        if requests.changes_taken < requests.changes_sent {
            requests.changes_taken = requests.changes_sent;
            control.taken.notify_all();
        }
        true
    }

    /// One round of work after the readiness events were noted; false once QEMU is gone.
    fn iterate(&mut self) -> bool {
        self.busy = false;
        let alive = self.read_from_qemu();
        let now = self.now();
        self.run_stack_actions(now);
        self.pump_tcp(now);
        self.dns_pump(now);
        self.expire(now);
        self.stack.poll(now);
        self.run_stack_actions(now);
        self.write_to_qemu();
        let outbound = self.stack.to_guest().counters().bytes;
        self.counters
            .publish(outbound, self.decoder.counters().bytes);
        alive
    }

    fn on_ready(&mut self, token: Token, event: &mio::event::Event) {
        match token {
            tokens::DNS_UDP_V4 | tokens::DNS_UDP_V6 => self.dns_udp_readable(token),
            token => match self.tokens.owner(token) {
                Some(Owner::Tcp(flow_id)) => self.tcp_ready(flow_id, event),
                Some(Owner::DnsTcp(id)) => self.dns_tcp_ready(id, event),
                Some(Owner::Udp(id)) => self.udp_readable(id),
                Some(Owner::Ping(id)) => self.ping_readable(id),
                Some(Owner::Published(index)) => self.published_ready(index),
                None => {}
            },
        }
    }

    fn next_timeout(&mut self) -> Option<Duration> {
        if self.busy {
            return Some(Duration::ZERO);
        }
        let now = self.now();
        let wall = Instant::now();
        let until = |deadline: Instant| deadline.saturating_duration_since(wall);
        [
            self.stack.poll_delay(now),
            self.dns.resolver.poll_timeout().map(until),
            self.reassembler.next_deadline().map(until),
            self.needs_housekeeping().then_some(HOUSEKEEPING),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn needs_housekeeping(&self) -> bool {
        self.udp.has_flows()
            || self.pings.has_flows()
            || self.host_tcp.has_dialing()
            || self.dns.has_connections()
            || self.published.has_udp_clients()
    }

    fn expire(&mut self, now: Duration) {
        let wall = Instant::now();
        self.reassembler.expire(wall);
        self.dns_expire(wall);
        self.expire_dials(now);
        self.udp_expire(wall);
        self.ping_expire(wall);
        self.published.expire_udp_clients(wall);
    }

    /// Reads what QEMU sent and hands every complete frame on; false on EOF.
    fn read_from_qemu(&mut self) -> bool {
        for _ in 0..QEMU_READS_PER_ITERATION {
            if !self.qemu_readable {
                return true;
            }
            let qemu = &mut self.qemu;
            match self.decoder.fill_with(|spare| qemu.read(spare)) {
                // Every complete frame was drained before this read, so the decoder had room:
                // 0 is the end of the stream.
                Ok(0) => return false,
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.qemu_readable = false;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    log::warn!("network loop: reading QEMU's socket: {error}");
                    return false;
                }
            }
            if !self.drain_frames() {
                return false;
            }
        }
        self.busy |= self.qemu_readable;
        true
    }

    /// Handles every complete frame in the decoder; false if the stream is corrupt.
    fn drain_frames(&mut self) -> bool {
        loop {
            let mut frame = std::mem::take(&mut self.frame);
            match self.decoder.next_frame() {
                Ok(Some(bytes)) => {
                    frame.clear();
                    frame.extend_from_slice(bytes);
                }
                Ok(None) => {
                    self.frame = frame;
                    return true;
                }
                Err(error) => {
                    // A wrong length prefix means we no longer know where frames start.
                    log::error!("network loop: QEMU's stream is corrupt: {error}");
                    return false;
                }
            }
            self.handle_frame(&frame);
            self.frame = frame;
        }
    }

    fn handle_frame(&mut self, frame: &[u8]) {
        let now = self.now();
        let classified = match self.stack.receive_frame(now, frame, &self.pins) {
            Received::Handled => return,
            Received::NotHandled(classified) => classified,
        };
        self.handle_classified(classified, frame);
    }

    /// What the stack left: UDP, pings to others, fragments.
    fn handle_classified(&mut self, classified: Classified<'_>, frame: &[u8]) {
        match classified {
            Classified::Udp(datagram) if datagram.is_gateway_dns => {
                self.dns_guest_query_udp(datagram)
            }
            Classified::Udp(datagram) => self.guest_udp(datagram, frame),
            Classified::EchoRequest(echo) => self.guest_echo(echo, frame),
            Classified::Ipv4Fragment(fragment) => {
                match self.reassembler.insert(fragment, Instant::now()) {
                    Ok(Some(datagram)) => {
                        let classified = self.reassembled.classify_reassembled(&datagram);
                        // A reassembled datagram has no frame of its own: nothing is quoted
                        // in an ICMP error about it.
                        self.handle_classified(classified, &[]);
                    }
                    Ok(None) => {}
                    Err(dropped) => log::debug!("network loop: fragment dropped: {dropped}"),
                }
            }
            // A reassembled TCP segment: guests never fragment TCP (they honour the MSS).
            Classified::Tcp(_) => {}
            Classified::Malformed(problem) => log::trace!("malformed guest frame: {problem}"),
            _ => {}
        }
    }

    /// The policy's verdict on a guest flow to `peer`, with the names pinned to it.
    pub(super) fn decide_egress(
        &self,
        protocol: Protocol,
        peer: IpAddr,
        port: Option<u16>,
    ) -> (Verdict, Vec<String>) {
        let names = self.pins.names_for(peer);
        let verdict = self.stack.evaluator().decide(&Flow {
            direction: FlowDirection::Egress,
            protocol,
            peer,
            port,
            resolved_domains: &names,
        });
        (verdict, names)
    }

    /// The policy's verdict on a published port's client `peer` reaching `guest_port`.
    pub(super) fn decide_ingress(
        &self,
        protocol: Protocol,
        peer: IpAddr,
        guest_port: u16,
    ) -> Verdict {
        self.stack.evaluator().decide(&Flow {
            direction: FlowDirection::Ingress,
            protocol,
            peer,
            port: Some(guest_port),
            resolved_domains: &[],
        })
    }

    /// Whether `ip` is one of the gateway's own addresses.
    pub(super) fn is_gateway(&self, ip: IpAddr) -> bool {
        self.reassembled.gateway().owns(ip)
    }

    /// Where a guest flow to `dst` is opened from the host: a gateway address stands for the
    /// host itself, whose services listen on loopback of the same family.
    pub(super) fn host_destination(&self, dst: SocketAddr) -> SocketAddr {
        match dst.ip() {
            IpAddr::V4(_) if self.is_gateway(dst.ip()) => {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), dst.port())
            }
            IpAddr::V6(_) if self.is_gateway(dst.ip()) => {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), dst.port())
            }
            _ => dst,
        }
    }

    /// Registers a socket of `owner` with the poller under a fresh token; `None` (and the
    /// token released) if the poller refuses it.
    pub(super) fn register(
        &mut self,
        source: &mut impl mio::event::Source,
        owner: Owner,
        interest: Interest,
    ) -> Option<Token> {
        let token = self.tokens.allocate(owner);
        match self.poll.registry().register(source, token, interest) {
            Ok(()) => Some(token),
            Err(error) => {
                log::warn!("network loop: registering {owner:?}: {error}");
                self.tokens.release(token);
                None
            }
        }
    }

    /// Queues frames for the guest; a full queue drops them (UDP and ICMP tolerate loss).
    pub(super) fn send_frames(&mut self, frames: Vec<Vec<u8>>) {
        for frame in frames {
            if self.stack.to_guest().push(&frame).is_err() {
                log::trace!("network loop: outbound queue full, a datagram for the guest dropped");
            }
        }
    }

    /// A fresh IPv4 identification for a datagram the gateway fragments.
    pub(super) fn ip_id(&mut self) -> u16 {
        self.next_ip_id = self.next_ip_id.wrapping_add(1);
        self.next_ip_id
    }

    /// Tells the guest its packet `frame` was refused (an ICMP "administratively prohibited"),
    /// so its socket fails at once.
    pub(super) fn refuse(&mut self, frame: &[u8]) {
        let ip = frame
            .get(crate::wire::framing::ETHERNET_HEADER_LEN..)
            .unwrap_or(&[]);
        let gateway_v6 = self.link.ipv6.map(|ipv6| ipv6.gateway);
        if let Some(reply) = emit::prohibited(self.macs, self.link.gateway_v4, gateway_v6, ip) {
            self.send_frames(vec![reply]);
        }
    }

    /// Writes queued frames to QEMU until it would block.
    fn write_to_qemu(&mut self) {
        while self.qemu_writable && !self.stack.to_guest().is_empty() {
            let qemu = &mut self.qemu;
            match self.stack.to_guest().flush_with(|bytes| qemu.write(bytes)) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.qemu_writable = false
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    log::warn!("network loop: writing QEMU's socket: {error}");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| (*name).to_owned()).collect()
    }

    #[test]
    fn a_pin_lives_for_its_ttl_clamped_to_the_floor_and_the_ceiling() {
        let t0 = Instant::now();
        let mut pins = Pins::default();
        pins.record(ip("198.51.100.7"), names(&["zero.test"]), 0, t0);
        pins.record(ip("198.51.100.8"), names(&["long.test"]), 600, t0);
        pins.record(ip("198.51.100.9"), names(&["huge.test"]), u32::MAX, t0);
        let at = |address: &str, after: Duration| pins.names_at(ip(address), t0 + after);
        assert_eq!(at("198.51.100.7", Duration::ZERO), ["zero.test"]);
        assert_eq!(
            at("198.51.100.7", MIN_PIN_TTL - Duration::from_millis(1)),
            ["zero.test"]
        );
        assert!(at("198.51.100.7", MIN_PIN_TTL).is_empty());
        assert_eq!(at("198.51.100.8", Duration::from_secs(599)), ["long.test"]);
        assert!(at("198.51.100.8", Duration::from_secs(600)).is_empty());
        assert!(at("198.51.100.9", MAX_PIN_TTL).is_empty());
    }

    #[test]
    fn each_name_of_an_address_expires_on_its_own_and_a_new_answer_extends_it() {
        let t0 = Instant::now();
        let mut pins = Pins::default();
        let address = ip("203.0.113.7");
        pins.record(address, names(&["a.test", "cdn.test"]), 60, t0);
        pins.record(address, names(&["b.test"]), 300, t0);
        let later = t0 + Duration::from_secs(120);
        assert_eq!(pins.names_at(address, later), ["b.test"]);
        pins.record(address, names(&["a.test"]), 300, later);
        assert_eq!(
            pins.names_at(address, later + Duration::from_secs(150)),
            ["b.test", "a.test"]
        );
        assert_eq!(
            pins.names_at(address, later + Duration::from_secs(200)),
            ["a.test"]
        );
        assert!(pins.names_at(ip("203.0.113.8"), t0).is_empty());
    }

    #[test]
    fn memory_stays_bounded_by_addresses_and_by_names_per_address() {
        let t0 = Instant::now();
        let mut pins = Pins::default();
        let address = ip("203.0.113.9");
        let many: Vec<String> = (0..100).map(|i| format!("n{i}.test")).collect();
        pins.record(address, many, 300, t0);
        assert_eq!(pins.names_at(address, t0).len(), MAX_NAMES_PER_PIN);
        for i in 0..=MAX_PINS as u32 {
            let v4 = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            pins.record(IpAddr::V4(v4), names(&["x.test"]), 300, t0);
        }
        assert!(pins.by_address.len() <= MAX_PINS);
    }
}

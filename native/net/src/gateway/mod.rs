//! The gateway's event loop: one thread per sandbox that owns QEMU's `-netdev stream` socket,
//! every host socket of the sandbox's flows and every timer, and drives the sans-IO parts
//! (the TCP stack, the DNS resolver, frame parsing and building) with them.
//!
//! One thread and readiness-based I/O (mio): there are no channels between a stack thread
//! and socket tasks, so no wake-up can be lost and backpressure is plain: a host socket is
//! read only while its flow's guest-side buffer has room, and a guest socket buffer drains
//! only as fast as the host socket takes its bytes.
//!
//! The thread ends when QEMU closes its end of the socket (the VM is gone) or on
//! [`Gateway::stop`].

mod dns;
mod event_loop;
pub mod host;
mod icmp;
mod ports;
pub mod spec;
mod tcp;
mod tokens;
mod udp;

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use mio::net::UnixStream as MioUnixStream;
use mio::{Poll, Waker};
use smoltcp::wire::EthernetAddress;
use thiserror::Error;

use dns::DnsState;
use event_loop::Pins;
use icmp::PingState;
use ports::Published;
use tcp::HostTcp;
use tokens::Tokens;
use udp::UdpState;

use crate::dns::ResolverError;
use crate::stack::{ConfigError, NetConfig, Stack};
use crate::wire::classify::Classifier;
use crate::wire::emit::LinkAddresses;
use crate::wire::framing::FrameDecoder;
use crate::wire::reassembly::Reassembler;
pub use host::HostFacts;
pub use spec::{NetworkSpec, PolicySpec, PortProtocol, Preset, PublishedPort, SpecError};

/// Everything one sandbox's gateway is built from.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub link: NetConfig,
    /// The MAC QEMU gives the guest's virtio-net device.
    pub guest_mac: EthernetAddress,
    pub spec: NetworkSpec,
    pub host: HostFacts,
    /// Seeds TCP sequence numbers and DNS ids; random in the supervisor.
    pub random_seed: u64,
}

/// Why a gateway could not start.
#[derive(Debug, Error)]
pub enum GatewayError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("network link: {0}")]
    Link(#[from] ConfigError),
    #[error("network.dns: {0}")]
    Dns(#[from] ResolverError),
    /// A published port's host address is already bound by another process.
    #[error("host port {address}/{protocol} is already in use")]
    PortInUse {
        address: SocketAddr,
        protocol: PortProtocol,
    },
    #[error("cannot publish host port {address}/{protocol}: {source}")]
    Publish {
        address: SocketAddr,
        protocol: PortProtocol,
        source: io::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        source: io::Error,
    },
}

impl GatewayError {
    fn io(context: &'static str) -> impl FnOnce(io::Error) -> Self {
        move |source| Self::Io { context, source }
    }
}

/// Ethernet bytes through the guest's interface, as its own counters would show them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Bytes the guest received.
    rx_bytes: AtomicU64,
    /// Bytes the guest sent.
    tx_bytes: AtomicU64,
}

impl Counters {
    pub fn rx_bytes(&self) -> u64 {
        self.rx_bytes.load(Ordering::Relaxed)
    }

    pub fn tx_bytes(&self) -> u64 {
        self.tx_bytes.load(Ordering::Relaxed)
    }

    fn publish(&self, rx: u64, tx: u64) {
        self.rx_bytes.store(rx, Ordering::Relaxed);
        self.tx_bytes.store(tx, Ordering::Relaxed);
    }
}

/// The loop's state: QEMU's socket, the stack, and the host side of every flow. Its methods
/// are split by concern, one module each (`event_loop`, `tcp`, `udp`, `dns`, `icmp`,
/// `ports`); the struct lives here so those modules name only their parent, never each other.
struct EventLoop {
    poll: Poll,
    waker: Arc<Waker>,
    origin: Instant,
    link: NetConfig,
    macs: LinkAddresses,
    qemu: MioUnixStream,
    qemu_readable: bool,
    qemu_writable: bool,
    decoder: FrameDecoder,
    /// A copy of the frame being handled, so the handlers may borrow the loop mutably.
    frame: Vec<u8>,
    stack: Stack,
    reassembled: Classifier,
    reassembler: Reassembler,
    tokens: Tokens,
    host_tcp: HostTcp,
    dns: DnsState,
    udp: UdpState,
    pings: PingState,
    published: Published,
    pins: Pins,
    next_ip_id: u16,
    /// Set when an iteration stopped with work left, so the next wait does not sleep.
    busy: bool,
    counters: Arc<Counters>,
    /// Scratch space for host reads.
    scratch: Box<[u8]>,
}

/// A running gateway.
pub struct Gateway {
    thread: Option<JoinHandle<()>>,
    waker: Arc<mio::Waker>,
    counters: Arc<Counters>,
}

impl Gateway {
    /// Binds the published ports and starts the loop on `qemu`, the supervisor's end of the
    /// socketpair whose other end QEMU's `-netdev stream` gets. Every error (a busy port
    /// first) is reported here, before QEMU starts.
    pub fn start(config: GatewayConfig, qemu: UnixStream) -> Result<Self, GatewayError> {
        let counters = Arc::new(Counters::default());
        let event_loop = EventLoop::new(config, qemu, counters.clone())?;
        let waker = event_loop.waker();
        let thread = std::thread::Builder::new()
            .name("msb-net".into())
            .spawn(move || event_loop.run())
            .map_err(GatewayError::io("starting the network thread"))?;
        Ok(Self {
            thread: Some(thread),
            waker,
            counters,
        })
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Ends the loop and waits for its thread.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

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
//! [`Gateway::stop`]. [`Gateway::set_policy`] swaps the policy while it runs: the loop takes
//! it at its next wake-up, decides every open flow again and closes those now denied.

mod dns;
mod event_loop;
pub mod flow_log;
pub mod host;
mod icmp;
mod intercepting;
mod policy_change;
mod ports;
mod secrets;
mod sni;
pub mod spec;
mod tcp;
mod tokens;
mod udp;

use std::io;
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::UnixStream as MioUnixStream;
use mio::{Poll, Waker};
use smoltcp::wire::EthernetAddress;
use thiserror::Error;

use dns::DnsState;
use event_loop::Pins;
use flow_log::FlowLog;
use icmp::PingState;
use intercepting::TlsInterception;
use ports::Published;
use tcp::HostTcp;
use tokens::Tokens;
use udp::UdpState;

use crate::dns::ResolverError;
use crate::policy::Policy;
use crate::secrets::Secrets;
use crate::stack::{ConfigError, NetConfig, Stack};
use crate::wire::classify::Classifier;
use crate::wire::emit::LinkAddresses;
use crate::wire::framing::FrameDecoder;
use crate::wire::reassembly::Reassembler;
pub use flow_log::{FlowLogSink, FlowRecord};
pub use host::HostFacts;
pub use intercepting::{CaPaths, TlsSetupError};
pub use secrets::{SecretsHandle, TerminateReason};
pub use spec::{
    NetworkSpec, PolicySpec, PortProtocol, Preset, PublishedPort, SpecError, TlsSpec, TlsSpecError,
};

/// How long [`Gateway::set_policy`] (and [`SecretsHandle::set_secrets`]) waits for the loop to
/// take the change: an iteration takes microseconds, so only a loop that is gone or stuck
/// misses it.
const CHANGE_WAIT: Duration = Duration::from_secs(2);

/// Everything one sandbox's gateway is built from.
pub struct GatewayConfig {
    pub link: NetConfig,
    /// The MAC QEMU gives the guest's virtio-net device.
    pub guest_mac: EthernetAddress,
    pub spec: NetworkSpec,
    pub host: HostFacts,
    /// Seeds TCP sequence numbers and DNS ids; random in the supervisor.
    pub random_seed: u64,
    /// Where every flow decision is recorded; `None` records nothing.
    pub flow_log: Option<Box<dyn FlowLogSink>>,
    /// The home's interception CA, for a spec whose `tls` names no CA of its own, and for
    /// the flows intercepted only because a secret may go to their host.
    pub home_ca: CaPaths,
    /// The values put into requests to the hosts each secret allows.
    pub secrets: Secrets,
    /// Told when a `block_and_terminate` secret was sent where it may not go.
    pub on_terminate: Option<Box<dyn Fn(TerminateReason) + Send>>,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("link", &self.link)
            .field("guest_mac", &self.guest_mac)
            .field("spec", &self.spec)
            .field("host", &self.host)
            .field("flow_log", &self.flow_log.is_some())
            .field("home_ca", &self.home_ca)
            .field("secrets", &self.secrets)
            .field("on_terminate", &self.on_terminate.is_some())
            .finish_non_exhaustive()
    }
}

/// What the supervisor's thread asks of the loop, behind the loop's waker.
#[derive(Debug, Default)]
struct Requests {
    stop: bool,
    policy: Option<Policy>,
    secrets: Option<Secrets>,
    /// Changes (policies, secrets) handed over so far, and how many the loop has taken.
    changes_sent: u64,
    changes_taken: u64,
}

/// The requests and the condition the loop signals when it took a change.
#[derive(Debug, Default)]
struct Control {
    requests: Mutex<Requests>,
    taken: Condvar,
}

impl Control {
    fn lock(&self) -> std::sync::MutexGuard<'_, Requests> {
        // A panic elsewhere cannot leave the requests half-written: each is one assignment.
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Hands a change to the loop (`put` writes it into the requests) and waits until the
    /// loop has taken it.
    fn hand_over(
        &self,
        waker: &Waker,
        what: &'static str,
        put: impl FnOnce(&mut Requests),
    ) -> Result<(), GatewayError> {
        let mut requests = self.lock();
        put(&mut requests);
        requests.changes_sent += 1;
        let sent = requests.changes_sent;
        waker
            .wake()
            .map_err(GatewayError::io("waking the network loop"))?;
        let (requests, _) = self
            .taken
            .wait_timeout_while(requests, CHANGE_WAIT, |requests| {
                requests.changes_taken < sent
            })
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if requests.changes_taken < sent {
            return Err(GatewayError::NotTaken {
                what,
                wait: CHANGE_WAIT,
            });
        }
        Ok(())
    }
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
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
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
    /// The loop did not take a new policy or set of secrets in time (it has ended, or is
    /// stuck).
    #[error("the network loop did not take the new {what} within {wait:?}")]
    NotTaken { what: &'static str, wait: Duration },
    /// Secrets were given to a gateway that started with none and without `tls`: its guest
    /// was not given the interception CA, so the sandbox must be restarted for them.
    #[error(
        "the sandbox started without secrets or TLS interception: restart it for its secrets \
         to be put into requests"
    )]
    SecretsNeedRestart,
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
    flow_log: FlowLog,
    /// `None` when the spec intercepts no TLS.
    tls: Option<TlsInterception>,
    /// What intercepted flows substitute; replaced by [`SecretsHandle::set_secrets`].
    secrets: crate::secrets::SharedSecrets,
    on_terminate: Option<Box<dyn Fn(TerminateReason) + Send>>,
    control: Arc<Control>,
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
    control: Arc<Control>,
    counters: Arc<Counters>,
    tls_ca_pem: Option<String>,
}

impl Gateway {
    /// Binds the published ports and starts the loop on `qemu`, the supervisor's end of the
    /// socketpair whose other end QEMU's `-netdev stream` gets. Every error (a busy port
    /// first) is reported here, before QEMU starts.
    pub fn start(config: GatewayConfig, qemu: UnixStream) -> Result<Self, GatewayError> {
        let counters = Arc::new(Counters::default());
        let control = Arc::new(Control::default());
        let event_loop = EventLoop::new(config, qemu, counters.clone(), control.clone())?;
        let waker = event_loop.waker();
        let tls_ca_pem = event_loop.tls.as_ref().map(|tls| tls.ca_pem().to_owned());
        let thread = std::thread::Builder::new()
            .name("msb-net".into())
            .spawn(move || event_loop.run())
            .map_err(GatewayError::io("starting the network thread"))?;
        Ok(Self {
            thread: Some(thread),
            waker,
            control,
            counters,
            tls_ca_pem,
        })
    }

    /// The interception CA's certificate (PEM) the guest is to trust; `None` when the
    /// sandbox's TLS is not intercepted.
    pub fn tls_ca_pem(&self) -> Option<&str> {
        self.tls_ca_pem.as_deref()
    }

    /// Replaces the policy of the running loop and returns once the loop has taken it: from
    /// then on every new flow and DNS query is decided by it, and the open flows it denies
    /// are closed.
    pub fn set_policy(&self, policy: Policy) -> Result<(), GatewayError> {
        self.policy_handle().set_policy(policy)
    }

    /// A handle that changes the policy from another thread, for as long as the loop runs.
    pub fn policy_handle(&self) -> PolicyHandle {
        PolicyHandle {
            waker: self.waker.clone(),
            control: self.control.clone(),
        }
    }

    /// A handle that replaces the secrets from another thread, for as long as the loop runs.
    pub fn secrets_handle(&self) -> SecretsHandle {
        let intercepting = self.tls_ca_pem.is_some();
        SecretsHandle::new(self.waker.clone(), self.control.clone(), intercepting)
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Ends the loop and waits for its thread.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.control.lock().stop = true;
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Changes the policy of a running gateway ([`Gateway::set_policy`]); a loop that has ended
/// no longer takes one.
#[derive(Clone)]
pub struct PolicyHandle {
    waker: Arc<Waker>,
    control: Arc<Control>,
}

impl PolicyHandle {
    /// See [`Gateway::set_policy`].
    pub fn set_policy(&self, policy: Policy) -> Result<(), GatewayError> {
        self.control.hand_over(&self.waker, "policy", |requests| {
            requests.policy = Some(policy);
        })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

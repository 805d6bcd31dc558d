//! One intercepted TLS flow, sans-IO: the guest's TLS ends here, at a rustls server that shows
//! a leaf for the name the guest asked for, and a second rustls connection, from us, goes to
//! the real server. The event loop moves ciphertext: what the guest sent into
//! [`Interception::feed_guest`], what the real server sent into
//! [`Interception::feed_upstream`], and [`Interception::for_guest`] /
//! [`Interception::for_upstream`] out to the sockets, as far as they take it. Plaintext
//! passes between the two connections through a [`PlaintextFilter`], where the secrets
//! rewriter (`crate::secrets`) puts values into requests, and may answer the guest itself.
//!
//! Order: the guest's ClientHello is read first (without answering it); our connection to the
//! real server is opened with the same SNI and the same ALPN offer, and only when that
//! handshake is done (the server's certificate verified) is the guest answered, offering just
//! the protocol the real server chose. So an HTTP/2-only client keeps HTTP/2 where the server
//! speaks it, and never ends up with a protocol the server does not.
//!
//! The outboxes are not bounded here: backpressure is the event loop's, as for every flow —
//! it stops reading a side's socket while the other side's outbox is above its limit.
//!
//! After an error the flow is over: what [`Interception::for_guest`] and
//! [`Interception::for_upstream`] still hold is the alert for that side, worth sending before
//! the sockets are closed.

use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::ops::DerefMut;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::server::{Accepted, Acceptor};
use rustls::{ClientConnection, ConnectionCommon, ServerConnection};

use super::leaf::{LeafCache, LeafError};
use super::upstream::UpstreamTls;

/// How much plaintext is moved from one connection to the other at a time.
const PLAINTEXT_CHUNK: usize = 16 * 1024;
/// How far consumed output may run ahead before the buffer is compacted.
const COMPACT_AFTER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    #[error("the guest's ClientHello is not valid TLS: {0}")]
    GuestHello(rustls::Error),
    #[error("the guest's ClientHello cannot be read: {0}")]
    GuestHelloUnreadable(io::Error),
    #[error("the guest asked for {0:?}, which is not a server name")]
    BadServerName(String),
    #[error("the real server for {server_name} showed a certificate that is refused: {reason}")]
    UpstreamCertificateRefused {
        server_name: String,
        reason: rustls::CertificateError,
    },
    #[error("the TLS handshake with the real server for {server_name} failed: {source}")]
    UpstreamHandshake {
        server_name: String,
        source: rustls::Error,
    },
    #[error("the real server for {server_name} broke TLS: {source}")]
    Upstream {
        server_name: String,
        source: rustls::Error,
    },
    #[error("the real server sent bytes before it was sent a ClientHello")]
    UpstreamSpokeFirst,
    #[error(transparent)]
    Leaf(#[from] LeafError),
    #[error("the guest's TLS handshake for {server_name} failed: {source}")]
    GuestHandshake {
        server_name: String,
        source: rustls::Error,
    },
    #[error("the guest broke TLS on the flow to {server_name}: {source}")]
    Guest {
        server_name: String,
        source: rustls::Error,
    },
    #[error("the flow already failed")]
    Failed,
}

/// What a [`PlaintextFilter`] passes on from one call: bytes for each side, and whether the
/// flow is to end once they are sent. Its `Debug` shows only lengths: the bytes for the real
/// server may hold a secret's value.
#[derive(Default)]
pub struct Filtered {
    pub to_upstream: Vec<u8>,
    /// Bytes the filter answers the guest with itself (a refusal), or the real server's.
    pub to_guest: Vec<u8>,
    /// Both sides are sent a close_notify after these bytes.
    pub end: bool,
}

impl std::fmt::Debug for Filtered {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Filtered")
            .field("to_upstream", &self.to_upstream.len())
            .field("to_guest", &self.to_guest.len())
            .field("end", &self.end)
            .finish()
    }
}

/// Sees every plaintext byte of an intercepted flow, in order, and decides what is passed on.
pub trait PlaintextFilter: Send {
    /// The guest's TLS is open, with `alpn`, the protocol the real server chose.
    fn opened(&mut self, _alpn: Option<&[u8]>) {}
    /// The guest sent `plaintext`.
    fn guest_to_upstream(&mut self, plaintext: &[u8], out: &mut Filtered);
    /// The real server sent `plaintext`.
    fn upstream_to_guest(&mut self, plaintext: &[u8], out: &mut Filtered);
}

/// Passes every byte as it is.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough;

impl PlaintextFilter for PassThrough {
    fn guest_to_upstream(&mut self, plaintext: &[u8], out: &mut Filtered) {
        out.to_upstream.extend_from_slice(plaintext);
    }

    fn upstream_to_guest(&mut self, plaintext: &[u8], out: &mut Filtered) {
        out.to_guest.extend_from_slice(plaintext);
    }
}

/// What a sandbox's intercepted flows share: the leaves and the upstream configuration.
#[derive(Clone)]
pub struct Interceptor {
    leaves: Arc<LeafCache>,
    upstream: UpstreamTls,
}

impl Interceptor {
    pub fn new(leaves: Arc<LeafCache>, upstream: UpstreamTls) -> Self {
        Self { leaves, upstream }
    }

    /// A new intercepted flow to `destination`, whose address names the server when the
    /// guest's hello has no SNI.
    pub fn intercept(&self, destination: IpAddr, filter: Box<dyn PlaintextFilter>) -> Interception {
        Interception {
            shared: self.clone(),
            destination,
            guest: GuestSide::Hello(Box::default()),
            upstream: None,
            server_name: String::new(),
            held_from_guest: Vec::new(),
            filter,
            for_guest: Outbox::default(),
            for_upstream: Outbox::default(),
            closed_by_guest: false,
            closed_by_upstream: false,
            ended_by_filter: false,
        }
    }
}

enum GuestSide {
    /// Reading the guest's ClientHello.
    Hello(Box<Acceptor>),
    /// The hello is read; waiting for the real server's handshake to answer it.
    AwaitingUpstream(Box<Accepted>),
    Open(Box<ServerConnection>),
    Failed,
}

pub struct Interception {
    shared: Interceptor,
    destination: IpAddr,
    guest: GuestSide,
    upstream: Option<ClientConnection>,
    /// The SNI (or the destination address), known once the hello is read.
    server_name: String,
    /// Guest ciphertext that came after the hello, before the guest side could be answered.
    held_from_guest: Vec<u8>,
    filter: Box<dyn PlaintextFilter>,
    for_guest: Outbox,
    for_upstream: Outbox,
    closed_by_guest: bool,
    closed_by_upstream: bool,
    /// The filter ended the flow; nothing more passes either way.
    ended_by_filter: bool,
}

impl Interception {
    /// Takes ciphertext the guest sent.
    pub fn feed_guest(&mut self, ciphertext: &[u8]) -> Result<(), InterceptError> {
        let result = match std::mem::replace(&mut self.guest, GuestSide::Failed) {
            GuestSide::Hello(acceptor) => self.read_hello(acceptor, ciphertext),
            GuestSide::AwaitingUpstream(accepted) => {
                self.held_from_guest.extend_from_slice(ciphertext);
                self.guest = GuestSide::AwaitingUpstream(accepted);
                Ok(())
            }
            GuestSide::Open(connection) => {
                self.guest = GuestSide::Open(connection);
                self.read_from_guest(ciphertext)
            }
            GuestSide::Failed => Err(InterceptError::Failed),
        };
        self.collect_output();
        result
    }

    /// Takes ciphertext the real server sent.
    pub fn feed_upstream(&mut self, ciphertext: &[u8]) -> Result<(), InterceptError> {
        let result = self.read_from_upstream(ciphertext);
        self.collect_output();
        result
    }

    /// Ciphertext for the guest, not yet sent.
    pub fn for_guest(&self) -> &[u8] {
        self.for_guest.pending()
    }

    /// The first `count` bytes of [`Self::for_guest`] were sent.
    pub fn sent_to_guest(&mut self, count: usize) {
        self.for_guest.consume(count);
    }

    /// Ciphertext for the real server, not yet sent.
    pub fn for_upstream(&self) -> &[u8] {
        self.for_upstream.pending()
    }

    /// The first `count` bytes of [`Self::for_upstream`] were sent.
    pub fn sent_to_upstream(&mut self, count: usize) {
        self.for_upstream.consume(count);
    }

    /// The guest's SNI (or the destination address when it sent none), once its hello is read.
    pub fn server_name(&self) -> Option<&str> {
        Some(self.server_name.as_str()).filter(|name| !name.is_empty())
    }

    /// The protocol the real server chose, once its handshake is done.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.upstream.as_ref()?.alpn_protocol()
    }

    /// The guest ended its TLS (close_notify); the real server was told the same.
    pub fn closed_by_guest(&self) -> bool {
        self.closed_by_guest
    }

    /// The real server ended its TLS (close_notify); the guest was told the same.
    pub fn closed_by_upstream(&self) -> bool {
        self.closed_by_upstream
    }

    fn read_hello(
        &mut self,
        mut acceptor: Box<Acceptor>,
        mut ciphertext: &[u8],
    ) -> Result<(), InterceptError> {
        while !ciphertext.is_empty() {
            let read = acceptor.read_tls(&mut ciphertext);
            match read {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) => return Err(InterceptError::GuestHelloUnreadable(error)),
            }
        }
        match acceptor.accept() {
            Ok(None) => {
                self.guest = GuestSide::Hello(acceptor);
                Ok(())
            }
            Ok(Some(accepted)) => self.connect_upstream(accepted),
            Err((error, mut alert)) => {
                let _ = alert.write_all(&mut self.for_guest.bytes);
                Err(InterceptError::GuestHello(error))
            }
        }
    }

    /// Opens our connection to the real server with the guest's SNI and ALPN offer.
    fn connect_upstream(&mut self, accepted: Accepted) -> Result<(), InterceptError> {
        let hello = accepted.client_hello();
        let alpn_offer: Vec<Vec<u8>> = hello
            .alpn()
            .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
            .unwrap_or_default();
        let server_name = match hello.server_name() {
            Some(sni) => {
                self.server_name = sni.to_ascii_lowercase();
                ServerName::try_from(self.server_name.clone())
                    .map_err(|_| InterceptError::BadServerName(sni.to_string()))?
            }
            None => {
                self.server_name = self.destination.to_string();
                ServerName::IpAddress(self.destination.into())
            }
        };
        let config = self.shared.upstream.client_config(alpn_offer);
        let mut upstream = ClientConnection::new(config, server_name).map_err(|source| {
            InterceptError::UpstreamHandshake {
                server_name: self.server_name.clone(),
                source,
            }
        })?;
        // Our own buffers hold what is not yet sent; a write must never be cut short.
        upstream.set_buffer_limit(None);
        self.upstream = Some(upstream);
        self.guest = GuestSide::AwaitingUpstream(Box::new(accepted));
        Ok(())
    }

    fn read_from_upstream(&mut self, mut ciphertext: &[u8]) -> Result<(), InterceptError> {
        if matches!(self.guest, GuestSide::Failed) {
            return Err(InterceptError::Failed);
        }
        while !ciphertext.is_empty() {
            let Some(upstream) = self.upstream.as_mut() else {
                return Err(InterceptError::UpstreamSpokeFirst);
            };
            let handshaking = upstream.is_handshaking();
            let processed = read_and_process(upstream, &mut ciphertext);
            let handshake_done = !upstream.is_handshaking();
            let state = processed.map_err(|source| self.upstream_error(handshaking, source))?;
            if handshake_done {
                self.open_guest_side()?;
            }
            self.pass_to_guest();
            if state.peer_has_closed() && !self.closed_by_upstream {
                self.closed_by_upstream = true;
                if let (GuestSide::Open(guest), false) = (&mut self.guest, self.ended_by_filter) {
                    guest.send_close_notify();
                }
            }
        }
        Ok(())
    }

    fn upstream_error(&mut self, handshaking: bool, source: rustls::Error) -> InterceptError {
        self.guest = GuestSide::Failed;
        let server_name = self.server_name.clone();
        match source {
            rustls::Error::InvalidCertificate(reason) => {
                InterceptError::UpstreamCertificateRefused {
                    server_name,
                    reason,
                }
            }
            source if handshaking => InterceptError::UpstreamHandshake {
                server_name,
                source,
            },
            source => InterceptError::Upstream {
                server_name,
                source,
            },
        }
    }

    /// Answers the guest's hello, now that the real server's protocol is known.
    fn open_guest_side(&mut self) -> Result<(), InterceptError> {
        let accepted = match std::mem::replace(&mut self.guest, GuestSide::Failed) {
            GuestSide::AwaitingUpstream(accepted) => accepted,
            other => {
                self.guest = other;
                return Ok(());
            }
        };
        let alpn = self.alpn_protocol().map(<[u8]>::to_vec);
        let config = self
            .shared
            .leaves
            .server_config(&self.server_name, alpn.as_deref())?;
        let mut guest = accepted
            .into_connection(config)
            .map_err(|(source, mut alert)| {
                let _ = alert.write_all(&mut self.for_guest.bytes);
                InterceptError::GuestHandshake {
                    server_name: self.server_name.clone(),
                    source,
                }
            })?;
        guest.set_buffer_limit(None);
        self.guest = GuestSide::Open(Box::new(guest));
        self.filter.opened(alpn.as_deref());
        let held = std::mem::take(&mut self.held_from_guest);
        self.read_from_guest(&held)
    }

    fn read_from_guest(&mut self, mut ciphertext: &[u8]) -> Result<(), InterceptError> {
        while !ciphertext.is_empty() {
            let GuestSide::Open(guest) = &mut self.guest else {
                return Err(InterceptError::Failed);
            };
            let handshaking = guest.is_handshaking();
            let processed = read_and_process(guest.as_mut(), &mut ciphertext);
            let state = match processed {
                Ok(state) => state,
                Err(source) => {
                    self.guest_failed_output();
                    let server_name = self.server_name.clone();
                    return Err(if handshaking {
                        InterceptError::GuestHandshake {
                            server_name,
                            source,
                        }
                    } else {
                        InterceptError::Guest {
                            server_name,
                            source,
                        }
                    });
                }
            };
            self.pass_to_upstream();
            if state.peer_has_closed() && !self.closed_by_guest {
                self.closed_by_guest = true;
                if let (Some(upstream), false) = (&mut self.upstream, self.ended_by_filter) {
                    upstream.send_close_notify();
                }
            }
        }
        Ok(())
    }

    /// Keeps the alert of a failed guest connection, then marks the flow failed.
    fn guest_failed_output(&mut self) {
        if let GuestSide::Open(guest) = &mut self.guest {
            drain_ciphertext(guest.as_mut(), &mut self.for_guest.bytes);
        }
        self.guest = GuestSide::Failed;
    }

    /// Moves the guest's plaintext, filtered, to the real server.
    fn pass_to_upstream(&mut self) {
        let (GuestSide::Open(guest), Some(_)) = (&mut self.guest, &self.upstream) else {
            return;
        };
        let mut filtered = Filtered::default();
        let filter = &mut self.filter;
        drain_plaintext(guest.as_mut(), |plaintext| {
            filter.guest_to_upstream(plaintext, &mut filtered)
        });
        self.deliver(filtered);
    }

    /// Moves the real server's plaintext, filtered, to the guest (once it can be answered).
    fn pass_to_guest(&mut self) {
        let (GuestSide::Open(_), Some(upstream)) = (&self.guest, &mut self.upstream) else {
            return;
        };
        let mut filtered = Filtered::default();
        let filter = &mut self.filter;
        drain_plaintext(upstream, |plaintext| {
            filter.upstream_to_guest(plaintext, &mut filtered)
        });
        self.deliver(filtered);
    }

    /// Writes what a filter passed on into the two connections.
    fn deliver(&mut self, filtered: Filtered) {
        let (GuestSide::Open(guest), Some(upstream)) = (&mut self.guest, &mut self.upstream) else {
            return;
        };
        if self.ended_by_filter {
            return;
        }
        // Cannot fail: the buffer limits are off.
        if !filtered.to_upstream.is_empty() {
            let _ = upstream.writer().write_all(&filtered.to_upstream);
        }
        if !filtered.to_guest.is_empty() {
            let _ = guest.writer().write_all(&filtered.to_guest);
        }
        if filtered.end {
            self.ended_by_filter = true;
            guest.send_close_notify();
            upstream.send_close_notify();
        }
    }

    /// Moves what both connections have to send into the outboxes.
    fn collect_output(&mut self) {
        if let Some(upstream) = &mut self.upstream {
            drain_ciphertext(upstream, &mut self.for_upstream.bytes);
        }
        if let GuestSide::Open(guest) = &mut self.guest {
            drain_ciphertext(guest.as_mut(), &mut self.for_guest.bytes);
        }
    }
}

/// Reads what `connection` takes of `ciphertext` and processes it.
fn read_and_process<C, D>(
    connection: &mut C,
    ciphertext: &mut &[u8],
) -> Result<rustls::IoState, rustls::Error>
where
    C: DerefMut<Target = ConnectionCommon<D>>,
{
    // `read_tls` fails only when the received plaintext was not taken, and it always is
    // (`drain_plaintext`) before more is read.
    connection
        .read_tls(ciphertext)
        .map_err(|error| rustls::Error::General(error.to_string()))?;
    connection.process_new_packets()
}

fn drain_ciphertext<C, D>(connection: &mut C, out: &mut Vec<u8>)
where
    C: DerefMut<Target = ConnectionCommon<D>>,
{
    while connection.wants_write() {
        // Writing into a Vec cannot fail.
        if connection.write_tls(out).is_err() {
            break;
        }
    }
}

/// Hands every plaintext byte `connection` has received to `take`, a chunk at a time.
fn drain_plaintext<C, D>(connection: &mut C, mut take: impl FnMut(&[u8]))
where
    C: DerefMut<Target = ConnectionCommon<D>>,
{
    let mut chunk = [0; PLAINTEXT_CHUNK];
    loop {
        match connection.reader().read(&mut chunk) {
            Ok(count) if count > 0 => take(&chunk[..count]),
            // 0: the peer's close_notify, which `IoState` reports; WouldBlock: nothing more
            // for now; UnexpectedEof cannot happen, as no connection is told of a TCP end.
            Ok(_) | Err(_) => return,
        }
    }
}

/// Bytes for one side, sent from the front as far as the socket takes them.
#[derive(Default)]
struct Outbox {
    bytes: Vec<u8>,
    sent: usize,
}

impl Outbox {
    fn pending(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    fn consume(&mut self, count: usize) {
        self.sent = (self.sent + count).min(self.bytes.len());
        if self.sent == self.bytes.len() {
            self.bytes.clear();
            self.sent = 0;
        } else if self.sent > COMPACT_AFTER && self.sent * 2 > self.bytes.len() {
            self.bytes.drain(..self.sent);
            self.sent = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::{ClientConfig, RootCertStore, ServerConfig};

    use super::*;
    use crate::tls::leaf::tests::{subject_alt_names, test_ca};
    use crate::tls::upstream::UpstreamTrust;

    const DESTINATION: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 9, 8, 7));

    /// A real server with its own CA, as the tests' HTTPS servers have.
    struct TestServer {
        config: Arc<ServerConfig>,
        ca_file: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl TestServer {
        fn new(name: &str, alpn: &[&[u8]]) -> Self {
            Self::speaking(name, alpn, rustls::DEFAULT_VERSIONS)
        }

        fn speaking(
            name: &str,
            alpn: &[&[u8]],
            versions: &[&'static rustls::SupportedProtocolVersion],
        ) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let ca_key = KeyPair::generate().unwrap();
            let mut ca_params = CertificateParams::default();
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca_cert = ca_params.self_signed(&ca_key).unwrap();
            let ca_file = dir.path().join("upstream-ca.pem");
            std::fs::write(&ca_file, ca_cert.pem()).unwrap();
            let issuer = Issuer::new(ca_params, ca_key);
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![name.to_string()])
                .unwrap()
                .signed_by(&key, &issuer)
                .unwrap();
            let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
            let mut config = ServerConfig::builder_with_provider(crate::tls::crypto_provider())
                .with_protocol_versions(versions)
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], key_der)
                .unwrap();
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Self {
                config: Arc::new(config),
                ca_file,
                _dir: dir,
            }
        }

        fn connection(&self) -> ServerConnection {
            let mut connection = ServerConnection::new(self.config.clone()).unwrap();
            connection.set_buffer_limit(None);
            connection
        }
    }

    fn interceptor(leaves: &Arc<LeafCache>, verify: bool, extra_ca: &[&PathBuf]) -> Interceptor {
        let trust = UpstreamTrust {
            verify,
            extra_ca_files: extra_ca.iter().map(|path| path.to_path_buf()).collect(),
        };
        Interceptor::new(leaves.clone(), UpstreamTls::new(&trust).unwrap())
    }

    /// A guest's TLS client that trusts the interception CA.
    fn guest_client(
        ca: &crate::tls::ca::InterceptionCa,
        sni: &str,
        alpn: &[&[u8]],
    ) -> ClientConnection {
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der().clone()).unwrap();
        let mut config = ClientConfig::builder_with_provider(crate::tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let mut connection = ClientConnection::new(Arc::new(config), name).unwrap();
        connection.set_buffer_limit(None);
        connection
    }

    /// One end of the test, with the plaintext it received.
    struct Peer<C> {
        connection: C,
        received: Vec<u8>,
    }

    impl<C: DerefMut<Target = ConnectionCommon<D>>, D> Peer<C> {
        fn new(connection: C) -> Self {
            Self {
                connection,
                received: Vec::new(),
            }
        }

        fn outgoing(&mut self) -> Vec<u8> {
            let mut bytes = Vec::new();
            drain_ciphertext(&mut self.connection, &mut bytes);
            bytes
        }

        fn incoming(&mut self, mut bytes: &[u8]) {
            while !bytes.is_empty() {
                self.connection.read_tls(&mut bytes).unwrap();
                if self.connection.process_new_packets().is_err() {
                    return;
                }
                let received = &mut self.received;
                drain_plaintext(&mut self.connection, |chunk| {
                    received.extend_from_slice(chunk)
                });
            }
        }
    }

    /// Moves bytes guest ↔ interception ↔ server until none move, sending only part of each
    /// output at a time, as a socket would take it.
    fn pump(
        guest: &mut Peer<ClientConnection>,
        flow: &mut Interception,
        server: &mut Peer<ServerConnection>,
    ) -> Result<(), InterceptError> {
        const SOCKET_TAKES: usize = 40_000;
        loop {
            let mut moved = false;
            let from_guest = guest.outgoing();
            if !from_guest.is_empty() {
                moved = true;
                flow.feed_guest(&from_guest)?;
            }
            let to_guest = flow.for_guest()[..flow.for_guest().len().min(SOCKET_TAKES)].to_vec();
            if !to_guest.is_empty() {
                moved = true;
                flow.sent_to_guest(to_guest.len());
                guest.incoming(&to_guest);
            }
            let to_server =
                flow.for_upstream()[..flow.for_upstream().len().min(SOCKET_TAKES)].to_vec();
            if !to_server.is_empty() {
                moved = true;
                flow.sent_to_upstream(to_server.len());
                server.incoming(&to_server);
            }
            let from_server = server.outgoing();
            if !from_server.is_empty() {
                moved = true;
                flow.feed_upstream(&from_server)?;
            }
            if !moved {
                return Ok(());
            }
        }
    }

    struct Flow {
        guest: Peer<ClientConnection>,
        flow: Interception,
        server: Peer<ServerConnection>,
    }

    fn handshake(
        interceptor: &Interceptor,
        ca: &crate::tls::ca::InterceptionCa,
        server: &TestServer,
        guest_alpn: &[&[u8]],
    ) -> Result<Flow, InterceptError> {
        let guest = guest_client(ca, "api.test", guest_alpn);
        handshake_with(interceptor, guest, Box::new(PassThrough), server)
    }

    fn handshake_with(
        interceptor: &Interceptor,
        guest: ClientConnection,
        filter: Box<dyn PlaintextFilter>,
        server: &TestServer,
    ) -> Result<Flow, InterceptError> {
        let mut flow = Flow {
            guest: Peer::new(guest),
            flow: interceptor.intercept(DESTINATION, filter),
            server: Peer::new(server.connection()),
        };
        pump(&mut flow.guest, &mut flow.flow, &mut flow.server)?;
        Ok(flow)
    }

    #[test]
    fn plaintext_passes_both_ways_including_a_one_mebibyte_body() {
        let ca = test_ca();
        let leaves = Arc::new(LeafCache::new(ca.clone(), 16));
        let server = TestServer::new("api.test", &[]);
        let interceptor = interceptor(&leaves, true, &[&server.ca_file]);
        let mut f = handshake(&interceptor, &ca, &server, &[]).unwrap();
        assert!(!f.guest.connection.is_handshaking());
        assert_eq!(f.flow.server_name(), Some("api.test"));

        let body: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
        let mut request = b"POST /upload HTTP/1.1\r\nHost: api.test\r\n\r\n".to_vec();
        request.extend_from_slice(&body);
        f.guest.connection.writer().write_all(&request).unwrap();
        pump(&mut f.guest, &mut f.flow, &mut f.server).unwrap();
        assert!(
            f.server.received == request,
            "{} bytes",
            f.server.received.len()
        );

        let mut response = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        response.extend(body.iter().rev());
        f.server.connection.writer().write_all(&response).unwrap();
        pump(&mut f.guest, &mut f.flow, &mut f.server).unwrap();
        assert!(
            f.guest.received == response,
            "{} bytes",
            f.guest.received.len()
        );
    }

    #[test]
    fn a_real_server_that_speaks_only_tls_1_2_is_intercepted() {
        let ca = test_ca();
        let leaves = Arc::new(LeafCache::new(ca.clone(), 16));
        let server = TestServer::speaking("api.test", &[], &[&rustls::version::TLS12]);
        let interceptor = interceptor(&leaves, true, &[&server.ca_file]);
        let mut f = handshake(&interceptor, &ca, &server, &[]).unwrap();
        let version = f.server.connection.protocol_version();
        assert_eq!(version, Some(rustls::ProtocolVersion::TLSv1_2));
        f.guest.connection.writer().write_all(b"ping").unwrap();
        pump(&mut f.guest, &mut f.flow, &mut f.server).unwrap();
        assert_eq!(f.server.received, b"ping");
    }

    #[test]
    fn a_close_notify_from_either_side_is_passed_on() {
        let ca = test_ca();
        let leaves = Arc::new(LeafCache::new(ca.clone(), 16));
        let server = TestServer::new("api.test", &[]);
        let interceptor = interceptor(&leaves, true, &[&server.ca_file]);
        let mut f = handshake(&interceptor, &ca, &server, &[]).unwrap();
        f.guest.connection.send_close_notify();
        pump(&mut f.guest, &mut f.flow, &mut f.server).unwrap();
        assert!(f.flow.closed_by_guest());
        let mut probe = [0; 1];
        assert_eq!(f.server.connection.reader().read(&mut probe).unwrap(), 0);
        f.server.connection.send_close_notify();
        pump(&mut f.guest, &mut f.flow, &mut f.server).unwrap();
        assert!(f.flow.closed_by_upstream());
        assert_eq!(f.guest.connection.reader().read(&mut probe).unwrap(), 0);
    }

    #[test]
    fn the_guest_is_answered_with_the_protocol_the_real_server_chose() {
        let ca = test_ca();
        let leaves = Arc::new(LeafCache::new(ca.clone(), 16));
        let offer: &[&[u8]] = &[b"h2", b"http/1.1"];
        for (server_speaks, chosen) in [(&b"h2"[..], &b"h2"[..]), (b"http/1.1", b"http/1.1")] {
            let server = TestServer::new("api.test", &[server_speaks]);
            let interceptor = interceptor(&leaves, true, &[&server.ca_file]);
            let f = handshake(&interceptor, &ca, &server, offer).unwrap();
            assert_eq!(f.server.connection.alpn_protocol(), Some(chosen));
            assert_eq!(f.flow.alpn_protocol(), Some(chosen));
            assert_eq!(f.guest.connection.alpn_protocol(), Some(chosen));
        }
    }

    #[test]
    fn the_guest_sees_a_leaf_for_the_sni_it_asked_for_minted_once() {
        let ca = test_ca();
        let leaves = Arc::new(LeafCache::new(ca.clone(), 16));
        let server = TestServer::new("api.test", &[]);
        let interceptor = interceptor(&leaves, true, &[&server.ca_file]);
        let first = handshake(&interceptor, &ca, &server, &[]).unwrap();
        let second = handshake(&interceptor, &ca, &server, &[]).unwrap();
        let shown = |f: &Flow| f.guest.connection.peer_certificates().unwrap()[0].clone();
        assert_eq!(subject_alt_names(&shown(&first)), ["dns:api.test"]);
        assert_eq!(shown(&first), shown(&second));
        assert_eq!(leaves.minted(), 1);
    }

    #[test]
    fn a_real_server_whose_ca_is_not_trusted_is_refused_when_verifying() {
        let ca = test_ca();
        let leaves = Arc::new(LeafCache::new(ca.clone(), 16));
        let server = TestServer::new("api.test", &[]);
        // Another CA is trusted, so the refusal does not depend on the host's store.
        let unrelated = TestServer::new("other.test", &[]);
        let interceptor = interceptor(&leaves, true, &[&unrelated.ca_file]);
        let error = handshake(&interceptor, &ca, &server, &[]).err().unwrap();
        assert!(
            matches!(
                &error,
                InterceptError::UpstreamCertificateRefused { server_name, .. }
                    if server_name == "api.test"
            ),
            "{error}"
        );
        assert_eq!(leaves.minted(), 0, "the guest was never answered");
    }

    #[test]
    fn a_real_server_whose_ca_is_not_trusted_is_accepted_when_not_verifying() {
        let ca = test_ca();
        let leaves = Arc::new(LeafCache::new(ca.clone(), 16));
        let server = TestServer::new("api.test", &[]);
        let interceptor = interceptor(&leaves, false, &[]);
        let mut f = handshake(&interceptor, &ca, &server, &[]).unwrap();
        f.guest.connection.writer().write_all(b"ping").unwrap();
        pump(&mut f.guest, &mut f.flow, &mut f.server).unwrap();
        assert_eq!(f.server.received, b"ping");
    }

    #[test]
    fn a_guest_that_does_not_trust_the_ca_fails_its_handshake() {
        let ca = test_ca();
        let leaves = Arc::new(LeafCache::new(ca.clone(), 16));
        let server = TestServer::new("api.test", &[]);
        let interceptor = interceptor(&leaves, true, &[&server.ca_file]);
        let other_ca = test_ca();
        let error = handshake(&interceptor, &other_ca, &server, &[])
            .err()
            .unwrap();
        assert!(
            matches!(error, InterceptError::GuestHandshake { .. }),
            "{error}"
        );
    }

    #[test]
    fn bytes_from_the_real_server_before_a_hello_are_refused() {
        let leaves = Arc::new(LeafCache::new(test_ca(), 16));
        let interceptor = interceptor(&leaves, false, &[]);
        let mut flow = interceptor.intercept(DESTINATION, Box::new(PassThrough));
        let error = flow.feed_upstream(b"\x16\x03\x03").unwrap_err();
        assert!(
            matches!(error, InterceptError::UpstreamSpokeFirst),
            "{error}"
        );
    }

    /// Shouts requests and whispers responses, to show each direction goes through it.
    struct ChangeCase;

    impl PlaintextFilter for ChangeCase {
        fn guest_to_upstream(&mut self, plaintext: &[u8], out: &mut Filtered) {
            out.to_upstream.extend(plaintext.to_ascii_uppercase());
        }

        fn upstream_to_guest(&mut self, plaintext: &[u8], out: &mut Filtered) {
            out.to_guest.extend(plaintext.to_ascii_lowercase());
        }
    }

    #[test]
    fn the_filter_decides_the_plaintext_each_way() {
        let ca = test_ca();
        let leaves = Arc::new(LeafCache::new(ca.clone(), 16));
        let server = TestServer::new("api.test", &[]);
        let interceptor = interceptor(&leaves, true, &[&server.ca_file]);
        let guest = guest_client(&ca, "api.test", &[]);
        let mut f = handshake_with(&interceptor, guest, Box::new(ChangeCase), &server).unwrap();
        f.guest
            .connection
            .writer()
            .write_all(b"get /Secret")
            .unwrap();
        f.server.connection.writer().write_all(b"200 OK").unwrap();
        pump(&mut f.guest, &mut f.flow, &mut f.server).unwrap();
        assert_eq!(f.server.received, b"GET /SECRET");
        assert_eq!(f.guest.received, b"200 ok");
    }

    fn secrets_filter(
        inject_everywhere: bool,
    ) -> (Box<dyn PlaintextFilter>, crate::secrets::SecretReports) {
        let spec = serde_json::from_value(serde_json::json!({
            "env_var": "KEY", "placeholder": "$MSB_KEY", "allow_hosts": ["api.test"],
            "inject": {"body": inject_everywhere},
        }))
        .unwrap();
        let value = crate::secrets::SecretValue::new("s3cr3t-value".into());
        let secrets = crate::secrets::Secrets::new(vec![crate::secrets::Secret { spec, value }]);
        let shared = crate::secrets::SharedSecrets::new(secrets.unwrap());
        let reports = crate::secrets::SecretReports::default();
        let route = crate::secrets::Route {
            sni: "api.test".into(),
            sni_pinned: true,
        };
        let filter = crate::secrets::SecretsFilter::new(route, shared, reports.clone());
        (Box::new(filter), reports)
    }

    #[test]
    fn a_secret_goes_into_a_request_inside_tls_and_only_the_server_sees_it() {
        let ca = test_ca();
        let leaves = Arc::new(LeafCache::new(ca.clone(), 16));
        let server = TestServer::new("api.test", &[b"http/1.1"]);
        let interceptor = interceptor(&leaves, true, &[&server.ca_file]);
        let guest = guest_client(&ca, "api.test", &[b"http/1.1"]);
        let (filter, reports) = secrets_filter(true);
        let mut f = handshake_with(&interceptor, guest, filter, &server).unwrap();
        let request = b"POST / HTTP/1.1\r\nHost: api.test\r\nX-Key: $MSB_KEY\r\n\
            Content-Length: 8\r\n\r\n$MSB_KEY";
        f.guest.connection.writer().write_all(request).unwrap();
        pump(&mut f.guest, &mut f.flow, &mut f.server).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&f.server.received),
            "POST / HTTP/1.1\r\nHost: api.test\r\nX-Key: s3cr3t-value\r\n\
             content-length: 12\r\n\r\ns3cr3t-value"
        );
        assert_eq!(reports.take().len(), 1);
    }

    #[test]
    fn a_request_the_filter_refuses_is_answered_inside_tls_and_the_flow_ended() {
        let ca = test_ca();
        let leaves = Arc::new(LeafCache::new(ca.clone(), 16));
        let server = TestServer::new("api.test", &[]);
        let interceptor = interceptor(&leaves, true, &[&server.ca_file]);
        let guest = guest_client(&ca, "api.test", &[]);
        let (filter, _reports) = secrets_filter(false);
        let mut f = handshake_with(&interceptor, guest, filter, &server).unwrap();
        let request = b"GET / HTTP/1.1\r\nHost: other.test\r\nX-Key: $MSB_KEY\r\n\r\n";
        f.guest.connection.writer().write_all(request).unwrap();
        pump(&mut f.guest, &mut f.flow, &mut f.server).unwrap();
        assert!(f.server.received.is_empty(), "nothing reached the server");
        let answer = String::from_utf8_lossy(&f.guest.received).into_owned();
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{answer}");
        let mut probe = [0; 1];
        assert_eq!(
            f.guest.connection.reader().read(&mut probe).unwrap(),
            0,
            "close_notify"
        );
    }

    #[test]
    fn a_guest_without_sni_gets_a_leaf_for_the_destination_address() {
        let ca = test_ca();
        let leaves = Arc::new(LeafCache::new(ca.clone(), 16));
        let server = TestServer::new(&DESTINATION.to_string(), &[]);
        let interceptor = interceptor(&leaves, true, &[&server.ca_file]);
        // A client connecting to an address sends no SNI.
        let guest = guest_client(&ca, &DESTINATION.to_string(), &[]);
        let f = handshake_with(&interceptor, guest, Box::new(PassThrough), &server).unwrap();
        assert_eq!(f.flow.server_name(), Some("10.9.8.7"));
        let shown = &f.guest.connection.peer_certificates().unwrap()[0];
        assert_eq!(subject_alt_names(shown), ["ip:[10, 9, 8, 7]"]);
    }

    #[test]
    fn a_client_hello_arriving_in_pieces_is_waited_for() {
        let ca = test_ca();
        let leaves = Arc::new(LeafCache::new(ca.clone(), 16));
        let server = TestServer::new("api.test", &[]);
        let interceptor = interceptor(&leaves, true, &[&server.ca_file]);
        let mut guest = Peer::new(guest_client(&ca, "api.test", &[]));
        let mut flow = interceptor.intercept(DESTINATION, Box::new(PassThrough));
        let hello = guest.outgoing();
        for piece in hello.chunks(7) {
            assert!(
                flow.for_upstream().is_empty(),
                "upstream dialled before the hello"
            );
            flow.feed_guest(piece).unwrap();
        }
        assert!(!flow.for_upstream().is_empty());
        let mut server = Peer::new(server.connection());
        pump(&mut guest, &mut flow, &mut server).unwrap();
        assert!(!guest.connection.is_handshaking());
    }

    #[test]
    fn output_is_kept_until_it_is_sent() {
        let mut outbox = Outbox::default();
        outbox.bytes.extend_from_slice(b"abcdef");
        outbox.consume(2);
        assert_eq!(outbox.pending(), b"cdef");
        outbox.consume(10);
        assert!(outbox.pending().is_empty());
    }
}

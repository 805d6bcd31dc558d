//! The forwarder: a sans-IO state machine that sends guest queries to the nameservers and
//! matches their answers.
//!
//! The caller owns the sockets and the clock. It hands in guest queries, upstream answers
//! and the current time, and carries out the [`Action`]s it gets back: one UDP socket (any
//! local port) for `SendUdp`, one TCP connection per `SendTcp` whose single answer it hands
//! back, and `poll_timeout` as the event loop's next wake-up. Over TCP every message is
//! preceded by its length as a 16-bit big-endian integer (RFC 1035 4.2.2); adding and
//! removing that prefix is the caller's job, so every `bytes` here is a bare DNS message.
//!
//! An answer is accepted only from the nameserver and over the transport the query went to,
//! with the query's upstream id and question: anything else is ignored, which is the
//! anti-spoofing check of RFC 5452 short of port randomisation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Header, Message, MessageType, ResponseCode};
use hickory_proto::serialize::binary::BinDecodable;

use super::rebind::ResolvedAddress;
use super::upstream_id::{fresh_id, Xorshift64};

/// How a message travels between the gateway and a guest or a nameserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// One datagram per message.
    Udp,
    /// A stream; each message behind a 16-bit length prefix added by the caller.
    Tcp,
}

/// What the caller must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<C> {
    /// Send `bytes` as one datagram to `server`; hand its answer to `on_upstream_answer`.
    SendUdp {
        /// The nameserver.
        server: SocketAddr,
        /// The query, with the forwarder's own id.
        bytes: Vec<u8>,
    },
    /// Open a TCP connection to `server`, send `bytes` framed, read one framed answer.
    SendTcp {
        /// The nameserver.
        server: SocketAddr,
        /// The query, with the forwarder's own id.
        bytes: Vec<u8>,
    },
    /// Send `bytes` to the guest that asked, over the transport it asked on.
    Reply {
        /// The caller's tag of the guest's query (its socket, its TCP connection).
        client: C,
        /// The answer, with the guest's own id.
        bytes: Vec<u8>,
        /// The addresses the answer gives the guest, for the policy's DNS pins.
        resolved: Vec<ResolvedAddress>,
    },
    /// Nothing to send: the input was ignored.
    Drop,
}

/// A guest query that has left the forwarder, for the resolver to answer.
#[derive(Debug)]
pub(crate) struct Finished<C> {
    pub(crate) client: C,
    pub(crate) guest_query: Message,
    pub(crate) guest_transport: Transport,
}

/// What an upstream event led to.
#[derive(Debug)]
pub(crate) enum Upstream<C> {
    /// Not an answer to any pending query: spoofed, late, or garbage.
    Ignored,
    /// The query goes out again (over TCP after a truncated answer, or to the next server).
    Send(Action<C>),
    /// Every nameserver failed.
    Failed(Finished<C>),
    /// The nameserver answered.
    Answered(Finished<C>, Message),
}

/// A query in flight.
#[derive(Debug)]
struct Pending<C> {
    finished: Finished<C>,
    upstream_query: Vec<u8>,
    server_index: usize,
    upstream_transport: Transport,
    deadline: Instant,
}

/// The pending queries and the nameservers they go to.
#[derive(Debug)]
pub(crate) struct Forwarder<C> {
    nameservers: Vec<SocketAddr>,
    query_timeout: Duration,
    max_pending: usize,
    ids: Xorshift64,
    pending: HashMap<u16, Pending<C>>,
}

impl<C> Forwarder<C> {
    /// A forwarder to `nameservers` (non-empty), tried in order.
    pub(crate) fn new(
        nameservers: Vec<SocketAddr>,
        query_timeout: Duration,
        max_pending: usize,
        id_seed: u64,
    ) -> Self {
        Self {
            nameservers,
            query_timeout,
            max_pending,
            ids: Xorshift64::new(id_seed),
            pending: HashMap::new(),
        }
    }

    /// Sends the guest's query to the first nameserver, over the guest's transport. It is
    /// `Failed` at once when it cannot be forwarded (the pending table is full), to be
    /// answered SERVFAIL: a guest flooding queries gets fast failures, not unbounded memory.
    pub(crate) fn start(&mut self, finished: Finished<C>, now: Instant) -> Upstream<C> {
        if self.pending.len() >= self.max_pending {
            return Upstream::Failed(finished);
        }
        let Some(id) = fresh_id(&mut self.ids, |id| self.pending.contains_key(&id)) else {
            return Upstream::Failed(finished);
        };
        let mut upstream = finished.guest_query.clone();
        upstream.metadata.id = id;
        let Ok(upstream_query) = upstream.to_vec() else {
            return Upstream::Failed(finished);
        };
        let pending = Pending {
            upstream_transport: finished.guest_transport,
            finished,
            upstream_query,
            server_index: 0,
            deadline: now + self.query_timeout,
        };
        let action = send_action(&self.nameservers, &pending);
        self.pending.insert(id, pending);
        Upstream::Send(action)
    }

    /// Matches an answer from `server` received over `transport`.
    pub(crate) fn on_answer(
        &mut self,
        server: SocketAddr,
        transport: Transport,
        bytes: &[u8],
        now: Instant,
    ) -> Upstream<C> {
        let Ok(header) = Header::from_bytes(bytes) else {
            return Upstream::Ignored;
        };
        let id = header.metadata.id;
        let Some(pending) = self.pending.get(&id) else {
            return Upstream::Ignored;
        };
        let from_the_right_place = header.metadata.message_type == MessageType::Response
            && self.nameservers.get(pending.server_index) == Some(&server)
            && pending.upstream_transport == transport;
        if !from_the_right_place {
            return Upstream::Ignored;
        }
        let Ok(answer) = Message::from_vec(bytes) else {
            // The right server sent something unreadable: it is broken, try the next one.
            return self.next_server(id, now);
        };
        if answer.queries != pending.finished.guest_query.queries {
            return Upstream::Ignored;
        }
        if answer.truncation && transport == Transport::Udp {
            return self.retry_over_tcp(id, now);
        }
        // The codes a stub resolver also moves on from: this server cannot answer now, another
        // may. NXDOMAIN and the rest are real answers about the name.
        if matches!(
            answer.response_code,
            ResponseCode::ServFail | ResponseCode::Refused | ResponseCode::NotImp
        ) {
            return self.next_server(id, now);
        }
        match self.pending.remove(&id) {
            Some(pending) => Upstream::Answered(pending.finished, answer),
            None => Upstream::Ignored,
        }
    }

    /// Moves every query whose deadline has passed to its next nameserver, in deadline order.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> Vec<Upstream<C>> {
        let mut expired: Vec<(Instant, u16)> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.deadline <= now)
            .map(|(&id, pending)| (pending.deadline, id))
            .collect();
        expired.sort_unstable();
        expired
            .into_iter()
            .map(|(_, id)| self.next_server(id, now))
            .collect()
    }

    /// When `on_timeout` must next be called, if anything is pending. A linear scan: the
    /// table is small (`max_pending`) and this runs once per event-loop turn.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|pending| pending.deadline).min()
    }

    /// How many queries are in flight.
    pub(crate) fn pending_count(&self) -> usize {
        self.pending.len()
    }

    fn retry_over_tcp(&mut self, id: u16, now: Instant) -> Upstream<C> {
        let deadline = now + self.query_timeout;
        let Some(pending) = self.pending.get_mut(&id) else {
            return Upstream::Ignored;
        };
        pending.upstream_transport = Transport::Tcp;
        pending.deadline = deadline;
        Upstream::Send(send_action(&self.nameservers, pending))
    }

    fn next_server(&mut self, id: u16, now: Instant) -> Upstream<C> {
        let deadline = now + self.query_timeout;
        let server_count = self.nameservers.len();
        let Some(pending) = self.pending.get_mut(&id) else {
            return Upstream::Ignored;
        };
        pending.server_index += 1;
        if pending.server_index >= server_count {
            return match self.pending.remove(&id) {
                Some(pending) => Upstream::Failed(pending.finished),
                None => Upstream::Ignored,
            };
        }
        // Each server is tried as the guest asked first; a UDP query moves to TCP only on a
        // truncated answer from that server.
        pending.upstream_transport = pending.finished.guest_transport;
        pending.deadline = deadline;
        Upstream::Send(send_action(&self.nameservers, pending))
    }
}

/// The send of `pending`'s query to its current server over its current transport.
fn send_action<C>(nameservers: &[SocketAddr], pending: &Pending<C>) -> Action<C> {
    let Some(&server) = nameservers.get(pending.server_index) else {
        return Action::Drop;
    };
    let bytes = pending.upstream_query.clone();
    match pending.upstream_transport {
        Transport::Udp => Action::SendUdp { server, bytes },
        Transport::Tcp => Action::SendTcp { server, bytes },
    }
}

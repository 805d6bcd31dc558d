//! The gateway's resolver: the deny lists, the policy's verdict on the name (the caller's),
//! local AAAA answers, the forwarder and the answer screen, applied in that order to what
//! the guest asks and what the nameservers answer.

use std::net::SocketAddr;
use std::time::Instant;

use hickory_proto::op::{Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::BinDecodable;
use thiserror::Error;

use super::config::{DnsConfig, DnsConfigError, ValidDnsConfig};
use super::forward::{Action, Finished, Forwarder, Transport, Upstream};
use super::rebind::{AddressScreen, ResolvedAddress};
use super::reply::{answer_to, encode_for_guest, format_error, udp_limit};

/// How many guest queries may be in flight when the caller does not say: far above what a
/// guest's stub resolver keeps outstanding, and at most a few MiB of queries.
pub const DEFAULT_MAX_PENDING: usize = 256;

/// The most queries the forwarder accepts in flight: upstream ids are 16 bits, and keeping
/// the table at a small fraction of them keeps a fresh id one random pick away.
pub const MAX_PENDING_LIMIT: usize = 4096;

/// The longest guest query accepted. One question with EDNS options is a few hundred bytes;
/// the cap bounds what each pending query holds.
const MAX_GUEST_QUERY: usize = 4096;

/// The one question of a guest query, read before the query is handed to the resolver so
/// the caller can decide the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: Name,
    pub query_type: RecordType,
}

/// The question of the DNS message `bytes`, if it is a query with exactly one.
pub fn question(bytes: &[u8]) -> Option<Question> {
    let message = Message::from_vec(bytes).ok()?;
    match message.queries.as_slice() {
        [query] if message.metadata.message_type == MessageType::Query => Some(Question {
            name: query.name.clone(),
            query_type: query.query_type,
        }),
        _ => None,
    }
}

/// What the supervisor knows about the host, and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDns {
    /// The host's resolvers, used when the configuration names none.
    pub nameservers: Vec<SocketAddr>,
    /// Whether the host has an IPv6 route; without one AAAA is answered empty.
    pub has_ipv6_route: bool,
    /// The most queries in flight, 1 to [`MAX_PENDING_LIMIT`].
    pub max_pending: usize,
    /// Seed of the upstream ids; from the OS in the supervisor, a constant in tests.
    pub id_seed: u64,
}

/// Why a resolver could not be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ResolverError {
    /// The SDK's DNS configuration is invalid.
    #[error(transparent)]
    Config(#[from] DnsConfigError),
    /// `max_pending` is 0 or above [`MAX_PENDING_LIMIT`].
    #[error("max_pending {value} is not between 1 and {MAX_PENDING_LIMIT}")]
    MaxPending {
        /// The value given.
        value: usize,
    },
}

/// The resolver of one sandbox. `C` is the caller's tag of a guest query, handed back with
/// its reply.
#[derive(Debug)]
pub struct Resolver<C> {
    config: ValidDnsConfig,
    host_has_ipv6: bool,
    forwarder: Forwarder<C>,
}

impl<C> Resolver<C> {
    /// A resolver for `config` on a host described by `host`.
    pub fn new(config: &DnsConfig, host: &HostDns) -> Result<Self, ResolverError> {
        if host.max_pending == 0 || host.max_pending > MAX_PENDING_LIMIT {
            return Err(ResolverError::MaxPending {
                value: host.max_pending,
            });
        }
        let config = config.validate(&host.nameservers)?;
        let forwarder = Forwarder::new(
            config.nameservers.clone(),
            config.query_timeout,
            host.max_pending,
            host.id_seed,
        );
        Ok(Self {
            config,
            host_has_ipv6: host.has_ipv6_route,
            forwarder,
        })
    }

    /// Handles one query from the guest (a bare message; over TCP, without its length) whose
    /// name the policy lets it resolve.
    pub fn on_guest_query(
        &mut self,
        client: C,
        transport: Transport,
        bytes: &[u8],
        now: Instant,
    ) -> Action<C> {
        self.guest_query(client, transport, bytes, now, NameVerdict::Allowed)
    }

    /// Handles one query whose name the policy denies: answered NXDOMAIN here, never
    /// forwarded (a malformed one gets the answer any malformed query gets).
    pub fn on_denied_guest_query(
        &mut self,
        client: C,
        transport: Transport,
        bytes: &[u8],
        now: Instant,
    ) -> Action<C> {
        self.guest_query(client, transport, bytes, now, NameVerdict::Denied)
    }

    /// Whether the configured deny lists answer `name` NXDOMAIN.
    pub fn deny_list_denies(&self, name: &Name) -> bool {
        self.config.deny_list.denies(name)
    }

    fn guest_query(
        &mut self,
        client: C,
        transport: Transport,
        bytes: &[u8],
        now: Instant,
        verdict: NameVerdict,
    ) -> Action<C> {
        let Ok(header) = Header::from_bytes(bytes) else {
            return Action::Drop;
        };
        // Never answer an answer: two resolvers pointed at each other would bounce it forever.
        if header.metadata.message_type != MessageType::Query {
            return Action::Drop;
        }
        let query = match Message::from_vec(bytes) {
            Ok(query) if bytes.len() <= MAX_GUEST_QUERY => query,
            _ => return reply(client, transport, &format_error(&header.metadata), 512),
        };
        let local_code = self.local_answer(&query, verdict);
        let finished = Finished {
            client,
            guest_query: query,
            guest_transport: transport,
        };
        if let Some(code) = local_code {
            return answer_locally(finished, code);
        }
        let upstream = self.forwarder.start(finished, now);
        self.act_on(upstream, &|_| false)
    }

    /// Handles one answer from `server` (a bare message; over TCP, without its length).
    /// `allow_internal` says whether an internal address may be given for a name (the
    /// policy's rules); it is asked only with rebinding protection on.
    pub fn on_upstream_answer(
        &mut self,
        server: SocketAddr,
        transport: Transport,
        bytes: &[u8],
        now: Instant,
        allow_internal: &dyn Fn(&ResolvedAddress) -> bool,
    ) -> Action<C> {
        let upstream = self.forwarder.on_answer(server, transport, bytes, now);
        self.act_on(upstream, allow_internal)
    }

    /// Moves on every query whose nameserver has not answered in time.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<Action<C>> {
        self.forwarder
            .on_timeout(now)
            .into_iter()
            .map(|upstream| self.act_on(upstream, &|_| false))
            .collect()
    }

    /// When `on_timeout` must next be called; `None` while nothing is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.forwarder.poll_timeout()
    }

    /// How many guest queries are waiting for a nameserver.
    pub fn pending_count(&self) -> usize {
        self.forwarder.pending_count()
    }

    /// The code the gateway answers `query` with itself, or `None` to forward it.
    fn local_answer(&self, query: &Message, verdict: NameVerdict) -> Option<ResponseCode> {
        if query.op_code != OpCode::Query {
            return Some(ResponseCode::NotImp);
        }
        // Nameservers handle exactly one question (RFC 9619); anything else is malformed.
        let [question] = query.queries.as_slice() else {
            return Some(ResponseCode::FormErr);
        };
        if self.config.deny_list.denies(&question.name) || verdict == NameVerdict::Denied {
            return Some(ResponseCode::NXDomain);
        }
        if question.query_type == RecordType::AAAA && !self.host_has_ipv6 {
            // NOERROR with no records ("no AAAA for this name"), not an error: the guest goes
            // straight to its A answer, and no query leaves for an address it cannot use.
            return Some(ResponseCode::NoError);
        }
        None
    }

    fn act_on(
        &self,
        upstream: Upstream<C>,
        allow_internal: &dyn Fn(&ResolvedAddress) -> bool,
    ) -> Action<C> {
        match upstream {
            Upstream::Ignored => Action::Drop,
            Upstream::Send(action) => action,
            Upstream::Failed(finished) => answer_locally(finished, ResponseCode::ServFail),
            Upstream::Answered(finished, answer) => {
                self.forward_answer(finished, answer, allow_internal)
            }
        }
    }

    /// The nameserver's answer, screened, under the guest's own id and question.
    fn forward_answer(
        &self,
        finished: Finished<C>,
        mut answer: Message,
        allow_internal: &dyn Fn(&ResolvedAddress) -> bool,
    ) -> Action<C> {
        let guest_query = &finished.guest_query;
        answer.metadata.id = guest_query.id;
        // The nameserver may have changed the question's letter case; give back the guest's.
        answer.queries.clone_from(&guest_query.queries);
        let screen = AddressScreen {
            rebind_protection: self.config.rebind_protection,
            host_has_ipv6: self.host_has_ipv6,
            allow_internal,
        };
        let resolved = match guest_query.queries.first() {
            Some(question) => screen.apply(&mut answer, &question.name),
            None => Vec::new(),
        };
        let limit = udp_limit(guest_query);
        match encode_for_guest(&answer, finished.guest_transport, limit) {
            Some(bytes) => Action::Reply {
                client: finished.client,
                bytes,
                resolved,
            },
            None => Action::Drop,
        }
    }
}

/// The policy's verdict on a query's name, the caller's to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameVerdict {
    Allowed,
    Denied,
}

/// A reply the gateway makes itself, with `code` and no records.
fn answer_locally<C>(finished: Finished<C>, code: ResponseCode) -> Action<C> {
    let answer = answer_to(&finished.guest_query, code);
    let limit = udp_limit(&finished.guest_query);
    reply(finished.client, finished.guest_transport, &answer, limit)
}

fn reply<C>(client: C, transport: Transport, answer: &Message, udp_limit: usize) -> Action<C> {
    match encode_for_guest(answer, transport, udp_limit) {
        Some(bytes) => Action::Reply {
            client,
            bytes,
            resolved: Vec::new(),
        },
        None => Action::Drop,
    }
}

//! The host side of TCP flows: a non-blocking dial for each flow the stack allowed, then the
//! bytes moved between the host socket and the flow's smoltcp socket, within the room each
//! side has (the backpressure both ways), and half-close and reset carried across.
//!
//! Flows to the gateway's port 53 are not dialed: they are DNS over TCP, answered by the
//! gateway's resolver (see `dns`).
//!
//! SNI / Host agreement: the SYN of a flow to an address the guest resolved through our DNS
//! is decided with every name pinned to that address (connect first: nothing else is known
//! yet), so an allow rule for `a.test` lets a SYN to `a.test`'s address through even when
//! the guest means `b.test` on the same address. The flow's first guest bytes are therefore
//! held (not written to the host socket) until they show a TLS ClientHello or an HTTP
//! request head (see `sni`), or show neither, or reach the bound: a named host `H` decides
//! the flow again with `H` alone if `H` is pinned to the address, else with no name (and,
//! since a claim may always narrow, a domain rule denying `H` denies it too), and a denial
//! resets the flow before a byte reached the peer. Flows to unpinned addresses are held the
//! same way while the policy denies some domain, so that a denied name claimed to any
//! address is cut too. A SYN that all the address's names deny but one of them alone allows
//! (a denied and an allowed name on one CDN address) is let through on condition: its bytes
//! must then name an allowed host, and a flow that names none is reset. Protocols where the
//! server speaks first are never held: their guest sends nothing until the peer did.
//!
//! Flows to a port whose TLS is intercepted are held the same way, and a ClientHello that
//! names an allowed host not on the bypass list turns the flow into an intercepted one (see
//! `intercepted`).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::flow_log::{reason, Decided, FlowFacts};
use super::sni::{self, FirstBytes, NameSource};
use super::tokens::Owner;
use super::EventLoop;
use intercepted::Intercepted;

mod intercepted;
use crate::policy::{Action as Decision, Flow, FlowDirection, Protocol, Verdict};
use crate::stack::{Action, DialError, Event, FlowId, ResolvedNames, SynDecision, SynOutcome};

/// How long a host connect may take. The guest's own connect gives up after about two minutes
/// of SYN retries; a dial that outlives 30 s is reported as a timeout so the guest's next SYN
/// dials afresh.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// The DNS port, whose gateway flows the resolver answers.
const DNS_PORT: u16 = 53;

#[derive(Debug)]
enum Phase {
    Dialing { deadline: Duration },
    Open,
}

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    token: Token,
    phase: Phase,
    readable: bool,
    writable: bool,
    /// The host sent FIN; reported to the stack once.
    read_closed: bool,
    facts: FlowFacts,
    held: Hold,
    /// Set once the flow's TLS is intercepted: its bytes then pass through it both ways.
    intercepted: Option<Box<Intercepted>>,
}

/// Whether the guest's first bytes wait until they show the host they name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// They go to the host as they come.
    No,
    /// Held until they name a host (or show they name none); a name decides the flow again.
    ForName,
    /// As `ForName`, and a flow that names no host is denied: its SYN was allowed only for
    /// one of its address's names (`Evaluator::decide_connect`).
    NameRequired,
}

/// The host connections of the stack's flows.
#[derive(Debug, Default)]
pub struct HostTcp {
    connections: BTreeMap<FlowId, Connection>,
    /// How an allowed SYN was decided and the names pinned to its destination then, until
    /// its dial starts.
    decided: BTreeMap<FlowId, (Verdict, Vec<String>, bool)>,
}

/// The open flows the loop decides again when the policy changes.
#[derive(Debug, Clone)]
pub struct OpenTcp {
    pub flow_id: FlowId,
    pub facts: FlowFacts,
}

impl HostTcp {
    pub fn has_dialing(&self) -> bool {
        self.connections
            .values()
            .any(|connection| matches!(connection.phase, Phase::Dialing { .. }))
    }

    pub fn open_flows(&self) -> Vec<OpenTcp> {
        self.connections
            .iter()
            .map(|(&flow_id, connection)| OpenTcp {
                flow_id,
                facts: connection.facts.clone(),
            })
            .collect()
    }
}

fn dial_reason(error: DialError) -> &'static str {
    match error {
        DialError::Refused => "connection refused",
        DialError::Unreachable => "unreachable",
        DialError::TimedOut => "timed out",
    }
}

fn dial_error(error: &io::Error) -> DialError {
    match error.raw_os_error() {
        Some(libc::ECONNREFUSED) => DialError::Refused,
        Some(libc::ETIMEDOUT) => DialError::TimedOut,
        _ => DialError::Unreachable,
    }
}

impl EventLoop {
    /// Carries out what the stack asked for, until it asks nothing more.
    pub(super) fn run_stack_actions(&mut self, now: Duration) {
        while let Some(decision) = self.stack.next_decision() {
            self.syn_decided(decision);
        }
        while let Some(action) = self.stack.next_action() {
            match action {
                Action::Dial { flow_id, dst } => self.dial(now, flow_id, dst),
                Action::ShutdownWrite { flow_id } => {
                    if let Some(connection) = self.host_tcp.connections.get_mut(&flow_id) {
                        match connection.intercepted.as_mut() {
                            // Shut once what the guest sent before its FIN has gone out.
                            Some(intercepted) => {
                                intercepted.guest_finished = true;
                                // The next pump shuts it, even if nothing else wakes the loop.
                                self.busy = true;
                            }
                            None => {
                                let _ = connection.stream.shutdown(Shutdown::Write);
                            }
                        }
                    } else {
                        self.dns_guest_finished(flow_id);
                    }
                }
                Action::Close { flow_id } => {
                    self.close_host_connection(flow_id, reason::CLOSED);
                    self.dns_close(flow_id);
                }
            }
        }
    }

    fn syn_decided(&mut self, decision: SynDecision) {
        let SynDecision {
            tuple,
            flow_id,
            outcome,
            names,
            name_required,
        } = decision;
        let verdict = match outcome {
            SynOutcome::Decided(verdict) => verdict,
            SynOutcome::ConnectionLimit => {
                return self.log_refusal(
                    Protocol::Tcp,
                    tuple.src,
                    tuple.dst,
                    reason::CONNECTION_LIMIT,
                );
            }
        };
        self.log_decision(Decided {
            direction: FlowDirection::Egress,
            protocol: Protocol::Tcp,
            src: tuple.src.to_string(),
            dst: tuple.dst.to_string(),
            verdict,
            names: &names,
            sni: None,
            reason: name_required.then_some(reason::NAME_REQUIRED),
        });
        if let Some(flow_id) = flow_id {
            self.host_tcp
                .decided
                .insert(flow_id, (verdict, names, name_required));
        }
    }

    fn dial(&mut self, now: Duration, flow_id: FlowId, dst: SocketAddr) {
        if self.is_gateway(dst.ip()) && dst.port() == DNS_PORT {
            self.dns_open_tcp(now, flow_id);
            return;
        }
        let Some(src) = self.stack.flow_source(flow_id) else {
            return;
        };
        let mut facts = FlowFacts::new(FlowDirection::Egress, Protocol::Tcp, src, dst);
        let mut held = Hold::No;
        if let Some((verdict, names, name_required)) = self.host_tcp.decided.remove(&flow_id) {
            let policy = self.stack.evaluator().policy();
            facts.domain = super::flow_log::logged_domain(policy, verdict, &names);
            held = if name_required {
                Hold::NameRequired
            } else if !names.is_empty() || policy.denies_domains() {
                Hold::ForName
            } else {
                Hold::No
            };
        }
        if held == Hold::No
            && self
                .tls
                .as_ref()
                .is_some_and(|tls| tls.intercepts_port(dst.port(), &self.secrets.current()))
        {
            held = Hold::ForName;
        }
        let target = self.host_destination(dst);
        let stream = match TcpStream::connect(target) {
            Ok(stream) => stream,
            Err(error) => {
                log::debug!("dial {target} for flow {flow_id:?}: {error}");
                let error = dial_error(&error);
                self.log_close(&facts, dial_reason(error));
                self.report(
                    now,
                    Event::Dialed {
                        flow_id,
                        result: Err(error),
                    },
                );
                return;
            }
        };
        let phase = Phase::Dialing {
            deadline: now + DIAL_TIMEOUT,
        };
        self.adopt(flow_id, stream, phase, facts, held);
    }

    /// Registers the host connection of `flow_id`, a published port's client.
    pub(super) fn adopt_open(&mut self, flow_id: FlowId, stream: TcpStream, facts: FlowFacts) {
        self.adopt(flow_id, stream, Phase::Open, facts, Hold::No);
    }

    fn adopt(
        &mut self,
        flow_id: FlowId,
        mut stream: TcpStream,
        phase: Phase,
        facts: FlowFacts,
        held: Hold,
    ) {
        let interest = Interest::READABLE | Interest::WRITABLE;
        let Some(token) = self.register(&mut stream, Owner::Tcp(flow_id), interest) else {
            return;
        };
        let _ = stream.set_nodelay(true);
        self.host_tcp.connections.insert(
            flow_id,
            Connection {
                stream,
                token,
                phase,
                readable: false,
                writable: false,
                read_closed: false,
                facts,
                held,
                intercepted: None,
            },
        );
    }

    pub(super) fn tcp_ready(&mut self, flow_id: FlowId, event: &mio::event::Event) {
        let Some(connection) = self.host_tcp.connections.get_mut(&flow_id) else {
            return;
        };
        connection.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
        connection.writable |= event.is_writable() || event.is_error();
        if matches!(connection.phase, Phase::Dialing { .. }) {
            let now = self.now();
            self.finish_dial(now, flow_id);
        }
    }

    /// A dialing socket became ready: it connected, or it failed.
    fn finish_dial(&mut self, now: Duration, flow_id: FlowId) {
        let Some(connection) = self.host_tcp.connections.get_mut(&flow_id) else {
            return;
        };
        let result = match connection.stream.take_error() {
            Ok(Some(error)) | Err(error) => Err(error),
            Ok(None) => match connection.stream.peer_addr() {
                Ok(_) => Ok(()),
                // Not connected yet: a spurious wake-up.
                Err(error) if error.kind() == io::ErrorKind::NotConnected => return,
                Err(error) => Err(error),
            },
        };
        match result {
            Ok(()) => {
                connection.phase = Phase::Open;
                self.report(
                    now,
                    Event::Dialed {
                        flow_id,
                        result: Ok(()),
                    },
                );
            }
            Err(error) => {
                log::debug!("dial for flow {flow_id:?}: {error}");
                let error = dial_error(&error);
                self.close_host_connection(flow_id, dial_reason(error));
                self.report(
                    now,
                    Event::Dialed {
                        flow_id,
                        result: Err(error),
                    },
                );
            }
        }
    }

    pub(super) fn expire_dials(&mut self, now: Duration) {
        let late: Vec<FlowId> = self
            .host_tcp
            .connections
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Dialing { deadline } if deadline <= now))
            .map(|(&flow_id, _)| flow_id)
            .collect();
        for flow_id in late {
            self.close_host_connection(flow_id, dial_reason(DialError::TimedOut));
            self.report(
                now,
                Event::Dialed {
                    flow_id,
                    result: Err(DialError::TimedOut),
                },
            );
        }
    }

    /// Moves data on every open flow, as far as both sides have room.
    pub(super) fn pump_tcp(&mut self, now: Duration) {
        let open: Vec<FlowId> = self
            .host_tcp
            .connections
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Open))
            .map(|(&flow_id, _)| flow_id)
            .collect();
        for flow_id in open {
            self.guest_to_host(now, flow_id);
            self.host_to_guest(now, flow_id);
        }
    }

    /// Writes what the guest sent to the host socket; the stack frees only what was written.
    fn guest_to_host(&mut self, now: Duration, flow_id: FlowId) {
        if !self.release_held_bytes(now, flow_id) {
            return;
        }
        if self.is_intercepted(flow_id) {
            self.pump_intercepted(now, flow_id);
            return;
        }
        let mut broken = None;
        loop {
            let Some(connection) = self.host_tcp.connections.get_mut(&flow_id) else {
                return;
            };
            if !connection.writable {
                break;
            }
            let stream = &mut connection.stream;
            let writable = &mut connection.writable;
            let written = self
                .stack
                .write_guest_data(flow_id, |bytes| match stream.write(bytes) {
                    Ok(count) => count,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        *writable = false;
                        0
                    }
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => 0,
                    Err(error) => {
                        broken = Some(error);
                        0
                    }
                });
            match written {
                Ok(count) if count > 0 => {
                    if let Some(connection) = self.host_tcp.connections.get_mut(&flow_id) {
                        connection.facts.bytes_sent += count as u64;
                    }
                }
                _ => break,
            }
        }
        if let Some(error) = broken {
            log::debug!("host connection of flow {flow_id:?} broke: {error}");
            self.reset_flow(now, flow_id);
        }
    }

    /// Reads from the host socket only as much as the guest socket can take now.
    fn host_to_guest(&mut self, now: Duration, flow_id: FlowId) {
        loop {
            let Some(connection) = self.host_tcp.connections.get_mut(&flow_id) else {
                return;
            };
            if !connection.readable || connection.read_closed || connection.intercepted.is_some() {
                return;
            }
            let room = self.stack.guest_send_capacity(flow_id).unwrap_or(0);
            if room == 0 {
                return;
            }
            let limit = room.min(self.scratch.len());
            match connection.stream.read(&mut self.scratch[..limit]) {
                Ok(0) => {
                    connection.read_closed = true;
                    self.report(now, Event::HostEof { flow_id });
                    return;
                }
                Ok(count) => {
                    connection.facts.bytes_received += count as u64;
                    // The capacity was checked just above: it all fits.
                    let _ = self.stack.send_to_guest(flow_id, &self.scratch[..count]);
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    connection.readable = false;
                    return;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    log::debug!("host connection of flow {flow_id:?} broke: {error}");
                    self.reset_flow(now, flow_id);
                    return;
                }
            }
        }
    }

    fn reset_flow(&mut self, now: Duration, flow_id: FlowId) {
        self.abort_flow(now, flow_id, reason::RESET);
    }

    /// Ends a flow on both sides: the host socket closed and a RST to the guest.
    pub(super) fn abort_flow(&mut self, now: Duration, flow_id: FlowId, why: &'static str) {
        let dialing = self
            .host_tcp
            .connections
            .get(&flow_id)
            .is_some_and(|connection| matches!(connection.phase, Phase::Dialing { .. }));
        self.close_host_connection(flow_id, why);
        let event = if dialing {
            // A refused dial is how a flow still waiting for its handshake gets its RST.
            Event::Dialed {
                flow_id,
                result: Err(DialError::Refused),
            }
        } else {
            Event::HostReset { flow_id }
        };
        self.report(now, event);
    }

    fn close_host_connection(&mut self, flow_id: FlowId, why: &'static str) {
        if let Some(mut connection) = self.host_tcp.connections.remove(&flow_id) {
            let _ = self.poll.registry().deregister(&mut connection.stream);
            self.tokens.release(connection.token);
            self.log_close(&connection.facts, why);
        }
    }

    /// Whether the guest's bytes of `flow_id` may go to the host now; decides the flow again
    /// once its first bytes name a host (see the module doc).
    fn release_held_bytes(&mut self, now: Duration, flow_id: FlowId) -> bool {
        let Some(connection) = self.host_tcp.connections.get(&flow_id) else {
            return false;
        };
        let hold = connection.held;
        if hold == Hold::No {
            return true;
        }
        let mut first = Vec::new();
        let _ = self.stack.write_guest_data(flow_id, |bytes| {
            first.extend_from_slice(&bytes[..bytes.len().min(sni::TLS_LIMIT)]);
            0
        });
        let inspected = match sni::inspect(&first) {
            FirstBytes::NeedMore if self.stack.guest_may_send(flow_id) => return false,
            FirstBytes::NeedMore => FirstBytes::Unnamed,
            inspected => inspected,
        };
        if let Some(connection) = self.host_tcp.connections.get_mut(&flow_id) {
            connection.held = Hold::No;
        }
        match inspected {
            FirstBytes::Named(source, host) => {
                let allowed = self.decide_named_flow(now, flow_id, source, host);
                if allowed && source == NameSource::Sni {
                    self.start_interception(flow_id);
                }
                allowed
            }
            _ if hold == Hold::NameRequired => {
                self.refuse_unnamed_flow(now, flow_id);
                false
            }
            _ => true,
        }
    }

    /// Resets `flow_id`, allowed only for a host it did not name: decided with every name
    /// pinned to its address, as a flow that names none is.
    fn refuse_unnamed_flow(&mut self, now: Duration, flow_id: FlowId) {
        let Some(connection) = self.host_tcp.connections.get(&flow_id) else {
            return;
        };
        let facts = connection.facts.clone();
        let names = self.pins.names_for(facts.dst.ip());
        let verdict = self.decide_egress_tcp(&facts, &names);
        log::info!(
            "flow {} -> {} reset: {}",
            facts.src,
            facts.dst,
            reason::NO_NAME
        );
        self.log_decision(Decided {
            direction: facts.direction,
            protocol: Protocol::Tcp,
            src: facts.src.to_string(),
            dst: facts.dst.to_string(),
            verdict,
            names: &names,
            sni: None,
            reason: Some(reason::NO_NAME),
        });
        self.abort_flow(now, flow_id, reason::NO_NAME);
    }

    /// Decides `flow_id` again with the host its first bytes named; false if that denies it.
    fn decide_named_flow(
        &mut self,
        now: Duration,
        flow_id: FlowId,
        source: NameSource,
        host: String,
    ) -> bool {
        let Some(connection) = self.host_tcp.connections.get_mut(&flow_id) else {
            return false;
        };
        connection.facts.sni = Some(host.clone());
        let facts = connection.facts.clone();
        let verdict = self.decide_with_named_host(&facts, &host);
        if verdict.action == Decision::Allow {
            return true;
        }
        let why = match source {
            NameSource::Sni => reason::SNI_MISMATCH,
            NameSource::HttpHost => reason::HOST_MISMATCH,
        };
        log::info!("flow {} -> {} reset: {why} ({host})", facts.src, facts.dst);
        let names = [host];
        self.log_decision(Decided {
            direction: facts.direction,
            protocol: Protocol::Tcp,
            src: facts.src.to_string(),
            dst: facts.dst.to_string(),
            verdict,
            names: &names,
            sni: facts.sni.clone(),
            reason: Some(why),
        });
        self.abort_flow(now, flow_id, why);
        false
    }

    /// The verdict on an egress flow whose bytes named `host`: decided with `host` alone if
    /// it is pinned to the destination, else with no name, so a domain rule allows only a
    /// name that both the DNS answer and the flow agree on. A name the flow merely claims
    /// cannot open anything, but it is enough for a domain rule to deny it: a hello naming
    /// a denied host is cut even on an address another rule allows.
    pub(super) fn decide_with_named_host(&self, facts: &FlowFacts, host: &str) -> Verdict {
        let claimed = [host.to_owned()];
        if self
            .pins
            .names_for(facts.dst.ip())
            .iter()
            .any(|name| name == host)
        {
            return self.decide_egress_tcp(facts, &claimed);
        }
        let verified = self.decide_egress_tcp(facts, &[]);
        let by_claim = self.decide_egress_tcp(facts, &claimed);
        if by_claim.action == Decision::Deny {
            by_claim
        } else {
            verified
        }
    }

    fn decide_egress_tcp(&self, facts: &FlowFacts, names: &[String]) -> Verdict {
        self.stack.evaluator().decide(&Flow {
            direction: FlowDirection::Egress,
            protocol: Protocol::Tcp,
            peer: facts.dst.ip(),
            port: Some(facts.dst.port()),
            resolved_domains: names,
        })
    }

    /// Hands a host event to the stack; an event for a flow the stack already ended is moot.
    pub(super) fn report(&mut self, now: Duration, event: Event) {
        if let Err(error) = self.stack.handle(now, event) {
            log::trace!("network loop: {error}");
        }
    }
}

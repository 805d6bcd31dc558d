//! The host side of TCP flows: a non-blocking dial for each flow the stack allowed, then the
//! bytes moved between the host socket and the flow's smoltcp socket, within the room each
//! side has (the backpressure both ways), and half-close and reset carried across.
//!
//! Flows to the gateway's port 53 are not dialed: they are DNS over TCP, answered by the
//! gateway's resolver (see `dns`).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use mio::net::TcpStream;
use mio::{Interest, Token};

use super::tokens::Owner;
use super::EventLoop;
use crate::stack::{Action, DialError, Event, FlowId};

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
}

/// The host connections of the stack's flows.
#[derive(Debug, Default)]
pub struct HostTcp {
    connections: BTreeMap<FlowId, Connection>,
}

impl HostTcp {
    pub fn has_dialing(&self) -> bool {
        self.connections
            .values()
            .any(|connection| matches!(connection.phase, Phase::Dialing { .. }))
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
        while let Some(action) = self.stack.next_action() {
            match action {
                Action::Dial { flow_id, dst } => self.dial(now, flow_id, dst),
                Action::ShutdownWrite { flow_id } => {
                    if let Some(connection) = self.host_tcp.connections.get(&flow_id) {
                        let _ = connection.stream.shutdown(Shutdown::Write);
                    } else {
                        self.dns_guest_finished(flow_id);
                    }
                }
                Action::Close { flow_id } => {
                    self.close_host_connection(flow_id);
                    self.dns_close(flow_id);
                }
            }
        }
    }

    fn dial(&mut self, now: Duration, flow_id: FlowId, dst: SocketAddr) {
        if self.is_gateway(dst.ip()) && dst.port() == DNS_PORT {
            self.dns_open_tcp(now, flow_id);
            return;
        }
        let target = self.host_destination(dst);
        let stream = match TcpStream::connect(target) {
            Ok(stream) => stream,
            Err(error) => {
                log::debug!("dial {target} for flow {flow_id:?}: {error}");
                self.report(
                    now,
                    Event::Dialed {
                        flow_id,
                        result: Err(dial_error(&error)),
                    },
                );
                return;
            }
        };
        self.adopt(
            flow_id,
            stream,
            Phase::Dialing {
                deadline: now + DIAL_TIMEOUT,
            },
        );
    }

    /// Registers a host connection of `flow_id`.
    pub(super) fn adopt_open(&mut self, flow_id: FlowId, stream: TcpStream) {
        self.adopt(flow_id, stream, Phase::Open);
    }

    fn adopt(&mut self, flow_id: FlowId, mut stream: TcpStream, phase: Phase) {
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
                self.close_host_connection(flow_id);
                self.report(
                    now,
                    Event::Dialed {
                        flow_id,
                        result: Err(dial_error(&error)),
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
            self.close_host_connection(flow_id);
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
            if !matches!(written, Ok(count) if count > 0) {
                break;
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
            if !connection.readable || connection.read_closed {
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
        self.close_host_connection(flow_id);
        self.report(now, Event::HostReset { flow_id });
    }

    fn close_host_connection(&mut self, flow_id: FlowId) {
        if let Some(mut connection) = self.host_tcp.connections.remove(&flow_id) {
            let _ = self.poll.registry().deregister(&mut connection.stream);
            self.tokens.release(connection.token);
        }
    }

    /// Hands a host event to the stack; an event for a flow the stack already ended is moot.
    pub(super) fn report(&mut self, now: Duration, event: Event) {
        if let Err(error) = self.stack.handle(now, event) {
            log::trace!("network loop: {error}");
        }
    }
}

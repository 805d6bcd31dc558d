//! Intercepted TCP flows: once a flow's ClientHello named a host whose TLS is intercepted,
//! every byte of the flow passes through its [`Interception`] — the guest's into
//! `feed_guest`, the real server's into `feed_upstream` — and what it has for each side is
//! written to that side as far as it takes it.
//!
//! Backpressure as for plain flows, with the interception's outboxes in between: a side is
//! not read while the other side's outbox holds a flow buffer's worth (256 KiB, the guest
//! socket's buffer), so a slow reader on one side stops the other. A FIN is passed on only
//! after the bytes that came before it: the host's once the guest's outbox is empty, the
//! guest's once the host's is. Any interception error resets both sides, with a `close`
//! record saying which part of TLS failed.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use super::super::flow_log::{reason, Decided};
use super::EventLoop;
use crate::policy::Protocol;
use crate::secrets::{Route, SecretReports, SecretsFilter};
use crate::stack::{Event, FlowId, ResolvedNames};
use crate::tls::intercept::{InterceptError, Interception, PassThrough, PlaintextFilter};

/// The most bytes an outbox holds before the side that fills it is no longer read: the
/// guest socket's buffer (`StackOptions::socket_buffer_len`), so an intercepted flow holds
/// at most what a plain one does, twice.
const OUTBOX_LIMIT: usize = 256 * 1024;

/// The interception of one flow and how far its FINs have gone.
pub(super) struct Intercepted {
    tls: Interception,
    /// The guest sent FIN; the host socket is shut for writing once the outbox is empty.
    pub(super) guest_finished: bool,
    /// The host's FIN was passed on to the guest.
    host_eof_reported: bool,
    /// What the flow's secrets rewriter did; `None` when the sandbox had no secrets as the
    /// flow began (its bytes then pass as they are).
    pub(super) secret_reports: Option<SecretReports>,
    /// The supervisor was told to stop the sandbox for this flow (once is enough).
    pub(super) terminated: bool,
}

impl std::fmt::Debug for Intercepted {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Intercepted")
            .field("server_name", &self.tls.server_name())
            .field("guest_finished", &self.guest_finished)
            .field("host_eof_reported", &self.host_eof_reported)
            .finish_non_exhaustive()
    }
}

/// Why an intercepted flow ended early.
enum Failure {
    Tls(InterceptError),
    Host(io::Error),
}

impl EventLoop {
    pub(super) fn is_intercepted(&self, flow_id: FlowId) -> bool {
        self.host_tcp
            .connections
            .get(&flow_id)
            .is_some_and(|connection| connection.intercepted.is_some())
    }

    /// Turns `flow_id`, whose held ClientHello named an allowed host (its `facts.sni`), into
    /// an intercepted flow if its port is intercepted and the name is not bypassed. The hello
    /// is still in the guest socket's buffer: the first pump feeds it in.
    pub(super) fn start_interception(&mut self, flow_id: FlowId) {
        let (Some(tls), Some(connection)) =
            (&self.tls, self.host_tcp.connections.get_mut(&flow_id))
        else {
            return;
        };
        let Some(host) = connection.facts.sni.clone() else {
            return;
        };
        let secrets = self.secrets.current();
        if !tls.intercepts(connection.facts.dst.port(), &host, &secrets) {
            return;
        }
        let destination = connection.facts.dst.ip();
        let (filter, secret_reports): (Box<dyn PlaintextFilter>, _) = if secrets.is_empty() {
            (Box::new(PassThrough), None)
        } else {
            let route = Route {
                sni_pinned: self.pins.names_for(destination).contains(&host),
                sni: host.clone(),
            };
            let reports = SecretReports::default();
            let filter = SecretsFilter::new(route, self.secrets.clone(), reports.clone());
            (Box::new(filter), Some(reports))
        };
        let interception = tls.interceptor().intercept(destination, filter);
        connection.intercepted = Some(Box::new(Intercepted {
            tls: interception,
            guest_finished: false,
            host_eof_reported: false,
            secret_reports,
            terminated: false,
        }));
        let facts = connection.facts.clone();
        let verdict = self.decide_with_named_host(&facts, &host);
        self.log_decision(Decided {
            direction: facts.direction,
            protocol: Protocol::Tcp,
            src: facts.src.to_string(),
            dst: facts.dst.to_string(),
            verdict,
            names: &[host],
            sni: facts.sni.clone(),
            reason: Some(reason::TLS_INTERCEPTED),
        });
    }

    /// Moves bytes through the interception of `flow_id` until neither side can move more.
    pub(super) fn pump_intercepted(&mut self, now: Duration, flow_id: FlowId) {
        loop {
            let moved = self
                .read_guest_into_interception(flow_id)
                .and_then(|from_guest| {
                    let from_host = self.read_host_into_interception(flow_id)?;
                    let to_host = self.write_interception_to_host(flow_id)?;
                    let to_guest = self.write_interception_to_guest(flow_id);
                    Ok(from_guest || from_host || to_host || to_guest)
                });
            match moved {
                Ok(true) => {}
                Ok(false) => break,
                Err(failure) => {
                    self.report_secrets(flow_id);
                    return self.fail_interception(now, flow_id, failure);
                }
            }
        }
        self.report_secrets(flow_id);
        self.pass_fins_on(now, flow_id);
    }

    fn read_guest_into_interception(&mut self, flow_id: FlowId) -> Result<bool, Failure> {
        let Some(intercepted) = self.intercepted_mut(flow_id) else {
            return Ok(false);
        };
        let room = OUTBOX_LIMIT.saturating_sub(intercepted.tls.for_upstream().len());
        if room == 0 {
            return Ok(false);
        }
        let Some(connection) = self.host_tcp.connections.get_mut(&flow_id) else {
            return Ok(false);
        };
        let Some(intercepted) = connection.intercepted.as_mut() else {
            return Ok(false);
        };
        let mut fed = Ok(());
        let taken = self
            .stack
            .write_guest_data(flow_id, |bytes| {
                let bytes = &bytes[..bytes.len().min(room)];
                fed = intercepted.tls.feed_guest(bytes);
                bytes.len()
            })
            .unwrap_or(0);
        fed.map_err(Failure::Tls)?;
        Ok(taken > 0)
    }

    fn read_host_into_interception(&mut self, flow_id: FlowId) -> Result<bool, Failure> {
        let Some(connection) = self.host_tcp.connections.get_mut(&flow_id) else {
            return Ok(false);
        };
        let Some(intercepted) = connection.intercepted.as_mut() else {
            return Ok(false);
        };
        if !connection.readable
            || connection.read_closed
            || intercepted.tls.for_guest().len() >= OUTBOX_LIMIT
        {
            return Ok(false);
        }
        match connection.stream.read(&mut self.scratch) {
            Ok(0) => {
                connection.read_closed = true;
                Ok(true)
            }
            Ok(count) => {
                connection.facts.bytes_received += count as u64;
                intercepted
                    .tls
                    .feed_upstream(&self.scratch[..count])
                    .map_err(Failure::Tls)?;
                Ok(true)
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                connection.readable = false;
                Ok(false)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(error) => Err(Failure::Host(error)),
        }
    }

    fn write_interception_to_host(&mut self, flow_id: FlowId) -> Result<bool, Failure> {
        let Some(connection) = self.host_tcp.connections.get_mut(&flow_id) else {
            return Ok(false);
        };
        let Some(intercepted) = connection.intercepted.as_mut() else {
            return Ok(false);
        };
        let pending = intercepted.tls.for_upstream();
        if !connection.writable || pending.is_empty() {
            return Ok(false);
        }
        match connection.stream.write(pending) {
            Ok(count) => {
                intercepted.tls.sent_to_upstream(count);
                connection.facts.bytes_sent += count as u64;
                Ok(count > 0)
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                connection.writable = false;
                Ok(false)
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(error) => Err(Failure::Host(error)),
        }
    }

    fn write_interception_to_guest(&mut self, flow_id: FlowId) -> bool {
        let Some(connection) = self.host_tcp.connections.get_mut(&flow_id) else {
            return false;
        };
        let Some(intercepted) = connection.intercepted.as_mut() else {
            return false;
        };
        let pending = intercepted.tls.for_guest();
        if pending.is_empty() {
            return false;
        }
        let sent = self.stack.send_to_guest(flow_id, pending).unwrap_or(0);
        intercepted.tls.sent_to_guest(sent);
        sent > 0
    }

    /// Passes a FIN on once the bytes before it have gone out (see the module doc).
    fn pass_fins_on(&mut self, now: Duration, flow_id: FlowId) {
        let Some(connection) = self.host_tcp.connections.get_mut(&flow_id) else {
            return;
        };
        let Some(intercepted) = connection.intercepted.as_mut() else {
            return;
        };
        if intercepted.guest_finished && intercepted.tls.for_upstream().is_empty() {
            intercepted.guest_finished = false;
            let _ = connection.stream.shutdown(Shutdown::Write);
        }
        let host_eof_due = connection.read_closed
            && !intercepted.host_eof_reported
            && intercepted.tls.for_guest().is_empty();
        if host_eof_due {
            intercepted.host_eof_reported = true;
            self.report(now, Event::HostEof { flow_id });
        }
    }

    fn fail_interception(&mut self, now: Duration, flow_id: FlowId, failure: Failure) {
        let why = match &failure {
            Failure::Tls(error) => {
                log::info!("intercepted flow {flow_id:?} reset: {error}");
                tls_reason(error)
            }
            Failure::Host(error) => {
                log::debug!("host connection of intercepted flow {flow_id:?} broke: {error}");
                reason::RESET
            }
        };
        self.abort_flow(now, flow_id, why);
    }

    /// Logs what the flow's secrets rewriter did, and tells the supervisor to stop the
    /// sandbox (once per flow) for a `block_and_terminate` secret sent where it may not go.
    fn report_secrets(&mut self, flow_id: FlowId) {
        let Some(connection) = self.host_tcp.connections.get(&flow_id) else {
            return;
        };
        let Some(intercepted) = connection.intercepted.as_deref() else {
            return;
        };
        let Some(events) = intercepted.secret_reports.as_ref().map(SecretReports::take) else {
            return;
        };
        let facts = connection.facts.clone();
        for event in events {
            let Some(reason) = self.log_secret_event(&facts, event) else {
                continue;
            };
            let Some(intercepted) = self.intercepted_mut(flow_id) else {
                continue;
            };
            if !std::mem::replace(&mut intercepted.terminated, true) {
                self.terminate(reason);
            }
        }
    }

    fn intercepted_mut(&mut self, flow_id: FlowId) -> Option<&mut Intercepted> {
        self.host_tcp
            .connections
            .get_mut(&flow_id)?
            .intercepted
            .as_deref_mut()
    }
}

/// The flow log's reason for an interception that failed.
fn tls_reason(error: &InterceptError) -> &'static str {
    match error {
        InterceptError::GuestHello(_)
        | InterceptError::GuestHelloUnreadable(_)
        | InterceptError::BadServerName(_) => reason::TLS_GUEST_HELLO,
        InterceptError::UpstreamCertificateRefused { .. } => reason::TLS_UPSTREAM_CERTIFICATE,
        InterceptError::UpstreamHandshake { .. } => reason::TLS_UPSTREAM_HANDSHAKE,
        InterceptError::Upstream { .. }
        | InterceptError::UpstreamSpokeFirst
        | InterceptError::Failed => reason::TLS_UPSTREAM,
        InterceptError::Leaf(_) => reason::TLS_LEAF,
        InterceptError::GuestHandshake { .. } => reason::TLS_GUEST_HANDSHAKE,
        InterceptError::Guest { .. } => reason::TLS_GUEST,
    }
}

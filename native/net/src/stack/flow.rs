//! What the stack asks of the event loop ([`Action`]), what the loop tells it back ([`Event`]),
//! and the errors of the per-flow calls.

use std::net::{IpAddr, SocketAddr};

use thiserror::Error;

/// One guest TCP connection, from its SYN to its last segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId(pub u64);

/// Work for the event loop, taken with [`super::Stack::next_action`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The policy allowed the guest's SYN: connect to `dst` and report with
    /// [`Event::Dialed`]; the guest's handshake waits for it.
    Dial { flow_id: FlowId, dst: SocketAddr },
    /// The guest sent FIN and the host took all its data before it: shut the host socket's
    /// write side.
    ShutdownWrite { flow_id: FlowId },
    /// The flow is over on the guest side (closed, reset or timed out): drop its host socket.
    Close { flow_id: FlowId },
}

/// Why a dial failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DialError {
    #[error("connection refused")]
    Refused,
    #[error("network or host unreachable")]
    Unreachable,
    #[error("timed out")]
    TimedOut,
}

/// What happened on the host side of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Dialed {
        flow_id: FlowId,
        result: Result<(), DialError>,
    },
    /// The host socket read EOF: the guest gets FIN once the data before it is delivered.
    HostEof { flow_id: FlowId },
    /// The host connection broke: the guest gets RST.
    HostReset { flow_id: FlowId },
}

/// A per-flow call the stack cannot honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FlowError {
    #[error("no flow {0:?}")]
    Unknown(FlowId),
    #[error("flow {0:?} is still waiting for its dial")]
    NotConnected(FlowId),
    #[error("flow {0:?} was dialed already")]
    NotDialing(FlowId),
    #[error("flow {0:?} can no longer send to the guest")]
    SendClosed(FlowId),
}

/// Why a published port's client was not connected to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum IngressError {
    #[error("the policy denies ingress from {0}")]
    Denied(IpAddr),
    #[error("the sandbox has {0} connections open, its maximum")]
    TooManyConnections(usize),
    #[error("every gateway port for connections into the guest is taken")]
    NoGatewayPort,
}

//! The guest-facing side of the user-space network: smoltcp terminates every guest TCP flow at
//! the gateway, connect-first. A guest SYN is decided by the policy before any handshake; an
//! allowed one becomes a [`Action::Dial`] and the guest's handshake completes only once the
//! host connection exists, so a refused host port is a real `ECONNREFUSED` in the guest and a
//! denied flow ends with a RST at once.
//!
//! Sans-IO: frames, host events and time come in as arguments, host work goes out as actions,
//! and data moves through bounded smoltcp socket buffers whose free space is the backpressure
//! signal both ways. The supervisor's single event loop drives it:
//! `receive_frame`/`handle` → drain `next_action` → move data → `poll` → arm `poll_delay`.
//!
//! TCP over IPv6 is terminated the same way when the link has IPv6; smoltcp answers the
//! guest's neighbour solicitations for the gateway as it answers ARP.
//!
//! UDP and fragments are not terminated here: [`Received::NotHandled`] gives their
//! classification back to the caller (DNS, the reassembler).

mod config;
mod device;
mod flow;
mod reset;
mod tcp;

pub use config::{ConfigError, Ipv6Link, NetConfig, StackOptions, IPV6_PREFIX, MAX_SLOTS};
pub use flow::{Action, DialError, Event, FlowError, FlowId, IngressError};
pub use tcp::{NoResolvedNames, Received, ResolvedNames, Stack, SynDecision, SynOutcome};

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod guest;
#[cfg(test)]
mod tests;

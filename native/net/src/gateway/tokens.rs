//! The mio tokens of the loop's sockets and what each one belongs to.

use std::collections::HashMap;

use mio::Token;

use crate::stack::FlowId;

/// QEMU's socket.
pub const QEMU: Token = Token(0);
/// [`super::Gateway::stop`].
pub const WAKER: Token = Token(1);
/// The DNS forwarder's IPv4 and IPv6 UDP sockets.
pub const DNS_UDP_V4: Token = Token(2);
pub const DNS_UDP_V6: Token = Token(3);
const FIRST_DYNAMIC: usize = 16;

/// What a dynamic token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The host connection of a guest TCP flow (either direction).
    Tcp(FlowId),
    /// A TCP connection to a nameserver.
    DnsTcp(u64),
    /// The host socket of a relayed UDP flow.
    Udp(u64),
    /// A ping socket.
    Ping(u64),
    /// A published port's socket, by its index in the spec.
    Published(usize),
}

#[derive(Debug, Default)]
pub struct Tokens {
    next: usize,
    owners: HashMap<Token, Owner>,
}

impl Tokens {
    pub fn allocate(&mut self, owner: Owner) -> Token {
        // 2^64 tokens never run out; a freed token is never reused, so a late event for a
        // closed socket cannot reach a new one.
        let token = Token(FIRST_DYNAMIC + self.next);
        self.next += 1;
        self.owners.insert(token, owner);
        token
    }

    pub fn owner(&self, token: Token) -> Option<Owner> {
        self.owners.get(&token).copied()
    }

    pub fn release(&mut self, token: Token) {
        self.owners.remove(&token);
    }
}

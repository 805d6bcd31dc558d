//! The user-space network of a sandbox, linked by its supervisor: Ethernet frames from QEMU's
//! `-netdev stream` socket, the egress policy every flow is decided by, and DNS at the gateway.

pub mod dns;
pub mod gateway;
pub mod policy;
pub mod secrets;
pub mod stack;
pub mod tls;
pub mod utc;
pub mod wire;

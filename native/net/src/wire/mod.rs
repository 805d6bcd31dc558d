//! Ethernet frames between QEMU's `-netdev stream` socket and the stack, the pure part: the
//! length-prefixed framing in both directions, the bounded queue to QEMU, the classification of
//! every frame from the (hostile) guest, IPv4 fragment reassembly and the boundary's counters.
//!
//! Nothing here does I/O or reads a clock: bytes and `Instant`s come in as arguments, so the
//! supervisor's single event loop drives it and the tests run on any host.

pub mod classified;
pub mod classify;
pub mod counters;
pub mod emit;
pub mod framing;
pub mod outbound;
pub mod reassembly;
mod transport;

#[cfg(test)]
pub(crate) mod fuzz;
#[cfg(test)]
pub(crate) mod test_frames;

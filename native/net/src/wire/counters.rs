//! Counters at the boundary between QEMU and the stack.
//!
//! The bytes counted are Ethernet frame bytes (header and payload, as the guest's `eth0` counts
//! them), never the stream's 4-byte length prefixes. The metrics report them from the guest's
//! side: `net_tx_bytes` is what the guest sent (the decoder's count), `net_rx_bytes` what it was
//! given (the outbound queue's count).

/// Frames and bytes in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionCounters {
    pub frames: u64,
    pub bytes: u64,
}

impl DirectionCounters {
    /// Counts one frame of `frame_len` Ethernet bytes.
    pub fn record(&mut self, frame_len: usize) {
        self.frames += 1;
        self.bytes += frame_len as u64;
    }
}

/// Frames from the guest that were dropped because a checksum did not verify.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksumFailures {
    pub ipv4_header: u64,
    pub tcp: u64,
    pub udp: u64,
    pub icmp: u64,
}

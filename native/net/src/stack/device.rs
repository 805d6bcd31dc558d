//! The smoltcp `Device` between the stack and the guest link: frames from the guest are handed
//! in one at a time, frames for the guest go straight into the bounded [`OutboundQueue`].
//!
//! `transmit` offers a token only while the queue has room for a frame of the link's MTU, so
//! smoltcp keeps unsent segments in its socket buffers (and retries on the next poll) instead
//! of the stack dropping them: a slow QEMU reader slows the flows, it never loses data. A
//! reply to a guest frame that finds the queue full is dropped and counted; TCP resends it.

use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::time::Instant;

use crate::wire::outbound::OutboundQueue;

pub struct FrameDevice {
    /// The one guest frame smoltcp is to process next.
    incoming: Option<Vec<u8>>,
    outbound: OutboundQueue,
    frame_mtu: usize,
    /// Frames smoltcp built that the full queue refused (replies to guest frames).
    refused_frames: u64,
}

impl FrameDevice {
    pub fn new(frame_mtu: usize, outbound_queue_len: usize) -> Self {
        Self {
            incoming: None,
            outbound: OutboundQueue::with_capacity(outbound_queue_len),
            frame_mtu,
            refused_frames: 0,
        }
    }

    /// Sets the frame smoltcp receives on its next poll (replacing one it did not take).
    pub fn deliver(&mut self, frame: &[u8]) {
        self.incoming = Some(frame.to_vec());
    }

    /// Forgets a frame smoltcp did not take, so no frame is processed twice.
    pub fn clear_incoming(&mut self) {
        self.incoming = None;
    }

    pub fn outbound(&mut self) -> &mut OutboundQueue {
        &mut self.outbound
    }

    pub fn refused_frames(&self) -> u64 {
        self.refused_frames
    }

    fn has_room(&self) -> bool {
        self.outbound.has_room_for(self.frame_mtu)
    }
}

pub struct IncomingToken(Vec<u8>);

impl RxToken for IncomingToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

pub struct OutgoingToken<'d> {
    outbound: &'d mut OutboundQueue,
    refused_frames: &'d mut u64,
}

impl TxToken for OutgoingToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // Built in a scratch buffer, then queued: `push_with` would let smoltcp write in
        // place, but a refused push would drop `f` unrun and smoltcp needs its result. One
        // memcpy of at most one frame.
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        if self.outbound.push(&frame).is_err() {
            *self.refused_frames += 1;
        }
        result
    }
}

impl Device for FrameDevice {
    type RxToken<'a> = IncomingToken;
    type TxToken<'a> = OutgoingToken<'a>;

    /// Offered even when the queue is full: the guest's ACKs must still free send buffers;
    /// only a reply built for the frame may be refused (and counted).
    fn receive(&mut self, _now: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.incoming.take()?;
        Some((
            IncomingToken(frame),
            OutgoingToken {
                outbound: &mut self.outbound,
                refused_frames: &mut self.refused_frames,
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Self::TxToken<'_>> {
        if !self.has_room() {
            return None;
        }
        Some(OutgoingToken {
            outbound: &mut self.outbound,
            refused_frames: &mut self.refused_frames,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = self.frame_mtu;
        capabilities
    }
}

//! The bounded queue of encoded frames waiting for the QEMU socket to accept them.
//!
//! The stack writes each frame to the guest straight into the queue ([`OutboundQueue::push_with`],
//! which suits smoltcp's `TxToken::consume`), and the event loop writes the queue's front to the
//! socket when it is writable. `queued_len` is the backpressure signal: when the queue to QEMU
//! is full, the event loop stops reading host sockets, so a slow guest never makes the
//! supervisor buffer without bound and nothing already accepted is dropped.

use thiserror::Error;

use super::counters::DirectionCounters;
use super::framing::{check_frame_len, EncodeError, LENGTH_PREFIX_LEN, MAX_ENCODED_FRAME_LEN};

/// A frame the queue refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum QueueError {
    #[error(transparent)]
    Frame(#[from] EncodeError),
    #[error("outbound queue full: {needed} bytes needed, {free} free")]
    Full { needed: usize, free: usize },
}

/// Encoded frames (length prefix + frame) in order, within a fixed byte capacity.
#[derive(Debug)]
pub struct OutboundQueue {
    buffer: Box<[u8]>,
    /// Start of the bytes not yet written to the socket.
    start: usize,
    /// End of the queued bytes.
    end: usize,
    counters: DirectionCounters,
}

impl OutboundQueue {
    /// A queue of `capacity` bytes, raised to one largest encoded frame so that any valid frame
    /// fits into an empty queue.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.max(MAX_ENCODED_FRAME_LEN);
        Self {
            buffer: vec![0; capacity].into_boxed_slice(),
            start: 0,
            end: 0,
            counters: DirectionCounters::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.buffer.len()
    }

    /// Bytes queued (length prefixes included), for backpressure.
    pub fn queued_len(&self) -> usize {
        self.end - self.start
    }

    pub fn free_len(&self) -> usize {
        self.capacity() - self.queued_len()
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether a frame of `frame_len` bytes would be accepted now.
    pub fn has_room_for(&self, frame_len: usize) -> bool {
        LENGTH_PREFIX_LEN + frame_len <= self.free_len()
    }

    /// Frames and Ethernet bytes accepted for the guest (what the guest receives).
    pub fn counters(&self) -> DirectionCounters {
        self.counters
    }

    /// Queues a copy of `frame`.
    pub fn push(&mut self, frame: &[u8]) -> Result<(), QueueError> {
        self.push_with(frame.len(), |slot| slot.copy_from_slice(frame))
    }

    /// Reserves room for a frame of `frame_len` bytes, writes its prefix and lets `emit` write the
    /// frame in place (the slot holds stale bytes: `emit` must write all of it).
    pub fn push_with<R>(
        &mut self,
        frame_len: usize,
        emit: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, QueueError> {
        check_frame_len(frame_len)?;
        let needed = LENGTH_PREFIX_LEN + frame_len;
        if needed > self.free_len() {
            return Err(QueueError::Full {
                needed,
                free: self.free_len(),
            });
        }
        self.make_contiguous_room(needed);
        let record = &mut self.buffer[self.end..self.end + needed];
        let (prefix, slot) = record.split_at_mut(LENGTH_PREFIX_LEN);
        // check_frame_len bounds frame_len far below u32::MAX.
        prefix.copy_from_slice(&(frame_len as u32).to_be_bytes());
        let result = emit(slot);
        self.end += needed;
        self.counters.record(frame_len);
        Ok(result)
    }

    /// Hands the queued bytes to `write` (e.g. `|bytes| socket.write(bytes)`) and drops what it
    /// reports written; a count beyond what it was given is clamped to it.
    pub fn flush_with<E>(
        &mut self,
        write: impl FnOnce(&[u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let pending = &self.buffer[self.start..self.end];
        let written = write(pending)?.min(pending.len());
        self.start += written;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(written)
    }

    /// Moves the queued bytes to the front when the tail cannot hold `needed` more; the caller
    /// has checked that the free space as a whole can.
    fn make_contiguous_room(&mut self, needed: usize) {
        if self.buffer.len() - self.end < needed {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

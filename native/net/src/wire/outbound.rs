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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::framing::{FrameDecoder, MAX_FRAME_LEN, MIN_FRAME_LEN};

    fn frame_of(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|index| seed.wrapping_add(index as u8))
            .collect()
    }

    /// Writes the whole queue out, at most `chunk` bytes per write.
    fn flush_all(queue: &mut OutboundQueue, chunk: usize) -> Vec<u8> {
        let mut written = Vec::new();
        while !queue.is_empty() {
            let count = queue.flush_with(|bytes| {
                let count = bytes.len().min(chunk);
                written.extend_from_slice(&bytes[..count]);
                Ok::<usize, ()>(count)
            });
            assert!(count.is_ok_and(|count| count > 0));
        }
        written
    }

    #[test]
    fn queued_frames_reach_the_decoder_intact_and_in_order() {
        let frames = [
            frame_of(60, 1),
            frame_of(1514, 2),
            frame_of(MAX_FRAME_LEN, 3),
        ];
        let mut queue = OutboundQueue::with_capacity(1 << 20);
        for frame in &frames {
            queue.push(frame).expect("room");
        }
        let mut decoder = FrameDecoder::new();
        decoder.push(&flush_all(&mut queue, 777));
        for frame in &frames {
            assert_eq!(decoder.next_frame(), Ok(Some(&frame[..])));
        }
        assert_eq!(decoder.next_frame(), Ok(None));
    }

    #[test]
    fn a_full_queue_refuses_a_frame_and_reports_its_bytes() {
        let mut queue = OutboundQueue::with_capacity(0);
        assert_eq!(queue.capacity(), MAX_ENCODED_FRAME_LEN);
        queue.push(&frame_of(1000, 0)).expect("room");
        assert_eq!(queue.queued_len(), 1004);
        assert!(!queue.has_room_for(MAX_FRAME_LEN));
        assert_eq!(
            queue.push(&frame_of(MAX_FRAME_LEN, 0)),
            Err(QueueError::Full {
                needed: MAX_ENCODED_FRAME_LEN,
                free: MAX_ENCODED_FRAME_LEN - 1004
            })
        );
        assert_eq!(
            queue.queued_len(),
            1004,
            "a refused frame leaves the queue as it was"
        );
    }

    #[test]
    fn room_freed_by_partial_writes_is_reused() {
        let mut queue = OutboundQueue::with_capacity(0);
        let mut decoder = FrameDecoder::new();
        // Each round leaves part of a frame queued, so records wrap past the buffer's end.
        for round in 0..50u8 {
            let frame = frame_of(20_000 + usize::from(round) * 13, round);
            queue.push(&frame).expect("room after flushing");
            let mut out = Vec::new();
            queue
                .flush_with(|bytes| {
                    out.extend_from_slice(&bytes[..bytes.len() / 2]);
                    Ok::<usize, ()>(bytes.len() / 2)
                })
                .expect("writes");
            out.extend(flush_all(&mut queue, usize::MAX));
            decoder.push(&out);
            assert_eq!(decoder.next_frame(), Ok(Some(&frame[..])));
        }
    }

    #[test]
    fn push_with_lets_the_caller_emit_in_place() {
        let mut queue = OutboundQueue::with_capacity(0);
        let emitted = queue.push_with(64, |slot| {
            slot.fill(0xab);
            slot.len()
        });
        assert_eq!(emitted, Ok(64));
        let bytes = flush_all(&mut queue, usize::MAX);
        assert_eq!(&bytes[..4], &64u32.to_be_bytes());
        assert!(bytes[4..].iter().all(|byte| *byte == 0xab));
    }

    #[test]
    fn bad_lengths_are_refused_before_anything_is_queued() {
        let mut queue = OutboundQueue::with_capacity(0);
        for len in [0, MIN_FRAME_LEN - 1, MAX_FRAME_LEN + 1] {
            assert_eq!(
                queue.push_with(len, |_| ()),
                Err(QueueError::Frame(EncodeError::FrameLength { len }))
            );
        }
        assert!(queue.is_empty());
        assert_eq!(queue.counters(), DirectionCounters::default());
    }

    #[test]
    fn the_queue_counts_accepted_frame_bytes_without_prefixes() {
        let mut queue = OutboundQueue::with_capacity(0);
        queue.push(&frame_of(100, 0)).expect("room");
        queue.push(&frame_of(60, 0)).expect("room");
        let _ = queue.push(&frame_of(MAX_FRAME_LEN, 0));
        assert_eq!(
            queue.counters(),
            DirectionCounters {
                frames: 2,
                bytes: 160
            }
        );
    }

    #[test]
    fn a_write_claiming_more_than_it_was_given_is_clamped() {
        let mut queue = OutboundQueue::with_capacity(0);
        queue.push(&frame_of(60, 0)).expect("room");
        assert_eq!(
            queue.flush_with(|bytes| Ok::<usize, ()>(bytes.len() + 100)),
            Ok(64)
        );
        assert!(queue.is_empty());
    }
}

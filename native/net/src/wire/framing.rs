//! QEMU's `-netdev stream` framing: every Ethernet frame travels prefixed by its length as a
//! 4-byte big-endian integer, in both directions.
//!
//! [`FrameDecoder`] turns the byte stream a non-blocking read returns, in chunks of any size,
//! into whole frames borrowed from its own buffer (the socket is read straight into that buffer,
//! so a frame is never copied between the read and the stack). [`encode_frame`] writes one frame
//! with its prefix into a caller's buffer.
//!
//! A length outside `MIN_FRAME_LEN..=MAX_FRAME_LEN` is fatal for the stream: QEMU writes the
//! prefixes itself (the guest only chooses the bytes inside a frame), so a bad prefix means the
//! stream is corrupt or out of step, and there is no way to find the next frame boundary again.
//! The decoder then stays failed and the supervisor must log it and stop using the stream.

use thiserror::Error;

use super::counters::DirectionCounters;

/// The size of the big-endian length that precedes each frame.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// An Ethernet header: destination and source MAC, EtherType (no FCS crosses the stream).
pub const ETHERNET_HEADER_LEN: usize = 14;

/// The largest MTU a guest gets (`virtio-net-device,host_mtu=65520`): the IPv4 limit of 65535
/// bytes rounded down to a multiple of 16.
pub const MAX_GUEST_MTU: usize = 65520;

/// One 802.1Q tag: a guest may stack a VLAN interface on `eth0` and send MTU-sized packets
/// through it, which makes its frames 4 bytes longer than the MTU plus the header.
pub const VLAN_TAG_LEN: usize = 4;

/// The longest frame a virtio-net guest with [`MAX_GUEST_MTU`] can send: a full MTU packet, the
/// Ethernet header and one VLAN tag. QEMU's own receive buffer (69,632 bytes) holds it, so every
/// frame we send is also one QEMU accepts.
pub const MAX_FRAME_LEN: usize = MAX_GUEST_MTU + ETHERNET_HEADER_LEN + VLAN_TAG_LEN;

/// The shortest frame: a bare Ethernet header. Anything shorter cannot even be classified.
pub const MIN_FRAME_LEN: usize = ETHERNET_HEADER_LEN;

/// The longest frame with its length prefix.
pub const MAX_ENCODED_FRAME_LEN: usize = LENGTH_PREFIX_LEN + MAX_FRAME_LEN;

/// How much the decoder buffers: four largest frames, so one read can bring in many small frames
/// at once while a partial frame waits at the front (a read needs at most one memmove of that
/// partial frame to find room).
pub const DECODER_BUFFER_LEN: usize = 4 * MAX_ENCODED_FRAME_LEN;

/// A corrupt stream from QEMU. Fatal: the decoder yields nothing after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FramingError {
    #[error("frame length {len} exceeds the maximum of {MAX_FRAME_LEN} bytes: the stream from QEMU is corrupt")]
    FrameTooLong { len: u32 },
    #[error("frame length {len} is below the Ethernet header's {MIN_FRAME_LEN} bytes: the stream from QEMU is corrupt")]
    FrameTooShort { len: u32 },
}

/// A frame that cannot be encoded for QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("frame of {len} bytes is outside {MIN_FRAME_LEN}..={MAX_FRAME_LEN}")]
    FrameLength { len: usize },
    #[error("buffer of {available} bytes cannot hold an encoded frame of {needed} bytes")]
    BufferTooSmall { needed: usize, available: usize },
}

/// Checks a frame length against the limits both directions share.
pub fn check_frame_len(len: usize) -> Result<(), EncodeError> {
    if (MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&len) {
        Ok(())
    } else {
        Err(EncodeError::FrameLength { len })
    }
}

/// Writes `frame` with its length prefix at the start of `out`; returns the bytes written.
pub fn encode_frame(frame: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
    check_frame_len(frame.len())?;
    let needed = LENGTH_PREFIX_LEN + frame.len();
    let Some(target) = out.get_mut(..needed) else {
        return Err(EncodeError::BufferTooSmall {
            needed,
            available: out.len(),
        });
    };
    let (prefix, body) = target.split_at_mut(LENGTH_PREFIX_LEN);
    // The length fits in u32: check_frame_len bounds it by MAX_FRAME_LEN.
    prefix.copy_from_slice(&(frame.len() as u32).to_be_bytes());
    body.copy_from_slice(frame);
    Ok(needed)
}

/// Reads the length prefix at the front of `bytes`, if all four bytes are there.
fn read_length_prefix(bytes: &[u8]) -> Option<u32> {
    let prefix: [u8; LENGTH_PREFIX_LEN] = bytes.get(..LENGTH_PREFIX_LEN)?.try_into().ok()?;
    Some(u32::from_be_bytes(prefix))
}

/// Validates a length prefix read from the stream.
fn validate_prefix(len: u32) -> Result<usize, FramingError> {
    let len_usize = len as usize;
    if len_usize > MAX_FRAME_LEN {
        Err(FramingError::FrameTooLong { len })
    } else if len_usize < MIN_FRAME_LEN {
        Err(FramingError::FrameTooShort { len })
    } else {
        Ok(len_usize)
    }
}

/// The incremental decoder of the stream from QEMU, with a fixed buffer of
/// [`DECODER_BUFFER_LEN`] bytes.
///
/// Use: `fill_with` reads into the free space, then `next_frame` until it returns `Ok(None)`,
/// then read again. Memory never grows: a complete frame is at most [`MAX_ENCODED_FRAME_LEN`]
/// bytes and the buffer always has room for one once the complete frames are drained.
#[derive(Debug)]
pub struct FrameDecoder {
    buffer: Box<[u8]>,
    /// Start of the bytes not yet yielded.
    start: usize,
    /// End of the bytes received.
    end: usize,
    failure: Option<FramingError>,
    counters: DirectionCounters,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self {
            buffer: vec![0; DECODER_BUFFER_LEN].into_boxed_slice(),
            start: 0,
            end: 0,
            failure: None,
            counters: DirectionCounters::default(),
        }
    }

    /// Lets `read` fill the free part of the buffer (e.g. `|spare| socket.read(spare)`) and
    /// keeps what it reports reading; a count beyond the slice it was given is clamped to it.
    /// The slice is empty only while complete frames wait to be drained, or after a failure.
    pub fn fill_with<E>(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<usize, E> {
        let spare = self.spare_mut();
        let capacity = spare.len();
        let count = read(spare)?.min(capacity);
        self.end += count;
        Ok(count)
    }

    /// Copies as much of `chunk` as fits into the buffer; returns how many bytes it took.
    pub fn push(&mut self, chunk: &[u8]) -> usize {
        let taken = self.fill_with(|spare| {
            let count = spare.len().min(chunk.len());
            spare[..count].copy_from_slice(&chunk[..count]);
            Ok::<usize, std::convert::Infallible>(count)
        });
        match taken {
            Ok(count) => count,
            Err(never) => match never {},
        }
    }

    /// The next complete frame (without its prefix), `Ok(None)` when more bytes are needed, or
    /// the stream's fatal error (again on every later call).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FramingError> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        let pending = &self.buffer[self.start..self.end];
        let Some(prefix) = read_length_prefix(pending) else {
            return Ok(None);
        };
        let frame_len =
            validate_prefix(prefix).inspect_err(|failure| self.failure = Some(*failure))?;
        let record_len = LENGTH_PREFIX_LEN + frame_len;
        if pending.len() < record_len {
            return Ok(None);
        }
        let frame_start = self.start + LENGTH_PREFIX_LEN;
        self.start += record_len;
        self.counters.record(frame_len);
        Ok(Some(&self.buffer[frame_start..frame_start + frame_len]))
    }

    /// Frames and Ethernet bytes yielded from the guest (what the guest sent).
    pub fn counters(&self) -> DirectionCounters {
        self.counters
    }

    /// Bytes received but not yet yielded as frames.
    pub fn buffered_len(&self) -> usize {
        self.end - self.start
    }

    /// The free tail of the buffer, after moving a leftover partial frame to the front when the
    /// tail could not hold a largest frame (so the memmove happens at most once per
    /// `DECODER_BUFFER_LEN - MAX_ENCODED_FRAME_LEN` bytes read).
    fn spare_mut(&mut self) -> &mut [u8] {
        if self.failure.is_some() {
            return &mut [];
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buffer.len() - self.end < MAX_ENCODED_FRAME_LEN {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buffer[self.end..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|index| seed.wrapping_add(index as u8))
            .collect()
    }

    fn encoded(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut stream = Vec::new();
        for frame in frames {
            let mut out = vec![0; LENGTH_PREFIX_LEN + frame.len()];
            assert_eq!(encode_frame(frame, &mut out), Ok(out.len()));
            stream.extend_from_slice(&out);
        }
        stream
    }

    fn drain(decoder: &mut FrameDecoder, into: &mut Vec<Vec<u8>>) {
        while let Some(frame) = decoder.next_frame().expect("valid stream") {
            into.push(frame.to_vec());
        }
    }

    fn sample_frames() -> Vec<Vec<u8>> {
        vec![
            frame_of(MIN_FRAME_LEN, 1),
            frame_of(60, 2),
            frame_of(1514, 3),
            frame_of(MIN_FRAME_LEN + 1, 4),
        ]
    }

    #[test]
    fn a_stream_split_at_every_point_yields_the_same_frames() {
        let frames = sample_frames();
        let stream = encoded(&frames);
        for split in 0..=stream.len() {
            let mut decoder = FrameDecoder::new();
            let mut decoded = Vec::new();
            for chunk in [&stream[..split], &stream[split..]] {
                assert_eq!(decoder.push(chunk), chunk.len());
                drain(&mut decoder, &mut decoded);
            }
            assert_eq!(decoded, frames, "split at {split}");
            assert_eq!(decoder.buffered_len(), 0);
        }
    }

    #[test]
    fn a_stream_fed_byte_by_byte_yields_the_same_frames() {
        let frames = sample_frames();
        let mut decoder = FrameDecoder::new();
        let mut decoded = Vec::new();
        for byte in encoded(&frames) {
            assert_eq!(decoder.push(&[byte]), 1);
            drain(&mut decoder, &mut decoded);
        }
        assert_eq!(decoded, frames);
    }

    #[test]
    fn largest_frames_stream_through_without_growing_the_buffer() {
        let frames: Vec<Vec<u8>> = (0..9).map(|seed| frame_of(MAX_FRAME_LEN, seed)).collect();
        let mut stream = encoded(&frames).into_iter();
        let mut decoder = FrameDecoder::new();
        let mut decoded = Vec::new();
        loop {
            let read = decoder.fill_with(|spare| {
                let mut count = 0;
                for (slot, byte) in spare.iter_mut().take(50_000).zip(&mut stream) {
                    *slot = byte;
                    count += 1;
                }
                Ok::<usize, ()>(count)
            });
            drain(&mut decoder, &mut decoded);
            if read == Ok(0) {
                break;
            }
        }
        assert_eq!(decoded, frames);
    }

    #[test]
    fn the_decoder_counts_frame_bytes_without_prefixes() {
        let frames = sample_frames();
        let mut decoder = FrameDecoder::new();
        decoder.push(&encoded(&frames));
        drain(&mut decoder, &mut Vec::new());
        let total: usize = frames.iter().map(Vec::len).sum();
        assert_eq!(
            decoder.counters(),
            DirectionCounters {
                frames: 4,
                bytes: total as u64
            }
        );
    }

    #[test]
    fn bad_lengths_are_fatal_for_the_stream() {
        let cases = [
            (
                MAX_FRAME_LEN as u32 + 1,
                FramingError::FrameTooLong {
                    len: MAX_FRAME_LEN as u32 + 1,
                },
            ),
            (u32::MAX, FramingError::FrameTooLong { len: u32::MAX }),
            (
                MIN_FRAME_LEN as u32 - 1,
                FramingError::FrameTooShort {
                    len: MIN_FRAME_LEN as u32 - 1,
                },
            ),
            (0, FramingError::FrameTooShort { len: 0 }),
        ];
        for (len, expected) in cases {
            let mut decoder = FrameDecoder::new();
            decoder.push(&len.to_be_bytes());
            assert_eq!(decoder.next_frame(), Err(expected), "length {len}");
            // Sticky: no later bytes can bring the stream back.
            assert_eq!(decoder.push(&encoded(&sample_frames())), 0);
            assert_eq!(decoder.next_frame(), Err(expected));
        }
    }

    #[test]
    fn a_bad_length_after_good_frames_yields_those_frames_first() {
        let mut stream = encoded(&sample_frames());
        stream.extend_from_slice(&(MAX_FRAME_LEN as u32 + 1).to_be_bytes());
        let mut decoder = FrameDecoder::new();
        decoder.push(&stream);
        for _ in 0..sample_frames().len() {
            assert!(matches!(decoder.next_frame(), Ok(Some(_))));
        }
        assert!(matches!(
            decoder.next_frame(),
            Err(FramingError::FrameTooLong { .. })
        ));
    }

    #[test]
    fn extreme_lengths_are_accepted() {
        for len in [MIN_FRAME_LEN, MAX_FRAME_LEN] {
            let mut decoder = FrameDecoder::new();
            decoder.push(&encoded(&[frame_of(len, 9)]));
            assert_eq!(
                decoder.next_frame().map(|frame| frame.map(<[u8]>::len)),
                Ok(Some(len))
            );
        }
    }

    #[test]
    fn a_read_claiming_more_than_its_buffer_is_clamped() {
        let mut decoder = FrameDecoder::new();
        assert_eq!(
            decoder.fill_with(|spare| Ok::<usize, ()>(spare.len() + 10)),
            Ok(DECODER_BUFFER_LEN)
        );
        assert_eq!(decoder.buffered_len(), DECODER_BUFFER_LEN);
    }

    #[test]
    fn read_errors_pass_through_untouched() {
        let mut decoder = FrameDecoder::new();
        assert_eq!(
            decoder.fill_with(|_| Err::<usize, &str>("would block")),
            Err("would block")
        );
        assert_eq!(decoder.buffered_len(), 0);
    }

    #[test]
    fn the_encoder_refuses_bad_lengths_and_short_buffers() {
        let mut out = vec![0; MAX_ENCODED_FRAME_LEN + 10];
        assert_eq!(
            encode_frame(&frame_of(MIN_FRAME_LEN - 1, 0), &mut out),
            Err(EncodeError::FrameLength {
                len: MIN_FRAME_LEN - 1
            })
        );
        assert_eq!(
            encode_frame(&frame_of(MAX_FRAME_LEN + 1, 0), &mut out),
            Err(EncodeError::FrameLength {
                len: MAX_FRAME_LEN + 1
            })
        );
        assert_eq!(
            encode_frame(&frame_of(60, 0), &mut out[..63]),
            Err(EncodeError::BufferTooSmall {
                needed: 64,
                available: 63
            })
        );
    }

    #[test]
    fn an_encoded_frame_decodes_to_itself() {
        let frame = frame_of(1514, 5);
        let mut out = vec![0; 2000];
        let written = encode_frame(&frame, &mut out).expect("encodes");
        assert_eq!(&out[..4], &1514u32.to_be_bytes());
        let mut decoder = FrameDecoder::new();
        decoder.push(&out[..written]);
        assert_eq!(decoder.next_frame(), Ok(Some(&frame[..])));
    }
}

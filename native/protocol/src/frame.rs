//! Frame encoding and an incremental, allocation-bounded decoder.

use serde::{de::DeserializeOwned, Serialize};
use std::io::{self, Read, Write};

/// Hard upper bound of `len` in a frame header. Anything larger is a protocol violation.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Largest data chunk (stdout, stdin, file bytes) put into one frame, leaving headroom for
/// the envelope inside [`MAX_FRAME_LEN`].
pub const MAX_PAYLOAD_CHUNK: usize = 256 * 1024;

/// The frame is the last one for its request id.
pub const FLAG_END: u8 = 0b0000_0001;

/// Between a client and a supervisor: the body is a [`crate::control`] message for the
/// supervisor itself. Without it the body is a guest message the supervisor relays verbatim.
pub const FLAG_CONTROL: u8 = 0b0000_0010;

const HEADER_LEN: usize = 4;
const ENVELOPE_LEN: usize = 5; // id + flags

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    TooLarge(usize),
    #[error("frame of {0} bytes is too short to hold an id and flags")]
    TooShort(usize),
    #[error("malformed message body: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("cannot encode message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("i/o error on the channel: {0}")]
    Io(#[from] io::Error),
    #[error("peer closed the channel")]
    Closed,
}

/// One decoded frame. The body stays encoded until [`Frame::decode`] is called, so a relay
/// can forward frames without understanding them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub id: u32,
    pub flags: u8,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn new<T: Serialize>(id: u32, flags: u8, message: &T) -> Result<Self, FrameError> {
        let body = rmp_serde::to_vec_named(message)?;
        if body.len() + ENVELOPE_LEN > MAX_FRAME_LEN {
            return Err(FrameError::TooLarge(body.len() + ENVELOPE_LEN));
        }
        Ok(Self { id, flags, body })
    }

    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, FrameError> {
        Ok(rmp_serde::from_slice(&self.body)?)
    }

    pub fn is_end(&self) -> bool {
        self.flags & FLAG_END != 0
    }

    /// The frame's bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let len = (self.body.len() + ENVELOPE_LEN) as u32;
        let mut out = Vec::with_capacity(HEADER_LEN + len as usize);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.id.to_be_bytes());
        out.push(self.flags);
        out.extend_from_slice(&self.body);
        out
    }

    /// Writes the frame with a single `write_all`, so frames written under a lock by several
    /// threads never interleave.
    pub fn write_to<W: Write>(&self, writer: &mut W) -> Result<(), FrameError> {
        writer.write_all(&self.to_bytes())?;
        Ok(())
    }

    /// Reads exactly one frame (blocking). Returns [`FrameError::Closed`] on a clean EOF at a
    /// frame boundary.
    pub fn read_from<R: Read>(reader: &mut R) -> Result<Self, FrameError> {
        let mut header = [0u8; HEADER_LEN];
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
            Err(e) => return Err(e.into()),
        }
        let len = check_len(u32::from_be_bytes(header) as usize)?;
        let mut rest = vec![0u8; len];
        reader.read_exact(&mut rest)?;
        Ok(split_envelope(rest))
    }
}

fn check_len(len: usize) -> Result<usize, FrameError> {
    if len > MAX_FRAME_LEN {
        Err(FrameError::TooLarge(len))
    } else if len < ENVELOPE_LEN {
        Err(FrameError::TooShort(len))
    } else {
        Ok(len)
    }
}

fn split_envelope(mut rest: Vec<u8>) -> Frame {
    let id = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    let flags = rest[4];
    rest.drain(..ENVELOPE_LEN);
    Frame {
        id,
        flags,
        body: rest,
    }
}

/// Incremental decoder for non-blocking readers: push bytes as they arrive, pop whole
/// frames. Its buffer never grows past one maximal frame plus one read.
#[derive(Default)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// Returns the next complete frame, `Ok(None)` when more bytes are needed, or an error
    /// when the stream is corrupt (the caller must then drop the connection).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buffer.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([
            self.buffer[0],
            self.buffer[1],
            self.buffer[2],
            self.buffer[3],
        ]);
        let len = check_len(len as usize)?;
        if self.buffer.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let rest = self.buffer[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.buffer.drain(..HEADER_LEN + len);
        Ok(Some(split_envelope(rest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_bytes() {
        let frame = Frame::new(7, FLAG_END, &"hello").unwrap();
        let bytes = frame.to_bytes();
        let back = Frame::read_from(&mut &bytes[..]).unwrap();
        assert_eq!(back, frame);
        assert_eq!(back.decode::<String>().unwrap(), "hello");
        assert!(back.is_end());
    }

    #[test]
    fn decoder_handles_split_and_batched_input() {
        let a = Frame::new(1, 0, &1u32).unwrap().to_bytes();
        let b = Frame::new(2, FLAG_END, &2u32).unwrap().to_bytes();
        let all: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        let mut decoder = FrameDecoder::new();
        for byte in &all {
            decoder.push(std::slice::from_ref(byte));
        }
        assert_eq!(decoder.next_frame().unwrap().unwrap().id, 1);
        assert_eq!(decoder.next_frame().unwrap().unwrap().id, 2);
        assert!(decoder.next_frame().unwrap().is_none());
    }

    #[test]
    fn oversized_length_is_rejected_before_allocation() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&u32::MAX.to_be_bytes());
        assert!(matches!(decoder.next_frame(), Err(FrameError::TooLarge(_))));
        let bytes = (u32::MAX).to_be_bytes();
        assert!(matches!(
            Frame::read_from(&mut &bytes[..]),
            Err(FrameError::TooLarge(_))
        ));
    }

    #[test]
    fn short_length_is_rejected() {
        let mut decoder = FrameDecoder::new();
        decoder.push(&2u32.to_be_bytes());
        decoder.push(&[0, 0]);
        assert!(matches!(decoder.next_frame(), Err(FrameError::TooShort(2))));
    }

    #[test]
    fn clean_eof_is_closed() {
        assert!(matches!(
            Frame::read_from(&mut &[][..]),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix of a pseudo-random stream must decode to
        // frames or a typed error, never a panic.
        let mut state = 0x2545_f491_u32;
        let bytes: Vec<u8> = (0..64 * 1024)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 7) as u8 // small values make plausible lengths likely
            })
            .collect();
        let mut decoder = FrameDecoder::new();
        for chunk in bytes.chunks(97) {
            decoder.push(chunk);
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => {
                        let _ = frame.decode::<crate::guest::AgentMessage>();
                    }
                    Ok(None) => break,
                    Err(_) => {
                        decoder = FrameDecoder::new();
                        break;
                    }
                }
            }
        }
    }
}

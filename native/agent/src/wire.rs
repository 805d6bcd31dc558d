//! Output frames built in place. Command output is the bulk of the agent's traffic, so its
//! frames are encoded around the data instead of through serde: the process's output is read
//! straight into the frame buffer after a fixed-size prefix, and written to the port from
//! there, with no copy in between. The bytes are exactly a [`msb_protocol::Frame`] holding
//! `AgentMessage::Stdout { data }` or `AgentMessage::Stderr { data }` (tests decode them
//! with the protocol crate to prove it).

use msb_protocol::MAX_PAYLOAD_CHUNK;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The serde tag of the message variant; both are six bytes, so the prefix has one size.
    fn tag(self) -> &'static [u8; 6] {
        match self {
            Stream::Stdout => b"stdout",
            Stream::Stderr => b"stderr",
        }
    }
}

/// len (4) + id (4) + flags (1) + MessagePack map header (1) + "type" (5) + tag (7) +
/// "data" (5) + bin32 header (5).
const PREFIX_LEN: usize = 32;
/// Bytes counted by the frame's `len` field before the data: everything after `len`.
const ENVELOPE_AND_BODY_PREFIX: usize = PREFIX_LEN - 4;

/// A reusable buffer for one output frame at a time.
pub struct OutputFrame {
    bytes: Vec<u8>,
}

impl OutputFrame {
    /// A buffer for up to `max_data` bytes of output per frame (at most the protocol's chunk
    /// size, so frames stay far below the frame-size cap).
    pub fn new(max_data: usize) -> Self {
        Self {
            bytes: vec![0; PREFIX_LEN + max_data.min(MAX_PAYLOAD_CHUNK)],
        }
    }

    /// Where the next chunk of output is to be read into.
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[PREFIX_LEN..]
    }

    /// Completes the frame around the first `len` bytes of [`Self::data_mut`] and returns
    /// its wire bytes.
    pub fn finish(&mut self, id: u32, stream: Stream, len: usize) -> &[u8] {
        let len = len.min(self.bytes.len() - PREFIX_LEN);
        let prefix = &mut self.bytes[..PREFIX_LEN];
        prefix[0..4].copy_from_slice(&((ENVELOPE_AND_BODY_PREFIX + len) as u32).to_be_bytes());
        prefix[4..8].copy_from_slice(&id.to_be_bytes());
        prefix[8] = 0; // flags: output is never the last frame of a request
        prefix[9] = 0x82; // fixmap with two entries
        prefix[10] = 0xa4; // fixstr of 4
        prefix[11..15].copy_from_slice(b"type");
        prefix[15] = 0xa6; // fixstr of 6
        prefix[16..22].copy_from_slice(stream.tag());
        prefix[22] = 0xa4;
        prefix[23..27].copy_from_slice(b"data");
        prefix[27] = 0xc6; // bin 32
        prefix[28..32].copy_from_slice(&(len as u32).to_be_bytes());
        &self.bytes[..PREFIX_LEN + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msb_protocol::guest::AgentMessage;
    use msb_protocol::Frame;

    fn round_trip(stream: Stream, data: &[u8]) -> (Frame, AgentMessage) {
        let mut frame = OutputFrame::new(64 * 1024);
        frame.data_mut()[..data.len()].copy_from_slice(data);
        let mut bytes = frame.finish(42, stream, data.len());
        let decoded = Frame::read_from(&mut bytes).unwrap();
        assert!(
            bytes.is_empty(),
            "the length field covers the frame exactly"
        );
        let message = decoded.decode::<AgentMessage>().unwrap();
        (decoded, message)
    }

    #[test]
    fn frames_decode_as_protocol_messages() {
        for size in [0usize, 1, 255, 256, 65535, 65536] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            let (frame, message) = round_trip(Stream::Stdout, &data);
            assert_eq!((frame.id, frame.flags), (42, 0));
            assert_eq!(message, AgentMessage::Stdout { data: data.clone() });
            let (_, message) = round_trip(Stream::Stderr, &data);
            assert_eq!(message, AgentMessage::Stderr { data });
        }
    }

    #[test]
    fn buffer_is_reusable_and_bounded() {
        let mut frame = OutputFrame::new(usize::MAX);
        assert_eq!(frame.data_mut().len(), MAX_PAYLOAD_CHUNK);
        frame.data_mut()[..3].copy_from_slice(b"abc");
        let first = frame.finish(1, Stream::Stdout, 3).to_vec();
        frame.data_mut()[..1].copy_from_slice(b"z");
        let mut second = frame.finish(2, Stream::Stderr, 1);
        let message = Frame::read_from(&mut second)
            .unwrap()
            .decode::<AgentMessage>()
            .unwrap();
        assert_eq!(
            message,
            AgentMessage::Stderr {
                data: b"z".to_vec()
            }
        );
        let message = Frame::read_from(&mut &first[..])
            .unwrap()
            .decode::<AgentMessage>()
            .unwrap();
        assert_eq!(
            message,
            AgentMessage::Stdout {
                data: b"abc".to_vec()
            }
        );
    }
}

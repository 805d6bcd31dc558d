//! The framing of a chunked request body (RFC 9112 §7.1), read incrementally: where each
//! chunk's data is, and where the body (with its trailer section) ends, so the next request
//! on the connection is found. Chunk extensions are read past.

/// The longest chunk-size line or trailer line waited for.
const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("a chunk size is not hexadecimal")]
    BadSize,
    #[error("a chunk's data does not end with CRLF")]
    MissingCrlf,
    #[error("a chunk line is longer than {MAX_LINE} bytes")]
    LineTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    /// The CRLF after a chunk's data; the count of its bytes seen.
    DataEnd(u8),
    Trailer,
    Done,
}

#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    line: Vec<u8>,
    /// The trailer section as sent, with the empty line that ends it.
    trailers: Vec<u8>,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self {
            state: State::Size,
            line: Vec::new(),
            trailers: Vec::new(),
        }
    }
}

impl ChunkedDecoder {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer section (every line and the empty one that ends it), once done.
    pub fn trailers(&self) -> &[u8] {
        &self.trailers
    }

    /// Reads `input` up to the body's end at most, handing each piece of chunk data to
    /// `data`; returns how many bytes it took.
    pub fn feed(&mut self, input: &[u8], mut data: impl FnMut(&[u8])) -> Result<usize, ChunkError> {
        let mut at = 0;
        while at < input.len() && self.state != State::Done {
            match self.state {
                State::Data(left) => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(input.len() - at);
                    data(&input[at..at + take]);
                    at += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd(0)
                    } else {
                        State::Data(left)
                    };
                }
                State::DataEnd(seen) => {
                    let expected = b"\r\n"[usize::from(seen)];
                    if input[at] != expected {
                        return Err(ChunkError::MissingCrlf);
                    }
                    at += 1;
                    self.state = if seen == 1 {
                        State::Size
                    } else {
                        State::DataEnd(1)
                    };
                }
                State::Size | State::Trailer => at += self.read_line(&input[at..])?,
                State::Done => {}
            }
        }
        Ok(at)
    }

    /// Takes bytes of a size or trailer line; acts on the line once its LF came.
    fn read_line(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        let (taken, complete) = match memchr::memchr(b'\n', input) {
            Some(end) => (end + 1, true),
            None => (input.len(), false),
        };
        self.line.extend_from_slice(&input[..taken]);
        if self.line.len() > MAX_LINE {
            return Err(ChunkError::LineTooLong);
        }
        if complete {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line)?;
        }
        Ok(taken)
    }

    fn line_done(&mut self, line: &[u8]) -> Result<(), ChunkError> {
        if self.state == State::Trailer {
            self.trailers.extend_from_slice(line);
            if line == b"\r\n" || line == b"\n" {
                self.state = State::Done;
            }
            return Ok(());
        }
        let text = std::str::from_utf8(line).map_err(|_| ChunkError::BadSize)?;
        let size = text.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| ChunkError::BadSize)?;
        self.state = if size == 0 {
            State::Trailer
        } else {
            State::Data(size)
        };
        Ok(())
    }
}

/// `data` as one chunk (nothing for no data: an empty chunk would end the body).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";

    #[test]
    fn a_chunked_body_is_read_to_its_end_in_any_pieces() {
        for piece in 1..BODY.len() {
            let mut decoder = ChunkedDecoder::default();
            let mut data = Vec::new();
            let mut taken = 0;
            for part in BODY.chunks(piece) {
                if decoder.is_done() {
                    break;
                }
                taken += decoder
                    .feed(part, |bytes| data.extend_from_slice(bytes))
                    .unwrap();
            }
            assert_eq!(data, b"hello world", "{piece}");
            assert_eq!(&BODY[taken..], b"NEXT", "{piece}");
            assert_eq!(decoder.trailers(), b"X-T: 1\r\n\r\n");
        }
    }

    #[test]
    fn bad_framing_is_an_error() {
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(decoder.feed(b"zz\r\n", |_| {}), Err(ChunkError::BadSize));
        let mut decoder = ChunkedDecoder::default();
        assert_eq!(
            decoder.feed(b"1\r\nab", |_| {}),
            Err(ChunkError::MissingCrlf)
        );
    }
}

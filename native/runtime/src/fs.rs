//! File system requests to the guest, over a client connection to the supervisor.
//!
//! One-shot operations wait for their whole answer. A read streams the file in windows of
//! [`READ_WINDOW`] bytes, each its own request, so however slowly the caller consumes it no
//! more than one window is queued on the host. A write sends its chunks only after the agent
//! answered `FsReady`, each as one blocking socket write: the agent's bounded queue sets the
//! pace, and nothing piles up on the host.

use crate::client::{decode_agent, unexpected, Connection};
use crate::error::{Result, RuntimeError};
use msb_protocol::guest::{AgentMessage, FsEntry, FsRequest, HostMessage};
use msb_protocol::{Frame, MAX_PAYLOAD_CHUNK};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes asked for per read request.
pub const READ_WINDOW: u64 = 8 << 20;

/// Any signal cancels a transfer; the agent ignores which.
const CANCEL: HostMessage = HostMessage::Signal {
    signal: libc::SIGKILL,
};

/// Space of the guest file system holding a path.
pub struct FsUsage {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub available_bytes: u64,
}

/// Options of a write.
pub struct WriteOptions {
    pub mode: Option<u32>,
    pub append: bool,
    pub create_parents: bool,
}

impl Connection {
    /// Sends a one-shot request and hands each answer to `each`, up to the last one. An
    /// `Error` answer becomes the result.
    fn fs_request(
        &self,
        request: FsRequest,
        mut each: impl FnMut(AgentMessage) -> Result<()>,
    ) -> Result<()> {
        let (_, frames) = self.start(0, &HostMessage::Fs(request))?;
        loop {
            let frame = frames.recv().map_err(|_| self.closed())?;
            match decode_agent(&frame)? {
                AgentMessage::Error(error) => return Err(RuntimeError::Agent(error)),
                message => each(message)?,
            }
            if frame.is_end() {
                return Ok(());
            }
        }
    }

    fn fs_entries(&self, request: FsRequest) -> Result<Vec<FsEntry>> {
        let mut entries = Vec::new();
        self.fs_request(request, |message| match message {
            AgentMessage::FsEntries { entries: more } => {
                entries.extend(more);
                Ok(())
            }
            AgentMessage::Done => Ok(()),
            other => Err(unexpected(&other)),
        })?;
        Ok(entries)
    }

    /// Metadata of `path` (of a symlink's target with `follow`).
    pub fn fs_stat(&self, path: String, follow: bool) -> Result<FsEntry> {
        let mut entries = self.fs_entries(FsRequest::Stat { path, follow })?;
        match (entries.pop(), entries.is_empty()) {
            (Some(entry), true) => Ok(entry),
            _ => Err(RuntimeError::Protocol(
                "the agent answered a stat without exactly one entry".into(),
            )),
        }
    }

    /// A directory's entries, sorted by name.
    pub fn fs_list(&self, path: String) -> Result<Vec<FsEntry>> {
        self.fs_entries(FsRequest::List { path })
    }

    /// A request answered by `Done` alone (mkdir, remove, rename, copy, symlink, chmod).
    pub fn fs_do(&self, request: FsRequest) -> Result<()> {
        self.fs_request(request, |message| match message {
            AgentMessage::Done => Ok(()),
            other => Err(unexpected(&other)),
        })
    }

    pub fn fs_usage(&self, path: String) -> Result<FsUsage> {
        let mut usage = None;
        self.fs_request(FsRequest::Usage { path }, |message| match message {
            AgentMessage::FsUsage {
                total_bytes,
                free_bytes,
                available_bytes,
            } => {
                usage = Some(FsUsage {
                    total_bytes,
                    free_bytes,
                    available_bytes,
                });
                Ok(())
            }
            other => Err(unexpected(&other)),
        })?;
        usage.ok_or_else(|| RuntimeError::Protocol("the agent answered no usage".into()))
    }

    /// A whole file.
    pub fn fs_read(self: &Arc<Self>, path: String) -> Result<Vec<u8>> {
        let reader = FsReader::open(self.clone(), path, None)?;
        let mut data = Vec::new();
        while let Some(chunk) = reader.next_chunk(None)? {
            data.extend_from_slice(&chunk);
        }
        Ok(data)
    }

    /// Writes a whole file; returns the bytes written.
    pub fn fs_write(
        self: &Arc<Self>,
        path: String,
        data: &[u8],
        options: WriteOptions,
    ) -> Result<u64> {
        let writer = FsWriter::open(self.clone(), path, options)?;
        writer.write(data)?;
        writer.finish()
    }
}

/// Received file bytes, handed out in chunks of a fixed size (the last one may be shorter), or
/// as they came without one.
struct Rechunker {
    size: Option<usize>,
    buffer: Vec<u8>,
}

impl Rechunker {
    fn push(&mut self, data: Vec<u8>) {
        if self.buffer.is_empty() {
            self.buffer = data;
        } else {
            self.buffer.extend_from_slice(&data);
        }
    }

    /// The next chunk if one is complete; at the `end` of the file, whatever is left.
    fn take(&mut self, end: bool) -> Option<Vec<u8>> {
        let available = self.buffer.len();
        let wanted = self.size.unwrap_or(available);
        if available == 0 || (available < wanted && !end) {
            return None;
        }
        let rest = self.buffer.split_off(wanted.min(available));
        Some(std::mem::replace(&mut self.buffer, rest))
    }
}

/// A read request for one window of the file.
struct Window {
    id: u32,
    frames: Receiver<Frame>,
    start: u64,
}

struct ReadState {
    /// The window being received; `None` once the file ended or the read failed.
    window: Option<Window>,
    /// Offset just past the bytes received so far.
    offset: u64,
    chunks: Rechunker,
}

/// A file streamed from the guest.
pub struct FsReader {
    connection: Arc<Connection>,
    path: String,
    state: Mutex<ReadState>,
}

impl FsReader {
    /// Starts reading, and waits for the first answer so that a missing or unreadable file
    /// fails here rather than at the first chunk. `chunk_size` fixes the size of the chunks
    /// handed out; without it they come as the agent sent them.
    pub fn open(
        connection: Arc<Connection>,
        path: String,
        chunk_size: Option<usize>,
    ) -> Result<Self> {
        let reader = Self {
            state: Mutex::new(ReadState {
                window: None,
                offset: 0,
                chunks: Rechunker {
                    size: chunk_size,
                    buffer: Vec::new(),
                },
            }),
            connection,
            path,
        };
        {
            let mut state = reader.state.lock().unwrap();
            state.window = Some(reader.request(0)?);
            reader.receive(&mut state, None)?;
        }
        Ok(reader)
    }

    fn request(&self, offset: u64) -> Result<Window> {
        let request = FsRequest::Read {
            path: self.path.clone(),
            offset,
            length: Some(READ_WINDOW),
        };
        let (id, frames) = self.connection.start(0, &HostMessage::Fs(request))?;
        Ok(Window {
            id,
            frames,
            start: offset,
        })
    }

    /// The next chunk, or `None` at the end of the file. With a `timeout`, `Ok(None)` can
    /// also mean that nothing arrived in time; [`FsReader::is_finished`] tells which.
    pub fn next_chunk(&self, timeout: Option<Duration>) -> Result<Option<Vec<u8>>> {
        let deadline = timeout.map(|timeout| Instant::now() + timeout);
        let mut state = self.state.lock().unwrap();
        loop {
            let end = state.window.is_none();
            if let Some(chunk) = state.chunks.take(end) {
                return Ok(Some(chunk));
            }
            if end || !self.receive(&mut state, deadline)? {
                return Ok(None);
            }
        }
    }

    /// Takes one answer of the current window; `false` when the deadline passed first. A
    /// window that ends full is followed by a request for the next one.
    fn receive(&self, state: &mut ReadState, deadline: Option<Instant>) -> Result<bool> {
        let window = state.window.as_ref().expect("a window is running");
        let start = window.start;
        let received = match deadline {
            None => window
                .frames
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
            Some(deadline) => window
                .frames
                .recv_timeout(deadline.saturating_duration_since(Instant::now())),
        };
        let frame = match received {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) => return Ok(false),
            Err(RecvTimeoutError::Disconnected) => {
                state.window = None;
                return Err(self.connection.closed());
            }
        };
        match decode_agent(&frame) {
            Ok(AgentMessage::FsData { data }) => {
                state.offset += data.len() as u64;
                state.chunks.push(data);
            }
            Ok(AgentMessage::Done) => {
                // A short window is the end of the file.
                state.window = if state.offset - start < READ_WINDOW {
                    None
                } else {
                    Some(self.request(state.offset)?)
                };
            }
            Ok(AgentMessage::Error(error)) => {
                state.window = None;
                return Err(RuntimeError::Agent(error));
            }
            Ok(other) => {
                self.cancel(state);
                return Err(unexpected(&other));
            }
            Err(error) => {
                self.cancel(state);
                return Err(error);
            }
        }
        Ok(true)
    }

    fn cancel(&self, state: &mut ReadState) {
        if let Some(window) = state.window.take() {
            // Only a courtesy to the agent: a closed connection ends the request as well.
            let _ = self.connection.send(window.id, 0, &CANCEL);
        }
    }

    pub fn is_finished(&self) -> bool {
        let state = self.state.lock().unwrap();
        state.window.is_none() && state.chunks.buffer.is_empty()
    }
}

impl Drop for FsReader {
    /// A reader dropped before the end stops the agent from reading further.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap();
        if let Some(window) = state.window.take() {
            let _ = self.connection.send(window.id, 0, &CANCEL);
        }
    }
}

/// A file streamed to the guest.
pub struct FsWriter {
    connection: Arc<Connection>,
    id: u32,
    /// The agent's answers; `None` once the write ended (finished, failed or aborted).
    frames: Mutex<Option<Receiver<Frame>>>,
}

impl FsWriter {
    /// Opens the file in the guest; returns once the agent is ready for data, or with the
    /// reason it cannot write the file.
    pub fn open(connection: Arc<Connection>, path: String, options: WriteOptions) -> Result<Self> {
        let request = FsRequest::Write {
            path,
            mode: options.mode,
            append: options.append,
            create_parents: options.create_parents,
        };
        let (id, frames) = connection.start(0, &HostMessage::Fs(request))?;
        let first = frames.recv().map_err(|_| connection.closed())?;
        match decode_agent(&first)? {
            AgentMessage::FsReady => Ok(Self {
                connection,
                id,
                frames: Mutex::new(Some(frames)),
            }),
            AgentMessage::Error(error) => Err(RuntimeError::Agent(error)),
            other => Err(unexpected(&other)),
        }
    }

    /// Sends `data` in chunks of at most [`MAX_PAYLOAD_CHUNK`] bytes. A failure the agent
    /// reported meanwhile (a full disk, ...) ends the write and is returned here.
    pub fn write(&self, data: &[u8]) -> Result<()> {
        let mut frames = self.frames.lock().unwrap();
        for chunk in data.chunks(MAX_PAYLOAD_CHUNK) {
            let early = frames.as_ref().ok_or_else(ended)?.try_recv();
            match early {
                Ok(frame) => {
                    *frames = None;
                    return Err(match decode_agent(&frame)? {
                        AgentMessage::Error(error) => RuntimeError::Agent(error),
                        other => unexpected(&other),
                    });
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    *frames = None;
                    return Err(self.connection.closed());
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
            }
            let message = HostMessage::FsChunk {
                data: chunk.to_vec(),
            };
            self.connection.send(self.id, 0, &message)?;
        }
        Ok(())
    }

    /// Ends the data: the agent flushes the file. Returns the bytes written.
    pub fn finish(&self) -> Result<u64> {
        let frames = self.frames.lock().unwrap().take().ok_or_else(ended)?;
        self.connection.send(self.id, 0, &HostMessage::FsFinish)?;
        let answer = frames.recv().map_err(|_| self.connection.closed())?;
        match decode_agent(&answer)? {
            AgentMessage::FsWritten { bytes } => Ok(bytes),
            AgentMessage::Error(error) => Err(RuntimeError::Agent(error)),
            other => Err(unexpected(&other)),
        }
    }

    /// Cancels the write and waits until the agent has let go of the file. Nothing happens
    /// once the write ended.
    pub fn abort(&self) -> Result<()> {
        let Some(frames) = self.frames.lock().unwrap().take() else {
            return Ok(());
        };
        self.connection.send(self.id, 0, &CANCEL)?;
        // The agent's last answer (an error about the cancellation, or the data written if it
        // finished first) only says that the request is over.
        while let Ok(frame) = frames.recv() {
            if frame.is_end() {
                break;
            }
        }
        Ok(())
    }
}

impl Drop for FsWriter {
    /// A writer dropped before it finished is cancelled.
    fn drop(&mut self) {
        if self.frames.get_mut().unwrap().take().is_some() {
            let _ = self.connection.send(self.id, 0, &CANCEL);
        }
    }
}

fn ended() -> RuntimeError {
    RuntimeError::InvalidConfig("the write has already ended".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use msb_protocol::guest::{AgentError, AgentErrorKind};
    use msb_protocol::{FLAG_END, MAX_FRAME_LEN};
    use std::os::unix::net::UnixStream;

    fn rechunker(size: Option<usize>, pushes: &[&[u8]]) -> Rechunker {
        let mut chunks = Rechunker {
            size,
            buffer: Vec::new(),
        };
        for data in pushes {
            chunks.push(data.to_vec());
        }
        chunks
    }

    #[test]
    fn chunks_pass_through_without_a_size() {
        let mut chunks = rechunker(None, &[b"abc"]);
        assert_eq!(chunks.take(false).unwrap(), b"abc");
        assert_eq!(chunks.take(false), None);
        assert_eq!(chunks.take(true), None);
    }

    #[test]
    fn chunks_are_cut_to_size_and_the_rest_comes_at_the_end() {
        let mut chunks = rechunker(Some(4), &[b"abc", b"defgh", b"ij"]);
        assert_eq!(chunks.take(false).unwrap(), b"abcd");
        assert_eq!(chunks.take(false).unwrap(), b"efgh");
        assert_eq!(chunks.take(false), None, "an incomplete chunk waits");
        assert_eq!(chunks.take(true).unwrap(), b"ij");
        assert_eq!(chunks.take(true), None);
    }

    #[test]
    fn a_full_chunk_fits_in_a_frame() {
        let message = HostMessage::FsChunk {
            data: vec![0xff; MAX_PAYLOAD_CHUNK],
        };
        let frame = Frame::new(u32::MAX, FLAG_END, &message).unwrap();
        assert!(frame.to_bytes().len() <= MAX_FRAME_LEN + 4);
    }

    /// A connection whose supervisor (and agent) is the returned socket.
    fn connection() -> (Arc<Connection>, UnixStream) {
        let (client, agent) = UnixStream::pair().unwrap();
        agent
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (Connection::over("fs-test", client).unwrap(), agent)
    }

    fn answer(agent: &mut UnixStream, id: u32, flags: u8, message: &AgentMessage) {
        Frame::new(id, flags, message)
            .unwrap()
            .write_to(agent)
            .unwrap();
    }

    fn request(agent: &mut UnixStream) -> (u32, HostMessage) {
        let frame = Frame::read_from(agent).unwrap();
        (frame.id, frame.decode().unwrap())
    }

    /// Plays an agent serving a file of `size` bytes (byte `i` is `i % 251`), in frames of at
    /// most `MAX_PAYLOAD_CHUNK`; returns the offsets and lengths it was asked for.
    fn serve_file(mut agent: UnixStream, size: u64) -> Vec<(u64, Option<u64>)> {
        let mut asked = Vec::new();
        while let Ok(frame) = Frame::read_from(&mut agent) {
            let Ok(HostMessage::Fs(FsRequest::Read { offset, length, .. })) = frame.decode() else {
                continue;
            };
            asked.push((offset, length));
            let end = size.min(offset + length.unwrap_or(u64::MAX));
            let data: Vec<u8> = (offset..end).map(|i| (i % 251) as u8).collect();
            for chunk in data.chunks(MAX_PAYLOAD_CHUNK) {
                let data = chunk.to_vec();
                answer(&mut agent, frame.id, 0, &AgentMessage::FsData { data });
            }
            answer(&mut agent, frame.id, FLAG_END, &AgentMessage::Done);
            if end < offset + length.unwrap_or(u64::MAX) {
                break;
            }
        }
        asked
    }

    #[test]
    fn a_read_asks_window_after_window_until_a_short_one() {
        let size = 2 * READ_WINDOW + 5;
        let (connection, agent) = connection();
        let server = std::thread::spawn(move || serve_file(agent, size));
        let data = connection.fs_read("/big".into()).unwrap();
        assert_eq!(data.len() as u64, size);
        assert!(data.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        let window = Some(READ_WINDOW);
        let asked = server.join().unwrap();
        assert_eq!(
            asked,
            vec![
                (0, window),
                (READ_WINDOW, window),
                (2 * READ_WINDOW, window)
            ]
        );
    }

    #[test]
    fn a_file_of_exactly_one_window_ends_with_an_empty_one() {
        let (connection, agent) = connection();
        let server = std::thread::spawn(move || serve_file(agent, READ_WINDOW));
        let reader = FsReader::open(connection, "/f".into(), Some(1 << 20)).unwrap();
        let mut sizes = Vec::new();
        while let Some(chunk) = reader.next_chunk(None).unwrap() {
            sizes.push(chunk.len());
        }
        assert_eq!(sizes, vec![1 << 20; 8]);
        assert!(reader.is_finished());
        assert_eq!(server.join().unwrap().len(), 2);
    }

    fn fs_error(kind: AgentErrorKind, errno: i32) -> AgentMessage {
        AgentMessage::Error(AgentError {
            kind,
            message: "failed".into(),
            errno: Some(errno),
        })
    }

    #[test]
    fn a_missing_file_fails_at_open() {
        let (connection, mut agent) = connection();
        let server = std::thread::spawn(move || {
            let (id, _) = request(&mut agent);
            let missing = fs_error(AgentErrorKind::PathNotFound, libc::ENOENT);
            answer(&mut agent, id, FLAG_END, &missing);
        });
        let error = FsReader::open(connection, "/nope".into(), None)
            .err()
            .unwrap();
        assert!(matches!(
            error,
            RuntimeError::Agent(AgentError {
                kind: AgentErrorKind::PathNotFound,
                ..
            })
        ));
        server.join().unwrap();
    }

    fn write_options() -> WriteOptions {
        WriteOptions {
            mode: Some(0o600),
            append: false,
            create_parents: true,
        }
    }

    #[test]
    fn a_write_is_chunked_after_ready_and_finished() {
        let (connection, mut agent) = connection();
        let server = std::thread::spawn(move || {
            let (id, _) = request(&mut agent);
            answer(&mut agent, id, 0, &AgentMessage::FsReady);
            let mut sizes = Vec::new();
            loop {
                match request(&mut agent) {
                    (_, HostMessage::FsChunk { data }) => sizes.push(data.len()),
                    (_, HostMessage::FsFinish) => break,
                    (_, other) => panic!("unexpected {other:?}"),
                }
            }
            let bytes = sizes.iter().sum::<usize>() as u64;
            answer(&mut agent, id, FLAG_END, &AgentMessage::FsWritten { bytes });
            sizes
        });
        let data = vec![7u8; 2 * MAX_PAYLOAD_CHUNK + 1];
        let written = connection.fs_write("/f".into(), &data, write_options());
        assert_eq!(written.unwrap(), data.len() as u64);
        let sizes = server.join().unwrap();
        assert_eq!(sizes, vec![MAX_PAYLOAD_CHUNK, MAX_PAYLOAD_CHUNK, 1]);
    }

    #[test]
    fn an_error_during_a_write_surfaces_on_the_next_write() {
        let (connection, mut agent) = connection();
        let server = std::thread::spawn(move || {
            let (id, _) = request(&mut agent);
            answer(&mut agent, id, 0, &AgentMessage::FsReady);
            let full = fs_error(AgentErrorKind::Filesystem, libc::ENOSPC);
            answer(&mut agent, id, FLAG_END, &full);
            agent
        });
        let writer = FsWriter::open(connection, "/f".into(), write_options()).unwrap();
        let _agent = server.join().unwrap();
        // The error is on its way through the connection's reader thread.
        let deadline = Instant::now() + Duration::from_secs(5);
        let error = loop {
            match writer.write(b"data") {
                Err(error) => break error,
                Ok(()) => assert!(Instant::now() < deadline, "the error never surfaced"),
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(matches!(
            error,
            RuntimeError::Agent(AgentError {
                errno: Some(libc::ENOSPC),
                ..
            })
        ));
        assert!(matches!(
            writer.finish(),
            Err(RuntimeError::InvalidConfig(_))
        ));
    }

    #[test]
    fn an_aborted_write_cancels_and_waits_for_the_end() {
        let (connection, mut agent) = connection();
        let server = std::thread::spawn(move || {
            let (id, _) = request(&mut agent);
            answer(&mut agent, id, 0, &AgentMessage::FsReady);
            let (cancelled, message) = request(&mut agent);
            assert_eq!(cancelled, id);
            assert!(matches!(message, HostMessage::Signal { .. }), "{message:?}");
            let aborted = fs_error(AgentErrorKind::Filesystem, libc::ECANCELED);
            answer(&mut agent, id, FLAG_END, &aborted);
        });
        let writer = FsWriter::open(connection, "/f".into(), write_options()).unwrap();
        writer.abort().unwrap();
        server.join().unwrap();
        assert!(matches!(
            writer.write(b"x"),
            Err(RuntimeError::InvalidConfig(_))
        ));
    }
}

//! File system requests (`Fs`, with the `FsChunk`/`FsFinish` data of writes) and volume
//! mounts (`Mount`).
//!
//! Each request runs on a thread of its own, so the dispatcher never waits for a disk,
//! except in one place on purpose: it hands a write's data to the writer through a bounded
//! queue and waits for room. The host gets no other flow control, and a host faster than the
//! disk must be slowed down rather than fill the guest's memory. A writer that takes no data
//! for [`STALL_LIMIT`] (a FIFO nobody reads, a hung share) is cancelled, so that even then
//! the dispatcher goes on.
//!
//! The operations themselves are plain functions over paths in [`ops`], [`write`] and
//! [`mount`]; this module runs them and routes their answers and data frames.

mod dirs;
mod error;
mod job;
mod mount;
mod ops;
mod transfers;
mod write;

use crate::channel::Channel;
use error::FsError;
use msb_protocol::guest::{AgentError, AgentErrorKind, AgentMessage, FsRequest, MountRequest};
use msb_protocol::FLAG_END;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use transfers::{Feed, Transfers};

pub use job::Piece;
pub use transfers::Cancel;

/// Chunks queued for a writer (each up to `MAX_PAYLOAD_CHUNK`, so at most 4 MiB).
const CHUNK_QUEUE: usize = 16;
/// How long the dispatcher waits for room in a writer's queue before cancelling the write.
const STALL_LIMIT: Duration = Duration::from_secs(30);
/// How often the dispatcher retries a full queue. A chunk takes well over this to write, so
/// the writer never runs dry while its queue is full.
const FEED_RETRY: Duration = Duration::from_millis(1);
/// How long shutdown waits for requests to stop and close their files.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// How handing a chunk to a writer went.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    Queued,
    /// The writer ended (it failed, or finished early): the chunk is not needed.
    Gone,
    /// The writer took nothing for the whole limit.
    Stalled,
}

/// Queues `piece` for a writer, waiting up to `limit` for room.
fn deliver(feed: &SyncSender<Piece>, mut piece: Piece, limit: Duration) -> Delivery {
    let started = Instant::now();
    loop {
        match feed.try_send(piece) {
            Ok(()) => return Delivery::Queued,
            Err(TrySendError::Disconnected(_)) => return Delivery::Gone,
            Err(TrySendError::Full(back)) if started.elapsed() < limit => {
                piece = back;
                std::thread::sleep(FEED_RETRY);
            }
            Err(TrySendError::Full(_)) => return Delivery::Stalled,
        }
    }
}

fn invalid(message: String) -> AgentMessage {
    AgentMessage::Error(AgentError {
        kind: AgentErrorKind::InvalidRequest,
        message,
        errno: None,
    })
}

/// Runs the file system requests and mounts of the agent.
pub struct Service {
    channel: Arc<Channel>,
    transfers: Arc<Transfers>,
}

impl Service {
    pub fn new(channel: Arc<Channel>) -> Self {
        Self {
            channel,
            transfers: Arc::default(),
        }
    }

    /// Starts `request` on its own thread.
    pub fn start(&self, id: u32, generation: u64, request: FsRequest) {
        let (feed, pieces) = sync_channel(CHUNK_QUEUE);
        // Only a write takes data; other requests' queues stay empty.
        let feed = matches!(request, FsRequest::Write { .. }).then_some(feed);
        let Some(cancel) = self.begin(id, generation, feed) else {
            return;
        };
        let job = job::Job { cancel, pieces };
        self.spawn(id, generation, move |emit| ops::run(request, job, emit));
    }

    /// Mounts a volume, on its own thread (finding a disk may take a moment).
    pub fn mount(&self, id: u32, generation: u64, request: MountRequest) {
        if self.begin(id, generation, None).is_some() {
            self.spawn(id, generation, move |_| {
                mount::mount(&request).map(|()| AgentMessage::Done)
            });
        }
    }

    /// Hands an `FsChunk`'s data or an `FsFinish` to the write of request `id`.
    pub fn feed(&self, id: u32, generation: u64, piece: Piece) {
        match self.transfers.feed(id) {
            Feed::Writer(feed) => {
                if deliver(&feed, piece, STALL_LIMIT) == Delivery::Stalled {
                    log!("request {id}: the file took no data for {STALL_LIMIT:?}; cancelled");
                    self.transfers.cancel(id);
                }
            }
            // Chunks already in flight when the write failed or was cancelled.
            Feed::Ended => {}
            Feed::NotWriting => {
                log!("request {id}: file data for a request that writes no file; dropped")
            }
            Feed::Unknown => self.channel.send(
                generation,
                id,
                FLAG_END,
                &invalid(format!("file data for request {id}, which writes no file")),
            ),
        }
    }

    /// A `Signal` for request `id`: cancels it if it is a file system request.
    pub fn cancel(&self, id: u32) -> Cancel {
        self.transfers.cancel(id)
    }

    /// The host of connection `generation` left: its requests are cancelled.
    pub fn hang_up(&self, generation: u64) {
        self.transfers.hang_up(generation);
    }

    /// Before shutdown: cancels every request and waits a little for their threads to close
    /// their files, which would otherwise keep their file systems from being unmounted.
    pub fn stop_all(&self, generation: u64) {
        self.transfers.hang_up(generation);
        if !self.transfers.wait_idle(STOP_WAIT) {
            log!("file system requests still running at shutdown");
        }
    }

    /// Registers request `id`, or refuses it when the id is taken.
    fn begin(
        &self,
        id: u32,
        generation: u64,
        feed: Option<SyncSender<Piece>>,
    ) -> Option<Arc<AtomicBool>> {
        match self.transfers.begin(id, generation, feed) {
            Ok(cancel) => Some(cancel),
            Err(transfers::AlreadyRunning) => {
                let reply = invalid(format!("request id {id} is already running"));
                self.channel.send(generation, id, FLAG_END, &reply);
                None
            }
        }
    }

    /// Runs `work` on a new thread. Its intermediate answers go out as they come, then its
    /// result with `FLAG_END`.
    fn spawn(
        &self,
        id: u32,
        generation: u64,
        work: impl FnOnce(&mut dyn FnMut(AgentMessage)) -> Result<AgentMessage, FsError>
            + Send
            + 'static,
    ) {
        let (channel, transfers) = (self.channel.clone(), self.transfers.clone());
        let spawned = std::thread::Builder::new().spawn(move || {
            let result = work(&mut |message| channel.send(generation, id, 0, &message));
            // Before the last answer, so that the host may reuse the id once it has it.
            transfers.finish(id, generation);
            let answer = result.unwrap_or_else(|error| AgentMessage::Error(error.to_agent_error()));
            channel.send(generation, id, FLAG_END, &answer);
        });
        if let Err(spawn_error) = spawned {
            self.transfers.finish(id, generation);
            let reply = AgentMessage::Error(AgentError {
                kind: AgentErrorKind::Internal,
                message: format!("starting a thread for request {id}: {spawn_error}"),
                errno: spawn_error.raw_os_error(),
            });
            self.channel.send(generation, id, FLAG_END, &reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;
    use msb_protocol::guest::FsEntryKind;
    use msb_protocol::{Frame, FrameDecoder};
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use tempfile::TempDir;

    const WAIT: Duration = Duration::from_secs(10);

    /// The host's end of a channel: a pipe whose frames the test reads back.
    struct Host {
        service: Service,
        generation: u64,
        read_end: OwnedFd,
        decoder: FrameDecoder,
    }

    impl Host {
        fn new() -> Self {
            let (read_end, write_end) = sys::pipe().unwrap();
            // SAFETY: F_SETFL on a valid descriptor.
            unsafe { libc::fcntl(read_end.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
            let channel = Arc::new(Channel::default());
            let generation = channel.attach(Arc::new(write_end));
            Self {
                service: Service::new(channel),
                generation,
                read_end,
                decoder: FrameDecoder::new(),
            }
        }

        /// The next frame, or `None` when nothing arrives within `limit`.
        fn next_within(&mut self, limit: Duration) -> Option<(u32, bool, AgentMessage)> {
            let deadline = Instant::now() + limit;
            let mut buffer = vec![0u8; 1 << 16];
            loop {
                if let Some(frame) = self.decoder.next_frame().unwrap() {
                    let message = Frame::decode::<AgentMessage>(&frame).unwrap();
                    return Some((frame.id, frame.is_end(), message));
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return None;
                }
                let mut fds = [sys::pollfd(self.read_end.as_raw_fd(), libc::POLLIN)];
                sys::poll(&mut fds, Some(left)).unwrap();
                if let Ok(read) = sys::read(self.read_end.as_fd(), &mut buffer) {
                    self.decoder.push(&buffer[..read]);
                }
            }
        }

        fn next(&mut self) -> (u32, bool, AgentMessage) {
            self.next_within(WAIT).expect("a frame")
        }

        fn start(&self, id: u32, request: FsRequest) {
            self.service.start(id, self.generation, request);
        }

        fn feed(&self, id: u32, piece: Piece) {
            self.service.feed(id, self.generation, piece);
        }
    }

    fn error_of(message: AgentMessage) -> AgentError {
        match message {
            AgentMessage::Error(error) => error,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn deliveries_wait_for_room_and_give_up_on_a_stalled_writer() {
        let (feed, pieces) = sync_channel(1);
        assert_eq!(
            deliver(&feed, Piece::Finish, Duration::ZERO),
            Delivery::Queued
        );
        let stalled = deliver(&feed, Piece::Finish, Duration::from_millis(20));
        assert_eq!(stalled, Delivery::Stalled);
        // A slow writer takes the queued piece, then the one that waited for its room.
        let taker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            [pieces.recv().unwrap(), pieces.recv().unwrap()]
        });
        let waited = deliver(&feed, Piece::Data(b"x".to_vec()), WAIT);
        assert_eq!(waited, Delivery::Queued);
        let taken = taker.join().unwrap();
        assert_eq!(taken, [Piece::Finish, Piece::Data(b"x".to_vec())]);
        assert_eq!(deliver(&feed, Piece::Finish, WAIT), Delivery::Gone);
    }

    #[test]
    fn a_write_streams_more_chunks_than_its_queue_holds() {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("upload");
        let mut host = Host::new();
        host.start(
            3,
            FsRequest::Write {
                path: path.to_str().unwrap().into(),
                mode: None,
                append: false,
                create_parents: false,
            },
        );
        assert_eq!(host.next(), (3, false, AgentMessage::FsReady));
        let chunks: Vec<Vec<u8>> = (0..CHUNK_QUEUE as u32 * 4)
            .map(|index| index.to_be_bytes().repeat(4096))
            .collect();
        for chunk in &chunks {
            host.feed(3, Piece::Data(chunk.clone()));
        }
        host.feed(3, Piece::Finish);
        let bytes = chunks.iter().map(Vec::len).sum::<usize>() as u64;
        assert_eq!(host.next(), (3, true, AgentMessage::FsWritten { bytes }));
        assert_eq!(std::fs::read(&path).unwrap(), chunks.concat());
    }

    #[test]
    fn late_chunks_of_a_failed_write_are_dropped() {
        let mut host = Host::new();
        host.start(
            4,
            FsRequest::Write {
                path: "/dev/full".into(),
                mode: None,
                append: false,
                create_parents: false,
            },
        );
        assert_eq!(host.next(), (4, false, AgentMessage::FsReady));
        host.feed(4, Piece::Data(vec![1; 10]));
        let (id, end, message) = host.next();
        let error = error_of(message);
        assert_eq!((id, end), (4, true));
        assert_eq!(error.errno, Some(libc::ENOSPC));
        assert_eq!(error.message, "write /dev/full: No space left on device");
        host.feed(4, Piece::Data(vec![2; 10]));
        host.feed(4, Piece::Finish);
        assert_eq!(host.next_within(Duration::from_millis(100)), None);
    }

    #[test]
    fn data_for_an_id_that_never_wrote_is_refused() {
        let mut host = Host::new();
        host.feed(9, Piece::Finish);
        let (id, end, message) = host.next();
        assert_eq!((id, end), (9, true));
        assert_eq!(error_of(message).kind, AgentErrorKind::InvalidRequest);
    }

    #[test]
    fn a_cancelled_read_ends_with_an_error() {
        let mut host = Host::new();
        let endless = FsRequest::Read {
            path: "/dev/zero".into(),
            offset: 0,
            length: None,
        };
        host.start(5, endless);
        assert!(matches!(
            host.next(),
            (5, false, AgentMessage::FsData { .. })
        ));
        assert_eq!(host.service.cancel(5), Cancel::Cancelled);
        let last = loop {
            match host.next() {
                (5, false, AgentMessage::FsData { .. }) => continue,
                (5, true, last) => break last,
                other => panic!("unexpected {other:?}"),
            }
        };
        let error = error_of(last);
        assert_eq!(
            (error.kind, error.message.as_str()),
            (AgentErrorKind::Filesystem, "cancelled")
        );
        assert_eq!(
            host.service.cancel(5),
            Cancel::Ended,
            "a late signal is dropped"
        );
    }

    #[test]
    fn requests_answer_under_their_id() {
        let mut host = Host::new();
        host.start(
            6,
            FsRequest::Stat {
                path: "/".into(),
                follow: true,
            },
        );
        match host.next() {
            (6, true, AgentMessage::FsEntries { entries }) => {
                assert_eq!(entries[0].kind, FsEntryKind::Directory)
            }
            other => panic!("unexpected {other:?}"),
        }
        host.start(
            7,
            FsRequest::List {
                path: "relative".into(),
            },
        );
        let (id, end, message) = host.next();
        assert_eq!((id, end), (7, true));
        assert_eq!(error_of(message).kind, AgentErrorKind::InvalidRequest);
    }

    #[test]
    fn ids_are_unique_and_a_hang_up_or_shutdown_stops_waiting_writes() {
        let dir = TempDir::new().unwrap();
        let mut host = Host::new();
        host.start(
            8,
            FsRequest::Write {
                path: dir.path().join("f").to_str().unwrap().into(),
                mode: None,
                append: false,
                create_parents: false,
            },
        );
        assert_eq!(host.next(), (8, false, AgentMessage::FsReady));
        host.start(8, FsRequest::List { path: "/".into() });
        let (_, end, refused) = host.next();
        assert!(end && error_of(refused).message.contains("already running"));
        host.service.hang_up(host.generation);
        assert!(host.service.transfers.wait_idle(WAIT));
        host.start(
            8,
            FsRequest::Write {
                path: dir.path().join("g").to_str().unwrap().into(),
                mode: None,
                append: false,
                create_parents: false,
            },
        );
        host.service.stop_all(host.generation);
        assert!(host.service.transfers.wait_idle(Duration::ZERO));
    }
}

//! The write side of the agent channel, shared by every thread that answers the host.
//!
//! Each frame is written whole under one lock, so frames never interleave. Frames carry the
//! *generation* of the connection their request came from; when the host reconnects, late
//! frames of the old connection are dropped instead of confusing the new host.

use crate::sys;
use msb_protocol::guest::AgentMessage;
use msb_protocol::Frame;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How often a writer waiting for room on the port checks that the host is still there.
const WRITE_RECHECK: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Writer {
    port: Option<Arc<OwnedFd>>,
    generation: u64,
    /// After the shutdown acknowledgement nothing more may be sent.
    closed: bool,
}

#[derive(Default)]
pub struct Channel {
    writer: Mutex<Writer>,
    /// Set without the lock when the reader sees the host leave, so that a writer waiting
    /// for room gives up and releases the lock.
    hung_up: AtomicBool,
}

impl Channel {
    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new connection on `port`; returns its generation.
    pub fn attach(&self, port: Arc<OwnedFd>) -> u64 {
        let mut writer = self.writer();
        writer.generation += 1;
        writer.port = Some(port);
        self.hung_up.store(false, Ordering::SeqCst);
        writer.generation
    }

    /// The host left: drop everything until the next [`Channel::attach`].
    pub fn detach(&self) {
        self.hung_up.store(true, Ordering::SeqCst);
        self.writer().port = None;
    }

    /// No frame after this one; used for the shutdown acknowledgement.
    pub fn send_last(&self, generation: u64, id: u32, flags: u8, message: &AgentMessage) {
        self.send(generation, id, flags, message);
        let mut writer = self.writer();
        writer.closed = true;
        writer.port = None;
    }

    pub fn send(&self, generation: u64, id: u32, flags: u8, message: &AgentMessage) {
        match Frame::new(id, flags, message) {
            Ok(frame) => self.send_bytes(generation, &frame.to_bytes()),
            // Only an oversized message fails to encode; our messages are bounded.
            Err(error) => log!("cannot encode a reply to request {id}: {error}"),
        }
    }

    /// Writes one complete frame, unless its connection is gone.
    pub fn send_bytes(&self, generation: u64, frame: &[u8]) {
        let writer = self.writer();
        if writer.closed || writer.generation != generation {
            return;
        }
        if let Some(port) = &writer.port {
            // Failure means the host is gone; the reader notices and reconnects.
            let _ = write_frame(port, frame, &self.hung_up);
        }
    }
}

fn write_frame(port: &OwnedFd, mut bytes: &[u8], hung_up: &AtomicBool) -> io::Result<()> {
    while !bytes.is_empty() {
        match sys::write(port.as_fd(), bytes) {
            Ok(written) => bytes = &bytes[written..],
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                if hung_up.load(Ordering::SeqCst) {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
                let mut fds = [sys::pollfd(port.as_raw_fd(), libc::POLLOUT)];
                sys::poll(&mut fds, Some(WRITE_RECHECK))?;
                // Without a host the port reports POLLHUP and never becomes writable.
                if fds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                    return Err(io::ErrorKind::BrokenPipe.into());
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(read_end: &OwnedFd) -> Vec<u8> {
        let mut buffer = vec![0u8; 4096];
        // SAFETY: a valid descriptor; O_NONBLOCK so an empty pipe ends the read.
        unsafe {
            let flags = libc::fcntl(read_end.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(
                read_end.as_raw_fd(),
                libc::F_SETFL,
                flags | libc::O_NONBLOCK,
            );
        }
        match sys::read(read_end.as_fd(), &mut buffer) {
            Ok(read) => buffer[..read].to_vec(),
            Err(_) => Vec::new(),
        }
    }

    #[test]
    fn frames_of_other_connections_are_dropped() {
        let (read_end, write_end) = sys::pipe().unwrap();
        let channel = Channel::default();
        channel.send_bytes(0, b"before any connection");
        let first = channel.attach(Arc::new(write_end));
        channel.send_bytes(first, b"one");
        channel.send_bytes(first + 1, b"future");
        assert_eq!(drain(&read_end), b"one");
        channel.detach();
        channel.send_bytes(first, b"after hang-up");
        assert_eq!(drain(&read_end), b"");
    }

    #[test]
    fn nothing_follows_the_last_frame() {
        let (read_end, write_end) = sys::pipe().unwrap();
        let channel = Channel::default();
        let generation = channel.attach(Arc::new(write_end));
        channel.send_last(
            generation,
            3,
            msb_protocol::FLAG_END,
            &AgentMessage::ShutdownAck,
        );
        channel.send(generation, 4, 0, &AgentMessage::Pong);
        let bytes = drain(&read_end);
        let frame = Frame::read_from(&mut &bytes[..]).unwrap();
        assert_eq!(frame.id, 3);
        assert_eq!(
            frame.decode::<AgentMessage>().unwrap(),
            AgentMessage::ShutdownAck
        );
        assert_eq!(bytes.len(), frame.to_bytes().len(), "the pong was not sent");
    }
}

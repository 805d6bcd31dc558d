//! One thread per exec session (from the agent's [`crate::workers::Workers`]) moves the
//! process's output to the host and reports its end.
//!
//! Output and the exit status arrive on descriptors polled together (the reaper writes the
//! status to a pipe), so the final `Exited` frame is sent by the same thread, after all the
//! output that was read: nothing can overtake it. Once the process has exited, output is
//! drained until every stream reaches EOF or stays quiet for [`DRAIN_IDLE`] (a background
//! child may keep the pipe open forever).

use crate::channel::Channel;
use crate::reaper;
use crate::sessions::Sessions;
use crate::sys;
use crate::wire::{OutputFrame, Stream};
use msb_protocol::guest::AgentMessage;
use msb_protocol::FLAG_END;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The most read from a stream at once, and so the most data in one output frame: the
/// protocol's chunk, as file reads use. Each frame has a fixed cost on the way out (port
/// writes, the relay, the client), and a command that writes faster than the pump sends
/// needs a quarter of the frames it needed with 64 KiB.
pub const READ_CHUNK: usize = msb_protocol::MAX_PAYLOAD_CHUNK;
pub const DRAIN_IDLE: Duration = Duration::from_millis(200);

pub struct Pump {
    pub id: u32,
    pub generation: u64,
    pub pid: libc::pid_t,
    pub outputs: Vec<(Stream, Arc<OwnedFd>)>,
    /// Read end of the pipe on which the reaper delivers the wait status.
    pub exit: OwnedFd,
    pub timeout: Option<Duration>,
    pub channel: Arc<Channel>,
    pub sessions: Arc<Sessions>,
}

/// How a process ended, for the `Exited` message: (code, signal).
pub fn exit_fields(status: libc::c_int) -> (Option<i32>, Option<i32>) {
    if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (Some(libc::WEXITSTATUS(status)), None)
    }
}

enum Read {
    Data(usize),
    Eof,
    Nothing,
}

fn read_output(fd: &OwnedFd, buffer: &mut [u8]) -> Read {
    match sys::read(fd.as_fd(), buffer) {
        Ok(0) => Read::Eof,
        Ok(read) => Read::Data(read),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Read::Nothing,
        // A terminal's master reports EIO once the last holder of the slave is gone: that
        // is its end of file. Any other error ends the stream as well.
        Err(_) => Read::Eof,
    }
}

thread_local! {
    /// The frame buffer of the pump that ran last on this thread. Pumps run on reused threads
    /// (see [`crate::workers`]), and a fresh 256 KiB buffer is a mapping of its own whose
    /// pages fault in again as output arrives: 1.2 ms of an exec under TCG.
    static SPARE_FRAME: std::cell::Cell<Option<OutputFrame>> = const { std::cell::Cell::new(None) };
}

impl Pump {
    pub fn run(self) {
        let mut frame = SPARE_FRAME
            .take()
            .unwrap_or_else(|| OutputFrame::new(READ_CHUNK));
        self.pump(&mut frame);
        SPARE_FRAME.set(Some(frame));
    }

    fn pump(self, frame: &mut OutputFrame) {
        let mut open = vec![true; self.outputs.len()];
        let deadline = self.timeout.map(|timeout| Instant::now() + timeout);
        let mut timed_out = false;
        let mut status: Option<libc::c_int> = None;
        let mut last_output = Instant::now();
        loop {
            let wait = match status {
                Some(_) => match DRAIN_IDLE.checked_sub(last_output.elapsed()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => break,
                },
                None => match deadline {
                    Some(deadline) if !timed_out => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            // SIGKILL to the group: the command and everything it started.
                            let _ = sys::kill(-self.pid, libc::SIGKILL);
                            timed_out = true;
                            continue;
                        }
                        Some(left)
                    }
                    _ => None,
                },
            };
            let mut fds = Vec::with_capacity(self.outputs.len() + 1);
            let mut streams = Vec::with_capacity(self.outputs.len());
            for (index, (_, fd)) in self
                .outputs
                .iter()
                .enumerate()
                .filter(|(index, _)| open[*index])
            {
                fds.push(sys::pollfd(fd.as_raw_fd(), libc::POLLIN));
                streams.push(index);
            }
            if status.is_none() {
                fds.push(sys::pollfd(self.exit.as_raw_fd(), libc::POLLIN));
            }
            if sys::poll(&mut fds, wait).is_err() {
                // Only EINVAL/ENOMEM are possible; wait a little rather than spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            for (poll, &index) in fds.iter().zip(&streams) {
                if poll.revents == 0 {
                    continue;
                }
                let (stream, fd) = &self.outputs[index];
                match read_output(fd, frame.data_mut()) {
                    Read::Data(read) => {
                        last_output = Instant::now();
                        self.channel
                            .send_bytes(self.generation, frame.finish(self.id, *stream, read));
                    }
                    Read::Eof => open[index] = false,
                    Read::Nothing => {}
                }
            }
            if status.is_none() && fds.last().is_some_and(|exit| exit.revents != 0) {
                status = Some(self.read_status());
                last_output = Instant::now();
            }
            if status.is_some() && !open.contains(&true) {
                break;
            }
        }
        let (code, signal) = exit_fields(status.unwrap_or(libc::SIGKILL));
        self.sessions.finish(self.id, self.generation);
        self.channel.send(
            self.generation,
            self.id,
            FLAG_END,
            &AgentMessage::Exited {
                code,
                signal,
                timed_out,
            },
        );
    }

    fn read_status(&self) -> libc::c_int {
        let mut bytes = [0u8; 4];
        match sys::read(self.exit.as_fd(), &mut bytes) {
            Ok(4) => reaper::decode_status(bytes),
            // The reaper always writes 4 bytes at once; anything else would be a bug, and
            // the process is gone either way.
            _ => {
                log!("lost the exit status of pid {}", self.pid);
                libc::SIGKILL
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_become_code_or_signal() {
        assert_eq!(exit_fields(3 << 8), (Some(3), None));
        assert_eq!(exit_fields(0), (Some(0), None));
        assert_eq!(exit_fields(libc::SIGKILL), (None, Some(9)));
        assert_eq!(
            exit_fields(libc::SIGSEGV | 0x80),
            (None, Some(libc::SIGSEGV)),
            "core dumped"
        );
    }
}

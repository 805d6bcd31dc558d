//! Feeding a process's stdin from `Stdin` frames. A thread per session (from the agent's
//! [`Workers`]) does the writing, so a process that does not read its input never blocks the
//! channel's reader.

use crate::sys;
use crate::workers::Workers;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;

/// ^D, the end-of-file character of a terminal in canonical mode.
const TERMINAL_EOF: u8 = 0x04;

pub enum Input {
    Data(Vec<u8>),
    Close,
}

/// Starts the writer thread for `target` (a pipe's write end, or a terminal's master).
pub fn spawn(
    workers: &Workers,
    target: Arc<OwnedFd>,
    terminal: bool,
) -> std::io::Result<Sender<Input>> {
    let (sender, inputs) = mpsc::channel::<Input>();
    workers.run(move || {
        for input in inputs {
            let result = match input {
                Input::Data(data) => sys::write_all(target.as_fd(), &data),
                // A terminal stays open; its EOF is a character the line discipline reads.
                Input::Close if terminal => sys::write_all(target.as_fd(), &[TERMINAL_EOF]),
                // Dropping the pipe's write end (at the end of this thread) is the EOF.
                Input::Close => break,
            };
            if result.is_err() {
                break;
            }
        }
    })?;
    Ok(sender)
}

//! What a running file system request gets besides its own fields: its cancellation flag
//! and, for a write, the queue of its data.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

/// What the dispatcher hands a writer.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Data(Vec<u8>),
    Finish,
}

/// What a running request gets besides its own fields.
pub struct Job {
    /// Set when the host cancels the request or leaves; reads, writes and tree copies stop
    /// at their next step.
    pub cancel: Arc<AtomicBool>,
    /// The data of a `Write` (for any other request, a queue that stays empty).
    pub pieces: Receiver<Piece>,
}

impl Job {
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

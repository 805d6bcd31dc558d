//! The file system requests in progress, by request id, for the frames that steer them
//! (`FsChunk`, `FsFinish`, a cancelling `Signal`), with a memory of recently ended ids so
//! that a frame racing with a request's end is dropped quietly, as for exec sessions.

use super::job::Piece;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How many ended ids are remembered.
const ENDED_MEMORY: usize = 4096;
const IDLE_POLL: Duration = Duration::from_millis(10);

struct Transfer {
    /// The connection that started it.
    generation: u64,
    cancel: Arc<AtomicBool>,
    /// Where a write's data goes; `None` for other requests, and once cancelled.
    feed: Option<SyncSender<Piece>>,
}

impl Transfer {
    fn cancel(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        // Without a sender left, a writer waiting for data wakes up.
        self.feed = None;
    }

    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }
}

/// Where a data frame goes.
pub enum Feed {
    Writer(SyncSender<Piece>),
    /// The request ended or was cancelled a moment ago: drop the frame.
    Ended,
    /// A running request that takes no data.
    NotWriting,
    Unknown,
}

/// What a `Signal` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Cancel {
    Cancelled,
    Ended,
    Unknown,
}

#[derive(Debug, PartialEq, Eq)]
pub struct AlreadyRunning;

#[derive(Default)]
struct Inner {
    running: HashMap<u32, Transfer>,
    ended: VecDeque<u32>,
    ended_set: HashSet<u32>,
    /// Requests begun and not yet finished, including those a hang-up took out of `running`:
    /// their threads may still hold files open.
    unfinished: usize,
}

#[derive(Default)]
pub struct Transfers {
    inner: Mutex<Inner>,
}

impl Transfers {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers request `id`; returns its cancel flag.
    pub fn begin(
        &self,
        id: u32,
        generation: u64,
        feed: Option<SyncSender<Piece>>,
    ) -> Result<Arc<AtomicBool>, AlreadyRunning> {
        let mut inner = self.inner();
        if inner.running.contains_key(&id) {
            return Err(AlreadyRunning);
        }
        let cancel = Arc::new(AtomicBool::new(false));
        inner.ended_set.remove(&id);
        inner.running.insert(
            id,
            Transfer {
                generation,
                cancel: cancel.clone(),
                feed,
            },
        );
        inner.unfinished += 1;
        Ok(cancel)
    }

    /// The request's thread is done and about to send its last answer. Called exactly once
    /// per [`Transfers::begin`]; a request of an older connection no longer owns its id.
    pub fn finish(&self, id: u32, generation: u64) {
        let mut inner = self.inner();
        inner.unfinished = inner.unfinished.saturating_sub(1);
        let owned = inner
            .running
            .get(&id)
            .is_some_and(|transfer| transfer.generation == generation);
        if !owned {
            return;
        }
        inner.running.remove(&id);
        if inner.ended_set.insert(id) {
            inner.ended.push_back(id);
        }
        while inner.ended.len() > ENDED_MEMORY {
            if let Some(old) = inner.ended.pop_front() {
                inner.ended_set.remove(&old);
            }
        }
    }

    pub fn feed(&self, id: u32) -> Feed {
        let inner = self.inner();
        match inner.running.get(&id) {
            Some(transfer) if transfer.cancelled() => Feed::Ended,
            Some(transfer) => transfer.feed.clone().map_or(Feed::NotWriting, Feed::Writer),
            None if inner.ended_set.contains(&id) => Feed::Ended,
            None => Feed::Unknown,
        }
    }

    /// Cancels request `id`; its thread stops at its next step and answers "cancelled".
    pub fn cancel(&self, id: u32) -> Cancel {
        let mut inner = self.inner();
        if let Some(transfer) = inner.running.get_mut(&id) {
            transfer.cancel();
            return Cancel::Cancelled;
        }
        if inner.ended_set.contains(&id) {
            Cancel::Ended
        } else {
            Cancel::Unknown
        }
    }

    /// The connection `generation` ended: its requests (and older ones) are cancelled and
    /// lose their ids, which the next host may reuse.
    pub fn hang_up(&self, generation: u64) {
        let mut inner = self.inner();
        inner.running.retain(|_, transfer| {
            if transfer.generation > generation {
                return true;
            }
            transfer.cancel();
            false
        });
        inner.ended.clear();
        inner.ended_set.clear();
    }

    /// Waits up to `limit` for every request's thread to be done (and so to have closed its
    /// files). Returns whether they all are.
    pub fn wait_idle(&self, limit: Duration) -> bool {
        let started = Instant::now();
        loop {
            if self.inner().unfinished == 0 {
                return true;
            }
            if started.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(IDLE_POLL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::sync_channel;

    fn feed_kind(transfers: &Transfers, id: u32) -> &'static str {
        match transfers.feed(id) {
            Feed::Writer(_) => "writer",
            Feed::Ended => "ended",
            Feed::NotWriting => "not writing",
            Feed::Unknown => "unknown",
        }
    }

    #[test]
    fn data_goes_to_running_writes_and_is_dropped_after_their_end() {
        let transfers = Transfers::default();
        let (sender, _pieces) = sync_channel(1);
        transfers.begin(1, 1, Some(sender)).unwrap();
        transfers.begin(2, 1, None).unwrap();
        assert!(matches!(transfers.begin(1, 1, None), Err(AlreadyRunning)));
        assert_eq!(feed_kind(&transfers, 1), "writer");
        assert_eq!(feed_kind(&transfers, 2), "not writing");
        assert_eq!(feed_kind(&transfers, 3), "unknown");
        transfers.finish(1, 1);
        assert_eq!(feed_kind(&transfers, 1), "ended", "late chunks are dropped");
        assert_eq!(transfers.cancel(1), Cancel::Ended);
        assert_eq!(transfers.cancel(3), Cancel::Unknown);
    }

    #[test]
    fn cancelling_wakes_the_writer_and_silences_its_late_chunks() {
        let transfers = Transfers::default();
        let (sender, pieces) = sync_channel::<Piece>(1);
        let cancel = transfers.begin(7, 1, Some(sender)).unwrap();
        assert_eq!(transfers.cancel(7), Cancel::Cancelled);
        assert!(cancel.load(Ordering::SeqCst));
        assert!(pieces.recv().is_err(), "no sender is left");
        assert_eq!(feed_kind(&transfers, 7), "ended");
    }

    #[test]
    fn a_hang_up_cancels_and_forgets_the_old_connection() {
        let transfers = Transfers::default();
        let old = transfers.begin(5, 1, None).unwrap();
        transfers.begin(6, 1, None).unwrap();
        transfers.finish(6, 1);
        transfers.hang_up(1);
        assert!(old.load(Ordering::SeqCst));
        assert_eq!(feed_kind(&transfers, 5), "unknown");
        assert_eq!(feed_kind(&transfers, 6), "unknown");
        assert!(
            !transfers.wait_idle(Duration::ZERO),
            "5's thread still runs"
        );
        let new = transfers.begin(5, 2, None).unwrap();
        // The old request's thread ends late; the new one keeps the id.
        transfers.finish(5, 1);
        assert!(!transfers.wait_idle(Duration::ZERO));
        assert_eq!(feed_kind(&transfers, 5), "not writing");
        assert!(!new.load(Ordering::SeqCst));
        transfers.finish(5, 2);
        assert!(transfers.wait_idle(Duration::ZERO));
    }

    #[test]
    fn ended_memory_is_bounded() {
        let transfers = Transfers::default();
        for id in 0..(ENDED_MEMORY as u32 + 10) {
            transfers.begin(id, 1, None).unwrap();
            transfers.finish(id, 1);
        }
        assert_eq!(feed_kind(&transfers, 0), "unknown");
        assert_eq!(feed_kind(&transfers, ENDED_MEMORY as u32 + 9), "ended");
    }
}

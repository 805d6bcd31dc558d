//! The running exec sessions, by request id, for the frames that steer them (stdin, signals,
//! resizes), and a memory of recently finished ids, so that a frame racing with a process's
//! end is dropped quietly rather than answered with an error.

use crate::exec::input::Input;
use crate::sys;
use std::collections::{HashMap, HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};

/// How many finished ids are remembered.
const FINISHED_MEMORY: usize = 4096;

pub struct Session {
    /// The process group (the process is its leader: it ran `setsid`).
    pub pgid: libc::pid_t,
    /// `None` when stdin is `/dev/null` or was closed.
    pub input: Option<Sender<Input>>,
    /// The terminal's master, for resizes.
    pub terminal: Option<Arc<OwnedFd>>,
    /// The connection that started it.
    pub generation: u64,
}

/// What a steering frame found for its id.
pub enum Target<'a> {
    Running(&'a mut Session),
    /// Ended a moment ago: the frame is dropped silently.
    Finished,
    Unknown,
}

#[derive(Default)]
struct Inner {
    running: HashMap<u32, Session>,
    finished: VecDeque<u32>,
    finished_set: HashSet<u32>,
}

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

impl Sessions {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn is_running(&self, id: u32) -> bool {
        self.inner().running.contains_key(&id)
    }

    pub fn insert(&self, id: u32, session: Session) {
        let mut inner = self.inner();
        inner.finished_set.remove(&id);
        inner.running.insert(id, session);
    }

    /// Runs `action` on what `id` names.
    pub fn with<R>(&self, id: u32, action: impl FnOnce(Target<'_>) -> R) -> R {
        let mut inner = self.inner();
        if let Some(session) = inner.running.get_mut(&id) {
            return action(Target::Running(session));
        }
        if inner.finished_set.contains(&id) {
            action(Target::Finished)
        } else {
            action(Target::Unknown)
        }
    }

    /// The session's process ended and its last frame is about to be sent. A session of an
    /// older connection no longer owns its id (see [`Sessions::hang_up`]).
    pub fn finish(&self, id: u32, generation: u64) {
        let mut inner = self.inner();
        match inner.running.get(&id) {
            Some(session) if session.generation == generation => {}
            _ => return,
        }
        inner.running.remove(&id);
        if inner.finished_set.insert(id) {
            inner.finished.push_back(id);
        }
        while inner.finished.len() > FINISHED_MEMORY {
            if let Some(old) = inner.finished.pop_front() {
                inner.finished_set.remove(&old);
            }
        }
    }

    /// The connection `generation` ended: its sessions (and any older ones) lose their ids.
    /// Like a terminal hang-up, their process groups get SIGHUP and their stdin is closed;
    /// whatever they print from now on is dropped (see [`crate::channel::Channel`]).
    pub fn hang_up(&self, generation: u64) {
        let mut inner = self.inner();
        inner.running.retain(|_, session| {
            if session.generation > generation {
                return true;
            }
            let _ = sys::kill(-session.pgid, libc::SIGHUP);
            false
        });
        inner.finished.clear();
        inner.finished_set.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process group that cannot exist, so hang-ups in tests signal nobody.
    const NO_GROUP: libc::pid_t = libc::pid_t::MAX - 7;

    fn session(generation: u64) -> Session {
        Session {
            pgid: NO_GROUP,
            input: None,
            terminal: None,
            generation,
        }
    }

    fn kind(sessions: &Sessions, id: u32) -> &'static str {
        sessions.with(id, |target| match target {
            Target::Running(_) => "running",
            Target::Finished => "finished",
            Target::Unknown => "unknown",
        })
    }

    #[test]
    fn ids_go_from_running_to_finished() {
        let sessions = Sessions::default();
        sessions.insert(1, session(1));
        assert!(sessions.is_running(1));
        assert_eq!(kind(&sessions, 1), "running");
        assert_eq!(kind(&sessions, 2), "unknown");
        sessions.finish(1, 1);
        assert_eq!(kind(&sessions, 1), "finished");
        sessions.insert(1, session(1));
        assert_eq!(kind(&sessions, 1), "running", "an id can be reused");
    }

    #[test]
    fn a_hung_up_session_cannot_finish_its_successor() {
        let sessions = Sessions::default();
        sessions.insert(5, session(1));
        sessions.finish(9, 1);
        sessions.hang_up(1);
        assert_eq!(kind(&sessions, 5), "unknown");
        sessions.insert(5, session(2));
        // The old session's pump ends late; the new session with the same id stays.
        sessions.finish(5, 1);
        assert_eq!(kind(&sessions, 5), "running");
        sessions.hang_up(1);
        assert_eq!(
            kind(&sessions, 5),
            "running",
            "newer connections are not hung up"
        );
    }

    #[test]
    fn finished_memory_is_bounded() {
        let sessions = Sessions::default();
        for id in 0..(FINISHED_MEMORY as u32 + 10) {
            sessions.insert(id, session(1));
            sessions.finish(id, 1);
        }
        assert_eq!(kind(&sessions, 0), "unknown");
        assert_eq!(kind(&sessions, FINISHED_MEMORY as u32 + 9), "finished");
        assert_eq!(sessions.inner().finished_set.len(), FINISHED_MEMORY);
    }
}

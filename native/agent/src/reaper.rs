//! PID 1 reaps every process that ends in the guest, its own children and the orphans the
//! kernel hands to it. One thread waits for all of them and passes the status of each
//! process an exec session started to that session.
//!
//! Race-free by construction: a session's process is started while the registry is locked,
//! so the reaper cannot take its exit status before the session is registered for it.

use crate::sys;
use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Default)]
struct Registry {
    /// Write ends of the pipes on which registered processes' statuses are delivered.
    waiting: HashMap<libc::pid_t, OwnedFd>,
    /// Bumped on every fork, so an idle reaper can tell that a child may exist now.
    forks: u64,
}

#[derive(Default)]
pub struct Reaper {
    registry: Mutex<Registry>,
    forked: Condvar,
}

/// The raw `waitpid` status, as 4 little-endian bytes on the notification pipe.
pub fn encode_status(status: libc::c_int) -> [u8; 4] {
    status.to_le_bytes()
}

pub fn decode_status(bytes: [u8; 4]) -> libc::c_int {
    libc::c_int::from_le_bytes(bytes)
}

impl Reaper {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `spawn` (which starts a child and returns its pid) with the registry locked, and
    /// registers the child so that its wait status is written to `notify`.
    pub fn spawn_registered<E>(
        &self,
        notify: OwnedFd,
        spawn: impl FnOnce() -> Result<libc::pid_t, E>,
    ) -> Result<libc::pid_t, E> {
        let mut registry = self.registry();
        let pid = spawn()?;
        registry.waiting.insert(pid, notify);
        registry.forks += 1;
        self.forked.notify_all();
        Ok(pid)
    }

    /// The reaping loop, on its own thread; never returns.
    pub fn run(&self) -> ! {
        loop {
            let forks_before = self.registry().forks;
            let mut status = 0;
            // SAFETY: waitpid writes only into `status`.
            let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
            if pid > 0 {
                if let Some(notify) = self.registry().waiting.remove(&pid) {
                    // The session may be gone already (its process failed to exec); then
                    // the pipe is closed and the status is simply dropped.
                    let _ = sys::write(notify.as_fd(), &encode_status(status));
                }
                continue;
            }
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
                // No children at all: sleep until the next fork. Comparing fork counts closes
                // the window between waitpid failing and this wait starting.
                let registry = self.registry();
                let _registry = self
                    .forked
                    .wait_while(registry, |r| r.forks == forks_before)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_survive_the_pipe_encoding() {
        for status in [0, 3 << 8, libc::SIGKILL, 0x7f | (libc::SIGSTOP << 8), -1] {
            assert_eq!(decode_status(encode_status(status)), status);
        }
    }
}

//! PID 1 reaps every process. One thread waits for any child and hands each exit status to
//! the exec session that started the process; orphans adopted by init are reaped and dropped.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Condvar, Mutex};

/// How a process ended, as `waitpid` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    Code(i32),
    Signal(i32),
}

#[derive(Default)]
struct Registry {
    waiting: HashMap<libc::pid_t, Sender<ExitKind>>,
    children: usize,
}

pub struct Reaper {
    registry: Mutex<Registry>,
    spawned: Condvar,
}

impl Reaper {
    pub fn start() -> Self {
        Self {
            registry: Mutex::default(),
            spawned: Condvar::new(),
        }
    }

    /// Runs `fork` while holding the registry, so the process is registered before the
    /// reaper can see it exit. `fork` returns the new pid, or an error.
    pub fn spawn_registered<E>(
        &self,
        fork: impl FnOnce() -> Result<libc::pid_t, E>,
    ) -> Result<(libc::pid_t, Receiver<ExitKind>), E> {
        let mut registry = self.registry.lock().unwrap();
        let pid = fork()?;
        let (sender, receiver) = channel();
        registry.waiting.insert(pid, sender);
        registry.children += 1;
        self.spawned.notify_all();
        Ok((pid, receiver))
    }

    /// The reaping loop; never returns.
    pub fn run(&self) -> ! {
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes only into `status`.
            let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
            if pid < 0 {
                // No children at all: sleep until one is spawned.
                let registry = self.registry.lock().unwrap();
                let _unused = self
                    .spawned
                    .wait_while(registry, |r| r.children == 0)
                    .unwrap();
                continue;
            }
            let kind = if libc::WIFSIGNALED(status) {
                ExitKind::Signal(libc::WTERMSIG(status))
            } else {
                ExitKind::Code(libc::WEXITSTATUS(status))
            };
            let mut registry = self.registry.lock().unwrap();
            if let Some(sender) = registry.waiting.remove(&pid) {
                registry.children -= 1;
                let _ = sender.send(kind);
            }
        }
    }
}

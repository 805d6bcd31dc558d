//! Threads kept for reuse by the work every exec starts (its output pump, its stdin writer).
//!
//! Starting a thread took 0.6 ms of each `exec` under TCG (the stack's mapping and guard,
//! the clone, the new thread's first faults), on the path between the command's start and
//! its output. A finished job's thread waits [`IDLE_LIMIT`] for the next job before it ends,
//! so a burst of commands leaves no more threads behind than it ran at once, and not for long.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How long an idle thread waits for a job before it ends.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce() + Send>;

/// An idle thread: where to hand it its next job.
struct Idle {
    serial: u64,
    jobs: Sender<Job>,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Idle>,
    next_serial: u64,
}

#[derive(Default, Clone)]
pub struct Workers {
    pool: Arc<Mutex<Pool>>,
}

impl Workers {
    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `job` on an idle thread, or on a new one when none is idle.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let mut job: Job = Box::new(job);
        loop {
            let Some(idle) = self.pool().idle.pop() else {
                break;
            };
            // Only an idle thread that has just ended is gone; try the next one.
            match idle.jobs.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(returned)) => job = returned,
            }
        }
        let workers = self.clone();
        std::thread::Builder::new().spawn(move || workers.serve(job))?;
        Ok(())
    }

    /// A thread's life: its first job, then whatever it is handed while idle.
    fn serve(&self, first: Job) {
        let mut job = first;
        loop {
            job();
            let (jobs, next) = mpsc::channel();
            let serial = {
                let mut pool = self.pool();
                let serial = pool.next_serial;
                pool.next_serial += 1;
                pool.idle.push(Idle { serial, jobs });
                serial
            };
            match self.wait(&next, serial) {
                Some(next_job) => job = next_job,
                None => return,
            }
        }
    }

    /// The next job, or `None` when none came within [`IDLE_LIMIT`] and the thread may end.
    fn wait(&self, next: &Receiver<Job>, serial: u64) -> Option<Job> {
        match next.recv_timeout(IDLE_LIMIT) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                let mut pool = self.pool();
                if let Some(index) = pool.idle.iter().position(|idle| idle.serial == serial) {
                    pool.idle.swap_remove(index);
                    return None;
                }
                drop(pool);
                // Taken from the idle list just now: its job is on the way.
                next.recv().ok()
            }
        }
    }

    #[cfg(test)]
    fn idle_threads(&self) -> usize {
        self.pool().idle.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    fn thread_of_job(workers: &Workers) -> std::thread::ThreadId {
        let (sender, receiver) = channel();
        workers
            .run(move || sender.send(std::thread::current().id()).unwrap())
            .unwrap();
        receiver.recv().unwrap()
    }

    fn wait_for_idle(workers: &Workers, count: usize) {
        for _ in 0..500 {
            if workers.idle_threads() == count {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("{} idle threads, not {count}", workers.idle_threads());
    }

    #[test]
    fn a_finished_thread_runs_the_next_job() {
        let workers = Workers::default();
        let first = thread_of_job(&workers);
        wait_for_idle(&workers, 1);
        assert_eq!(thread_of_job(&workers), first);
    }

    #[test]
    fn jobs_run_at_once_on_as_many_threads_as_needed() {
        let workers = Workers::default();
        let (started, starts) = channel();
        let release = Arc::new(std::sync::Barrier::new(4));
        for _ in 0..3 {
            let started = started.clone();
            let release = release.clone();
            workers
                .run(move || {
                    started.send(std::thread::current().id()).unwrap();
                    release.wait();
                })
                .unwrap();
        }
        let threads: std::collections::HashSet<_> = starts.iter().take(3).collect();
        assert_eq!(threads.len(), 3, "none waited for another");
        release.wait();
        wait_for_idle(&workers, 3);
    }
}

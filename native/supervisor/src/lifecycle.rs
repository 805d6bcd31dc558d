//! How the VM ends, coordinated between the supervisor's threads: who asked for it and why,
//! whether the creator's exit still matters, and the replies waiting for QEMU's exit.

use crate::process;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How long the main thread lets stop/kill requests reply after the VM is gone.
const REPLY_GRACE: Duration = Duration::from_secs(2);

/// Why the VM is going away, when someone asked for it.
#[derive(Debug, Clone)]
pub struct StopRequest {
    pub reason: String,
}

#[derive(Default)]
struct ExitState {
    /// The creator's exit no longer stops the VM.
    detached: bool,
    requested: Option<StopRequest>,
    exited: bool,
    waiting_replies: usize,
}

/// Coordinates the end of the VM between the threads.
pub struct Lifecycle {
    state: Mutex<ExitState>,
    changed: Condvar,
    vmm_pid: u32,
}

impl Lifecycle {
    pub fn new(vmm_pid: u32) -> Self {
        Self {
            state: Mutex::default(),
            changed: Condvar::new(),
            vmm_pid,
        }
    }

    /// Records why the VM stops; the first reason wins.
    pub fn request(&self, reason: &str) {
        let mut state = self.state.lock().unwrap();
        state.requested.get_or_insert(StopRequest {
            reason: reason.to_string(),
        });
    }

    pub fn detach(&self) {
        self.state.lock().unwrap().detached = true;
    }

    pub fn is_detached(&self) -> bool {
        self.state.lock().unwrap().detached
    }

    pub fn kill_vm(&self, reason: &str) {
        self.request(reason);
        process::signal(self.vmm_pid, libc::SIGKILL);
    }

    /// Waits for the VM to be gone, killing it after `timeout`. The caller replies after this
    /// returns, so the main thread waits for it before exiting.
    pub fn wait_exited(&self, timeout: Duration) {
        let mut state = self.state.lock().unwrap();
        state.waiting_replies += 1;
        let (mut state, result) = self
            .changed
            .wait_timeout_while(state, timeout, |s| !s.exited)
            .unwrap();
        if result.timed_out() {
            drop(state);
            self.kill_vm("stop timed out; killed");
            state = self
                .changed
                .wait_while(self.state.lock().unwrap(), |s| !s.exited)
                .unwrap();
        }
        drop(state);
    }

    pub fn reply_sent(&self) {
        let mut state = self.state.lock().unwrap();
        state.waiting_replies -= 1;
        self.changed.notify_all();
    }

    pub fn requested(&self) -> Option<StopRequest> {
        self.state.lock().unwrap().requested.clone()
    }

    /// Wakes the threads waiting to reply to stop requests; called after the database says
    /// the sandbox stopped, so that a client that got its reply reads the final status.
    pub fn mark_exited(&self) {
        self.state.lock().unwrap().exited = true;
        self.changed.notify_all();
    }

    pub fn wait_replies(&self) {
        let state = self.state.lock().unwrap();
        let _ = self
            .changed
            .wait_timeout_while(state, REPLY_GRACE, |s| s.waiting_replies > 0)
            .unwrap();
    }
}

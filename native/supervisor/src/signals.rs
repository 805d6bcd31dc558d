//! Signals: termination signals become a graceful stop, and an attached sandbox's VM is
//! killed when the process that created it exits.

use crate::lifecycle::Lifecycle;
use crate::process;
use crate::relay::{self, Relay};
use std::sync::Arc;

const TERMINATION_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn termination_sigset() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local value.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in TERMINATION_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Termination signals are taken by one thread (sigwait) and turned into a graceful stop,
/// instead of killing the process and leaving a stale record behind.
pub fn block_termination_signals() {
    let set = termination_sigset();
    // SAFETY: changes this thread's mask; threads spawned afterwards inherit it.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

pub fn spawn_signal_waiter(lifecycle: Arc<Lifecycle>, relay: Arc<Relay>) {
    std::thread::spawn(move || {
        let set = termination_sigset();
        let mut signal = 0;
        // SAFETY: sigwait on a set that every thread blocks.
        if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
            relay.shutdown_guest(&format!("the supervisor received signal {signal}"));
            lifecycle.wait_exited(relay::STOP_TIMEOUT_ON_SIGNAL);
            lifecycle.reply_sent();
        }
    });
}

/// An attached sandbox dies with the process that created it.
pub fn spawn_parent_watch(parent: u32, lifecycle: Arc<Lifecycle>) {
    std::thread::spawn(move || {
        process::wait_for_exit(parent);
        if !lifecycle.is_detached() {
            lifecycle.kill_vm("the process that created it exited");
        }
    });
}

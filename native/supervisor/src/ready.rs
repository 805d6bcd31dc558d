//! The pipe on which the supervisor tells the process that started it how start-up went: one
//! line, `ready` or `error: REASON`.

use std::io::Write;
use std::os::fd::FromRawFd;

/// Reports the outcome of start-up to the process that created the sandbox.
pub struct ReadyPipe(Option<std::fs::File>);

impl ReadyPipe {
    pub fn new(fd: Option<i32>) -> Self {
        // SAFETY: the creator passes a pipe descriptor that this process owns from now on.
        // It must not leak into QEMU: the creator reads until every writer has closed it.
        Self(fd.map(|fd| unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            std::fs::File::from_raw_fd(fd)
        }))
    }

    pub fn send(&mut self, message: &str) {
        if let Some(mut pipe) = self.0.take() {
            let _ = writeln!(pipe, "{message}");
        }
    }
}

//! The `agent` virtio-serial port: finding its device, opening it, and reading from it.
//!
//! The descriptor is non-blocking. A virtio port blocks writers for as long as no host is
//! connected, and a blocked writer would hold the channel lock forever; with `O_NONBLOCK`
//! writers wait in `poll`, where a hang-up (`POLLHUP`) is visible. Readers poll as well.

use crate::sys;
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POLL_STEP: Duration = Duration::from_millis(5);
/// After this long without the port, say so on the console (and keep waiting).
const SLOW_PORT: Duration = Duration::from_secs(5);

/// The `/dev` node of the virtio-serial port named `name`, once the driver has created it
/// (ports are announced by the host asynchronously after `virtio_console` loads).
pub fn wait_for(name: &str) -> PathBuf {
    let started = Instant::now();
    let mut warned = false;
    loop {
        if let Some(path) = find(name).filter(|path| path.exists()) {
            return path;
        }
        if !warned && started.elapsed() > SLOW_PORT {
            log!("still waiting for the virtio-serial port named {name:?}");
            warned = true;
        }
        std::thread::sleep(POLL_STEP);
    }
}

fn find(name: &str) -> Option<PathBuf> {
    std::fs::read_dir("/sys/class/virtio-ports")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let found = std::fs::read_to_string(entry.path().join("name")).ok()?;
            (found.trim_end_matches(['\n', '\0']) == name)
                .then(|| Path::new("/dev").join(entry.file_name()))
        })
}

/// Opens the port for reading and writing (a port can be open only once at a time).
pub fn open(path: &Path) -> io::Result<OwnedFd> {
    let path = sys::cstring(&path.to_string_lossy())?;
    let flags = libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: a valid path.
    let fd = sys::check(unsafe { libc::open(path.as_ptr(), flags) })?;
    // SAFETY: just opened, owned here.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Blocking reads on the non-blocking port. End of file means no host is connected.
pub struct PortReader {
    port: Arc<OwnedFd>,
}

impl PortReader {
    pub fn new(port: Arc<OwnedFd>) -> Self {
        Self { port }
    }
}

impl io::Read for PortReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            match sys::read(self.port.as_fd(), buffer) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    use std::os::fd::AsRawFd;
                    // Wakes on data, and on a host hang-up (the next read then returns 0).
                    let mut fds = [sys::pollfd(self.port.as_raw_fd(), libc::POLLIN)];
                    sys::poll(&mut fds, None)?;
                }
                other => return other,
            }
        }
    }
}

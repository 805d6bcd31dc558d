//! Pseudo-terminals, opened with ioctls on `/dev/ptmx` (no glibc `openpty`, whose `grantpt`
//! would look up the `tty` group through NSS, which a static binary does not have).

use crate::sys;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

pub struct Pty {
    pub master: OwnedFd,
    pub slave: OwnedFd,
}

pub fn open(rows: u16, cols: u16) -> io::Result<Pty> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: a valid path.
    let master = sys::check(unsafe { libc::open(c"/dev/ptmx".as_ptr(), flags) })?;
    // SAFETY: just opened, owned here.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int; TIOCGPTPEER (Linux 4.13) opens the slave of this very
    // master, without a path lookup that could race with another devpts instance.
    let slave = unsafe {
        sys::check(libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock))?;
        sys::check(libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags))?
    };
    // SAFETY: just opened, owned here.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    sys::set_window_size(master.as_fd(), rows, cols)?;
    Ok(Pty { master, slave })
}

//! Thin, checked wrappers over the system calls the agent makes. Everything `unsafe` that is
//! not part of the forked child lives here, so the rest of the crate reads as plain Rust.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

/// Turns a C-style `-1 means errno` result into an `io::Result`.
pub fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// A C string, or `InvalidInput` when the text holds a NUL byte (which C would cut short).
pub fn cstring(text: &str) -> io::Result<CString> {
    CString::new(text)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("NUL byte in {text:?}")))
}

/// A path as a C string, or `InvalidInput` when it holds a NUL byte.
pub fn cpath(path: &Path) -> io::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("NUL byte in {}", path.display()),
        )
    })
}

pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let (source, target, fstype, data) = (
        cstring(source)?,
        cstring(target)?,
        cstring(fstype)?,
        cstring(data)?,
    );
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    })
    .map(drop)
}

/// Changes the flags of an existing mount (`MS_REMOUNT`), e.g. to make it read-only.
pub fn remount(target: &str, flags: libc::c_ulong) -> io::Result<()> {
    let target = cstring(target)?;
    // SAFETY: a valid path; source, type and data may be null for a remount.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | flags,
            std::ptr::null(),
        )
    })
    .map(drop)
}

/// The space of the file system holding a path, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub total: u64,
    pub free: u64,
    /// What an unprivileged user may still use (`free` minus the root reserve).
    pub available: u64,
}

pub fn statvfs(path: &Path) -> io::Result<Space> {
    let path = cpath(path)?;
    // SAFETY: statvfs is plain data; the call fills it.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a writable statvfs.
    check(unsafe { libc::statvfs(path.as_ptr(), &mut stats) })?;
    // 64-bit targets only, where block counts and sizes are both u64.
    let bytes = |blocks: u64| blocks.saturating_mul(stats.f_frsize);
    Ok(Space {
        total: bytes(stats.f_blocks),
        free: bytes(stats.f_bfree),
        available: bytes(stats.f_bavail),
    })
}

/// Creates a special file (FIFO, socket or device node) with `mode` (its type and
/// permission bits, the latter subject to the umask) and, for devices, number `device`.
pub fn mknod(path: &Path, mode: u32, device: u64) -> io::Result<()> {
    let path = cpath(path)?;
    // SAFETY: a valid path.
    check(unsafe { libc::mknod(path.as_ptr(), mode as libc::mode_t, device as libc::dev_t) })
        .map(drop)
}

pub fn unmount(target: &str) -> io::Result<()> {
    let target = cstring(target)?;
    // SAFETY: a valid path.
    check(unsafe { libc::umount2(target.as_ptr(), 0) }).map(drop)
}

/// Loads a kernel module from an open `.ko` file.
pub fn finit_module(module: BorrowedFd<'_>) -> io::Result<()> {
    let params = c"";
    // SAFETY: a valid descriptor, an empty parameter string and no flags.
    let result = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            module.as_raw_fd(),
            params.as_ptr(),
            0,
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// `RNDADDENTROPY` and `RNDRESEEDCRNG` from `<linux/random.h>` (`_IOW('R', 0x03, int[2])` and
/// `_IO('R', 0x07)`), which the libc crate does not define.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Mixes `bytes` into the kernel's input pool, credited as entropy, and makes the kernel's
/// generator reseed from it at once, so that every random byte from here on depends on them.
pub fn add_entropy_and_reseed(bytes: &[u8]) -> io::Result<()> {
    let random = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/urandom")?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut request = Vec::with_capacity(8 + bytes.len());
    request.extend_from_slice(&((bytes.len() * 8) as i32).to_ne_bytes());
    request.extend_from_slice(&(bytes.len() as i32).to_ne_bytes());
    request.extend_from_slice(bytes);
    // SAFETY: `request` is a rand_pool_info followed by `buf_size` bytes.
    check(unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY, request.as_ptr()) })?;
    // SAFETY: RNDRESEEDCRNG takes no argument.
    check(unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG) }).map(drop)
}

/// Sets the wall clock; the guest has no battery-backed clock of its own to trust.
pub fn set_realtime_clock(unix_time_ns: u64) -> io::Result<()> {
    let time = libc::timespec {
        tv_sec: (unix_time_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (unix_time_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec.
    check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &time) }).map(drop)
}

/// `uname -r`.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut names: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, writable utsname.
    if unsafe { libc::uname(&mut names) } != 0 {
        return String::new();
    }
    // SAFETY: the kernel NUL-terminates every field.
    unsafe { CStr::from_ptr(names.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

pub fn chroot(path: &str) -> io::Result<()> {
    let path = cstring(path)?;
    // SAFETY: a valid path.
    check(unsafe { libc::chroot(path.as_ptr()) }).map(drop)
}

/// Makes `directory` the working directory, even when it lies outside the current root.
pub fn fchdir(directory: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: a valid descriptor.
    check(unsafe { libc::fchdir(directory.as_raw_fd()) }).map(drop)
}

/// A pipe whose both ends close on exec, so no child inherits the other sessions' pipes.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors were just created and belong to nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Grows a pipe's buffer (best effort; the default is 64 KiB).
pub fn set_pipe_size(pipe: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    // SAFETY: F_SETPIPE_SZ on a valid descriptor.
    check(unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, bytes as libc::c_int) })
        .map(drop)
}

/// `read(2)` into `buffer`; `EINTR` is retried.
pub fn read(fd: BorrowedFd<'_>, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: the buffer is valid and writable for its length.
        let result =
            unsafe { libc::read(fd.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
        if result >= 0 {
            return Ok(result as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// `write(2)` of `bytes`; `EINTR` is retried.
pub fn write(fd: BorrowedFd<'_>, bytes: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: the buffer is valid for its length.
        let result = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        if result >= 0 {
            return Ok(result as usize);
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Writes all of `bytes` to a blocking descriptor.
pub fn write_all(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match write(fd, bytes)? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            written => bytes = &bytes[written..],
        }
    }
    Ok(())
}

/// `poll(2)`. `None` waits forever. `EINTR` counts as "nothing ready" so callers recompute
/// their deadlines.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let timeout = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
    // SAFETY: `fds` is a valid array of pollfd for its length.
    let result = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
    if result >= 0 {
        return Ok(result as usize);
    }
    let error = io::Error::last_os_error();
    if error.kind() == io::ErrorKind::Interrupted {
        Ok(0)
    } else {
        Err(error)
    }
}

pub fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Sends `signal` to a process (`target > 0`) or a process group (`target < 0`).
pub fn kill(target: libc::pid_t, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    check(unsafe { libc::kill(target, signal) }).map(drop)
}

pub fn set_window_size(terminal: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize.
    check(unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &size) }).map(drop)
}

/// Gives the slave of a pseudo-terminal to `uid`, as `grantpt` would.
pub fn fchown(fd: BorrowedFd<'_>, uid: u32) -> io::Result<()> {
    // SAFETY: a valid descriptor; gid -1 leaves the group alone.
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, u32::MAX) }).map(drop)
}

/// Makes sure descriptors 0, 1 and 2 are open. If the kernel could not give init a console,
/// they are closed, and the first pipes the agent creates would land on them: a child's
/// `dup2(fd, 1)` with `fd == 1` keeps close-on-exec set and the child would lose its stdout.
pub fn ensure_standard_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only inspects the descriptor table.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        for device in [c"/dev/console", c"/dev/null"] {
            // SAFETY: a valid path. Without O_CLOEXEC on purpose: these are init's own stdio.
            let opened = unsafe { libc::open(device.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
            if opened < 0 {
                continue;
            }
            if opened != fd {
                // SAFETY: both descriptors are valid; the spare one is closed right after.
                unsafe {
                    libc::dup2(opened, fd);
                    libc::close(opened);
                }
            }
            break;
        }
    }
}

pub fn sync() {
    // SAFETY: no preconditions.
    unsafe { libc::sync() };
}

/// `reboot(2)`; returns only on failure.
pub fn reboot(command: libc::c_int) -> io::Error {
    // SAFETY: no memory-safety preconditions.
    unsafe { libc::reboot(command) };
    io::Error::last_os_error()
}

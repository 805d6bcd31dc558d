//! Thin, checked wrappers over the system calls the agent needs.

use std::ffi::CString;
use std::io;
use std::path::Path;

pub fn cstring(text: &str) -> io::Result<CString> {
    CString::new(text)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("NUL byte in {text:?}")))
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub fn mount(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> io::Result<()> {
    let (source, target_c, fstype, data) = (
        cstring(source)?,
        cstring(target)?,
        cstring(fstype)?,
        cstring(data)?,
    );
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    })
    .map_err(|error| io::Error::new(error.kind(), format!("mount {target}: {error}")))
}

pub fn mkdir_all(path: &str) -> io::Result<()> {
    std::fs::create_dir_all(path)
        .map_err(|error| io::Error::new(error.kind(), format!("mkdir {path}: {error}")))
}

/// Loads a kernel module from a file (`finit_module`); a module already present is fine.
pub fn load_module(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)?;
    let params = cstring("")?;
    // SAFETY: a valid descriptor and an empty parameter string.
    let result =
        unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if result < 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::EEXIST) {
            return Err(error);
        }
    }
    Ok(())
}

pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: pointer and length describe `name`.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
}

pub fn set_clock(unix_time_ns: u64) -> io::Result<()> {
    let time = libc::timespec {
        tv_sec: (unix_time_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (unix_time_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: a valid timespec.
    check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &time) })
}

/// Moves the prepared root over `/` and enters it (the initramfs cannot be pivot_root'ed).
pub fn switch_root(new_root: &str) -> io::Result<()> {
    std::env::set_current_dir(new_root)?;
    mount(".", "/", "", libc::MS_MOVE, "")?;
    let dot = cstring(".")?;
    // SAFETY: a valid path string.
    check(unsafe { libc::chroot(dot.as_ptr()) })?;
    std::env::set_current_dir("/")
}

/// Brings the loopback interface up.
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a datagram socket used only for interface ioctls, closed below.
    unsafe {
        let socket = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(socket)?;
        let mut request: libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo\0") {
            *slot = *byte as libc::c_char;
        }
        let result = check(libc::ioctl(socket, libc::SIOCGIFFLAGS, &mut request)).and_then(|()| {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            check(libc::ioctl(socket, libc::SIOCSIFFLAGS, &request))
        });
        libc::close(socket);
        result
    }
}

/// Ends the VM. QEMU runs with `-no-reboot` and the kernel with `reboot=t`, so a reset makes
/// QEMU exit at once, on every accelerator and machine type.
pub fn power_off() -> ! {
    // SAFETY: sync and reboot have no memory-safety preconditions.
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_RESTART);
    }
    // reboot only returns on failure; PID 1 must never exit (the kernel would panic).
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

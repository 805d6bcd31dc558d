//! Process facts and controls the runtime needs from Linux.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

/// Start time of a process in clock ticks since boot (field 22 of `/proc/PID/stat`). Together
/// with the pid it names a process uniquely, even after the pid is reused.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past its last ')'.
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process `pid` that started at `started` is still alive (and not a zombie).
pub fn is_alive(pid: u32, started: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let state = stat[close + 2..].chars().next();
    state != Some('Z') && start_time(pid) == Some(started)
}

/// Makes the child receive SIGKILL when the thread that spawns it dies, so that no VMM or
/// helper survives its supervisor, whatever kills the supervisor. The child also starts with
/// no blocked signals, whatever the supervisor's threads block.
pub fn kill_with_parent(command: &mut Command) -> &mut Command {
    // SAFETY: prctl and sigprocmask are async-signal-safe and touch only the child's state.
    unsafe {
        command.pre_exec(|| {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() == 1 {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        })
    }
}

/// Lets the child inherit descriptor `fd` (every descriptor of ours is close-on-exec).
pub fn inherit_fd(command: &mut Command, fd: i32) -> &mut Command {
    // SAFETY: fcntl is async-signal-safe and changes only the child's descriptor table.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Blocks until process `pid` exits (pidfd), or returns at once if it is already gone.
pub fn wait_for_exit(pid: u32) {
    // SAFETY: plain syscalls on a descriptor we own.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) as i32;
        if fd < 0 {
            // Without pidfds (kernels before 5.3) poll; a pid already gone ends this at once.
            while libc::kill(pid as libc::pid_t, 0) == 0 {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            return;
        }
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        while libc::poll(&mut poll, 1, -1) < 0
            && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted
        {}
        libc::close(fd);
    }
}

/// Sends `signal` to `pid`; errors (already gone) are ignored.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, signal);
    }
}

/// Waits up to `timeout` for `pid` to exit, polling /proc.
pub fn wait_gone(pid: u32, started: u64, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while is_alive(pid, started) {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_reused_pid_is_not() {
        let pid = std::process::id();
        let started = start_time(pid).unwrap();
        assert!(is_alive(pid, started));
        assert!(!is_alive(pid, started + 1));
    }
}

//! Starting a sandbox's supervisor process (the `msb-supervisor` binary) and waiting for its
//! report on the ready pipe.
//!
//! The supervisor runs in a session of its own (terminal signals meant for the creator do not
//! reach it), with the sandbox's `supervisor.log` as its stdout and stderr. An attached
//! sandbox's supervisor is given the creator's pid and kills its VM when the creator exits.

use crate::error::{Result, RuntimeError};
use msb_supervisor::logging::{LogLevel, LOG_ENV};
use msb_supervisor::paths::SandboxFiles;
use msb_supervisor::ready::Outcome;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The supervisor is told where its ready pipe is with this descriptor number.
const READY_FD: i32 = 3;

/// How to run a supervisor: which binaries, attached or not, how long to wait for the guest.
pub struct Launch<'a> {
    pub supervisor: &'a Path,
    pub agent: &'a Path,
    pub detached: bool,
    pub timeout: Duration,
}

/// Starts the supervisor of `name` and waits until it reports the guest up (or a failure).
/// It logs at `log_level`, else at the runtime's own level (its default when that is off).
pub fn start_supervisor(
    name: &str,
    files: &SandboxFiles,
    launch: &Launch<'_>,
    log_level: Option<LogLevel>,
) -> Result<()> {
    let (ready_read, ready_write) = pipe()?;
    let mut command = supervisor_command(name, files, launch, log_level)?;
    let write_fd = ready_write.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::setsid();
            if libc::dup2(write_fd, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    log::debug!("starting {command:?}");
    let mut child = command.spawn().map_err(RuntimeError::io(format!(
        "starting {}",
        launch.supervisor.display()
    )))?;
    drop(ready_write);
    let outcome = read_ready(ready_read, launch.timeout);
    log::debug!(
        "supervisor of {name} (pid {}) reported {outcome:?}",
        child.id()
    );
    // The supervisor runs on in its own session; reap it in the background when it ends.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    match outcome.as_deref().and_then(Outcome::parse) {
        Some(Outcome::Ready) => Ok(()),
        Some(Outcome::PortInUse(address)) => Err(RuntimeError::PortInUse { address }),
        Some(Outcome::Failed(reason)) => Err(RuntimeError::SandboxStart {
            name: name.into(),
            reason,
        }),
        None => Err(RuntimeError::SandboxStart {
            name: name.into(),
            reason: format!(
                "the supervisor ended or did not report within {:?}; see {}",
                launch.timeout,
                files.supervisor_log().display()
            ),
        }),
    }
}

fn supervisor_command(
    name: &str,
    files: &SandboxFiles,
    launch: &Launch<'_>,
    log_level: Option<LogLevel>,
) -> Result<Command> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(files.supervisor_log())
        .map_err(RuntimeError::io("opening the supervisor log"))?;
    let mut command = Command::new(launch.supervisor);
    command
        .arg(name)
        .arg("--agent")
        .arg(launch.agent)
        .args(["--ready-fd", &READY_FD.to_string()])
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(RuntimeError::io("supervisor log"))?,
        )
        .stderr(log);
    match log_level.or_else(LogLevel::current) {
        Some(level) => command.env(LOG_ENV, level.as_str()),
        None => command.env_remove(LOG_ENV),
    };
    if !launch.detached {
        command.args(["--parent-pid", &std::process::id().to_string()]);
    }
    Ok(command)
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors that we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(RuntimeError::io("creating the ready pipe")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads the supervisor's one-line report, waiting at most `timeout`.
fn read_ready(pipe: OwnedFd, timeout: Duration) -> Option<String> {
    let mut poll = libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling one descriptor we own.
    let ready = unsafe {
        libc::poll(
            &mut poll,
            1,
            timeout.as_millis().min(i32::MAX as u128) as i32,
        )
    };
    if ready <= 0 {
        return None;
    }
    let mut text = String::new();
    std::fs::File::from(pipe).read_to_string(&mut text).ok()?;
    Some(text)
}

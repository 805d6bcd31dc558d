//! Starting a sandbox's supervisor process (the `msb-supervisor` binary) and waiting for its
//! report on the ready pipe.
//!
//! The supervisor runs in a session of its own (terminal signals meant for the creator do not
//! reach it), with the sandbox's `supervisor.log` as its stdout and stderr. An attached
//! sandbox's supervisor is given the creator's pid and kills its VM when the creator exits.
//!
//! The values of the sandbox's secrets go to the supervisor over a second pipe (descriptor
//! 4, `--secrets-fd`), and nowhere else: not its command line, and not its environment, from
//! which every variable holding a value is removed (QEMU inherits the supervisor's
//! environment, so that covers QEMU too).

use crate::error::{Result, RuntimeError};
use msb_supervisor::logging::{LogLevel, LOG_ENV};
use msb_supervisor::paths::SandboxFiles;
use msb_supervisor::ready::Outcome;
use msb_supervisor::secrets::{self, SecretValues};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The supervisor is told where its ready pipe is with this descriptor number.
const READY_FD: i32 = 3;
/// ... and where its secrets' values come from with this one.
const SECRETS_FD: i32 = 4;

/// How to run a supervisor: which binaries, attached or not, how long to wait for the guest,
/// and the values of the sandbox's secrets.
pub struct Launch<'a> {
    pub supervisor: &'a Path,
    pub agent: &'a Path,
    pub detached: bool,
    pub timeout: Duration,
    pub secret_values: &'a SecretValues,
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
    let (secrets_read, secrets_write) = pipe()?;
    let mut command = supervisor_command(name, files, launch, log_level)?;
    let write_fd = ready_write.as_raw_fd();
    let secrets_fd = secrets_read.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            libc::setsid();
            if libc::dup2(write_fd, READY_FD) < 0 || libc::dup2(secrets_fd, SECRETS_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // The command holds no value: its environment is scrubbed and the values go by pipe.
    log::debug!("starting {command:?}");
    let mut child = command.spawn().map_err(RuntimeError::io(format!(
        "starting {}",
        launch.supervisor.display()
    )))?;
    drop(ready_write);
    drop(secrets_read);
    // The supervisor reads the pipe to its end before anything else. One that died first
    // makes this fail, and the ready pipe then says how it ended.
    let sent = std::fs::File::from(secrets_write)
        .write_all(secrets::values_json(launch.secret_values).as_bytes());
    if let Err(error) = sent {
        log::debug!("the supervisor of {name} did not take its secrets: {error}");
    }
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
    for variable in variables_holding(launch.secret_values, std::env::vars_os()) {
        command.env_remove(variable);
    }
    command
        .arg(name)
        .arg("--agent")
        .arg(launch.agent)
        .args(["--ready-fd", &READY_FD.to_string()])
        .args(["--secrets-fd", &SECRETS_FD.to_string()])
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

/// The names of the variables of `environment` whose value contains a secret's value.
fn variables_holding(
    values: &SecretValues,
    environment: impl Iterator<Item = (OsString, OsString)>,
) -> Vec<OsString> {
    use std::os::unix::ffi::OsStrExt;
    environment
        .filter(|(_, text)| {
            let text = text.as_bytes();
            values.values().any(|value| {
                let value = value.expose().as_bytes();
                !value.is_empty() && text.windows(value.len()).any(|window| window == value)
            })
        })
        .map(|(name, _)| name)
        .collect()
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors that we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(RuntimeError::io("creating a pipe to the supervisor")(
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

#[cfg(test)]
mod tests {
    use super::*;
    use msb_net::secrets::SecretValue;

    #[test]
    fn every_variable_holding_a_value_is_found_wherever_the_value_is_in_it() {
        let values: SecretValues = [("OPENAI_API_KEY", "sk-live-123"), ("OTHER", "hunter2")]
            .into_iter()
            .map(|(name, value)| (name.to_string(), SecretValue::new(value.to_string())))
            .collect();
        let environment = [
            ("OPENAI_API_KEY", "sk-live-123"),
            ("HEADER", "Authorization: Bearer sk-live-123"),
            ("COPY", "xhunter2x"),
            ("PATH", "/usr/bin:/bin"),
            ("PARTIAL", "sk-live-12"),
        ]
        .into_iter()
        .map(|(name, value)| (OsString::from(name), OsString::from(value)));
        let found = variables_holding(&values, environment);
        assert_eq!(found, ["OPENAI_API_KEY", "HEADER", "COPY"]);
    }

    #[test]
    fn without_secrets_no_variable_is_removed() {
        let environment = std::env::vars_os();
        assert!(variables_holding(&SecretValues::new(), environment).is_empty());
    }
}

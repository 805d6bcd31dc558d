//! The forked child, from `fork` to `execve`, and how it reports a failure to start.
//!
//! The child of a multi-threaded process may only make async-signal-safe calls (another
//! thread may have held the allocator's lock at the fork), so [`Setup`] holds every pointer
//! ready-made. A failure is reported as (stage, errno) on a close-on-exec pipe: a successful
//! `execve` closes the pipe with nothing written, so the parent knows for certain which of
//! the two happened, and why.

use super::plan::{Plan, Resource};
use msb_protocol::guest::{AgentError, AgentErrorKind};
use std::ffi::{c_char, CString};
use std::os::fd::RawFd;

/// The step at which the child failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    Setsid = 1,
    ControllingTerminal = 2,
    Stdio = 3,
    Rlimit = 4,
    Groups = 5,
    Gid = 6,
    Uid = 7,
    Cwd = 8,
    Exec = 9,
    /// `execve` said ENOENT for a file that exists: its ELF interpreter (dynamic loader) or
    /// `#!` interpreter is missing.
    Interpreter = 10,
}

impl Stage {
    fn from_u32(value: u32) -> Option<Self> {
        use Stage::*;
        [
            Setsid,
            ControllingTerminal,
            Stdio,
            Rlimit,
            Groups,
            Gid,
            Uid,
            Cwd,
            Exec,
            Interpreter,
        ]
        .into_iter()
        .find(|stage| *stage as u32 == value)
    }
}

pub const REPORT_LEN: usize = 8;

/// A failure report: the stage and the errno, little-endian.
pub fn encode_failure(stage: Stage, errno: i32) -> [u8; REPORT_LEN] {
    let mut report = [0u8; REPORT_LEN];
    report[..4].copy_from_slice(&(stage as u32).to_le_bytes());
    report[4..].copy_from_slice(&errno.to_le_bytes());
    report
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    pub stage: Option<Stage>,
    pub errno: i32,
}

/// Reads what the child reported. `None`: nothing, so `execve` succeeded.
pub fn decode_failure(report: &[u8]) -> Option<Failure> {
    if report.is_empty() {
        return None;
    }
    let (stage, errno) = match report.get(..REPORT_LEN) {
        Some(bytes) => (
            u32::from_le_bytes(bytes[..4].try_into().unwrap_or_default()),
            i32::from_le_bytes(bytes[4..].try_into().unwrap_or_default()),
        ),
        None => (0, libc::EIO),
    };
    Some(Failure {
        stage: Stage::from_u32(stage),
        errno,
    })
}

impl Failure {
    /// The typed error the host receives.
    pub fn to_error(self, program: &str, cwd: &str) -> AgentError {
        let os = std::io::Error::from_raw_os_error(self.errno);
        let (kind, message) = match self.stage {
            Some(Stage::Exec) => match self.errno {
                libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::ENAMETOOLONG => {
                    (AgentErrorKind::CommandNotFound, format!("{program}: command not found ({os})"))
                }
                libc::EACCES | libc::EPERM | libc::ENOEXEC | libc::EISDIR | libc::ETXTBSY | libc::ELIBBAD => {
                    (AgentErrorKind::NotExecutable, format!("{program}: cannot execute ({os})"))
                }
                _ => (AgentErrorKind::Internal, format!("{program}: execve failed ({os})")),
            },
            Some(Stage::Interpreter) => (
                AgentErrorKind::NotExecutable,
                format!("{program}: cannot execute: its interpreter or dynamic loader is missing ({os})"),
            ),
            Some(Stage::Cwd) => {
                (AgentErrorKind::InvalidCwd, format!("cannot use {cwd:?} as the working directory ({os})"))
            }
            Some(Stage::Rlimit) => (AgentErrorKind::InvalidRequest, format!("cannot apply the resource limits ({os})")),
            Some(stage) => (AgentErrorKind::Internal, format!("cannot set up the process ({stage:?}: {os})")),
            None => (AgentErrorKind::Internal, format!("the process failed before exec ({os})")),
        };
        AgentError {
            kind,
            message,
            errno: Some(self.errno),
        }
    }
}

/// Everything the child touches, prepared before `fork`.
pub struct Setup<'a> {
    candidates: Vec<*const c_char>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    cwd: *const c_char,
    rlimits: &'a [(Resource, libc::rlimit)],
    /// (uid, gid, supplementary groups).
    identity: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    /// Descriptors to install as 0, 1 and 2 (all ≥ 3, see `sys::ensure_standard_fds`).
    stdio: [RawFd; 3],
    controlling_terminal: bool,
    report: RawFd,
    _plan: std::marker::PhantomData<&'a Plan>,
}

fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

impl<'a> Setup<'a> {
    pub fn new(
        plan: &'a Plan,
        stdio: [RawFd; 3],
        controlling_terminal: bool,
        report: RawFd,
    ) -> Self {
        Self {
            candidates: plan.candidates.iter().map(|c| c.as_ptr()).collect(),
            argv: pointers(&plan.argv),
            envp: pointers(&plan.envp),
            cwd: plan.cwd.as_ptr(),
            rlimits: &plan.rlimits,
            identity: plan
                .identity
                .as_ref()
                .map(|i| (i.uid, i.gid, i.groups.clone())),
            stdio,
            controlling_terminal,
            report,
            _plan: std::marker::PhantomData,
        }
    }
}

/// Runs in the child after `fork`; never returns.
///
/// # Safety
/// Must be called only in a freshly forked child. It makes async-signal-safe calls only and
/// reads nothing but `setup`, which the parent built before forking.
pub unsafe fn run(setup: &Setup<'_>) -> ! {
    let fail = |stage: Stage, errno: i32| -> ! {
        let report = encode_failure(stage, errno);
        libc::write(setup.report, report.as_ptr().cast(), report.len());
        libc::_exit(127)
    };
    let errno = || *libc::__errno_location();

    // The agent's own signal state must not leak into commands: an empty mask, and SIGPIPE
    // back to its default (Rust programs ignore it, and "ignored" survives execve).
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);

    // A session and process group of its own, so signals and timeouts reach everything the
    // command starts, and a terminal can become its controlling terminal.
    if libc::setsid() < 0 {
        fail(Stage::Setsid, errno());
    }
    if setup.controlling_terminal && libc::ioctl(setup.stdio[0], libc::TIOCSCTTY, 0) < 0 {
        fail(Stage::ControllingTerminal, errno());
    }
    for (target, fd) in setup.stdio.iter().enumerate() {
        if libc::dup2(*fd, target as RawFd) < 0 {
            fail(Stage::Stdio, errno());
        }
    }
    for (resource, limit) in setup.rlimits {
        if libc::setrlimit(*resource, limit) < 0 {
            fail(Stage::Rlimit, errno());
        }
    }
    if let Some((uid, gid, groups)) = &setup.identity {
        if libc::setgroups(groups.len(), groups.as_ptr()) < 0 {
            fail(Stage::Groups, errno());
        }
        if libc::setgid(*gid) < 0 {
            fail(Stage::Gid, errno());
        }
        if libc::setuid(*uid) < 0 {
            fail(Stage::Uid, errno());
        }
    }
    // After switching user, so the directory is checked with the user's permissions.
    if libc::chdir(setup.cwd) < 0 {
        fail(Stage::Cwd, errno());
    }
    // The PATH search of execvp, done here so that permissions and relative entries are
    // judged as the user, in the working directory.
    let mut denied = false;
    let mut last = libc::ENOENT;
    for candidate in &setup.candidates {
        libc::execve(*candidate, setup.argv.as_ptr(), setup.envp.as_ptr());
        last = errno();
        match last {
            libc::ENOENT if libc::access(*candidate, libc::F_OK) == 0 => {
                fail(Stage::Interpreter, last)
            }
            libc::ENOENT | libc::ENOTDIR => {}
            libc::EACCES => denied = true,
            _ => fail(Stage::Exec, last),
        }
    }
    fail(Stage::Exec, if denied { libc::EACCES } else { last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip() {
        let report = encode_failure(Stage::Cwd, libc::ENOTDIR);
        assert_eq!(
            decode_failure(&report),
            Some(Failure {
                stage: Some(Stage::Cwd),
                errno: libc::ENOTDIR
            })
        );
        assert_eq!(
            decode_failure(&[]),
            None,
            "no report means execve succeeded"
        );
        assert_eq!(decode_failure(&report[..3]).unwrap().stage, None);
        assert_eq!(
            decode_failure(&encode_failure(Stage::Interpreter, 2))
                .unwrap()
                .stage,
            Some(Stage::Interpreter)
        );
    }

    #[test]
    fn failures_map_to_typed_errors() {
        let kind = |stage, errno| {
            Failure {
                stage: Some(stage),
                errno,
            }
            .to_error("x", "/w")
            .kind
        };
        assert_eq!(
            kind(Stage::Exec, libc::ENOENT),
            AgentErrorKind::CommandNotFound
        );
        assert_eq!(
            kind(Stage::Exec, libc::ENOTDIR),
            AgentErrorKind::CommandNotFound
        );
        assert_eq!(
            kind(Stage::Exec, libc::EACCES),
            AgentErrorKind::NotExecutable
        );
        assert_eq!(
            kind(Stage::Exec, libc::ENOEXEC),
            AgentErrorKind::NotExecutable
        );
        assert_eq!(
            kind(Stage::Interpreter, libc::ENOENT),
            AgentErrorKind::NotExecutable
        );
        assert_eq!(kind(Stage::Cwd, libc::ENOENT), AgentErrorKind::InvalidCwd);
        assert_eq!(kind(Stage::Cwd, libc::EACCES), AgentErrorKind::InvalidCwd);
        assert_eq!(
            kind(Stage::Rlimit, libc::EPERM),
            AgentErrorKind::InvalidRequest
        );
        assert_eq!(kind(Stage::Uid, libc::EPERM), AgentErrorKind::Internal);
        let error = Failure {
            stage: Some(Stage::Exec),
            errno: libc::ENOENT,
        }
        .to_error("nope", "/");
        assert_eq!(error.errno, Some(libc::ENOENT));
        assert!(error.message.contains("nope"));
    }
}

//! The child, from its start to `execve`, and how it reports a failure to start.
//!
//! The child is started the way `posix_spawn` starts one: `clone(CLONE_VM | CLONE_VFORK)`,
//! on a small stack of its own, sharing the agent's memory until `execve`. A `fork` copies
//! the agent's page tables and leaves both sides to take copy-on-write faults, which under
//! TCG made it the largest part of an exec: from the start to the child's `execve` took
//! 18.2 ms with `fork` and 8.4 ms with the clone (medians, see docs/ARCHITECTURE.md, "What
//! happens on exec"). The calling thread sleeps until the child has called `execve` or
//! exited.
//!
//! Sharing memory with a multi-threaded agent, the child may only make async-signal-safe
//! calls on data prepared before the clone ([`Setup`] holds every pointer ready-made), and
//! changes its credentials with raw system calls: glibc's `setuid` and friends would signal
//! every thread of the agent to change theirs too. A failure is reported as (stage, errno) on
//! a close-on-exec pipe: a successful `execve` closes the pipe with nothing written, so the
//! parent knows for certain which of the two happened, and why.

use super::plan::{Plan, Resource};
use msb_protocol::guest::{AgentError, AgentErrorKind};
use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::os::fd::RawFd;

/// The child's stack, used only between the clone and `execve` (a few frames of `run`).
const CHILD_STACK: usize = 64 * 1024;
/// The size of the kernel's signal set (64 signals), which `rt_sigprocmask` insists on.
const KERNEL_SIGSET_BYTES: usize = 8;
/// Below the child's stack, so an overflow faults instead of writing into the agent's memory.
const GUARD: usize = 4096;

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

/// The kernel's `struct sigaction` on x86-64, for the raw `rt_sigaction`.
#[repr(C)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// A stack mapped for one child, with a guard page below it.
struct ChildStack {
    base: *mut c_void,
    len: usize,
}

impl ChildStack {
    fn map() -> io::Result<Self> {
        let len = CHILD_STACK + GUARD;
        // SAFETY: a fresh anonymous mapping, owned by the returned value.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Self { base, len };
        // SAFETY: the lowest page of the mapping just made.
        if unsafe { libc::mprotect(base, GUARD, libc::PROT_NONE) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The stack grows down: the child starts at the top.
    fn top(&self) -> *mut c_void {
        // SAFETY: one past the end of the mapping, as `clone` expects.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: unmapped once, after the child has left it (CLONE_VFORK).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

extern "C" fn child_entry(setup: *mut c_void) -> c_int {
    // SAFETY: `spawn` passes its `Setup`, which outlives the child's use of it (the parent
    // sleeps until the child has called execve or exited).
    unsafe { run(&*setup.cast::<Setup<'_>>()) }
}

/// Starts the child described by `setup` and returns its pid once it has called `execve`
/// (or failed before: see [`decode_failure`]).
pub fn spawn(setup: &Setup<'_>) -> io::Result<libc::pid_t> {
    let stack = ChildStack::map()?;
    // SAFETY: plain signal-mask calls on sets owned here. Every signal stays blocked from
    // the clone until the child has reset its handlers, so no agent handler runs on the
    // child's stack in the agent's memory.
    // Raw, as glibc's posix_spawn does: its wrapper would leave its internal signals open.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut previous: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::sigaddset(&mut all, libc::SIGRTMIN() - 2);
        libc::sigaddset(&mut all, libc::SIGRTMIN() - 1);
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &all,
            &mut previous,
            KERNEL_SIGSET_BYTES,
        );
    }
    // SAFETY: `child_entry` runs `run`, which only makes async-signal-safe calls on `setup`
    // and ends in execve or _exit; CLONE_VFORK keeps `setup` and `stack` alive until then.
    let pid = unsafe {
        libc::clone(
            child_entry,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (setup as *const Setup<'_>).cast_mut().cast(),
        )
    };
    let error = io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &previous,
            std::ptr::null_mut::<libc::sigset_t>(),
            KERNEL_SIGSET_BYTES,
        )
    };
    if pid < 0 {
        return Err(error);
    }
    Ok(pid)
}

/// Runs in the child after the clone; never returns.
///
/// # Safety
/// Must be called only in a child started by [`spawn`], with every signal blocked. It makes
/// async-signal-safe calls only and reads nothing but `setup`, which the parent built before.
unsafe fn run(setup: &Setup<'_>) -> ! {
    let fail = |stage: Stage, errno: i32| -> ! {
        let report = encode_failure(stage, errno);
        libc::write(setup.report, report.as_ptr().cast(), report.len());
        libc::_exit(127)
    };
    let errno = || *libc::__errno_location();

    // The agent's own signal state must not leak into commands, nor its handlers run here,
    // in its memory: every disposition back to its default (Rust programs ignore SIGPIPE, and
    // "ignored" survives execve), then an empty mask.
    // Raw, so that glibc's internal signals (32, 33) are reset too.
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signal in 1..=libc::SIGRTMAX() {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            &default,
            std::ptr::null_mut::<KernelSigaction>(),
            KERNEL_SIGSET_BYTES,
        );
    }
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    // Raw: glibc's wrapper leaves its internal signals as they were, and the clone blocked
    // them too.
    libc::syscall(
        libc::SYS_rt_sigprocmask,
        libc::SIG_SETMASK,
        &empty,
        std::ptr::null_mut::<libc::sigset_t>(),
        KERNEL_SIGSET_BYTES,
    );

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
        // Raw system calls: they change this task's credentials only (see the module doc).
        if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) < 0 {
            fail(Stage::Groups, errno());
        }
        if libc::syscall(libc::SYS_setgid, *gid) < 0 {
            fail(Stage::Gid, errno());
        }
        if libc::syscall(libc::SYS_setuid, *uid) < 0 {
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
    use msb_protocol::guest::ExecRequest;
    use std::io::Read;
    use std::os::fd::{AsRawFd, OwnedFd};

    struct Ran {
        failure: Option<Failure>,
        output: String,
        status: libc::c_int,
    }

    /// Starts `program` as the agent would, stdout and stderr on one pipe, and waits for it.
    fn run_child(program: &str, args: &[&str], user: Option<&str>) -> Ran {
        let request = ExecRequest {
            program: program.into(),
            args: args.iter().map(|arg| arg.to_string()).collect(),
            user: user.map(Into::into),
            ..ExecRequest::default()
        };
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        let group = std::fs::read_to_string("/etc/group").unwrap();
        let plan = super::super::plan::plan(&request, &passwd, &group).unwrap();
        let (stdin, _stdin_writer) = crate::sys::pipe().unwrap();
        let (output_reader, output_writer) = crate::sys::pipe().unwrap();
        let (report_reader, report_writer) = crate::sys::pipe().unwrap();
        let stdio = [
            stdin.as_raw_fd(),
            output_writer.as_raw_fd(),
            output_writer.as_raw_fd(),
        ];
        let setup = Setup::new(&plan, stdio, false, report_writer.as_raw_fd());
        let pid = spawn(&setup).unwrap();
        drop((report_writer, output_writer));
        let read_all = |fd: OwnedFd| {
            let mut bytes = Vec::new();
            std::fs::File::from(fd).read_to_end(&mut bytes).unwrap();
            bytes
        };
        let failure = decode_failure(&read_all(report_reader));
        let output = String::from_utf8(read_all(output_reader)).unwrap();
        let mut status = 0;
        // SAFETY: waits for our own child, writing only `status`.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        Ran {
            failure,
            output,
            status,
        }
    }

    #[test]
    fn a_child_runs_with_its_arguments_and_reports_its_exit() {
        let ran = run_child("sh", &["-c", "echo out; echo err >&2; exit 3"], None);
        assert_eq!(ran.failure, None);
        assert_eq!(ran.output, "out\nerr\n");
        assert!(libc::WIFEXITED(ran.status) && libc::WEXITSTATUS(ran.status) == 3);
    }

    #[test]
    fn a_child_gets_default_signal_handling_and_no_blocked_signals() {
        // The agent blocks every signal around the clone and ignores SIGPIPE itself.
        let ran = run_child("cat", &["/proc/self/status"], None);
        let field = |name: &str| {
            ran.output
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .map(str::trim)
                .unwrap()
                .to_string()
        };
        assert_eq!(field("SigBlk:"), "0000000000000000");
        assert_eq!(field("SigIgn:"), "0000000000000000");
    }

    #[test]
    fn a_child_switches_to_the_requested_user() {
        // The agent runs as root, and so must this test to change users.
        // SAFETY: plain queries.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "run the agent's tests as root"
        );
        let ran = run_child("sh", &["-c", "id -u; id -g; id -G"], Some("nobody"));
        assert_eq!(ran.failure, None);
        let lines: Vec<&str> = ran.output.lines().collect();
        assert_eq!(lines[0], "65534", "{}", ran.output);
        assert_eq!(lines[1], lines[2], "no groups beyond the user's own");
        // SAFETY: plain queries; the test process itself stays root.
        assert_eq!(unsafe { (libc::getuid(), libc::getgid()) }, (0, 0));
    }

    #[test]
    fn a_missing_program_is_reported_as_an_exec_failure() {
        let ran = run_child("/nonexistent/program", &[], None);
        assert_eq!(
            ran.failure,
            Some(Failure {
                stage: Some(Stage::Exec),
                errno: libc::ENOENT
            })
        );
        assert!(libc::WIFEXITED(ran.status) && libc::WEXITSTATUS(ran.status) == 127);
    }

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

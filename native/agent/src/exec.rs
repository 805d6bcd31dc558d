//! Running commands: start a process (pipes or a pseudo-terminal), stream its output, feed
//! its input, deliver signals and resizes, and report how it ended.

use crate::channel::Channel;
use crate::reaper::{ExitKind, Reaper};
use crate::{sys, users};
use msb_protocol::guest::{AgentError, AgentErrorKind, AgentMessage, ExecRequest, TerminalSize};
use msb_protocol::FLAG_END;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const READ_CHUNK: usize = 64 * 1024;
/// After the process exits, output still arriving (from what it left in the pipe, or from a
/// background child holding the pipe) is forwarded until it pauses this long.
const DRAIN_IDLE: Duration = Duration::from_millis(200);
/// ^D: the end-of-file key of a terminal in canonical mode.
const TERMINAL_EOF: u8 = 0x04;

enum Input {
    Data(Vec<u8>),
    Close,
}

struct Session {
    pid: libc::pid_t,
    input: Option<Sender<Input>>,
    terminal: Option<Arc<OwnedFd>>,
}

#[derive(Default)]
pub struct Sessions {
    running: Mutex<HashMap<u32, Session>>,
}

fn error(kind: AgentErrorKind, message: impl Into<String>, errno: Option<i32>) -> AgentError {
    AgentError {
        kind,
        message: message.into(),
        errno,
    }
}

impl Sessions {
    pub fn write_input(&self, id: u32, data: Vec<u8>) {
        if let Some(sender) = self
            .running
            .lock()
            .unwrap()
            .get(&id)
            .and_then(|s| s.input.as_ref())
        {
            let _ = sender.send(Input::Data(data));
        }
    }

    pub fn close_input(&self, id: u32) {
        if let Some(sender) = self
            .running
            .lock()
            .unwrap()
            .get(&id)
            .and_then(|s| s.input.as_ref())
        {
            let _ = sender.send(Input::Close);
        }
    }

    /// Signals the whole process group: the command and everything it started.
    pub fn signal(&self, id: u32, signal: i32) {
        if let Some(session) = self.running.lock().unwrap().get(&id) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(-session.pid, signal) };
        }
    }

    pub fn resize(&self, id: u32, size: TerminalSize) {
        if let Some(terminal) = self
            .running
            .lock()
            .unwrap()
            .get(&id)
            .and_then(|s| s.terminal.clone())
        {
            set_window_size(terminal.as_raw_fd(), size);
        }
    }
}

fn set_window_size(fd: RawFd, size: TerminalSize) {
    let window = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &window) };
}

/// Everything the child needs, prepared before `fork` (the child may only make
/// async-signal-safe calls).
struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    identity: Option<users::Identity>,
    rlimits: Vec<(libc::__rlimit_resource_t, libc::rlimit)>,
}

pub fn start(
    id: u32,
    request: ExecRequest,
    channel: &Arc<Channel>,
    reaper: &Arc<Reaper>,
    sessions: &Arc<Sessions>,
) -> Result<(), AgentError> {
    let prepared = prepare(&request)?;
    let stdio = Stdio::open(&request).map_err(|e| {
        error(
            AgentErrorKind::Internal,
            format!("stdio: {e}"),
            e.raw_os_error(),
        )
    })?;
    let (report_read, report_write) = pipe().map_err(|e| {
        error(
            AgentErrorKind::Internal,
            format!("pipe: {e}"),
            e.raw_os_error(),
        )
    })?;
    let (pid, exit) = reaper
        .spawn_registered(|| {
            // SAFETY: the child only calls async-signal-safe functions, then execs or exits.
            match unsafe { libc::fork() } {
                -1 => Err(std::io::Error::last_os_error()),
                0 => unsafe { child(&prepared, &stdio, report_write.as_raw_fd()) },
                pid => Ok(pid),
            }
        })
        .map_err(|e| {
            error(
                AgentErrorKind::Internal,
                format!("fork: {e}"),
                e.raw_os_error(),
            )
        })?;
    drop(report_write);
    let parent = stdio.into_parent();
    if let Some(failure) = read_child_failure(report_read) {
        return Err(failure.into_error(&request));
    }
    channel.send(id, 0, &AgentMessage::Started { pid: pid as u32 });

    let progress = Arc::new(Progress::default());
    let mut input = None;
    if let Some(writer) = parent.input {
        let (sender, receiver) = mpsc::channel::<Input>();
        let is_terminal = parent.terminal.is_some();
        std::thread::spawn(move || feed_input(writer, receiver, is_terminal));
        input = Some(sender);
    }
    for (stream, reader) in parent.outputs {
        spawn_reader(id, stream, reader, channel.clone(), progress.clone());
    }
    sessions.running.lock().unwrap().insert(
        id,
        Session {
            pid,
            input,
            terminal: parent.terminal,
        },
    );

    let (channel, sessions) = (channel.clone(), sessions.clone());
    let timeout = request.timeout_ms.map(Duration::from_millis);
    std::thread::spawn(move || {
        let (kind, timed_out) = wait_exit(pid, &exit, timeout);
        progress.wait_drained();
        sessions.running.lock().unwrap().remove(&id);
        let (code, signal) = match kind {
            ExitKind::Code(code) => (Some(code), None),
            ExitKind::Signal(signal) => (None, Some(signal)),
        };
        channel.send(
            id,
            FLAG_END,
            &AgentMessage::Exited {
                code,
                signal,
                timed_out,
            },
        );
    });
    Ok(())
}

fn wait_exit(
    pid: libc::pid_t,
    exit: &std::sync::mpsc::Receiver<ExitKind>,
    timeout: Option<Duration>,
) -> (ExitKind, bool) {
    let lost = ExitKind::Signal(libc::SIGKILL);
    if let Some(timeout) = timeout {
        match exit.recv_timeout(timeout) {
            Ok(kind) => return (kind, false),
            Err(RecvTimeoutError::Disconnected) => return (lost, false),
            Err(RecvTimeoutError::Timeout) => {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                return (exit.recv().unwrap_or(lost), true);
            }
        }
    }
    (exit.recv().unwrap_or(lost), false)
}

fn prepare(request: &ExecRequest) -> Result<Prepared, AgentError> {
    let invalid = |what: &str| {
        error(
            AgentErrorKind::InvalidRequest,
            format!("{what} contains a NUL byte"),
            None,
        )
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let identity = match &request.user {
        Some(spec) => Some(
            users::resolve(
                spec,
                &passwd,
                &std::fs::read_to_string("/etc/group").unwrap_or_default(),
            )
            .ok_or_else(|| {
                error(
                    AgentErrorKind::UnknownUser,
                    format!("no user {spec:?} in the guest"),
                    None,
                )
            })?,
        ),
        None => None,
    };
    let home = identity
        .as_ref()
        .map(|i| i.home.clone())
        .unwrap_or_else(|| users::root_home(&passwd));
    let mut env: Vec<(String, String)> =
        vec![("PATH".into(), DEFAULT_PATH.into()), ("HOME".into(), home)];
    if request.tty.is_some() {
        env.push(("TERM".into(), "xterm-256color".into()));
    }
    for (key, value) in &request.env {
        env.retain(|(existing, _)| existing != key);
        env.push((key.clone(), value.clone()));
    }
    let search_path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let path = resolve_program(&request.program, &search_path)?;
    let cwd = request.cwd.clone().unwrap_or_else(|| "/".into());
    if !std::path::Path::new(&cwd).is_dir() {
        return Err(error(
            AgentErrorKind::InvalidCwd,
            format!("working directory {cwd:?} does not exist or is not a directory"),
            Some(libc::ENOENT),
        ));
    }
    let rlimits = request
        .rlimits
        .iter()
        .map(|limit| {
            let resource = rlimit_resource(&limit.resource).ok_or_else(|| {
                error(
                    AgentErrorKind::InvalidRequest,
                    format!("unknown rlimit {:?}", limit.resource),
                    None,
                )
            })?;
            Ok((
                resource,
                libc::rlimit {
                    rlim_cur: limit.soft,
                    rlim_max: limit.hard,
                },
            ))
        })
        .collect::<Result<_, AgentError>>()?;
    Ok(Prepared {
        path: sys::cstring(&path).map_err(|_| invalid("program"))?,
        argv: std::iter::once(&request.program)
            .chain(&request.args)
            .map(|arg| sys::cstring(arg))
            .collect::<Result<_, _>>()
            .map_err(|_| invalid("an argument"))?,
        envp: env
            .iter()
            .map(|(k, v)| sys::cstring(&format!("{k}={v}")))
            .collect::<Result<_, _>>()
            .map_err(|_| invalid("the environment"))?,
        cwd: sys::cstring(&cwd).map_err(|_| invalid("cwd"))?,
        identity,
        rlimits,
    })
}

fn resolve_program(program: &str, search_path: &str) -> Result<String, AgentError> {
    let not_found = || {
        error(
            AgentErrorKind::CommandNotFound,
            format!("{program}: command not found"),
            Some(libc::ENOENT),
        )
    };
    if program.is_empty() {
        return Err(not_found());
    }
    if program.contains('/') {
        return if std::path::Path::new(program).exists() {
            Ok(program.into())
        } else {
            Err(not_found())
        };
    }
    search_path
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| format!("{dir}/{program}"))
        .find(|candidate| std::fs::metadata(candidate).is_ok_and(|m| m.is_file()))
        .ok_or_else(not_found)
}

/// Maps a resource name (`nofile`, `as`, ...) to its `RLIMIT_*` constant.
pub fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "cpu" => libc::RLIMIT_CPU,
        "fsize" => libc::RLIMIT_FSIZE,
        "data" => libc::RLIMIT_DATA,
        "stack" => libc::RLIMIT_STACK,
        "core" => libc::RLIMIT_CORE,
        "rss" => libc::RLIMIT_RSS,
        "nproc" => libc::RLIMIT_NPROC,
        "nofile" => libc::RLIMIT_NOFILE,
        "memlock" => libc::RLIMIT_MEMLOCK,
        "as" => libc::RLIMIT_AS,
        "locks" => libc::RLIMIT_LOCKS,
        "sigpending" => libc::RLIMIT_SIGPENDING,
        "msgqueue" => libc::RLIMIT_MSGQUEUE,
        "nice" => libc::RLIMIT_NICE,
        "rtprio" => libc::RLIMIT_RTPRIO,
        "rttime" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

// --- standard streams --------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// Both ends of the child's standard streams, before the fork.
struct Stdio {
    /// Descriptors the child installs as 0, 1, 2.
    child: [OwnedFd; 3],
    input: Option<File>,
    outputs: Vec<(Stream, File)>,
    terminal: Option<Arc<OwnedFd>>,
    controlling_tty: bool,
}

/// The parent's ends, after the fork.
struct ParentEnds {
    input: Option<File>,
    outputs: Vec<(Stream, File)>,
    terminal: Option<Arc<OwnedFd>>,
}

impl Stdio {
    fn open(request: &ExecRequest) -> std::io::Result<Self> {
        if let Some(size) = request.tty {
            let (master, slave) = open_terminal(size)?;
            let master = Arc::new(master);
            let dup = |fd: &OwnedFd| fd.try_clone();
            return Ok(Self {
                child: [dup(&slave)?, dup(&slave)?, slave],
                input: Some(File::from(master.try_clone()?)),
                outputs: vec![(Stream::Stdout, File::from(master.try_clone()?))],
                terminal: Some(master),
                controlling_tty: true,
            });
        }
        let (stdin_child, input) = if request.stdin {
            let (read, write) = pipe()?;
            (read, Some(File::from(write)))
        } else {
            (OwnedFd::from(File::open("/dev/null")?), None)
        };
        let (stdout_read, stdout_write) = pipe()?;
        let (stderr_read, stderr_write) = pipe()?;
        Ok(Self {
            child: [stdin_child, stdout_write, stderr_write],
            input,
            outputs: vec![
                (Stream::Stdout, File::from(stdout_read)),
                (Stream::Stderr, File::from(stderr_read)),
            ],
            terminal: None,
            controlling_tty: false,
        })
    }

    /// Closes the child's ends in the parent, so EOF arrives when the child is done.
    fn into_parent(self) -> ParentEnds {
        ParentEnds {
            input: self.input,
            outputs: self.outputs,
            terminal: self.terminal,
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two new descriptors that we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn open_terminal(size: TerminalSize) -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave) = (0, 0);
    let window = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors; the name buffer and termios are optional.
    if unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &window,
        )
    } != 0
    {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nobody else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: setting FD_CLOEXEC on descriptors we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok((master, slave))
}

// --- the child -----------------------------------------------------------------------------

#[derive(Clone, Copy)]
#[repr(u8)]
enum Stage {
    Stdio = 1,
    Rlimit = 2,
    Cwd = 3,
    User = 4,
    Exec = 5,
}

/// Runs in the forked child: only async-signal-safe calls. On failure, reports the stage and
/// errno through `report` (closed by exec on success) and exits.
unsafe fn child(prepared: &Prepared, stdio: &Stdio, report: RawFd) -> ! {
    let fail = |stage: Stage| -> ! {
        let errno = *libc::__errno_location();
        let mut message = [0u8; 5];
        message[0] = stage as u8;
        message[1..].copy_from_slice(&errno.to_le_bytes());
        libc::write(report, message.as_ptr().cast(), message.len());
        libc::_exit(127)
    };
    let mut no_signals: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut no_signals);
    libc::sigprocmask(libc::SIG_SETMASK, &no_signals, std::ptr::null_mut());
    // The agent ignores SIGPIPE (Rust's default); commands expect the default action.
    libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    libc::setsid();
    if stdio.controlling_tty && libc::ioctl(stdio.child[0].as_raw_fd(), libc::TIOCSCTTY, 0) != 0 {
        fail(Stage::Stdio);
    }
    for (target, fd) in stdio.child.iter().enumerate() {
        if libc::dup2(fd.as_raw_fd(), target as i32) < 0 {
            fail(Stage::Stdio);
        }
    }
    for (resource, limit) in &prepared.rlimits {
        if libc::setrlimit(*resource, limit) != 0 {
            fail(Stage::Rlimit);
        }
    }
    if libc::chdir(prepared.cwd.as_ptr()) != 0 {
        fail(Stage::Cwd);
    }
    if let Some(identity) = &prepared.identity {
        let groups = [identity.gid];
        if libc::setgroups(1, groups.as_ptr()) != 0
            || libc::setgid(identity.gid) != 0
            || libc::setuid(identity.uid) != 0
        {
            fail(Stage::User);
        }
    }
    let mut argv: Vec<*const libc::c_char> = prepared.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = prepared.envp.iter().map(|e| e.as_ptr()).collect();
    envp.push(std::ptr::null());
    libc::execve(prepared.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
    fail(Stage::Exec)
}

struct ChildFailure {
    stage: u8,
    errno: i32,
}

fn read_child_failure(report: OwnedFd) -> Option<ChildFailure> {
    let mut message = [0u8; 5];
    let mut file = File::from(report);
    file.read_exact(&mut message).ok()?;
    Some(ChildFailure {
        stage: message[0],
        errno: i32::from_le_bytes(message[1..].try_into().ok()?),
    })
}

impl ChildFailure {
    fn into_error(self, request: &ExecRequest) -> AgentError {
        let os = std::io::Error::from_raw_os_error(self.errno);
        let (kind, message) = match self.stage {
            s if s == Stage::Exec as u8 => match self.errno {
                libc::ENOENT => (
                    AgentErrorKind::CommandNotFound,
                    format!("{}: command not found ({os})", request.program),
                ),
                _ => (
                    AgentErrorKind::NotExecutable,
                    format!("{}: cannot execute ({os})", request.program),
                ),
            },
            s if s == Stage::Cwd as u8 => (
                AgentErrorKind::InvalidCwd,
                format!("cannot enter the working directory: {os}"),
            ),
            s if s == Stage::Rlimit as u8 => (
                AgentErrorKind::InvalidRequest,
                format!("cannot apply a resource limit: {os}"),
            ),
            s if s == Stage::User as u8 => (
                AgentErrorKind::UnknownUser,
                format!("cannot switch user: {os}"),
            ),
            _ => (
                AgentErrorKind::Internal,
                format!("cannot set up the process: {os}"),
            ),
        };
        error(kind, message, Some(self.errno))
    }
}

// --- output and input ---------------------------------------------------------------------

/// Tracks output streams still open and when data last arrived, to drain after exit.
struct Progress {
    state: Mutex<(usize, Instant)>,
    changed: Condvar,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            state: Mutex::new((0, Instant::now())),
            changed: Condvar::new(),
        }
    }
}

impl Progress {
    fn opened(&self) {
        self.state.lock().unwrap().0 += 1;
    }

    fn data(&self) {
        self.state.lock().unwrap().1 = Instant::now();
    }

    fn closed(&self) {
        self.state.lock().unwrap().0 -= 1;
        self.changed.notify_all();
    }

    /// Returns once every stream reached EOF, or output paused for [`DRAIN_IDLE`].
    fn wait_drained(&self) {
        let mut state = self.state.lock().unwrap();
        loop {
            let (open, last) = *state;
            if open == 0 || last.elapsed() >= DRAIN_IDLE {
                return;
            }
            state = self
                .changed
                .wait_timeout(state, DRAIN_IDLE - last.elapsed())
                .unwrap()
                .0;
        }
    }
}

fn spawn_reader(
    id: u32,
    stream: Stream,
    mut file: File,
    channel: Arc<Channel>,
    progress: Arc<Progress>,
) {
    progress.opened();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; READ_CHUNK];
        // A terminal reports EIO once the last process holding it exits: that is its EOF.
        while let Ok(read) = file.read(&mut buffer) {
            if read == 0 {
                break;
            }
            progress.data();
            let data = buffer[..read].to_vec();
            let message = match stream {
                Stream::Stdout => AgentMessage::Stdout { data },
                Stream::Stderr => AgentMessage::Stderr { data },
            };
            channel.send(id, 0, &message);
        }
        progress.closed();
    });
}

fn feed_input(mut writer: File, inputs: std::sync::mpsc::Receiver<Input>, is_terminal: bool) {
    for input in inputs {
        match input {
            Input::Data(data) => {
                if writer.write_all(&data).is_err() {
                    return;
                }
            }
            Input::Close if is_terminal => {
                let _ = writer.write_all(&[TERMINAL_EOF]);
            }
            // Dropping the pipe's write end is the process's EOF.
            Input::Close => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_sixteen_rlimits_are_known() {
        let names = [
            "cpu",
            "fsize",
            "data",
            "stack",
            "core",
            "rss",
            "nproc",
            "nofile",
            "memlock",
            "as",
            "locks",
            "sigpending",
            "msgqueue",
            "nice",
            "rtprio",
            "rttime",
        ];
        assert!(names.iter().all(|name| rlimit_resource(name).is_some()));
        assert_eq!(rlimit_resource("bogus"), None);
    }

    #[test]
    fn programs_resolve_through_path() {
        assert_eq!(
            resolve_program("sh", "/nonexistent:/bin").unwrap(),
            "/bin/sh"
        );
        assert_eq!(
            resolve_program("nope-not-here", "/bin").unwrap_err().kind,
            AgentErrorKind::CommandNotFound
        );
        assert_eq!(
            resolve_program("/no/such", "/bin").unwrap_err().kind,
            AgentErrorKind::CommandNotFound
        );
    }

    #[test]
    fn exec_failures_map_to_typed_errors() {
        let request = ExecRequest {
            program: "x".into(),
            ..ExecRequest::default()
        };
        let kind = |stage: Stage, errno| {
            ChildFailure {
                stage: stage as u8,
                errno,
            }
            .into_error(&request)
            .kind
        };
        assert_eq!(
            kind(Stage::Exec, libc::ENOENT),
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
        assert_eq!(kind(Stage::Cwd, libc::ENOTDIR), AgentErrorKind::InvalidCwd);
    }
}

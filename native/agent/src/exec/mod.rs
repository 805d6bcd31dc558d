//! Running commands: `Exec` requests become processes with pipes or a pseudo-terminal,
//! whose output streams back and whose end is reported exactly once.

mod cache;
mod child;
pub mod input;
mod plan;
mod pty;
mod pump;

use crate::channel::Channel;
use crate::network::trust::GuestTrust;
use crate::reaper::Reaper;
use crate::sessions::{Session, Sessions};
use crate::sys;
use crate::wire::Stream;
use crate::workers::Workers;
pub use cache::Cache;
use msb_protocol::guest::{AgentError, AgentErrorKind, AgentMessage, ExecRequest};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// Capacity of stdout/stderr pipes.
const OUTPUT_PIPE_SIZE: usize = 1 << 20;

/// What starting a process needs from the rest of the agent.
pub struct Context {
    pub channel: Arc<Channel>,
    pub reaper: Arc<Reaper>,
    pub sessions: Arc<Sessions>,
    /// The interception CA's trust, whose variables every exec's environment starts with.
    pub trust: Arc<GuestTrust>,
    /// Where each session's pump and stdin writer run.
    pub workers: Workers,
    pub cache: Cache,
}

fn internal(what: &str, error: io::Error) -> AgentError {
    AgentError {
        kind: AgentErrorKind::Internal,
        message: format!("{what}: {error}"),
        errno: error.raw_os_error(),
    }
}

/// The process's standard streams: the child's ends and the agent's.
struct Stdio {
    /// Descriptors that the child installs as 0, 1, 2 (kept open here until the child has
    /// started; shared ones, such as `/dev/null`, stay open beyond).
    child: Vec<Arc<OwnedFd>>,
    child_fds: [RawFd; 3],
    input: Option<Arc<OwnedFd>>,
    outputs: Vec<(Stream, Arc<OwnedFd>)>,
    terminal: Option<Arc<OwnedFd>>,
}

impl Stdio {
    fn open(request: &ExecRequest, owner: Option<u32>, cache: &Cache) -> io::Result<Self> {
        if let Some(size) = request.tty {
            let pty = pty::open(size.rows, size.cols)?;
            if let Some(uid) = owner {
                // As grantpt would: the user owns its terminal (for mesg, write, ttyname...).
                sys::fchown(pty.slave.as_fd(), uid)?;
            }
            let slave = pty.slave.as_raw_fd();
            let master = Arc::new(pty.master);
            return Ok(Self {
                child: vec![Arc::new(pty.slave)],
                child_fds: [slave; 3],
                input: Some(master.clone()),
                outputs: vec![(Stream::Stdout, master.clone())],
                terminal: Some(master),
            });
        }
        let (stdin_child, input) = if request.stdin {
            let (read, write) = sys::pipe()?;
            (Arc::new(read), Some(Arc::new(write)))
        } else {
            (cache.dev_null()?, None)
        };
        let (stdout_read, stdout_write) = sys::pipe()?;
        let (stderr_read, stderr_write) = sys::pipe()?;
        for pipe in [&stdout_read, &stderr_read] {
            // A deeper pipe lets the command run ahead while the pump writes to the port,
            // so fewer cross-vCPU wake-ups are needed per MiB; under TCG with 2 vCPUs it
            // lifted the slow cases of `cat` of 10 MiB (medians 35-60 MiB/s vs 10-82).
            let _ = sys::set_pipe_size(pipe.as_fd(), OUTPUT_PIPE_SIZE);
        }
        Ok(Self {
            child_fds: [
                stdin_child.as_raw_fd(),
                stdout_write.as_raw_fd(),
                stderr_write.as_raw_fd(),
            ],
            child: vec![stdin_child, Arc::new(stdout_write), Arc::new(stderr_write)],
            input,
            outputs: vec![
                (Stream::Stdout, Arc::new(stdout_read)),
                (Stream::Stderr, Arc::new(stderr_read)),
            ],
            terminal: None,
        })
    }
}

/// Reads the child's failure report; an empty report means `execve` succeeded.
fn read_report(report: OwnedFd) -> Vec<u8> {
    let mut bytes = [0u8; child::REPORT_LEN];
    let mut filled = 0;
    while filled < bytes.len() {
        match sys::read(report.as_fd(), &mut bytes[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(read) => filled += read,
        }
    }
    bytes[..filled].to_vec()
}

/// Starts the process of request `id`. On success `Started` has been sent and a pump thread
/// owns the rest of the session; on failure the caller sends the returned error.
pub fn start(
    context: &Context,
    id: u32,
    generation: u64,
    mut request: ExecRequest,
) -> Result<(), AgentError> {
    // The request's own variables come later, so they replace these.
    request.env = context
        .trust
        .environment()
        .into_iter()
        .chain(request.env)
        .collect();
    let passwd = context.cache.passwd();
    // Only a named user needs the groups.
    let group = match request.user {
        Some(_) => context.cache.group(),
        None => Arc::from(""),
    };
    let plan = plan::plan(&request, &passwd, &group).map_err(|error| AgentError {
        kind: error.kind(),
        message: error.to_string(),
        errno: None,
    })?;
    let stdio = Stdio::open(
        &request,
        plan.identity.as_ref().map(|identity| identity.uid),
        &context.cache,
    )
    .map_err(|error| internal("setting up stdin/stdout/stderr", error))?;
    let (report_read, report_write) = sys::pipe().map_err(|error| internal("pipe", error))?;
    let (exit_read, exit_write) = sys::pipe().map_err(|error| internal("pipe", error))?;
    let setup = child::Setup::new(
        &plan,
        stdio.child_fds,
        stdio.terminal.is_some(),
        report_write.as_raw_fd(),
    );
    let pid = context
        .reaper
        .spawn_registered(exit_write, || child::spawn(&setup))
        .map_err(|error| internal("starting the process", error))?;
    // The child's ends must be closed here, or the streams would never reach EOF.
    drop(report_write);
    drop(stdio.child);
    if let Some(failure) = child::decode_failure(&read_report(report_read)) {
        return Err(failure.to_error(&request.program, request.cwd.as_deref().unwrap_or("/")));
    }
    context.channel.send(
        generation,
        id,
        0,
        &AgentMessage::Started { pid: pid as u32 },
    );
    let terminal = stdio.terminal.is_some();
    let input =
        stdio.input.and_then(
            |target| match input::spawn(&context.workers, target, terminal) {
                Ok(sender) => Some(sender),
                Err(error) => {
                    log!("request {id}: no stdin writer thread: {error}");
                    None
                }
            },
        );
    context.sessions.insert(
        id,
        Session {
            pgid: pid,
            input,
            terminal: stdio.terminal,
            generation,
        },
    );
    let pump = pump::Pump {
        id,
        generation,
        pid,
        outputs: stdio.outputs,
        exit: exit_read,
        timeout: request.timeout_ms.map(Duration::from_millis),
        channel: context.channel.clone(),
        sessions: context.sessions.clone(),
    };
    if let Err(error) = context.workers.run(move || pump.run()) {
        // Without its pump nobody would ever report this process: end it, and say why.
        let _ = sys::kill(-pid, libc::SIGKILL);
        context.sessions.finish(id, generation);
        return Err(internal("starting the output thread", error));
    }
    Ok(())
}

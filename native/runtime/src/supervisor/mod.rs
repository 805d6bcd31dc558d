//! The supervisor: one process per running sandbox. It owns the QEMU child, the agent channel
//! (shared by many clients), and the sandbox's status in the database.
//!
//! Threads: the main thread starts the VM and then waits for QEMU to exit (it must outlive
//! QEMU because QEMU's parent-death signal is tied to it); one thread reads the agent channel
//! and routes frames to clients; one thread per client; one watches the creator process of an
//! attached sandbox; one waits for termination signals.

mod relay;
mod sampler;
mod sessions;
pub mod vm;

use crate::error::{Result, RuntimeError};
use crate::logs::{RotatingLog, MAX_LOG_BYTES};
use crate::paths::SandboxFiles;
use crate::process;
use crate::spec::SandboxSpec;
use msb_engine::qmp::{Qmp, QmpError};
use msb_protocol::guest::{AgentMessage, HostMessage, MountRequest};
use msb_state::{Database, SandboxStatus, StatusChange};
use relay::Relay;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long the main thread lets stop/kill requests reply after the VM is gone.
const REPLY_GRACE: Duration = Duration::from_secs(2);
/// How long the agent may take to mount one volume: under TCG on a loaded host, loading a
/// file system module and replaying a journal take seconds; this only catches a dead agent.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a VM whose start failed after boot may take to shut down before it is killed.
const FAILED_START_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the VM is going away, when someone asked for it.
#[derive(Debug, Clone)]
struct StopRequest {
    reason: String,
}

#[derive(Default)]
struct ExitState {
    /// The creator's exit no longer stops the VM.
    detached: bool,
    requested: Option<StopRequest>,
    exited: bool,
    waiting_replies: usize,
}

/// Coordinates the end of the VM between the threads.
pub(crate) struct Lifecycle {
    state: Mutex<ExitState>,
    changed: Condvar,
    vmm_pid: u32,
}

impl Lifecycle {
    fn new(vmm_pid: u32) -> Self {
        Self {
            state: Mutex::default(),
            changed: Condvar::new(),
            vmm_pid,
        }
    }

    /// Records why the VM stops; the first reason wins.
    fn request(&self, reason: &str) {
        let mut state = self.state.lock().unwrap();
        state.requested.get_or_insert(StopRequest {
            reason: reason.to_string(),
        });
    }

    fn detach(&self) {
        self.state.lock().unwrap().detached = true;
    }

    fn kill_vm(&self, reason: &str) {
        self.request(reason);
        process::signal(self.vmm_pid, libc::SIGKILL);
    }

    /// Waits for the VM to be gone, killing it after `timeout`. The caller replies after this
    /// returns, so the main thread waits for it before exiting.
    fn wait_exited(&self, timeout: Duration) {
        let mut state = self.state.lock().unwrap();
        state.waiting_replies += 1;
        let (mut state, result) = self
            .changed
            .wait_timeout_while(state, timeout, |s| !s.exited)
            .unwrap();
        if result.timed_out() {
            drop(state);
            self.kill_vm("stop timed out; killed");
            state = self
                .changed
                .wait_while(self.state.lock().unwrap(), |s| !s.exited)
                .unwrap();
        }
        drop(state);
    }

    fn reply_sent(&self) {
        let mut state = self.state.lock().unwrap();
        state.waiting_replies -= 1;
        self.changed.notify_all();
    }

    fn requested(&self) -> Option<StopRequest> {
        self.state.lock().unwrap().requested.clone()
    }

    /// Wakes the threads waiting to reply to stop requests; called after the database says
    /// the sandbox stopped, so that a client that got its reply reads the final status.
    fn mark_exited(&self) {
        self.state.lock().unwrap().exited = true;
        self.changed.notify_all();
    }

    fn wait_replies(&self) {
        let state = self.state.lock().unwrap();
        let _ = self
            .changed
            .wait_timeout_while(state, REPLY_GRACE, |s| s.waiting_replies > 0)
            .unwrap();
    }
}

/// Reports the outcome of start-up to the process that created the sandbox.
struct ReadyPipe(Option<std::fs::File>);

impl ReadyPipe {
    fn new(fd: Option<i32>) -> Self {
        // SAFETY: the creator passes a pipe descriptor that this process owns from now on.
        // It must not leak into QEMU: the creator reads until every writer has closed it.
        Self(fd.map(|fd| unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            std::fs::File::from_raw_fd(fd)
        }))
    }

    fn send(&mut self, message: &str) {
        if let Some(mut pipe) = self.0.take() {
            let _ = writeln!(pipe, "{message}");
        }
    }
}

/// Runs the supervisor of sandbox `name` until its VM is gone.
pub fn run(name: &str, agent: &Path, parent_pid: Option<u32>, ready_fd: Option<i32>) -> Result<()> {
    let mut ready = ReadyPipe::new(ready_fd);
    let files = SandboxFiles::new(name)?;
    let mut db = crate::sandboxes::open_db()?;
    let record = db.sandbox(name)?;
    let spec = SandboxSpec::from_json(&record.config)?;
    let pid = std::process::id();
    db.set_supervisor(name, pid, process::start_time(pid).unwrap_or(0))?;

    let started = match vm::start(&spec, &files, &db, agent) {
        Ok(started) => started,
        Err(error) => return start_failed(&mut db, name, error, &mut ready),
    };
    let vm::StartedVm {
        mut qemu,
        helpers,
        agent_stream,
        status,
        mounts,
    } = started;
    log(&format!(
        "VM pid {} up in {} ms ({}, kernel {}, agent {})",
        status.vmm_pid,
        status.boot_ms,
        status.accelerator,
        status.kernel_release,
        status.agent_version
    ));

    let status_vmm_pid = status.vmm_pid;
    let lifecycle = Arc::new(Lifecycle::new(status.vmm_pid));
    let control = Arc::new(VmControls {
        name: name.to_string(),
        qmp_socket: files.qmp_socket(),
        qmp: Mutex::new(None),
        lifecycle: lifecycle.clone(),
    });
    let exec_log = RotatingLog::open(&files.exec_log(), MAX_LOG_BYTES)
        .map_err(RuntimeError::io("opening the exec log"))?;
    let relay = Relay::new(
        agent_stream,
        status.clone(),
        lifecycle.clone(),
        control.clone(),
        exec_log,
    )?;
    relay.spawn_agent_reader();
    if let Err(reason) = mount_volumes(&relay, &mounts) {
        stop_unmounted(&relay, &mut qemu, helpers);
        let error = RuntimeError::SandboxStart {
            name: name.to_string(),
            reason,
        };
        return start_failed(&mut db, name, error, &mut ready);
    }
    db.set_running(name, status.vmm_pid, &status.accelerator, status.boot_ms)?;
    let listener = bind_control_socket(&files)?;
    block_termination_signals();
    relay.spawn_acceptor(listener);
    spawn_signal_waiter(lifecycle.clone(), relay.clone());
    if let Some(parent) = parent_pid {
        spawn_parent_watch(parent, lifecycle.clone());
    }
    sampler::spawn(sampler::Sampler {
        vmm_pid: status_vmm_pid,
        files: SandboxFiles::new(name)?,
        relay: relay.clone(),
        controls: control.clone(),
    });
    ready.send("ready");

    let exit = qemu.wait();
    let requested = lifecycle.requested();
    let crash_reason = format!("the VM exited unexpectedly ({})", describe_exit(&exit));
    let change = match &requested {
        Some(request) => StatusChange {
            status: SandboxStatus::Stopped,
            reason: Some(&request.reason),
        },
        None => StatusChange {
            status: SandboxStatus::Crashed,
            reason: Some(&crash_reason),
        },
    };
    log(&format!(
        "VM exited ({}): {}",
        describe_exit(&exit),
        change.reason.unwrap_or_default()
    ));
    let recorded = db.set_status(name, change);
    lifecycle.mark_exited();
    lifecycle.wait_replies();
    helpers.into_iter().for_each(vm::Helper::stop);
    for socket in [
        files.control_socket(),
        files.agent_socket(),
        files.qmp_socket(),
    ] {
        let _ = std::fs::remove_file(socket);
    }
    Ok(recorded?)
}

/// Records and reports a start that failed.
fn start_failed(
    db: &mut Database,
    name: &str,
    error: RuntimeError,
    ready: &mut ReadyPipe,
) -> Result<()> {
    // The creator reports the reason as a failed start of this sandbox: say that once.
    let reason = match &error {
        RuntimeError::SandboxStart { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    let _ = db.set_status(
        name,
        StatusChange {
            status: SandboxStatus::Crashed,
            reason: Some(&reason),
        },
    );
    log(&format!("start failed: {reason}"));
    ready.send(&format!("error: {reason}"));
    Err(error)
}

/// Asks the agent to mount each volume, in order (parents before children); the first
/// failure, naming the guest path and the agent's reason, ends the start.
fn mount_volumes(relay: &Relay, mounts: &[MountRequest]) -> std::result::Result<(), String> {
    for mount in mounts {
        let failure = match relay.ask_agent(&HostMessage::Mount(mount.clone()), MOUNT_TIMEOUT) {
            Some(AgentMessage::Done) => {
                log(&format!("mounted the volume at {}", mount.target));
                continue;
            }
            Some(AgentMessage::Error(error)) => RuntimeError::Agent(error).to_string(),
            Some(other) => format!("unexpected answer {other:?}"),
            None => format!("the guest agent did not answer within {MOUNT_TIMEOUT:?}"),
        };
        return Err(format!(
            "mounting the volume at {} failed: {failure}",
            mount.target
        ));
    }
    Ok(())
}

/// Stops a VM whose volumes could not all be mounted: an orderly shutdown first, so that
/// the volumes mounted already are unmounted cleanly, then a kill.
fn stop_unmounted(relay: &Relay, qemu: &mut std::process::Child, helpers: Vec<vm::Helper>) {
    let _ = relay.ask_agent(&HostMessage::Shutdown, FAILED_START_STOP_TIMEOUT);
    let deadline = Instant::now() + FAILED_START_STOP_TIMEOUT;
    while matches!(qemu.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    helpers.into_iter().for_each(vm::Helper::stop);
}

/// Pause, resume and detach, as the relay carries them out for clients.
struct VmControls {
    name: String,
    qmp_socket: std::path::PathBuf,
    /// One QMP connection, opened on first use (QEMU serves one QMP client at a time).
    qmp: Mutex<Option<Qmp>>,
    lifecycle: Arc<Lifecycle>,
}

const QMP_TIMEOUT: Duration = Duration::from_secs(5);

impl VmControls {
    fn with_qmp(
        &self,
        action: impl FnOnce(&mut Qmp) -> std::result::Result<(), QmpError>,
    ) -> std::result::Result<(), String> {
        let mut guard = self.qmp.lock().unwrap();
        if guard.is_none() {
            *guard = Some(Qmp::connect(&self.qmp_socket, QMP_TIMEOUT).map_err(|e| e.to_string())?);
        }
        let result = action(guard.as_mut().expect("connected above"));
        if result.is_err() {
            // A broken connection is reopened next time.
            *guard = None;
        }
        result.map_err(|e| e.to_string())
    }

    fn record(&self, status: SandboxStatus) -> std::result::Result<(), String> {
        let mut db = crate::sandboxes::open_db().map_err(|e| e.to_string())?;
        db.set_status(
            &self.name,
            StatusChange {
                status,
                reason: None,
            },
        )
        .map_err(|e| e.to_string())
    }
}

impl VmControls {
    /// Bytes read and written by the VM's disks since boot.
    fn disk_bytes(&self) -> Option<(u64, u64)> {
        let mut totals = (0, 0);
        self.with_qmp(|qmp| {
            for device in qmp.block_stats()? {
                totals.0 += device.rd_bytes;
                totals.1 += device.wr_bytes;
            }
            Ok(())
        })
        .ok()?;
        Some(totals)
    }
}

impl relay::VmControl for VmControls {
    fn draining(&self) -> std::result::Result<(), String> {
        self.record(SandboxStatus::Draining)
    }

    fn pause(&self) -> std::result::Result<(), String> {
        self.with_qmp(Qmp::stop)?;
        log("VM paused");
        self.record(SandboxStatus::Paused)
    }

    fn resume(&self) -> std::result::Result<(), String> {
        self.with_qmp(Qmp::cont)?;
        log("VM resumed");
        self.record(SandboxStatus::Running)
    }

    fn detach(&self) -> std::result::Result<(), String> {
        self.lifecycle.detach();
        let mut db = crate::sandboxes::open_db().map_err(|e| e.to_string())?;
        db.set_detached(&self.name, true)
            .map_err(|e| e.to_string())?;
        log("detached from its creator");
        Ok(())
    }
}

/// One line in the supervisor's log (its stderr, `supervisor.log` in the sandbox directory).
fn log(message: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    eprintln!("{now:.3} supervisor[{}]: {message}", std::process::id());
}

fn describe_exit(exit: &std::io::Result<std::process::ExitStatus>) -> String {
    match exit {
        Ok(status) => status.to_string(),
        Err(error) => format!("wait failed: {error}"),
    }
}

fn bind_control_socket(files: &SandboxFiles) -> Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = files.control_socket();
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)
        .map_err(RuntimeError::io(format!("binding {}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(RuntimeError::io(format!("chmod {}", path.display())))?;
    Ok(listener)
}

const TERMINATION_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

fn termination_sigset() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local value.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in TERMINATION_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Termination signals are taken by one thread (sigwait) and turned into a graceful stop,
/// instead of killing the process and leaving a stale record behind.
fn block_termination_signals() {
    let set = termination_sigset();
    // SAFETY: changes this thread's mask; threads spawned afterwards inherit it.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn spawn_signal_waiter(lifecycle: Arc<Lifecycle>, relay: Arc<Relay>) {
    std::thread::spawn(move || {
        let set = termination_sigset();
        let mut signal = 0;
        // SAFETY: sigwait on a set that every thread blocks.
        if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
            relay.shutdown_guest(&format!("the supervisor received signal {signal}"));
            lifecycle.wait_exited(relay::STOP_TIMEOUT_ON_SIGNAL);
            lifecycle.reply_sent();
        }
    });
}

/// An attached sandbox dies with the process that created it.
fn spawn_parent_watch(parent: u32, lifecycle: Arc<Lifecycle>) {
    std::thread::spawn(move || {
        process::wait_for_exit(parent);
        if !lifecycle.state.lock().unwrap().detached {
            lifecycle.kill_vm("the process that created it exited");
        }
    });
}

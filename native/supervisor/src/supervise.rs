//! The supervisor's main thread: boots the VM, serves clients until QEMU exits, and records
//! how the VM ended.
//!
//! Threads: the main thread starts the VM and then waits for QEMU to exit (it must outlive
//! QEMU because QEMU's parent-death signal is tied to it); one thread reads the agent channel
//! and routes frames to clients; one thread per client; one watches the creator process of an
//! attached sandbox; one waits for termination signals; one samples metrics.

use crate::controls::{NetworkControls, VmControls};
use crate::database;
use crate::error::{describe_agent_error, Result, SupervisorError};
use crate::lifecycle::Lifecycle;
use crate::logs::{RotatingLog, MAX_LOG_BYTES};
use crate::paths::SandboxFiles;
use crate::process;
use crate::ready::{Outcome, ReadyPipe};
use crate::relay::Relay;
use crate::root::RootImage;
use crate::sampler;
use crate::secrets::{self, SecretValues, Terminator};
use crate::signals;
use crate::spec::SandboxSpec;
use crate::templates;
use crate::virtiofsd::Helper;
use crate::vm::{self, StartedVm};
use msb_protocol::guest::{AgentMessage, HostMessage, MountRequest};
use msb_state::{Database, SandboxStatus, StatusChange};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, ExitStatus};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long the agent may take to mount one volume: under TCG on a loaded host, loading a
/// file system module and replaying a journal take seconds; this only catches a dead agent.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a VM whose start failed after boot may take to shut down before it is killed.
const FAILED_START_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// What the runtime tells a supervisor (the binary's command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub name: String,
    /// The guest agent binary, for the initramfs.
    pub agent: PathBuf,
    /// The creator of an attached sandbox: the VM is killed when it exits.
    pub parent_pid: Option<u32>,
    /// The descriptor of the ready pipe (see [`ReadyPipe`]).
    pub ready_fd: Option<i32>,
    /// The descriptor of the pipe the secrets' values come on (see [`secrets::read_values`]).
    pub secrets_fd: Option<i32>,
}

/// Runs the supervisor of sandbox `options.name` until its VM is gone.
pub fn run(options: &Options) -> Result<()> {
    let name = options.name.as_str();
    let mut ready = ReadyPipe::new(options.ready_fd);
    // First: the runtime blocks until the pipe is read, and nothing else may hold it.
    let values = options
        .secrets_fd
        .map_or_else(|| Ok(SecretValues::new()), secrets::read_values);
    let files = SandboxFiles::new(name)?;
    let mut db = database::open()?;
    let pid = std::process::id();
    db.set_supervisor(name, pid, process::start_time(pid).unwrap_or(0))?;
    let terminator = Arc::new(Terminator::default());
    let booted =
        values.and_then(|values| boot(&db, name, &files, &options.agent, &values, &terminator));
    let StartedVm {
        mut qemu,
        network,
        helpers,
        agent_stream,
        status,
        mounts,
        template_to_build,
    } = match booted {
        Ok(started) => started,
        Err(error) => return start_failed(&mut db, name, error, &mut ready),
    };
    log::info!(
        "VM pid {} up in {} ms ({}, kernel {}, agent {})",
        status.vmm_pid,
        status.boot_ms,
        status.accelerator,
        status.kernel_release,
        status.agent_version
    );
    let lifecycle = Arc::new(Lifecycle::new(status.vmm_pid));
    terminator.attach(lifecycle.clone());
    let controls = Arc::new(VmControls::new(
        name,
        files.qmp_socket(),
        lifecycle.clone(),
        NetworkControls {
            policy: network.policy_control(),
            secrets: network.secrets_control(),
        },
    ));
    let exec_log = RotatingLog::open(&files.exec_log(), MAX_LOG_BYTES)
        .map_err(SupervisorError::io("opening the exec log"))?;
    let vmm_pid = status.vmm_pid;
    let relay = Relay::new(
        agent_stream,
        status.clone(),
        lifecycle.clone(),
        controls.clone(),
        exec_log,
    )?;
    relay.spawn_agent_reader();
    if let Err(reason) = mount_volumes(&relay, &mounts) {
        stop_unmounted(&relay, &mut qemu, helpers);
        let error = SupervisorError::Start {
            name: name.to_string(),
            reason,
        };
        return start_failed(&mut db, name, error, &mut ready);
    }
    db.set_running(name, vmm_pid, &status.accelerator, status.boot_ms)?;
    let listener = bind_control_socket(&files)?;
    signals::block_termination_signals();
    relay.spawn_acceptor(listener);
    signals::spawn_signal_waiter(lifecycle.clone(), relay.clone());
    if let Some(parent) = options.parent_pid {
        signals::spawn_parent_watch(parent, lifecycle.clone());
    }
    sampler::spawn(sampler::Sampler {
        vmm_pid,
        files: SandboxFiles::new(name)?,
        relay,
        controls,
        network: network.counters(),
    });
    // Once the VM is up, so that the first sandbox of a shape does not share the host with
    // the template's boot while it boots; before the ready, so that its log says so when the
    // creator looks.
    if let Some(shape) = template_to_build {
        templates::build_in_background(&shape);
    }
    ready.send(&Outcome::Ready);
    let exit = qemu.wait();
    network.stop();
    let recorded = record_exit(&mut db, name, &lifecycle, &exit);
    lifecycle.mark_exited();
    lifecycle.wait_replies();
    helpers.into_iter().for_each(Helper::stop);
    remove_sockets(&files);
    recorded
}

/// Resolves the sandbox's root and its secrets, and boots its VM.
fn boot(
    db: &Database,
    name: &str,
    files: &SandboxFiles,
    agent: &std::path::Path,
    values: &SecretValues,
    terminator: &Arc<Terminator>,
) -> Result<StartedVm> {
    let record = db.sandbox(name)?;
    let spec = SandboxSpec::from_json(&record.config)?;
    let secrets = secrets::build(&spec.secrets, values)?;
    let root = RootImage::resolve(&spec.image, db)?;
    log::debug!("root file system: {root:?}");
    let plan = vm::BootPlan {
        root: &root,
        files,
        agent,
        net_slot: record.net_slot,
        secrets,
        terminator: terminator.clone(),
    };
    vm::start(&spec, plan)
}

/// Records the end of the VM: stopped if someone asked for it, crashed otherwise.
fn record_exit(
    db: &mut Database,
    name: &str,
    lifecycle: &Lifecycle,
    exit: &std::io::Result<ExitStatus>,
) -> Result<()> {
    let requested = lifecycle.requested();
    let crash_reason = format!("the VM exited unexpectedly ({})", describe_exit(exit));
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
    log::info!(
        "VM exited ({}): {}",
        describe_exit(exit),
        change.reason.unwrap_or_default()
    );
    Ok(db.set_status(name, change)?)
}

fn remove_sockets(files: &SandboxFiles) {
    for socket in [
        files.control_socket(),
        files.agent_socket(),
        files.qmp_socket(),
    ] {
        let _ = std::fs::remove_file(socket);
    }
}

/// Records and reports a start that failed.
fn start_failed(
    db: &mut Database,
    name: &str,
    error: SupervisorError,
    ready: &mut ReadyPipe,
) -> Result<()> {
    // The creator reports the reason as a failed start of this sandbox: say that once.
    let reason = match &error {
        SupervisorError::Start { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    let outcome = match &error {
        SupervisorError::PortInUse { address } => Outcome::PortInUse(address.clone()),
        _ => Outcome::Failed(reason.clone()),
    };
    let _ = db.set_status(
        name,
        StatusChange {
            status: SandboxStatus::Crashed,
            reason: Some(&reason),
        },
    );
    log::info!("start failed: {reason}");
    ready.send(&outcome);
    Err(error)
}

/// Asks the agent to mount each volume, in order (parents before children); the first
/// failure, naming the guest path and the agent's reason, ends the start.
fn mount_volumes(relay: &Relay, mounts: &[MountRequest]) -> std::result::Result<(), String> {
    for mount in mounts {
        log::debug!("asking the agent to mount {mount:?}");
        let failure = match relay.ask_agent(&HostMessage::Mount(mount.clone()), MOUNT_TIMEOUT) {
            Some(AgentMessage::Done) => {
                log::info!("mounted the volume at {}", mount.target);
                continue;
            }
            Some(AgentMessage::Error(error)) => describe_agent_error(&error),
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
fn stop_unmounted(relay: &Relay, qemu: &mut Child, helpers: Vec<Helper>) {
    let _ = relay.ask_agent(&HostMessage::Shutdown, FAILED_START_STOP_TIMEOUT);
    let deadline = Instant::now() + FAILED_START_STOP_TIMEOUT;
    while matches!(qemu.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    helpers.into_iter().for_each(Helper::stop);
}

fn describe_exit(exit: &std::io::Result<ExitStatus>) -> String {
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
        .map_err(SupervisorError::io(format!("binding {}", path.display())))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(SupervisorError::io(format!("chmod {}", path.display())))?;
    Ok(listener)
}

//! Starting the VM: the root's upper disk or virtiofsd, the volumes' devices, the network,
//! QEMU (restored from the shape's template when there is one, else booted cold), the
//! console log, and the agent handshake.

use crate::artifacts::{self, BootArtifacts};
use crate::error::{Result, SupervisorError};
use crate::handshake;
use crate::logs::{self, RotatingLog, MAX_LOG_BYTES};
use crate::network::{self, Network};
use crate::paths::{self, SandboxFiles};
use crate::process;
use crate::root::RootImage;
use crate::secrets::Terminator;
use crate::spec::SandboxSpec;
use crate::templates::{self, Shape, Template};
use crate::virtiofsd::Helper;
use crate::volumes;
use msb_engine::accel;
use msb_engine::qemu::{self, RootDisk, VmConfig};
use msb_engine::qmp::{Qmp, QmpError};
use msb_engine::snapshot;
use msb_net::secrets::Secrets;
use msb_protocol::control::SupervisorStatus;
use msb_protocol::guest::MountRequest;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Instant;

/// Size of a sandbox's writable disk. It is sparse: only written blocks use host disk.
pub const UPPER_DISK_BYTES: u64 = 8 << 30;
/// Lines of the guest console quoted in a start error.
const CONSOLE_TAIL_LINES: usize = 15;

pub struct StartedVm {
    pub qemu: Child,
    /// The network loop, which must outlive QEMU.
    pub network: Network,
    /// Helper processes (virtiofsd) to stop once QEMU is gone.
    pub helpers: Vec<Helper>,
    pub agent_stream: UnixStream,
    pub status: SupervisorStatus,
    /// What the agent is to mount once it answered, parents before children.
    pub mounts: Vec<MountRequest>,
    /// The shape of a VM that booted cold: its template is to be built once the sandbox is
    /// up (see [`templates::build_in_background`]).
    pub template_to_build: Option<Shape>,
}

/// Where the VM boots from and what its network gets besides the spec.
pub struct BootPlan<'a> {
    pub root: &'a RootImage,
    pub files: &'a SandboxFiles,
    pub agent: &'a Path,
    pub net_slot: u32,
    /// The spec's secrets with their values.
    pub secrets: Secrets,
    pub terminator: Arc<Terminator>,
}

/// Boots `spec`'s VM as `plan` says, and waits for the agent's hello.
pub fn start(spec: &SandboxSpec, plan: BootPlan<'_>) -> Result<StartedVm> {
    let BootPlan {
        root,
        files,
        agent,
        net_slot,
        secrets,
        terminator,
    } = plan;
    let artifacts = artifacts::boot_artifacts(agent)?;
    let choice = accel::request_from_env()
        .and_then(accel::choose)
        .map_err(|error| SupervisorError::Accelerator(error.to_string()))?;
    std::fs::create_dir_all(&files.dir).map_err(SupervisorError::io(format!(
        "creating {}",
        files.dir.display()
    )))?;
    for socket in [
        files.agent_socket(),
        files.qmp_socket(),
        files.console_socket(),
    ] {
        let _ = std::fs::remove_file(socket);
    }
    let root_disk = root.disk(files);
    let mut helpers = Vec::new();
    let volumes = prepare_root(spec, root, files, &mut helpers)
        .and_then(|()| volumes::attach(spec, files, &mut helpers));
    let volumes = match volumes {
        Ok(volumes) => volumes,
        Err(error) => {
            helpers.into_iter().for_each(Helper::stop);
            return Err(error);
        }
    };
    let agent_listener = UnixListener::bind(files.agent_socket()).map_err(SupervisorError::io(
        format!("binding {}", files.agent_socket().display()),
    ))?;
    agent_listener
        .set_nonblocking(true)
        .map_err(SupervisorError::io("agent socket"))?;
    let console_listener = UnixListener::bind(files.console_socket()).map_err(
        SupervisorError::io(format!("binding {}", files.console_socket().display())),
    )?;
    let console_log = RotatingLog::open(&files.console_log(), MAX_LOG_BYTES)
        .map_err(SupervisorError::io("opening the console log"))?;
    // Before QEMU: a busy published port fails the start here, and QEMU's socket already
    // has its reader when QEMU comes up.
    let setup = network::GatewaySetup {
        network_log: &files.network_log(),
        secrets,
        terminator,
    };
    let mut network = match network::start(spec, net_slot, setup) {
        Ok(network) => network,
        Err(error) => {
            helpers.into_iter().for_each(Helper::stop);
            return Err(error);
        }
    };

    let mut config = vm_config(
        &spec.name,
        spec.cpus,
        spec.memory_mib,
        files,
        root_disk,
        &artifacts,
        choice.accelerator,
    );
    config.extra_disks = volumes.disks;
    config.shares = volumes.shares;
    config.net = Some(network.device.clone());
    let guest = handshake::GuestSetup {
        boot: handshake::guest_boot(qemu::guest_root(&config.root), &spec.name)?,
        network: Some(network.guest.clone()),
        tls_ca_pem: network.tls_ca_pem(),
    };
    let shape = templates::enabled()
        .then(|| templates::shape_of(&config, &artifacts))
        .flatten();
    spawn_console_writer(console_listener, console_log);
    let launch = Launch {
        qemu: &artifacts.qemu,
        config: &config,
        network: &network,
        agent_listener: &agent_listener,
        guest: &guest,
    };
    let launched = Instant::now();
    let restored = shape
        .as_ref()
        .and_then(templates::find)
        .and_then(|template| match launch.run(Some(&template)) {
            Ok(up) => {
                template.mark_used();
                log::info!(
                    "restored from template {} ({})",
                    template.key,
                    template.dir().display()
                );
                Some(up)
            }
            Err(error) => {
                log::warn!(
                    "restoring from template {} failed, booting cold instead: {error}",
                    template.key
                );
                template.discard();
                None
            }
        });
    let cold = restored.is_none();
    let up = match restored.map_or_else(|| launch.run(None), Ok) {
        Ok(up) => up,
        Err(error) => {
            helpers.into_iter().for_each(Helper::stop);
            return Err(SupervisorError::Start {
                name: spec.name.clone(),
                reason: format!("{error}{}", console_tail(&files.console_log())),
            });
        }
    };
    network.qemu_spawned();
    let Up {
        qemu,
        agent_stream,
        hello,
    } = up;
    let status = SupervisorStatus {
        supervisor_pid: std::process::id(),
        vmm_pid: qemu.id(),
        accelerator: choice.accelerator.to_string(),
        agent_version: hello.version,
        kernel_release: hello.kernel_release,
        boot_ms: launched.elapsed().as_millis() as u64,
    };
    Ok(StartedVm {
        qemu,
        network,
        helpers,
        agent_stream,
        status,
        mounts: volumes.mounts,
        template_to_build: shape.filter(|_| cold),
    })
}

/// What starting QEMU needs, once per attempt: a restore, then a cold boot if it failed.
struct Launch<'a> {
    qemu: &'a Path,
    config: &'a VmConfig,
    network: &'a Network,
    agent_listener: &'a UnixListener,
    guest: &'a handshake::GuestSetup,
}

/// A VM whose agent answered the hello.
struct Up {
    qemu: Child,
    agent_stream: UnixStream,
    hello: handshake::AgentHello,
}

impl Launch<'_> {
    /// Starts QEMU (restoring `template` if given) and waits for the agent's hello; QEMU is
    /// killed if that fails.
    fn run(&self, template: Option<&Template>) -> Result<Up> {
        let mut config = self.config.clone();
        config.template = template.map(Template::memory);
        let state = template
            .map(Template::open_state)
            .transpose()
            .map_err(SupervisorError::io("opening the template's state"))?;
        let mut command = qemu::command(self.qemu, &config);
        log::debug!("starting {command:?}");
        if let Some(fd) = self.network.device.inherited_fd() {
            process::inherit_fd(&mut command, fd);
        }
        if let Some(state) = &state {
            process::inherit_fd(&mut command, state.as_raw_fd());
        }
        let mut qemu = process::kill_with_parent(command.stdin(Stdio::null()))
            .spawn()
            .map_err(SupervisorError::io(format!(
                "starting {}",
                self.qemu.display()
            )))?;
        let answered = self.restore(&config, state.as_ref()).and_then(|()| {
            let timeout = if template.is_some() {
                handshake::RESTORE_TIMEOUT
            } else {
                handshake::BOOT_TIMEOUT
            };
            handshake::handshake(self.agent_listener, &mut qemu, self.guest, timeout)
        });
        match answered {
            Ok((agent_stream, hello)) => Ok(Up {
                qemu,
                agent_stream,
                hello,
            }),
            Err(error) => {
                let _ = qemu.kill();
                let _ = qemu.wait();
                // The dead QEMU's agent connection may still wait in the backlog, where the
                // next attempt would take it for its own.
                while self.agent_listener.accept().is_ok() {}
                Err(error)
            }
        }
    }

    /// Loads the template's device state into the QEMU just started, if restoring.
    fn restore(&self, config: &VmConfig, state: Option<&File>) -> Result<()> {
        let Some(state) = state else {
            return Ok(());
        };
        let failed = |error: QmpError| SupervisorError::Protocol(format!("restoring: {error}"));
        let mut qmp =
            Qmp::connect(&config.qmp_socket, handshake::RESTORE_TIMEOUT).map_err(failed)?;
        snapshot::restore(&mut qmp, state.as_raw_fd(), handshake::RESTORE_TIMEOUT).map_err(failed)
    }
}

/// The VM's configuration; also used by `boot_command` to benchmark a bare boot.
pub fn vm_config(
    name: &str,
    vcpus: u8,
    memory_mib: u32,
    files: &SandboxFiles,
    root: RootDisk,
    artifacts: &BootArtifacts,
    accelerator: msb_engine::accel::Accelerator,
) -> VmConfig {
    VmConfig {
        name: name.to_string(),
        vcpus,
        memory_mib,
        accelerator,
        tsc_khz: msb_engine::tsc::host_tsc_khz(&paths::cache_dir()),
        kernel: artifacts.kernel.vmlinux.clone(),
        initramfs: artifacts.initramfs.clone(),
        console_socket: files.console_socket(),
        qmp_socket: files.qmp_socket(),
        agent_socket: files.agent_socket(),
        root,
        net: None,
        extra_disks: Vec::new(),
        shares: Vec::new(),
        template: None,
    }
}

/// Copies the guest console from QEMU into the rotating console log. QEMU connects while it
/// starts; a QEMU started after a failed restore connects again, so the thread serves one
/// connection after the other for as long as the supervisor lives.
fn spawn_console_writer(listener: UnixListener, mut log: RotatingLog) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        while let Ok((mut stream, _)) = listener.accept() {
            while let Ok(read) = stream.read(&mut buffer) {
                if read == 0 || log.append(&buffer[..read]).is_err() {
                    break;
                }
            }
        }
    });
}

/// Makes the sandbox's writable upper on its first boot, or starts the virtiofsd of a bind
/// root.
fn prepare_root(
    spec: &SandboxSpec,
    root: &RootImage,
    files: &SandboxFiles,
    helpers: &mut Vec<Helper>,
) -> Result<()> {
    if let RootImage::Bind(path) = root {
        helpers.push(Helper::spawn(path, &files.virtiofs_socket(), false)?);
        return Ok(());
    }
    let upper = files.upper_disk();
    if !upper.exists() {
        log::debug!("creating the upper disk {}", upper.display());
        msb_images::ext4::empty_image(&upper, UPPER_DISK_BYTES, "upper").map_err(|error| {
            SupervisorError::Start {
                name: spec.name.clone(),
                reason: error.to_string(),
            }
        })?;
    }
    Ok(())
}

fn console_tail(path: &Path) -> String {
    logs::last_lines(path, CONSOLE_TAIL_LINES).map_or(String::new(), |tail| {
        format!("\nguest console (last lines):\n{tail}")
    })
}

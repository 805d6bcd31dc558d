//! Starting the VM: the root's upper disk or virtiofsd, the volumes' devices, the network,
//! QEMU, the console log, and the agent handshake.

use crate::artifacts::{self, BootArtifacts};
use crate::error::{Result, SupervisorError};
use crate::handshake;
use crate::logs::{RotatingLog, MAX_LOG_BYTES};
use crate::network::{self, Network};
use crate::paths::{self, SandboxFiles};
use crate::process;
use crate::root::RootImage;
use crate::secrets::Terminator;
use crate::spec::SandboxSpec;
use crate::virtiofsd::Helper;
use crate::volumes;
use msb_engine::accel;
use msb_engine::qemu::{self, RootDisk, VmConfig};
use msb_net::secrets::Secrets;
use msb_protocol::control::SupervisorStatus;
use msb_protocol::guest::MountRequest;
use std::io::Read;
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
    let launched = Instant::now();
    let mut command = qemu::command(&artifacts.qemu, &config);
    log::debug!("starting {command:?}");
    if let Some(fd) = network.device.inherited_fd() {
        process::inherit_fd(&mut command, fd);
    }
    let spawned = process::kill_with_parent(command.stdin(Stdio::null())).spawn();
    network.qemu_spawned();
    let mut qemu = spawned.map_err(SupervisorError::io(format!(
        "starting {}",
        artifacts.qemu.display()
    )))?;
    spawn_console_writer(console_listener, console_log);
    let guest = handshake::GuestSetup {
        network: Some(network.guest.clone()),
        tls_ca_pem: network.tls_ca_pem(),
    };
    let hello = handshake::handshake(&agent_listener, &mut qemu, guest);
    let (agent_stream, hello) = match hello {
        Ok(done) => done,
        Err(error) => {
            let _ = qemu.kill();
            let _ = qemu.wait();
            helpers.into_iter().for_each(Helper::stop);
            return Err(SupervisorError::Start {
                name: spec.name.clone(),
                reason: format!("{error}{}", console_tail(&files.console_log())),
            });
        }
    };
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
    })
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
    }
}

/// Copies the guest console from QEMU into the rotating console log. QEMU connects while it
/// starts; the thread ends when QEMU closes the connection.
fn spawn_console_writer(listener: UnixListener, mut log: RotatingLog) {
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut buffer = [0u8; 16 * 1024];
        while let Ok(read) = stream.read(&mut buffer) {
            if read == 0 || log.append(&buffer[..read]).is_err() {
                break;
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
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(CONSOLE_TAIL_LINES)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!("\nguest console (last lines):\n{}", tail.join("\n"))
    }
}

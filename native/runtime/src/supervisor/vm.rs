//! Starting the VM: root disk, helpers, QEMU, and the agent handshake.

use crate::error::{Result, RuntimeError};
use crate::install;
use crate::logs::{RotatingLog, MAX_LOG_BYTES};
use crate::paths::{self, SandboxFiles};
use crate::process;
use crate::spec::{DiskFormat, ImageSource, Mount, SandboxSpec};
use msb_engine::accel;
use msb_engine::qemu::{self, EngineError, ExtraDisk, Lower, RootDisk, Share, VmConfig};
use msb_protocol::control::SupervisorStatus;
use msb_protocol::guest::{AgentMessage, HostMessage, MountRequest, MountSource, HELLO_ID};
use msb_protocol::{Frame, FrameError, FLAG_END, PROTOCOL_VERSION};
use msb_state::Database;
use std::io::{ErrorKind, Read};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Size of a sandbox's writable disk. It is sparse: only written blocks use host disk.
pub const UPPER_DISK_BYTES: u64 = 8 << 30;
/// Upper bound of a boot, from QEMU's start to the agent's hello. TCG on a loaded 2-core host
/// boots in seconds; this only catches a guest that will never come up.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const HELPER_SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Lines of the guest console quoted in a start error.
const CONSOLE_TAIL_LINES: usize = 15;
/// Guest tag of a virtio-fs root.
const ROOT_TAG: &str = "rootfs";
/// A volume's disk serial or virtio-fs tag is this and its index in guest-path order.
const VOLUME_ID_PREFIX: &str = "vol";
/// The file system of a named volume's image.
const NAMED_VOLUME_FSTYPE: &str = "ext4";

pub struct StartedVm {
    pub qemu: Child,
    /// Helper processes (virtiofsd) to stop once QEMU is gone.
    pub helpers: Vec<Helper>,
    pub agent_stream: UnixStream,
    pub status: SupervisorStatus,
    /// What the agent is to mount once it answered, parents before children.
    pub mounts: Vec<MountRequest>,
}

/// A virtiofsd serving one directory; stopping it also removes its socket.
pub struct Helper {
    child: Child,
    socket: PathBuf,
}

impl Helper {
    /// Starts a virtiofsd for `source` and waits until it listens on `socket`.
    fn spawn(source: &Path, socket: &Path, readonly: bool) -> Result<Self> {
        // A socket left by an earlier run would look like this virtiofsd listening.
        let _ = std::fs::remove_file(socket);
        let mut command =
            qemu::virtiofsd_command(source, socket, readonly).map_err(|error| match error {
                EngineError::NulInPath(_) => RuntimeError::InvalidConfig(error.to_string()),
                other => RuntimeError::NotInstalled(other.to_string()),
            })?;
        let child = process::kill_with_parent(command.stdin(Stdio::null()))
            .spawn()
            .map_err(RuntimeError::io("starting virtiofsd"))?;
        let mut helper = Self {
            child,
            socket: socket.to_path_buf(),
        };
        match wait_for_socket(socket, &mut helper.child) {
            Ok(()) => Ok(helper),
            Err(error) => {
                helper.stop();
                Err(error)
            }
        }
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// What the VM gets for its volumes, and what the agent is then asked to mount.
#[derive(Default)]
struct Volumes {
    disks: Vec<ExtraDisk>,
    shares: Vec<Share>,
    mounts: Vec<MountRequest>,
}

pub fn start(
    spec: &SandboxSpec,
    files: &SandboxFiles,
    db: &Database,
    agent: &Path,
) -> Result<StartedVm> {
    let artifacts = install::boot_artifacts(agent)?;
    let choice = accel::request_from_env()
        .and_then(accel::choose)
        .map_err(|error| RuntimeError::Accelerator(error.to_string()))?;
    std::fs::create_dir_all(&files.dir).map_err(RuntimeError::io(format!(
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
    let root = root_disk(spec, files, db)?;
    let mut helpers = Vec::new();
    let volumes = prepare_root(spec, files, &mut helpers)
        .and_then(|()| attach_volumes(spec, files, &mut helpers));
    let volumes = match volumes {
        Ok(volumes) => volumes,
        Err(error) => {
            helpers.into_iter().for_each(Helper::stop);
            return Err(error);
        }
    };
    let agent_listener = UnixListener::bind(files.agent_socket()).map_err(RuntimeError::io(
        format!("binding {}", files.agent_socket().display()),
    ))?;
    agent_listener
        .set_nonblocking(true)
        .map_err(RuntimeError::io("agent socket"))?;
    let console_listener = UnixListener::bind(files.console_socket()).map_err(RuntimeError::io(
        format!("binding {}", files.console_socket().display()),
    ))?;
    let console_log = RotatingLog::open(&files.console_log(), MAX_LOG_BYTES)
        .map_err(RuntimeError::io("opening the console log"))?;

    let mut config = vm_config(
        &spec.name,
        spec.cpus,
        spec.memory_mib,
        files,
        root,
        &artifacts,
        choice.accelerator,
    );
    config.extra_disks = volumes.disks;
    config.shares = volumes.shares;
    let launched = Instant::now();
    let mut command = qemu::command(&artifacts.qemu, &config);
    let mut qemu = process::kill_with_parent(command.stdin(Stdio::null()))
        .spawn()
        .map_err(RuntimeError::io(format!(
            "starting {}",
            artifacts.qemu.display()
        )))?;
    spawn_console_writer(console_listener, console_log);
    let handshake =
        accept_agent(&agent_listener, &mut qemu).and_then(|stream| hello(stream, &mut qemu));
    let (agent_stream, agent_version, kernel_release) = match handshake {
        Ok(done) => done,
        Err(error) => {
            let _ = qemu.kill();
            let _ = qemu.wait();
            helpers.into_iter().for_each(Helper::stop);
            return Err(RuntimeError::SandboxStart {
                name: spec.name.clone(),
                reason: format!("{error}{}", console_tail(&files.console_log())),
            });
        }
    };
    let status = SupervisorStatus {
        supervisor_pid: std::process::id(),
        vmm_pid: qemu.id(),
        accelerator: choice.accelerator.to_string(),
        agent_version,
        kernel_release,
        boot_ms: launched.elapsed().as_millis() as u64,
    };
    Ok(StartedVm {
        qemu,
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
    artifacts: &install::BootArtifacts,
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
        net_socket: None,
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

/// The root file system as QEMU gets it (its files and helpers are made by [`prepare_root`]).
pub fn root_disk(spec: &SandboxSpec, files: &SandboxFiles, db: &Database) -> Result<RootDisk> {
    match &spec.image {
        ImageSource::Local { name } | ImageSource::Oci { reference: name } => {
            let image = db.image(name)?.ok_or_else(|| {
                RuntimeError::ImageNotFound(name.clone(), String::from("see `msb images`"))
            })?;
            Ok(RootDisk::Overlay {
                lowers: image
                    .lower_layers()
                    .into_iter()
                    .map(|layer| Lower::Layer(layer.into()))
                    .collect(),
                upper: files.upper_disk(),
            })
        }
        ImageSource::Bind { .. } => Ok(RootDisk::Virtiofs(Share {
            vhost_socket: files.virtiofs_socket(),
            tag: ROOT_TAG.into(),
        })),
    }
}

/// Makes the sandbox's writable upper on its first boot, or starts the virtiofsd of a bind
/// root.
fn prepare_root(spec: &SandboxSpec, files: &SandboxFiles, helpers: &mut Vec<Helper>) -> Result<()> {
    match &spec.image {
        ImageSource::Bind { path } => {
            helpers.push(Helper::spawn(
                Path::new(path),
                &files.virtiofs_socket(),
                false,
            )?);
        }
        ImageSource::Local { .. } | ImageSource::Oci { .. } => {
            let upper = files.upper_disk();
            if !upper.exists() {
                msb_images::ext4::empty_image(&upper, UPPER_DISK_BYTES, "upper").map_err(
                    |error| RuntimeError::SandboxStart {
                        name: spec.name.clone(),
                        reason: error.to_string(),
                    },
                )?;
            }
        }
    }
    Ok(())
}

/// Named and disk volumes become virtio-blk disks, bind volumes virtio-fs shares (each with
/// its own virtiofsd); tmpfs volumes need no device.
fn attach_volumes(
    spec: &SandboxSpec,
    files: &SandboxFiles,
    helpers: &mut Vec<Helper>,
) -> Result<Volumes> {
    let mut volumes = Volumes::default();
    for (index, (target, mount)) in spec.volumes.iter().enumerate() {
        let id = format!("{VOLUME_ID_PREFIX}{index}");
        let source = match mount {
            Mount::Named { name, readonly } => volumes.disk(
                paths::volume_image(name)?,
                id,
                *readonly,
                DiskFormat::Raw,
                Some(NAMED_VOLUME_FSTYPE.into()),
            ),
            Mount::Disk {
                path,
                format,
                fstype,
                readonly,
            } => volumes.disk(path.into(), id, *readonly, *format, fstype.clone()),
            Mount::Bind { path, readonly } => {
                let socket = files.volume_socket(&id);
                helpers.push(Helper::spawn(Path::new(path), &socket, *readonly)?);
                volumes.shares.push(Share {
                    vhost_socket: socket,
                    tag: id.clone(),
                });
                MountSource::Virtiofs { tag: id }
            }
            Mount::Tmpfs { size_mib, .. } => MountSource::Tmpfs {
                size_mib: *size_mib,
            },
        };
        volumes.mounts.push(MountRequest {
            target: target.clone(),
            source,
            readonly: mount.readonly(),
        });
    }
    Ok(volumes)
}

impl Volumes {
    /// Adds a disk (never written by QEMU when the mount is read-only; see `ExtraDisk`) found
    /// by the guest by `serial`.
    fn disk(
        &mut self,
        path: PathBuf,
        serial: String,
        readonly: bool,
        format: DiskFormat,
        fstype: Option<String>,
    ) -> MountSource {
        self.disks.push(ExtraDisk {
            path,
            serial: serial.clone(),
            readonly,
            format: format.as_str().into(),
        });
        MountSource::Disk { serial, fstype }
    }
}

fn wait_for_socket(socket: &Path, helper: &mut Child) -> Result<()> {
    let deadline = Instant::now() + HELPER_SOCKET_TIMEOUT;
    while !socket.exists() {
        if let Ok(Some(status)) = helper.try_wait() {
            return Err(RuntimeError::Protocol(format!(
                "virtiofsd exited before listening ({status})"
            )));
        }
        if Instant::now() > deadline {
            return Err(RuntimeError::Protocol(format!(
                "virtiofsd did not create {}",
                socket.display()
            )));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Ok(())
}

/// Waits for QEMU to connect to the agent socket, noticing if QEMU dies first.
fn accept_agent(listener: &UnixListener, qemu: &mut Child) -> Result<UnixStream> {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .map_err(RuntimeError::io("agent socket"))?;
                return Ok(stream);
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(error) => return Err(RuntimeError::io("accepting the agent channel")(error)),
        }
        check_alive(qemu)?;
        if Instant::now() > deadline {
            return Err(RuntimeError::Protocol(
                "QEMU never connected the agent channel".into(),
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn check_alive(qemu: &mut Child) -> Result<()> {
    match qemu.try_wait() {
        Ok(Some(status)) => Err(RuntimeError::Protocol(format!(
            "QEMU exited during boot ({status})"
        ))),
        _ => Ok(()),
    }
}

/// Sends the host's hello (with the wall clock, since the guest has no RTC) and waits for the
/// agent's. The hello is buffered until the guest opens its port, i.e. until it has booted.
fn hello(stream: UnixStream, qemu: &mut Child) -> Result<(UnixStream, String, String)> {
    let unix_time_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let frame = Frame::new(
        HELLO_ID,
        FLAG_END,
        &HostMessage::Hello {
            version: PROTOCOL_VERSION,
            unix_time_ns,
        },
    )
    .map_err(protocol_error)?;
    frame.write_to(&mut &stream).map_err(protocol_error)?;
    stream
        .set_read_timeout(Some(Duration::from_millis(250)))
        .map_err(RuntimeError::io("agent socket"))?;
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let mut reader = &stream;
    let reply = loop {
        match Frame::read_from(&mut reader) {
            Ok(frame) => break frame,
            Err(FrameError::Io(error))
                if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                check_alive(qemu)?;
                if Instant::now() > deadline {
                    return Err(RuntimeError::Protocol(
                        "the guest agent did not answer".into(),
                    ));
                }
            }
            Err(error) => return Err(protocol_error(error)),
        }
    };
    stream
        .set_read_timeout(None)
        .map_err(RuntimeError::io("agent socket"))?;
    match reply.decode::<AgentMessage>().map_err(protocol_error)? {
        AgentMessage::Hello { version, agent_version, kernel_release } if version == PROTOCOL_VERSION => {
            Ok((stream, agent_version, kernel_release))
        }
        AgentMessage::Hello { version, .. } => Err(RuntimeError::Protocol(format!(
            "the guest agent speaks protocol {version}, this runtime {PROTOCOL_VERSION}; rebuild the initramfs"
        ))),
        other => Err(RuntimeError::Protocol(format!("unexpected first message from the agent: {other:?}"))),
    }
}

/// The host's hello, carrying the wall clock.
pub fn hello_frame() -> Result<Frame> {
    let unix_time_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Frame::new(
        HELLO_ID,
        FLAG_END,
        &HostMessage::Hello {
            version: PROTOCOL_VERSION,
            unix_time_ns,
        },
    )
    .map_err(protocol_error)
}

pub fn protocol_error(error: FrameError) -> RuntimeError {
    RuntimeError::Protocol(error.to_string())
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

//! Templates: booted guests saved once per *shape* and restored by later sandboxes of that
//! shape instead of booting their kernel.
//!
//! A shape is everything of a VM that its guest sees before the agent's first hello: QEMU,
//! kernel and initramfs (with the agent), accelerator and CPU model, vCPUs, memory, the
//! command line and the devices in order. It is the QEMU command line of the VM with every
//! sandbox-specific value (name, files, sockets, disk serials, the MAC) replaced by a fixed
//! one ([`shape_config`]), hashed together with the identity of the artifacts. A value
//! forgotten there only makes shapes differ that could have shared a template, never a
//! restore into the wrong devices.
//!
//! A template is built in the background, by a process of its own (the supervisor binary
//! with [`BUILD_FLAG`]), in a throw-away VM of the shape, with placeholder
//! disks and its RAM in the template's memory file: when its agent says it is waiting for
//! the hello (having touched no disk and no sandbox data), the VM is saved and quit (see
//! [`msb_engine::snapshot`]). No sandbox's VM is ever saved, so no template can hold a
//! sandbox's data or secrets. Templates live in the runtime cache under `templates/<key>/`
//! (`ram`, `state`, `meta.json`). A build removes the templates whose QEMU, kernel or
//! initramfs changed or vanished (they can never match again), then the least recently
//! used beyond [`MAX_TEMPLATES`]; templates of other artifacts still on disk (another
//! `MSB_AGENT` or `MSB_QEMU`, say) stay usable.
//! `MSB_SNAPSHOTS=0` turns templates off.

use crate::artifacts::BootArtifacts;
use crate::error::SupervisorError;
use crate::handshake;
use crate::logs;
use crate::paths;
use crate::process;
use msb_engine::qemu::{
    self, ExtraDisk, Lower, NetBackend, RootDisk, TemplateMemory, TemplateRole, VmConfig,
};
use msb_engine::qmp::{Qmp, QmpError};
use msb_engine::snapshot;
use msb_protocol::guest::AgentMessage;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const SNAPSHOTS_ENV: &str = "MSB_SNAPSHOTS";
/// Bumped when a template's layout or the way it is restored changes.
const FORMAT: &str = "msb-template-1";
const TEMPLATES_DIR: &str = "templates";
const RAM_FILE: &str = "ram";
const STATE_FILE: &str = "state";
const META_FILE: &str = "meta.json";
/// Where the shape's canonical files are, in the hashed command line only.
const CANONICAL_DIR: &str = "/msb-template";
/// The descriptor number the canonical network backend names.
const CANONICAL_NET_FD: i32 = 3;
/// Templates kept: the shapes in use (the test suite has about a dozen). Each takes the RAM
/// its kernel touched, about 75 MB under TCG.
const MAX_TEMPLATES: usize = 16;
/// A template boot on a loaded 2-core TCG host takes seconds; this only stops a stuck one.
const BUILD_TIMEOUT: Duration = Duration::from_secs(120);
/// Lines of the template VM's QEMU log a build failure quotes.
const QEMU_TAIL_LINES: usize = 5;
const QMP_TIMEOUT: Duration = Duration::from_secs(30);
/// Placeholder disks of a template VM: the guest never reads them (their driver is loaded
/// only after the hello).
const PLACEHOLDER_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("QMP: {0}")]
    Qmp(#[from] QmpError),
    #[error("the template VM {0}")]
    Guest(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> TemplateError {
    let context = context.into();
    move |source| TemplateError::Io { context, source }
}

/// Whether templates are on (`MSB_SNAPSHOTS` is not `0`).
pub fn enabled() -> bool {
    std::env::var(SNAPSHOTS_ENV).map_or(true, |value| value.trim() != "0")
}

/// A VM's shape: its key and what a template VM of it is made from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shape {
    pub key: String,
    /// The identity of QEMU, kernel and initramfs ([`identity_of`] their paths).
    artifacts: String,
    artifact_paths: Vec<PathBuf>,
    config: VmConfig,
    qemu: PathBuf,
}

/// A saved template of a shape.
#[derive(Debug, Clone)]
pub struct Template {
    pub key: String,
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    format: String,
    artifacts: String,
    /// Where the artifacts were, to tell whether they changed since.
    artifact_paths: Vec<PathBuf>,
    saved_unix_ms: u64,
}

impl Template {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The guest memory a VM restoring this template maps.
    pub fn memory(&self) -> TemplateMemory {
        TemplateMemory {
            ram_file: self.dir.join(RAM_FILE),
            role: TemplateRole::Restore,
        }
    }

    /// The device state, for QEMU to read.
    pub fn open_state(&self) -> std::io::Result<File> {
        File::open(self.dir.join(STATE_FILE))
    }

    /// Records that the template was just restored, for [`remove_stale`]'s least recently
    /// used order.
    pub fn mark_used(&self) {
        let meta = self.dir.join(META_FILE);
        if let Ok(file) = File::options().write(true).open(&meta) {
            let _ = file.set_modified(SystemTime::now());
        }
    }

    /// Removes a template that failed to restore; the next sandbox rebuilds it. Running
    /// sandboxes keep their mapping of the removed file.
    pub fn discard(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The shape of `cfg`, or `None` when a VM like it cannot be saved: QEMU cannot migrate
/// vhost-user-fs (virtio-fs roots and shares), and the slirp baseline has host state.
pub fn shape_of(cfg: &VmConfig, artifacts: &BootArtifacts) -> Option<Shape> {
    if !cfg.shares.is_empty() || matches!(cfg.root, RootDisk::Virtiofs(_)) {
        return None;
    }
    if cfg
        .net
        .as_ref()
        .is_some_and(|net| !matches!(net.backend, NetBackend::Socket { .. }))
    {
        return None;
    }
    let config = shape_config(cfg, Path::new(CANONICAL_DIR), CANONICAL_NET_FD);
    let artifact_paths = vec![
        artifacts.qemu.clone(),
        artifacts.kernel.vmlinux.clone(),
        artifacts.initramfs.clone(),
    ];
    let artifacts_id = identity_of(&artifact_paths);
    let mut hash = Sha256::new();
    for piece in std::iter::once(FORMAT.to_string())
        .chain(std::iter::once(artifacts_id.clone()))
        .chain(qemu::arguments(&config))
    {
        hash.update((piece.len() as u64).to_le_bytes());
        hash.update(piece.as_bytes());
    }
    let key: String = hash.finalize()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Some(Shape {
        key,
        artifacts: artifacts_id,
        artifact_paths,
        config,
        qemu: artifacts.qemu.clone(),
    })
}

/// `cfg` with everything of one sandbox replaced: files under `dir`, the network backend on
/// descriptor `net_fd`, the disk formats raw (the guest does not see a format).
fn shape_config(cfg: &VmConfig, dir: &Path, net_fd: i32) -> VmConfig {
    let root = match &cfg.root {
        RootDisk::Overlay { lowers, .. } => RootDisk::Overlay {
            lowers: lowers
                .iter()
                .enumerate()
                .map(|(index, lower)| {
                    let path = dir.join(format!("lower{index}"));
                    match lower {
                        Lower::Layer(_) => Lower::Layer(path),
                        Lower::Disk { .. } => Lower::Disk {
                            path,
                            format: "raw".into(),
                            fstype: None,
                        },
                    }
                })
                .collect(),
            upper: dir.join("upper"),
        },
        RootDisk::Virtiofs(share) => RootDisk::Virtiofs(share.clone()),
    };
    let extra_disks = cfg
        .extra_disks
        .iter()
        .enumerate()
        .map(|(index, disk)| ExtraDisk {
            path: dir.join(format!("disk{index}")),
            serial: format!("disk{index}"),
            readonly: disk.readonly,
            format: "raw".into(),
        })
        .collect();
    let net = cfg.net.clone().map(|mut net| {
        net.backend = NetBackend::Socket { fd: net_fd };
        net.mac = [0x02, 0, 0, 0, 0, 0];
        net
    });
    VmConfig {
        name: "template".into(),
        console_socket: dir.join("console.sock"),
        qmp_socket: dir.join("qmp.sock"),
        agent_socket: dir.join("agent.sock"),
        root,
        net,
        extra_disks,
        shares: Vec::new(),
        template: None,
        ..cfg.clone()
    }
}

/// Path, size and modification time of each artifact. The initramfs's name is already the
/// hash of its content (agent and modules).
fn identity_of(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|path| match std::fs::metadata(path) {
            Ok(meta) => format!(
                "{}:{}:{}.{}",
                path.display(),
                meta.len(),
                meta.mtime(),
                meta.mtime_nsec()
            ),
            Err(_) => format!("{}:missing", path.display()),
        })
        .collect::<Vec<_>>()
        .join("|")
}

fn templates_dir() -> PathBuf {
    paths::cache_dir().join(TEMPLATES_DIR)
}

/// The saved template of `shape`, if there is a complete one.
pub fn find(shape: &Shape) -> Option<Template> {
    let dir = templates_dir().join(&shape.key);
    let meta: Meta = serde_json::from_slice(&std::fs::read(dir.join(META_FILE)).ok()?).ok()?;
    (meta.format == FORMAT && meta.artifacts == shape.artifacts).then(|| Template {
        key: shape.key.clone(),
        dir,
    })
}

/// The supervisor's flag that makes it a template builder (see [`build_detached`]).
pub const BUILD_FLAG: &str = "--build-template";

/// Builds the template of `shape` in a process of its own, which reads the shape from its
/// standard input and outlives this supervisor: sandboxes are often stopped seconds after
/// they start, and a builder tied to one would rarely finish. Its log is
/// `templates/<key>.log`. A builder finds the template already there, or another builder
/// at work, and quits.
pub fn build_in_background(shape: &Shape) {
    if let Err(error) = spawn_builder(shape) {
        log::warn!(
            "cannot start the builder of template {}: {error}",
            shape.key
        );
    }
}

fn spawn_builder(shape: &Shape) -> Result<(), TemplateError> {
    use std::io::Write as _;
    use std::os::unix::process::CommandExt as _;
    let root = templates_dir();
    std::fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
    let log_path = root.join(format!("{}.log", shape.key));
    let log = File::create(&log_path).map_err(io(format!("creating {}", log_path.display())))?;
    let program = std::env::current_exe().map_err(io("finding the supervisor binary"))?;
    let mut command = std::process::Command::new(program);
    command
        .arg(BUILD_FLAG)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe: the builder leaves the sandbox's session, so no
    // signal meant for the sandbox's processes reaches it.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(io("starting the template builder"))?;
    let text = serde_json::to_vec(shape).expect("plain data serializes");
    let written = child.stdin.take().expect("stdin is piped").write_all(&text);
    // Reaps the builder if it ends while this supervisor still runs.
    std::thread::spawn(move || child.wait());
    written.map_err(io("handing the shape to the template builder"))?;
    log::info!(
        "building template {} in the background into {} (log {})",
        shape.key,
        root.join(&shape.key).display(),
        log_path.display()
    );
    Ok(())
}

/// The builder process: reads a [`Shape`] from standard input and builds its template.
pub fn run_builder() -> Result<(), TemplateError> {
    let mut text = Vec::new();
    std::io::stdin()
        .read_to_end(&mut text)
        .map_err(io("reading the shape"))?;
    let shape: Shape = serde_json::from_slice(&text)
        .map_err(|error| TemplateError::Guest(format!("bad shape on stdin: {error}")))?;
    let started = Instant::now();
    if build(&shape)? {
        log::info!(
            "saved template {} in {} ms",
            shape.key,
            started.elapsed().as_millis()
        );
    }
    Ok(())
}

/// Builds the template; `false` when there was nothing to do.
fn build(shape: &Shape) -> Result<bool, TemplateError> {
    let root = templates_dir();
    std::fs::create_dir_all(&root).map_err(io(format!("creating {}", root.display())))?;
    let Some(_lock) = try_lock(&root.join(format!("{}.lock", shape.key)))? else {
        return Ok(false);
    };
    if find(shape).is_some() {
        return Ok(false);
    }
    let build_dir = root.join(format!(".build-{}-{}", shape.key, std::process::id()));
    let _ = std::fs::remove_dir_all(&build_dir);
    std::fs::create_dir(&build_dir).map_err(io(format!("creating {}", build_dir.display())))?;
    let result = save(shape, &build_dir).and_then(|()| {
        remove_stale(&root);
        publish(shape, &build_dir, &root)
    });
    let _ = std::fs::remove_dir_all(&build_dir);
    result.map(|()| true)
}

/// An exclusive lock on `path`, or `None` while another process holds it. The kernel drops
/// it with the descriptor, also when the holder dies.
fn try_lock(path: &Path) -> Result<Option<File>, TemplateError> {
    let file = File::create(path).map_err(io(format!("creating {}", path.display())))?;
    // SAFETY: flock on a descriptor owned here.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        Ok(Some(file))
    } else {
        Ok(None)
    }
}

/// Boots a VM of the shape in `dir` and saves it when its agent waits for the hello.
fn save(shape: &Shape, dir: &Path) -> Result<(), TemplateError> {
    let (net_ours, net_theirs) = if shape.config.net.is_some() {
        let (a, b) = UnixStream::pair().map_err(io("making the network socketpair"))?;
        (Some(a), Some(OwnedFd::from(b)))
    } else {
        (None, None)
    };
    let net_fd = net_theirs.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    let mut config = shape_config(&shape.config, dir, net_fd);
    config.template = Some(TemplateMemory {
        ram_file: dir.join(RAM_FILE),
        role: TemplateRole::Save,
    });
    make_placeholders(&config)?;
    let agent = UnixListener::bind(&config.agent_socket).map_err(io("binding the agent socket"))?;
    let console =
        UnixListener::bind(&config.console_socket).map_err(io("binding the console socket"))?;
    let state = File::create(dir.join(STATE_FILE)).map_err(io("creating the state file"))?;
    let mut command = qemu::command(&shape.qemu, &config);
    if let Some(fd) = &net_theirs {
        process::inherit_fd(&mut command, fd.as_raw_fd());
    }
    let log = File::create(dir.join("qemu.log")).map_err(io("creating the QEMU log"))?;
    let mut vm = process::kill_with_parent(command.stdin(Stdio::null()).stderr(log))
        .spawn()
        .map_err(io(format!("starting {}", shape.qemu.display())))?;
    drop(net_theirs);
    drain_console(console);
    let saved = wait_until_awaiting_hello(&agent, &mut vm).and_then(|()| {
        let mut qmp = Qmp::connect(&config.qmp_socket, QMP_TIMEOUT)?;
        snapshot::save(&mut qmp, state.as_fd(), BUILD_TIMEOUT)?;
        qmp.quit()?;
        Ok(())
    });
    let _ = vm.kill();
    let _ = vm.wait();
    drop(net_ours);
    saved.map_err(|error| match error {
        TemplateError::Guest(what) => {
            let said = logs::last_lines(&dir.join("qemu.log"), QEMU_TAIL_LINES);
            TemplateError::Guest(match said {
                Some(said) => format!("{what}; QEMU said: {said}"),
                None => what,
            })
        }
        other => other,
    })
}

fn make_placeholders(config: &VmConfig) -> Result<(), TemplateError> {
    let mut files: Vec<&Path> = config
        .extra_disks
        .iter()
        .map(|d| d.path.as_path())
        .collect();
    if let RootDisk::Overlay { lowers, upper } = &config.root {
        files.extend(lowers.iter().map(|lower| match lower {
            Lower::Layer(path) | Lower::Disk { path, .. } => path.as_path(),
        }));
        files.push(upper);
    }
    for path in files {
        File::create(path)
            .and_then(|file| file.set_len(PLACEHOLDER_BYTES))
            .map_err(io(format!("creating {}", path.display())))?;
    }
    Ok(())
}

/// Reads the template VM's console away, so that QEMU never blocks on it.
fn drain_console(listener: UnixListener) {
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink), Ok(read) if read > 0) {}
        }
    });
}

/// Waits for the agent's `AwaitingHello`, failing if QEMU exits or the time is up.
fn wait_until_awaiting_hello(listener: &UnixListener, vm: &mut Child) -> Result<(), TemplateError> {
    let deadline = Instant::now() + BUILD_TIMEOUT;
    listener.set_nonblocking(true).map_err(io("agent socket"))?;
    let not_saving = |error: SupervisorError| {
        TemplateError::Guest(format!("did not reach its saving point: {error}"))
    };
    let stream = handshake::accept_agent(listener, vm, deadline).map_err(not_saving)?;
    match handshake::next_agent_message(&stream, vm, deadline).map_err(not_saving)? {
        AgentMessage::AwaitingHello => Ok(()),
        other => Err(TemplateError::Guest(format!(
            "sent {other:?} instead of waiting for the hello"
        ))),
    }
}

/// Moves the RAM and the state into `root/<key>` with their metadata, in one rename.
fn publish(shape: &Shape, build_dir: &Path, root: &Path) -> Result<(), TemplateError> {
    let staged = root.join(format!(".ready-{}-{}", shape.key, std::process::id()));
    let _ = std::fs::remove_dir_all(&staged);
    std::fs::create_dir(&staged).map_err(io(format!("creating {}", staged.display())))?;
    for name in [RAM_FILE, STATE_FILE] {
        std::fs::rename(build_dir.join(name), staged.join(name))
            .map_err(io(format!("moving the template's {name}")))?;
    }
    let meta = Meta {
        format: FORMAT.into(),
        artifacts: shape.artifacts.clone(),
        artifact_paths: shape.artifact_paths.clone(),
        saved_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    let text = serde_json::to_vec_pretty(&meta).expect("plain data serializes");
    std::fs::write(staged.join(META_FILE), text).map_err(io("writing the template's meta"))?;
    let target = root.join(&shape.key);
    let _ = std::fs::remove_dir_all(&target);
    std::fs::rename(&staged, &target).map_err(|error| {
        let _ = std::fs::remove_dir_all(&staged);
        io(format!("publishing {}", target.display()))(error)
    })
}

/// Removes the templates whose artifacts changed or vanished, then the least recently used
/// beyond [`MAX_TEMPLATES`] (a restore marks a template used, see [`Template::mark_used`]).
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut usable = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() || entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let meta_file = path.join(META_FILE);
        let meta: Option<Meta> = std::fs::read(&meta_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        match meta {
            Some(meta)
                if meta.format == FORMAT && identity_of(&meta.artifact_paths) == meta.artifacts =>
            {
                let used = std::fs::metadata(&meta_file).and_then(|m| m.modified());
                usable.push((used.unwrap_or(UNIX_EPOCH), path));
            }
            _ => {
                log::info!("removing the stale template {}", path.display());
                remove(&path);
            }
        }
    }
    usable.sort();
    let excess = usable.len().saturating_sub(MAX_TEMPLATES);
    for (_, path) in usable.into_iter().take(excess) {
        log::info!(
            "removing the least recently used template {}",
            path.display()
        );
        remove(&path);
    }
}

fn remove(template: &Path) {
    let _ = std::fs::remove_dir_all(template);
    for suffix in ["lock", "log"] {
        let _ = std::fs::remove_file(template.with_extension(suffix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msb_engine::accel::Accelerator;
    use msb_engine::kernel::KernelArtifacts;
    use msb_engine::qemu::NetDevice;

    fn artifacts() -> BootArtifacts {
        BootArtifacts {
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            kernel: KernelArtifacts {
                release: "6.1".into(),
                vmlinux: "/c/vmlinux".into(),
                modules: Vec::new(),
            },
            initramfs: "/c/abc.cpio".into(),
        }
    }

    fn sandbox(name: &str, dir: &str, mac: u8) -> VmConfig {
        let dir = Path::new(dir);
        VmConfig {
            name: name.into(),
            vcpus: 1,
            memory_mib: 512,
            accelerator: Accelerator::Tcg,
            tsc_khz: 2_000_000,
            kernel: "/c/vmlinux".into(),
            initramfs: "/c/abc.cpio".into(),
            console_socket: dir.join("console.sock"),
            qmp_socket: dir.join("qmp.sock"),
            agent_socket: dir.join("agent.sock"),
            root: RootDisk::Overlay {
                lowers: vec![Lower::Layer(format!("/images/{name}.ext4").into())],
                upper: dir.join("upper.ext4"),
            },
            net: Some(NetDevice {
                backend: NetBackend::Socket {
                    fd: 10 + i32::from(mac),
                },
                mac: [2, 0, 0, 0, 0, mac],
                mtu: Some(1500),
            }),
            extra_disks: vec![ExtraDisk {
                path: dir.join("vol.qcow2"),
                serial: format!("vol-{name}"),
                readonly: false,
                format: "qcow2".into(),
            }],
            shares: Vec::new(),
            template: None,
        }
    }

    fn key(cfg: &VmConfig) -> String {
        shape_of(cfg, &artifacts()).unwrap().key
    }

    #[test]
    fn sandboxes_that_differ_only_in_their_own_files_names_and_mac_share_a_shape() {
        assert_eq!(key(&sandbox("a", "/s/a", 1)), key(&sandbox("b", "/s/b", 2)));
    }

    #[test]
    fn anything_the_guest_sees_before_the_hello_makes_another_shape() {
        let base = key(&sandbox("a", "/s/a", 1));
        let changes: [fn(&mut VmConfig); 6] = [
            |c| c.vcpus = 2,
            |c| c.memory_mib = 1024,
            |c| c.accelerator = Accelerator::Kvm,
            |c| c.extra_disks.clear(),
            |c| c.net = None,
            |c| c.extra_disks[0].readonly = true,
        ];
        for change in changes {
            let mut cfg = sandbox("a", "/s/a", 1);
            change(&mut cfg);
            assert_ne!(key(&cfg), base, "{cfg:?}");
        }
    }

    #[test]
    fn virtio_fs_cannot_be_saved() {
        let mut cfg = sandbox("a", "/s/a", 1);
        cfg.shares.push(msb_engine::qemu::Share {
            vhost_socket: "/s/a/vfs.sock".into(),
            tag: "data".into(),
        });
        assert!(shape_of(&cfg, &artifacts()).is_none());
    }

    #[test]
    fn new_artifacts_make_new_shapes() {
        let cfg = sandbox("a", "/s/a", 1);
        let mut other = artifacts();
        other.initramfs = "/c/def.cpio".into();
        assert_ne!(
            shape_of(&cfg, &artifacts()).unwrap().key,
            shape_of(&cfg, &other).unwrap().key
        );
    }

    #[test]
    fn the_canonical_command_line_names_no_sandbox_file() {
        let shape = shape_of(&sandbox("secretname", "/s/secretname", 7), &artifacts()).unwrap();
        let line = qemu::arguments(&shape.config).join(" ");
        assert!(!line.contains("secretname"), "{line}");
        assert!(!line.contains("02:00:00:00:00:07"), "{line}");
    }
}

//! The QEMU `microvm` command line (docs/ARCHITECTURE.md, "The QEMU command line") and the helper processes QEMU needs.
//!
//! Values inside QEMU's `key=value,...` options have their commas doubled, which is QEMU's
//! escape; that is also why the console and QMP use `-chardev` with a `path=` key rather than
//! the `file:PATH` / `unix:PATH,...` shorthands, which cannot carry a comma in a path.

use crate::accel::Accelerator;
use msb_protocol::filesystem::DiskFilesystem;
use msb_protocol::guest::{GuestLower, GuestRoot};
use serde::{Deserialize, Serialize};
use std::ffi::{CStr, CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use thiserror::Error;

/// Overrides the QEMU binary.
pub const QEMU_ENV: &str = "MSB_QEMU";
const QEMU_BINARY: &str = "qemu-system-x86_64";
/// The C virtiofsd that Debian's QEMU 7.2 ships (package qemu-system-common).
pub const VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";
/// Serial of the writable upper disk; the read-only lowers are `layer0`, `layer1`, ... top
/// first.
pub const UPPER_SERIAL: &str = "upper";
const LAYER_SERIAL_PREFIX: &str = "layer";
/// Kernel parameters for every boot: console on the serial port, reboot = exit QEMU (with
/// `-no-reboot`), and a panic reboots at once instead of hanging the VM.
/// The CMOS RTC stays on: without it the 6.1 kernel spends about 1.2 s polling for a clock
/// that never answers, plus 0.3 s more in the rtc_cmos driver (measured under TCG: /init at
/// 3.6 s with `rtc=off`, 1.6-1.9 s with `rtc=on`), and the guest starts with the right time.
const RTC: &str = "on";
const BASE_KERNEL_PARAMS: &[&str] = &["console=ttyS0", "quiet", "reboot=t", "panic=-1"];

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("{QEMU_ENV} names {0}, which is not a file")]
    QemuEnvInvalid(PathBuf),
    #[error("{QEMU_BINARY} is not in PATH (install the Debian package qemu-system-x86, or set {QEMU_ENV})")]
    QemuNotFound,
    #[error("running {binary} --version: {detail}")]
    QemuVersion { binary: PathBuf, detail: String },
    #[error("virtiofsd is missing at {VIRTIOFSD} (Debian package qemu-system-common)")]
    VirtiofsdMissing,
    #[error("{0:?} contains a NUL byte")]
    NulInPath(PathBuf),
}

/// virtio-mmio transports that QEMU 7.2's `microvm` offers with `acpi=on` (measured: a 25th
/// virtio device fails with "No 'virtio-bus' bus found").
pub const VIRTIO_MMIO_TRANSPORTS: usize = 24;
/// Transports every VM takes besides its root and volumes: the agent's virtio-serial,
/// virtio-rng, the balloon and virtio-net. The network device is counted even while a VM has
/// none, so that a configuration valid today stays valid when it gets one.
pub const BASE_VIRTIO_DEVICES: usize = 4;

/// TCG's translation cache in MiB (`tb-size`). QEMU 7.2 reserves 1 GiB by default and keeps
/// every page of it that translated code has touched, for the life of the VM. Measured
/// under TCG: booting to the first exec fills 56-58 MiB of it, so 64 never flushes during a
/// boot; a Python workload (3 runs of imports and a 200 MiB allocation) filled 96 MiB with
/// the default and 63 MiB with 64, QEMU's RSS after it 347 MiB against 303 MiB, and its CPU
/// time 38.8-42.5 s against 41.4 s. Below that the cache flushes during boot: 32 took 10-15 %
/// more boot CPU time and doubled an idle `exec("true")`, 16 made it ten times slower.
pub const TCG_CODE_CACHE_MIB: u32 = 64;

/// A host directory served by virtiofsd on `vhost_socket`, mounted by `tag` in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub vhost_socket: PathBuf,
    pub tag: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RootDisk {
    Virtiofs(Share),
    /// Read-only lowers (top-most first) under a writable upper image (raw ext4); the guest
    /// joins them with overlayfs.
    Overlay {
        lowers: Vec<Lower>,
        upper: PathBuf,
    },
}

/// A read-only lower of an overlay root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Lower {
    /// A layer of the runtime's image store: a raw ext4 or EROFS image that the runtime wrote
    /// and no one writes again, so its journal is clean. It is attached read-only (shared by
    /// every sandbox of its image) and the guest detects its file system.
    Layer(PathBuf),
    /// A disk image file holding one file system, without a partition table. It is attached
    /// like a read-only volume disk (see [`ExtraDisk::readonly`]): the file is never written,
    /// yet a journal its writer left dirty can be replayed, so the file system mounts.
    Disk {
        path: PathBuf,
        /// `raw` or `qcow2`.
        format: String,
        /// The file system to mount it with; `None` lets the guest detect it.
        fstype: Option<DiskFilesystem>,
    },
}

impl Lower {
    /// The file, its QEMU format and how QEMU opens it.
    fn drive(&self) -> (&Path, &str, DriveAccess) {
        match self {
            Self::Layer(path) => (path, "raw", DriveAccess::ReadOnly),
            Self::Disk { path, format, .. } => (path, format, DriveAccess::Snapshot),
        }
    }

    /// The file system the guest is told to mount, if it must not detect it.
    fn fstype(&self) -> Option<DiskFilesystem> {
        match self {
            Self::Layer(_) => None,
            Self::Disk { fstype, .. } => *fstype,
        }
    }
}

impl RootDisk {
    /// The virtio-mmio transports the root takes.
    pub fn virtio_devices(&self) -> usize {
        match self {
            Self::Virtiofs(_) => 1,
            Self::Overlay { lowers, .. } => lowers.len() + 1,
        }
    }
}

/// The guest's network interface: a virtio-net device and the backend QEMU feeds it from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetDevice {
    pub backend: NetBackend,
    pub mac: [u8; 6],
    /// The MTU offered to the guest driver (`host_mtu`); `None` leaves it at 1500.
    pub mtu: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetBackend {
    /// `-netdev stream` over a socket descriptor QEMU inherits: one end of a socketpair whose
    /// other end a user-space network holds (ours, or passt as a benchmark baseline). QEMU 7.2
    /// cannot reconnect, so it is never a path it dials.
    Socket { fd: i32 },
    /// QEMU's own slirp (`-netdev user`), only as a benchmark baseline: guest `10.0.2.15/24`,
    /// DNS at `10.0.2.2` (the guest's gateway and resolver, as with our network; slirp routes
    /// any address it answers ARP for), slirp's host alias at `10.0.2.3` (QEMU refuses the
    /// DNS and host addresses being one), and `host_forwards` as `hostfwd` rules.
    Slirp { host_forwards: Vec<SlirpForward> },
}

/// One `hostfwd` rule of a slirp baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlirpForward {
    pub udp: bool,
    pub host_port: u16,
    pub guest_port: u16,
}

impl NetDevice {
    /// The descriptor QEMU must inherit, if the backend has one.
    pub fn inherited_fd(&self) -> Option<i32> {
        match self.backend {
            NetBackend::Socket { fd } => Some(fd),
            NetBackend::Slirp { .. } => None,
        }
    }

    fn arguments(&self) -> [String; 2] {
        let mac = self.mac.map(|byte| format!("{byte:02x}")).join(":");
        let mtu = self
            .mtu
            .map(|mtu| format!(",host_mtu={mtu}"))
            .unwrap_or_default();
        let netdev = match &self.backend {
            NetBackend::Socket { fd } => format!("stream,id=n0,addr.type=fd,addr.str={fd}"),
            NetBackend::Slirp { host_forwards } => {
                let forwards: String = host_forwards
                    .iter()
                    .map(|rule| {
                        let protocol = if rule.udp { "udp" } else { "tcp" };
                        format!(
                            ",hostfwd={protocol}:127.0.0.1:{}-:{}",
                            rule.host_port, rule.guest_port
                        )
                    })
                    .collect();
                format!("user,id=n0,net=10.0.2.0/24,host=10.0.2.3,dns=10.0.2.2{forwards}")
            }
        };
        [
            netdev,
            format!("virtio-net-device,netdev=n0,mac={mac}{mtu}"),
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraDisk {
    pub path: PathBuf,
    /// How the guest finds the disk (`/sys/block/vdX/serial`); virtio-blk keeps 20 bytes.
    pub serial: String,
    /// The file is never written. The guest's writes go to a throwaway overlay (QEMU's
    /// `snapshot=on`) rather than failing at the device, so a guest can still mount a file
    /// system whose journal a writer left dirty (ext4 replays it even for a read-only mount,
    /// and refuses to mount when the device is read-only); its mount is read-only anyway.
    pub readonly: bool,
    /// `raw` or `qcow2`.
    pub format: String,
}

/// How QEMU opens a drive's file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DriveAccess {
    ReadWrite,
    ReadOnly,
    /// Read-only file under a temporary overlay that takes the guest's writes.
    Snapshot,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmConfig {
    pub name: String,
    pub vcpus: u8,
    pub memory_mib: u32,
    pub accelerator: Accelerator,
    /// Host TSC rate for `tsc_early_khz` under TCG; 0 = unknown, the guest calibrates.
    pub tsc_khz: u64,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// The supervisor listens here and QEMU connects: the supervisor writes the guest console
    /// to a size-bounded, rotated log.
    pub console_socket: PathBuf,
    pub qmp_socket: PathBuf,
    /// The supervisor listens here and QEMU connects, so the supervisor owns the channel.
    pub agent_socket: PathBuf,
    pub root: RootDisk,
    /// The network interface; `None`: the guest has none.
    pub net: Option<NetDevice>,
    /// Volume disks, after the root's.
    pub extra_disks: Vec<ExtraDisk>,
    /// Volume directories shared with virtio-fs, besides a virtio-fs root.
    pub shares: Vec<Share>,
    /// Guest RAM in a template's memory file, to save a template or restore from one.
    pub template: Option<TemplateMemory>,
}

/// A template's guest RAM: a file QEMU maps as the guest's memory (see
/// [`crate::snapshot`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateMemory {
    pub ram_file: PathBuf,
    pub role: TemplateRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TemplateRole {
    /// The VM builds the template: its RAM is the file itself (`share=on`), which is left
    /// holding the guest's memory when QEMU stops.
    Save,
    /// The VM starts from the template: a private copy-on-write mapping of the file
    /// (`share=off`), whose pages every sandbox of the template shares until it writes them,
    /// and QEMU waits for the device state (`-incoming defer`).
    Restore,
}

impl VmConfig {
    /// Every virtio-fs share, the root's first.
    fn virtiofs_shares(&self) -> impl Iterator<Item = &Share> {
        let root = match &self.root {
            RootDisk::Virtiofs(share) => Some(share),
            RootDisk::Overlay { .. } => None,
        };
        root.into_iter().chain(&self.shares)
    }
}

/// `MSB_QEMU`, else `qemu-system-x86_64` from `PATH`.
pub fn find_qemu() -> Result<PathBuf, EngineError> {
    if let Some(path) = std::env::var_os(QEMU_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(EngineError::QemuEnvInvalid(path))
        };
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&search)
        .map(|dir| dir.join(QEMU_BINARY))
        .find(|candidate| is_executable(candidate))
        .ok_or(EngineError::QemuNotFound)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The version QEMU reports, e.g. `7.2.22`.
pub fn qemu_version(binary: &Path) -> Result<String, EngineError> {
    let failed = |detail: String| EngineError::QemuVersion {
        binary: binary.to_path_buf(),
        detail,
    };
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(format!("exited with {}", output.status)));
    }
    parse_version(&String::from_utf8_lossy(&output.stdout))
        .ok_or_else(|| failed("no version in its output".into()))
}

/// `QEMU emulator version 7.2.22 (Debian ...)` → `7.2.22`.
fn parse_version(text: &str) -> Option<String> {
    let rest = text.lines().next()?.split_once("version ")?.1;
    rest.split_whitespace().next().map(str::to_string)
}

/// The virtiofsd serving `source` on `socket`; with `readonly`, in a read-only view of it
/// (see [`read_only_view`]).
pub fn virtiofsd_command(
    source: &Path,
    socket: &Path,
    readonly: bool,
) -> Result<Command, EngineError> {
    if !Path::new(VIRTIOFSD).is_file() {
        return Err(EngineError::VirtiofsdMissing);
    }
    let mut command = Command::new(VIRTIOFSD);
    if readonly {
        read_only_view(&mut command, source)?;
    }
    command.arg(joined("--socket-path=", socket.as_os_str().to_owned()));
    // virtiofsd parses -o with libfuse, where a backslash escapes a comma.
    let source = source
        .to_string_lossy()
        .replace('\\', "\\\\")
        .replace(',', "\\,");
    command.args(["-o", &format!("source={source}"), "-o", "cache=auto"]);
    // Its default (info) logs every session to the supervisor's log, which is not rotated.
    command.args(["-o", "log_level=warn"]);
    Ok(command)
}

/// Runs `command` in a mount namespace of its own in which `source`, and every mount below
/// it, is read-only. Debian's C virtiofsd has no read-only option, and a read-only flag on
/// the guest's mount protects nothing (the guest is untrusted and may remount it), so the
/// host enforces it: whatever the guest asks virtiofsd for, writes fail with EROFS.
/// virtiofsd's own sandbox later binds this read-only tree as its root, which keeps the flag.
/// Needs CAP_SYS_ADMIN, as virtiofsd itself does.
pub fn read_only_view(command: &mut Command, source: &Path) -> Result<(), EngineError> {
    let source = CString::new(source.as_os_str().as_bytes())
        .map_err(|_| EngineError::NulInPath(source.to_path_buf()))?;
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        command.pre_exec(move || make_read_only(&source));
    }
    Ok(())
}

fn make_read_only(source: &CStr) -> std::io::Result<()> {
    let check = |result: libc::c_long| {
        if result < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    let none = std::ptr::null();
    let attributes = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: plain system calls on NUL-terminated strings and a local struct.
    unsafe {
        check(libc::unshare(libc::CLONE_NEWNS).into())?;
        // Nothing done in here may propagate to the host's mounts.
        let root = c"/".as_ptr();
        check(
            libc::mount(
                none,
                root,
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                none.cast(),
            )
            .into(),
        )?;
        check(
            libc::mount(
                source.as_ptr(),
                source.as_ptr(),
                none,
                libc::MS_BIND | libc::MS_REC,
                none.cast(),
            )
            .into(),
        )?;
        // mount_setattr (Linux 5.12) changes the whole tree at once, submounts included.
        check(libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            source.as_ptr(),
            libc::AT_RECURSIVE,
            &attributes,
            std::mem::size_of::<libc::mount_attr>(),
        ))
    }
}

fn joined(prefix: &str, value: OsString) -> OsString {
    let mut text = OsString::from(prefix);
    text.push(value);
    text
}

/// The QEMU process for `cfg`.
pub fn command(binary: &Path, cfg: &VmConfig) -> Command {
    let mut command = Command::new(binary);
    command.args(arguments(cfg));
    command
}

/// QEMU's arguments for `cfg` (separate from [`command`] so they can be inspected).
pub fn arguments(cfg: &VmConfig) -> Vec<String> {
    let mut args = Args::default();
    args.pair("-name", &escape(&cfg.name));
    args.pair("-M", &machine(cfg));
    match cfg.accelerator {
        Accelerator::Kvm => args.pair("-accel", "kvm").pair("-cpu", "host"),
        Accelerator::Tcg => args
            .pair(
                "-accel",
                &format!("tcg,thread=multi,tb-size={TCG_CODE_CACHE_MIB}"),
            )
            .pair("-cpu", "max"),
    };
    args.pair("-smp", &cfg.vcpus.max(1).to_string())
        .pair("-m", &format!("{}M", cfg.memory_mib));
    args.flags(&["-no-user-config", "-nodefaults", "-nographic", "-no-reboot"]);
    args.pair(
        "-chardev",
        &format!(
            "socket,id=console,path={},server=off",
            path(&cfg.console_socket)
        ),
    );
    args.pair("-serial", "chardev:console");
    args.pair("-kernel", &cfg.kernel.to_string_lossy())
        .pair("-initrd", &cfg.initramfs.to_string_lossy());
    args.pair("-append", &kernel_command_line(cfg));
    args.pair(
        "-chardev",
        &format!(
            "socket,id=qmp,path={},server=on,wait=off",
            path(&cfg.qmp_socket)
        ),
    );
    args.pair("-mon", "chardev=qmp,mode=control");
    args.pair(
        "-chardev",
        &format!(
            "socket,id=agent,path={},server=off",
            path(&cfg.agent_socket)
        ),
    );
    args.pair("-device", "virtio-serial-device")
        .pair("-device", "virtserialport,chardev=agent,name=agent");
    // Entropy: without it a fresh guest can block in getrandom() for a long time.
    args.pair("-device", "virtio-rng-device");
    // Free page reporting: the guest hands pages it freed back to QEMU, which drops them, so
    // memory a command used and released stops counting on the host. Measured under TCG, one
    // idle sandbox after filling 200 MiB of tmpfs and unmounting it: QEMU RSS 449 MiB
    // without, 257-259 MiB with (252 MiB before the fill); boot and exec times unchanged.
    args.pair("-device", "virtio-balloon-device,free-page-reporting=on");
    virtiofs_arguments(&mut args, cfg);
    template_arguments(&mut args, cfg);
    root_arguments(&mut args, cfg);
    for (index, disk) in cfg.extra_disks.iter().enumerate() {
        let id = format!("disk{index}");
        let access = if disk.readonly {
            DriveAccess::Snapshot
        } else {
            DriveAccess::ReadWrite
        };
        args.drive(&id, &disk.path, &escape(&disk.format), access, &disk.serial);
    }
    if let Some(net) = &cfg.net {
        let [netdev, device] = net.arguments();
        args.pair("-netdev", &netdev);
        args.pair("-device", &device);
    }
    args.0
}

/// microvm without firmware option ROMs; ACPI on because that is how the Debian kernel's
/// virtio_mmio finds the devices. virtio-fs needs guest RAM in shared memory.
fn machine(cfg: &VmConfig) -> String {
    let mut machine = format!("microvm,x-option-roms=off,rtc={RTC},acpi=on");
    if cfg.virtiofs_shares().next().is_some() || cfg.template.is_some() {
        machine.push_str(",memory-backend=mem");
    }
    machine
}

/// Guest RAM in the template's memory file; a restoring VM waits for the device state.
fn template_arguments(args: &mut Args, cfg: &VmConfig) {
    let Some(template) = &cfg.template else {
        return;
    };
    let share = match template.role {
        TemplateRole::Save => "on",
        TemplateRole::Restore => "off",
    };
    args.pair(
        "-object",
        &format!(
            "memory-backend-file,id=mem,size={}M,mem-path={},share={share}",
            cfg.memory_mib,
            path(&template.ram_file)
        ),
    );
    if template.role == TemplateRole::Restore {
        args.pair("-incoming", "defer");
    }
}

/// One shared-memory backend for the guest's RAM (virtiofsd maps it), then a vhost-user-fs
/// device per share, the root's first.
fn virtiofs_arguments(args: &mut Args, cfg: &VmConfig) {
    if cfg.virtiofs_shares().next().is_none() {
        return;
    }
    args.pair(
        "-object",
        &format!(
            "memory-backend-memfd,id=mem,size={}M,share=on",
            cfg.memory_mib
        ),
    );
    // libvhost-user (virtiofsd) refuses legacy virtio, microvm's default.
    args.pair("-global", "virtio-mmio.force-legacy=false");
    for (index, share) in cfg.virtiofs_shares().enumerate() {
        args.pair(
            "-chardev",
            &format!("socket,id=vfs{index},path={}", path(&share.vhost_socket)),
        );
        args.pair(
            "-device",
            &format!(
                "vhost-user-fs-device,chardev=vfs{index},tag={}",
                escape(&share.tag)
            ),
        );
    }
}

fn root_arguments(args: &mut Args, cfg: &VmConfig) {
    match &cfg.root {
        RootDisk::Virtiofs(_) => {}
        RootDisk::Overlay { lowers, upper } => {
            for (index, lower) in lowers.iter().enumerate() {
                let serial = lower_serial(index);
                let (path, format, access) = lower.drive();
                args.drive(&serial, path, &escape(format), access, &serial);
            }
            args.drive(
                UPPER_SERIAL,
                upper,
                "raw",
                DriveAccess::ReadWrite,
                UPPER_SERIAL,
            );
        }
    }
}

fn lower_serial(index: usize) -> String {
    format!("{LAYER_SERIAL_PREFIX}{index}")
}

/// The kernel command line: base parameters and the TSC rate under TCG. Nothing of one
/// sandbox goes here (its root and hostname travel in the hello, see [`guest_root`]), so
/// that every sandbox of a shape boots the same guest and can share a template.
pub fn kernel_command_line(cfg: &VmConfig) -> String {
    let mut params: Vec<String> = BASE_KERNEL_PARAMS.iter().map(|p| p.to_string()).collect();
    if cfg.accelerator == Accelerator::Tcg && cfg.tsc_khz > 0 {
        params.push(format!("tsc_early_khz={}", cfg.tsc_khz));
        params.push("tsc=reliable".into());
    }
    params.join(" ")
}

/// What the guest agent is told to mount as its root: the virtio-fs tag, or the disks'
/// serials (lowers top first, each with the file system the guest must mount it with when
/// it must not detect one), as [`arguments`] attaches them.
pub fn guest_root(root: &RootDisk) -> GuestRoot {
    match root {
        RootDisk::Virtiofs(share) => GuestRoot::Virtiofs {
            tag: share.tag.clone(),
        },
        RootDisk::Overlay { lowers, .. } => GuestRoot::Overlay {
            lowers: lowers
                .iter()
                .enumerate()
                .map(|(index, lower)| GuestLower {
                    serial: lower_serial(index),
                    fstype: lower.fstype(),
                })
                .collect(),
            upper: UPPER_SERIAL.to_string(),
        },
    }
}

/// Doubles commas, QEMU's escape inside `key=value,...` options.
fn escape(value: &str) -> String {
    value.replace(',', ",,")
}

fn path(path: &Path) -> String {
    escape(&path.to_string_lossy())
}

#[derive(Default)]
struct Args(Vec<String>);

impl Args {
    fn pair(&mut self, option: &str, value: &str) -> &mut Self {
        self.0.push(option.to_string());
        self.0.push(value.to_string());
        self
    }

    fn flags(&mut self, flags: &[&str]) -> &mut Self {
        self.0.extend(flags.iter().map(|f| f.to_string()));
        self
    }

    /// A virtio-blk disk; the guest agent finds it by serial, not by position.
    fn drive(
        &mut self,
        id: &str,
        file: &Path,
        format: &str,
        access: DriveAccess,
        serial: &str,
    ) -> &mut Self {
        let access = match access {
            DriveAccess::ReadWrite => "",
            DriveAccess::ReadOnly => ",readonly=on",
            DriveAccess::Snapshot => ",snapshot=on",
        };
        self.pair(
            "-drive",
            &format!(
                "id={id},file={},format={format},if=none{access}",
                path(file)
            ),
        );
        self.pair(
            "-device",
            &format!("virtio-blk-device,drive={id},serial={}", escape(serial)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(root: RootDisk, accelerator: Accelerator) -> VmConfig {
        VmConfig {
            name: "web".into(),
            vcpus: 2,
            memory_mib: 512,
            accelerator,
            tsc_khz: 2_596_142,
            kernel: "/c/vmlinux".into(),
            initramfs: "/c/init.cpio".into(),
            console_socket: "/s/console.sock".into(),
            qmp_socket: "/s/qmp.sock".into(),
            agent_socket: "/s/agent.sock".into(),
            root,
            net: None,
            extra_disks: vec![],
            shares: vec![],
            template: None,
        }
    }

    fn overlay() -> RootDisk {
        RootDisk::Overlay {
            lowers: vec![
                Lower::Layer("/i/top.ext4".into()),
                Lower::Layer("/i/base.ext4".into()),
            ],
            upper: "/s/upper.ext4".into(),
        }
    }

    /// The value following the n-th occurrence of `option`.
    fn values<'a>(args: &'a [String], option: &str) -> Vec<&'a str> {
        args.windows(2)
            .filter(|w| w[0] == option)
            .map(|w| w[1].as_str())
            .collect()
    }

    #[test]
    fn tcg_overlay_command_line_follows_the_verified_recipe() {
        let args = arguments(&config(overlay(), Accelerator::Tcg));
        assert_eq!(
            values(&args, "-M"),
            ["microvm,x-option-roms=off,rtc=on,acpi=on"]
        );
        assert_eq!(values(&args, "-accel"), ["tcg,thread=multi,tb-size=64"]);
        assert_eq!(values(&args, "-cpu"), ["max"]);
        assert_eq!(values(&args, "-smp"), ["2"]);
        assert_eq!(values(&args, "-m"), ["512M"]);
        assert_eq!(values(&args, "-name"), ["web"]);
        for flag in ["-no-user-config", "-nodefaults", "-nographic", "-no-reboot"] {
            assert!(args.iter().any(|a| a == flag), "{flag}");
        }
        assert_eq!(values(&args, "-kernel"), ["/c/vmlinux"]);
        assert_eq!(values(&args, "-initrd"), ["/c/init.cpio"]);
        assert_eq!(
            values(&args, "-append"),
            ["console=ttyS0 quiet reboot=t panic=-1 tsc_early_khz=2596142 tsc=reliable"]
        );
        assert_eq!(
            values(&args, "-chardev"),
            [
                "socket,id=console,path=/s/console.sock,server=off",
                "socket,id=qmp,path=/s/qmp.sock,server=on,wait=off",
                "socket,id=agent,path=/s/agent.sock,server=off",
            ]
        );
        assert_eq!(values(&args, "-serial"), ["chardev:console"]);
        assert_eq!(values(&args, "-mon"), ["chardev=qmp,mode=control"]);
        assert_eq!(
            values(&args, "-drive"),
            [
                "id=layer0,file=/i/top.ext4,format=raw,if=none,readonly=on",
                "id=layer1,file=/i/base.ext4,format=raw,if=none,readonly=on",
                "id=upper,file=/s/upper.ext4,format=raw,if=none",
            ]
        );
        assert_eq!(
            values(&args, "-device"),
            [
                "virtio-serial-device",
                "virtserialport,chardev=agent,name=agent",
                "virtio-rng-device",
                "virtio-balloon-device,free-page-reporting=on",
                "virtio-blk-device,drive=layer0,serial=layer0",
                "virtio-blk-device,drive=layer1,serial=layer1",
                "virtio-blk-device,drive=upper,serial=upper",
            ]
        );
        assert!(values(&args, "-netdev").is_empty());
        assert!(values(&args, "-object").is_empty());
    }

    fn disk_root(lowers: Vec<Lower>) -> VmConfig {
        let root = RootDisk::Overlay {
            lowers,
            upper: "/s/upper.ext4".into(),
        };
        config(root, Accelerator::Kvm)
    }

    fn disk(path: &str, format: &str, fstype: Option<DiskFilesystem>) -> Lower {
        Lower::Disk {
            path: path.into(),
            format: format.into(),
            fstype,
        }
    }

    #[test]
    fn a_disk_lower_is_read_through_a_snapshot_in_its_format_with_its_fstype() {
        let cfg = disk_root(vec![disk(
            "/h/root,1.qcow2",
            "qcow2",
            Some(DiskFilesystem::Ext4),
        )]);
        let args = arguments(&cfg);
        assert_eq!(
            values(&args, "-drive"),
            [
                "id=layer0,file=/h/root,,1.qcow2,format=qcow2,if=none,snapshot=on",
                "id=upper,file=/s/upper.ext4,format=raw,if=none",
            ]
        );
        assert!(values(&args, "-device").contains(&"virtio-blk-device,drive=layer0,serial=layer0"));
        assert_eq!(
            guest_root(&cfg.root),
            GuestRoot::Overlay {
                lowers: vec![GuestLower {
                    serial: "layer0".into(),
                    fstype: Some(DiskFilesystem::Ext4)
                }],
                upper: "upper".into()
            }
        );
        assert_eq!(cfg.root.virtio_devices(), 2);
    }

    #[test]
    fn a_disk_lower_without_fstype_leaves_detection_to_the_guest() {
        let cfg = disk_root(vec![disk("/h/root.img", "raw", None)]);
        let args = arguments(&cfg);
        assert_eq!(
            values(&args, "-drive")[0],
            "id=layer0,file=/h/root.img,format=raw,if=none,snapshot=on"
        );
        let GuestRoot::Overlay { lowers, .. } = guest_root(&cfg.root) else {
            panic!("an overlay root");
        };
        assert_eq!(lowers[0].fstype, None);
    }

    #[test]
    fn each_fstype_stays_with_its_own_lower() {
        let cfg = disk_root(vec![
            Lower::Layer("/i/top.ext4".into()),
            disk("/h/middle.img", "raw", Some(DiskFilesystem::Erofs)),
            Lower::Layer("/i/base.ext4".into()),
            disk("/h/bottom.qcow2", "qcow2", Some(DiskFilesystem::Ext2)),
        ]);
        let args = arguments(&cfg);
        let GuestRoot::Overlay { lowers, .. } = guest_root(&cfg.root) else {
            panic!("an overlay root");
        };
        let described: Vec<(&str, Option<DiskFilesystem>)> = lowers
            .iter()
            .map(|lower| (lower.serial.as_str(), lower.fstype))
            .collect();
        assert_eq!(
            described,
            [
                ("layer0", None),
                ("layer1", Some(DiskFilesystem::Erofs)),
                ("layer2", None),
                ("layer3", Some(DiskFilesystem::Ext2)),
            ]
        );
        assert_eq!(
            values(&args, "-drive")[..4],
            [
                "id=layer0,file=/i/top.ext4,format=raw,if=none,readonly=on",
                "id=layer1,file=/h/middle.img,format=raw,if=none,snapshot=on",
                "id=layer2,file=/i/base.ext4,format=raw,if=none,readonly=on",
                "id=layer3,file=/h/bottom.qcow2,format=qcow2,if=none,snapshot=on",
            ]
        );
    }

    #[test]
    fn a_template_is_saved_from_shared_file_memory_and_restored_from_a_private_mapping() {
        let mut cfg = config(overlay(), Accelerator::Tcg);
        cfg.template = Some(TemplateMemory {
            ram_file: "/t/ab,c/ram".into(),
            role: TemplateRole::Save,
        });
        let args = arguments(&cfg);
        assert_eq!(
            values(&args, "-M"),
            ["microvm,x-option-roms=off,rtc=on,acpi=on,memory-backend=mem"]
        );
        assert_eq!(
            values(&args, "-object"),
            ["memory-backend-file,id=mem,size=512M,mem-path=/t/ab,,c/ram,share=on"]
        );
        assert!(values(&args, "-incoming").is_empty());
        cfg.template.as_mut().unwrap().role = TemplateRole::Restore;
        let args = arguments(&cfg);
        assert_eq!(
            values(&args, "-object"),
            ["memory-backend-file,id=mem,size=512M,mem-path=/t/ab,,c/ram,share=off"]
        );
        assert_eq!(values(&args, "-incoming"), ["defer"]);
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_no_tsc_parameters() {
        let args = arguments(&config(overlay(), Accelerator::Kvm));
        assert_eq!(values(&args, "-accel"), ["kvm"]);
        assert_eq!(values(&args, "-cpu"), ["host"]);
        assert!(!values(&args, "-append")[0].contains("tsc"));
    }

    #[test]
    fn every_vm_reports_its_free_pages_to_the_host() {
        for accelerator in [Accelerator::Tcg, Accelerator::Kvm] {
            let args = arguments(&config(overlay(), accelerator));
            let balloons: Vec<_> = values(&args, "-device")
                .into_iter()
                .filter(|device| device.starts_with("virtio-balloon-device"))
                .collect();
            assert_eq!(balloons, ["virtio-balloon-device,free-page-reporting=on"]);
        }
    }

    #[test]
    fn unknown_tsc_rate_leaves_calibration_to_the_guest() {
        let mut cfg = config(overlay(), Accelerator::Tcg);
        cfg.tsc_khz = 0;
        assert!(!kernel_command_line(&cfg).contains("tsc"));
    }

    #[test]
    fn virtiofs_root_shares_guest_memory() {
        let root = RootDisk::Virtiofs(Share {
            vhost_socket: "/s/vfs.sock".into(),
            tag: "rootfs".into(),
        });
        assert_eq!(root.virtio_devices(), 1);
        let args = arguments(&config(root.clone(), Accelerator::Tcg));
        assert_eq!(
            values(&args, "-M"),
            ["microvm,x-option-roms=off,rtc=on,acpi=on,memory-backend=mem"]
        );
        assert_eq!(
            values(&args, "-object"),
            ["memory-backend-memfd,id=mem,size=512M,share=on"]
        );
        assert_eq!(values(&args, "-global"), ["virtio-mmio.force-legacy=false"]);
        assert!(values(&args, "-chardev").contains(&"socket,id=vfs0,path=/s/vfs.sock"));
        assert!(values(&args, "-device").contains(&"vhost-user-fs-device,chardev=vfs0,tag=rootfs"));
        assert_eq!(
            guest_root(&root),
            GuestRoot::Virtiofs {
                tag: "rootfs".into()
            }
        );
        assert!(values(&args, "-drive").is_empty());
    }

    #[test]
    fn extra_disks_and_network() {
        let mut cfg = config(overlay(), Accelerator::Tcg);
        cfg.net = Some(NetDevice {
            backend: NetBackend::Socket { fd: 7 },
            mac: [2, 0x6d, 0x73, 0x67, 0, 2],
            mtu: None,
        });
        cfg.extra_disks = vec![
            ExtraDisk {
                path: "/v/data.qcow2".into(),
                serial: "vol-data".into(),
                readonly: false,
                format: "qcow2".into(),
            },
            ExtraDisk {
                path: "/v/ro.img".into(),
                serial: "vol-ro".into(),
                readonly: true,
                format: "raw".into(),
            },
        ];
        let args = arguments(&cfg);
        let drives = values(&args, "-drive");
        assert_eq!(
            drives[3..],
            [
                "id=disk0,file=/v/data.qcow2,format=qcow2,if=none",
                "id=disk1,file=/v/ro.img,format=raw,if=none,snapshot=on"
            ]
        );
        let devices = values(&args, "-device");
        assert!(devices.contains(&"virtio-blk-device,drive=disk0,serial=vol-data"));
        assert!(devices.contains(&"virtio-blk-device,drive=disk1,serial=vol-ro"));
        assert_eq!(
            values(&args, "-netdev"),
            ["stream,id=n0,addr.type=fd,addr.str=7"]
        );
        assert!(devices.contains(&"virtio-net-device,netdev=n0,mac=02:6d:73:67:00:02"));
    }

    #[test]
    fn slirp_baseline_forwards_its_ports() {
        let mut cfg = config(overlay(), Accelerator::Tcg);
        let forward = |udp, host_port, guest_port| SlirpForward {
            udp,
            host_port,
            guest_port,
        };
        cfg.net = Some(NetDevice {
            backend: NetBackend::Slirp {
                host_forwards: vec![forward(false, 8080, 80), forward(true, 53, 5353)],
            },
            mac: [2, 0, 0, 0, 0, 2],
            mtu: None,
        });
        assert_eq!(
            values(&arguments(&cfg), "-netdev"),
            ["user,id=n0,net=10.0.2.0/24,host=10.0.2.3,dns=10.0.2.2\
              ,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:127.0.0.1:53-:5353"]
        );
    }

    fn share(socket: &str, tag: &str) -> Share {
        Share {
            vhost_socket: socket.into(),
            tag: tag.into(),
        }
    }

    #[test]
    fn volume_shares_and_disks_get_one_memory_backend_and_a_device_each() {
        for root in [
            overlay(),
            RootDisk::Virtiofs(share("/s/vfs.sock", "rootfs")),
        ] {
            let mut cfg = config(root.clone(), Accelerator::Tcg);
            cfg.net = Some(NetDevice {
                backend: NetBackend::Socket { fd: 7 },
                mac: [2, 0, 0, 0, 0, 2],
                mtu: Some(65520),
            });
            cfg.shares = vec![share("/s/vol0.sock", "vol0"), share("/s/vol2.sock", "vol2")];
            cfg.extra_disks = vec![ExtraDisk {
                path: "/v/named.ext4".into(),
                serial: "vol1".into(),
                readonly: true,
                format: "raw".into(),
            }];
            let args = arguments(&cfg);
            assert!(values(&args, "-M")[0].ends_with(",memory-backend=mem"));
            assert!(values(&args, "-device")
                .contains(&"virtio-net-device,netdev=n0,mac=02:00:00:00:00:02,host_mtu=65520"));
            assert_eq!(
                values(&args, "-object"),
                ["memory-backend-memfd,id=mem,size=512M,share=on"]
            );
            assert_eq!(values(&args, "-global"), ["virtio-mmio.force-legacy=false"]);
            let chardevs = values(&args, "-chardev");
            let devices = values(&args, "-device");
            let offset = usize::from(matches!(root, RootDisk::Virtiofs(_)));
            for (index, tag) in [(offset, "vol0"), (offset + 1, "vol2")] {
                assert!(
                    chardevs.contains(&format!("socket,id=vfs{index},path=/s/{tag}.sock").as_str())
                );
                assert!(devices.contains(
                    &format!("vhost-user-fs-device,chardev=vfs{index},tag={tag}").as_str()
                ));
            }
            assert!(devices.contains(&"virtio-blk-device,drive=disk0,serial=vol1"));
            // Every device but the serial port (which sits on virtio-serial) takes a transport.
            let transports = devices
                .iter()
                .filter(|d| !d.starts_with("virtserialport"))
                .count();
            assert_eq!(
                transports,
                BASE_VIRTIO_DEVICES + root.virtio_devices() + cfg.shares.len() + 1
            );
        }
    }

    #[test]
    fn commas_in_values_are_escaped_and_the_cmdline_stays_one_word_per_key() {
        let mut cfg = config(overlay(), Accelerator::Tcg);
        cfg.name = "a,b c".into();
        cfg.console_socket = "/odd,dir/console.sock".into();
        let args = arguments(&cfg);
        assert_eq!(values(&args, "-name"), ["a,,b c"]);
        assert_eq!(
            values(&args, "-chardev")[0],
            "socket,id=console,path=/odd,,dir/console.sock,server=off"
        );
        assert!(!values(&args, "-append")[0].contains("a,b"));
    }

    #[test]
    fn version_is_read_from_the_first_line() {
        let text = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022\n";
        assert_eq!(parse_version(text).as_deref(), Some("7.2.22"));
        assert_eq!(parse_version("nothing here"), None);
    }

    #[test]
    fn virtiofsd_arguments_escape_commas_for_libfuse() {
        let command = virtiofsd_command(Path::new("/data,x"), Path::new("/s/vfs.sock"), false)
            .expect("virtiofsd is installed with qemu-system-x86 by ./dev setup");
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--socket-path=/s/vfs.sock",
                "-o",
                "source=/data\\,x",
                "-o",
                "cache=auto",
                "-o",
                "log_level=warn"
            ]
        );
    }

    #[test]
    fn a_read_only_view_refuses_writes_and_leaves_the_host_writable() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, readonly: bool| {
            let mut command = Command::new("/bin/sh");
            command.args(["-c", &format!("echo x > '{}/{name}'", dir.path().display())]);
            if readonly {
                read_only_view(&mut command, dir.path()).unwrap();
            }
            command.output().unwrap()
        };
        let refused = write("inside", true);
        assert!(!refused.status.success());
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("Read-only file system"),
            "{refused:?}"
        );
        assert!(!dir.path().join("inside").exists());
        assert!(write("outside", false).status.success());
        assert!(dir.path().join("outside").exists());
    }
}

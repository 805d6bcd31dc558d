//! The QEMU `microvm` command line (DESIGN §2) and the helpers QEMU needs.

use crate::accel::Accelerator;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Overrides the QEMU binary.
pub const QEMU_ENV: &str = "MSB_QEMU";
const QEMU_BINARY: &str = "qemu-system-x86_64";
/// Debian's QEMU 7.2 ships the C virtiofsd here.
const VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";
/// Serial of the writable upper disk; lower layers are `layer0`, `layer1`, ... (top first).
pub const UPPER_SERIAL: &str = "upper";

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "{QEMU_BINARY} not found (install the Debian package qemu-system-x86, or set {QEMU_ENV})"
    )]
    QemuMissing,
    #[error("virtiofsd not found at {VIRTIOFSD} (Debian package qemu-system-common)")]
    VirtiofsdMissing,
    #[error("cannot run {binary}: {detail}")]
    QemuUnusable { binary: String, detail: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootDisk {
    /// A host directory served by virtiofsd on `vhost_socket`.
    Virtiofs { vhost_socket: PathBuf, tag: String },
    /// Read-only ext4 layers (top-most first) under a writable ext4 upper, joined by overlayfs.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraDisk {
    pub path: PathBuf,
    pub serial: String,
    pub readonly: bool,
    /// `raw` or `qcow2`.
    pub format: String,
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    pub name: String,
    pub vcpus: u8,
    pub memory_mib: u32,
    pub accelerator: Accelerator,
    pub tsc_khz: u64,
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub console_log: PathBuf,
    pub qmp_socket: PathBuf,
    /// The supervisor listens here; QEMU connects.
    pub agent_socket: PathBuf,
    pub root: RootDisk,
    pub net_socket: Option<PathBuf>,
    pub extra_disks: Vec<ExtraDisk>,
}

pub fn find_qemu() -> Result<PathBuf, EngineError> {
    if let Some(path) = std::env::var_os(QEMU_ENV).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(QEMU_BINARY))
        .find(|candidate| candidate.is_file())
        .ok_or(EngineError::QemuMissing)
}

pub fn qemu_version(binary: &Path) -> Result<String, EngineError> {
    let unusable = |detail: String| EngineError::QemuUnusable {
        binary: binary.display().to_string(),
        detail,
    };
    let output = Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| unusable(e.to_string()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .next()
        .map(|line| line.trim().to_string())
        .filter(|_| output.status.success())
        .ok_or_else(|| unusable("no version output".into()))
}

pub fn virtiofsd_command(source: &Path, socket: &Path) -> Result<Command, EngineError> {
    if !Path::new(VIRTIOFSD).is_file() {
        return Err(EngineError::VirtiofsdMissing);
    }
    let mut command = Command::new(VIRTIOFSD);
    command
        .arg(format!("--socket-path={}", socket.display()))
        .args([
            "-o",
            &format!("source={}", source.display()),
            "-o",
            "cache=auto",
        ]);
    Ok(command)
}

pub fn command(binary: &Path, config: &VmConfig) -> Command {
    let mut command = Command::new(binary);
    command.args(arguments(config));
    command
}

/// The argument list, separate from [`command`] so tests can read it.
pub fn arguments(config: &VmConfig) -> Vec<String> {
    let shared_memory = matches!(config.root, RootDisk::Virtiofs { .. });
    let mut machine = "microvm,x-option-roms=off,rtc=off,acpi=on".to_string();
    if shared_memory {
        machine.push_str(",memory-backend=mem");
    }
    let mut args: Vec<String> = vec!["-name".into(), config.name.clone(), "-M".into(), machine];
    match config.accelerator {
        Accelerator::Kvm => args.extend(["-accel", "kvm", "-cpu", "host"].map(String::from)),
        Accelerator::Tcg => {
            args.extend(["-accel", "tcg,thread=multi", "-cpu", "max"].map(String::from))
        }
    }
    args.extend([
        "-smp".into(),
        config.vcpus.to_string(),
        "-m".into(),
        format!("{}M", config.memory_mib),
        "-no-user-config".into(),
        "-nodefaults".into(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-serial".into(),
        format!("file:{}", config.console_log.display()),
        "-kernel".into(),
        config.kernel.display().to_string(),
        "-initrd".into(),
        config.initramfs.display().to_string(),
        "-append".into(),
        kernel_command_line(config),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", config.qmp_socket.display()),
        "-chardev".into(),
        format!(
            "socket,id=agent,path={},server=off",
            config.agent_socket.display()
        ),
        "-device".into(),
        "virtio-serial-device".into(),
        "-device".into(),
        "virtserialport,chardev=agent,name=agent".into(),
        "-device".into(),
        "virtio-rng-device".into(),
    ]);
    match &config.root {
        RootDisk::Virtiofs { vhost_socket, tag } => args.extend([
            "-object".into(),
            format!(
                "memory-backend-memfd,id=mem,size={}M,share=on",
                config.memory_mib
            ),
            "-global".into(),
            "virtio-mmio.force-legacy=false".into(),
            "-chardev".into(),
            format!("socket,id=vfs,path={}", vhost_socket.display()),
            "-device".into(),
            format!("vhost-user-fs-device,chardev=vfs,tag={tag}"),
        ]),
        RootDisk::Overlay { lowers, upper } => {
            for (index, lower) in lowers.iter().enumerate() {
                args.extend(disk(lower, &format!("layer{index}"), true, "raw"));
            }
            args.extend(disk(upper, UPPER_SERIAL, false, "raw"));
        }
    }
    for extra in &config.extra_disks {
        args.extend(disk(
            &extra.path,
            &extra.serial,
            extra.readonly,
            &extra.format,
        ));
    }
    if let Some(socket) = &config.net_socket {
        args.extend([
            "-netdev".into(),
            format!("stream,id=n0,addr.type=unix,addr.path={}", socket.display()),
            "-device".into(),
            "virtio-net-device,netdev=n0".into(),
        ]);
    }
    args
}

/// Disks are found by the guest agent through their serial, not their order.
fn disk(path: &Path, serial: &str, readonly: bool, format: &str) -> [String; 4] {
    let readonly = if readonly { ",readonly=on" } else { "" };
    [
        "-drive".into(),
        format!(
            "id={serial},file={},format={format},if=none{readonly}",
            path.display()
        ),
        "-device".into(),
        format!("virtio-blk-device,drive={serial},serial={serial}"),
    ]
}

/// Kernel parameters plus the `msb.*` keys the guest agent reads.
pub fn kernel_command_line(config: &VmConfig) -> String {
    let mut line = vec![
        "console=ttyS0".to_string(),
        "quiet".into(),
        "reboot=t".into(),
        "panic=-1".into(),
    ];
    if config.accelerator == Accelerator::Tcg {
        // Without these the guest sometimes hangs calibrating its TSC under TCG (DESIGN §2).
        line.push(format!("tsc_early_khz={}", config.tsc_khz));
        line.push("tsc=reliable".into());
    }
    line.push(format!("msb.hostname={}", config.name));
    match &config.root {
        RootDisk::Virtiofs { tag, .. } => {
            line.push("msb.root=virtiofs".into());
            line.push(format!("msb.root_tag={tag}"));
        }
        RootDisk::Overlay { lowers, .. } => {
            line.push("msb.root=overlay".into());
            let serials: Vec<String> = (0..lowers.len())
                .map(|index| format!("layer{index}"))
                .collect();
            line.push(format!("msb.lower={}", serials.join(",")));
            line.push(format!("msb.upper={UPPER_SERIAL}"));
        }
    }
    line.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(root: RootDisk, accelerator: Accelerator) -> VmConfig {
        VmConfig {
            name: "web".into(),
            vcpus: 2,
            memory_mib: 256,
            accelerator,
            tsc_khz: 2_000_000,
            kernel: "/k/vmlinux".into(),
            initramfs: "/k/initrd".into(),
            console_log: "/s/console.log".into(),
            qmp_socket: "/s/qmp.sock".into(),
            agent_socket: "/s/agent.sock".into(),
            root,
            net_socket: None,
            extra_disks: vec![],
        }
    }

    fn overlay() -> RootDisk {
        RootDisk::Overlay {
            lowers: vec!["/l/a.ext4".into(), "/l/b.ext4".into()],
            upper: "/s/upper.ext4".into(),
        }
    }

    #[test]
    fn tcg_line_has_the_verified_recipe() {
        let args = arguments(&config(overlay(), Accelerator::Tcg)).join(" ");
        assert!(args.contains("-M microvm,x-option-roms=off,rtc=off,acpi=on "));
        assert!(args.contains("-accel tcg,thread=multi -cpu max"));
        assert!(args.contains("tsc_early_khz=2000000 tsc=reliable"));
        assert!(args.contains("-chardev socket,id=agent,path=/s/agent.sock,server=off"));
        assert!(args.contains("virtserialport,chardev=agent,name=agent"));
        assert!(args.contains("id=layer1,file=/l/b.ext4,format=raw,if=none,readonly=on"));
        assert!(args.contains("virtio-blk-device,drive=upper,serial=upper"));
        assert!(args.contains("msb.root=overlay msb.lower=layer0,layer1 msb.upper=upper"));
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_no_tsc_hints() {
        let args = arguments(&config(overlay(), Accelerator::Kvm)).join(" ");
        assert!(args.contains("-accel kvm -cpu host"));
        assert!(!args.contains("tsc_early_khz"));
    }

    #[test]
    fn virtiofs_root_shares_memory_and_disables_legacy_virtio() {
        let root = RootDisk::Virtiofs {
            vhost_socket: "/s/vfs.sock".into(),
            tag: "rootfs".into(),
        };
        let args = arguments(&config(root, Accelerator::Tcg)).join(" ");
        assert!(args.contains("acpi=on,memory-backend=mem"));
        assert!(args.contains("memory-backend-memfd,id=mem,size=256M,share=on"));
        assert!(args.contains("virtio-mmio.force-legacy=false"));
        assert!(args.contains("vhost-user-fs-device,chardev=vfs,tag=rootfs"));
        assert!(args.contains("msb.root=virtiofs msb.root_tag=rootfs"));
    }
}

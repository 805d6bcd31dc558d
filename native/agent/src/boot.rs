//! `/init` from the bare initramfs to the sandbox's own root file system, in two phases.
//!
//! [`early`] needs nothing from the sandbox: the usual mounts and the kernel modules, the
//! device drivers loaded with the virtio bus's autoprobe off so that they bind to nothing
//! yet. The agent then waits for the host's hello, which a host building a template saves
//! the VM before sending (see `docs/ARCHITECTURE.md`, "Templates"). [`finish`] does
//! everything sandbox-specific from the hello: fresh entropy first, the hostname, binding
//! the devices (disks, network, entropy and balloon read their configuration as they probe,
//! so a restored guest sees its own disks and MAC), the root file system and the machine id.

use crate::rootfs::{self, RootError};
use crate::{modules, network, sys};
use msb_protocol::guest::{GuestBoot, GuestRoot};
use std::io::{self, Write};
use std::os::fd::OwnedFd;

/// What the serving phase needs to know about the boot.
pub struct Booted {
    /// The initramfs root, which still holds the overlay's disks (see [`rootfs::switch_root`]).
    pub old_root: OwnedFd,
    /// The root is an overlay with a writable upper disk that shutdown must flush.
    pub overlay: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("mounting {target}: {source}")]
    EarlyMount {
        target: &'static str,
        source: io::Error,
    },
    #[error("seeding the kernel's random generator: {0}")]
    Entropy(io::Error),
    #[error("the host sent {0} bytes of entropy; at least {MIN_ENTROPY_BYTES} are needed")]
    TooLittleEntropy(usize),
    #[error(transparent)]
    Root(#[from] RootError),
    #[error("setting the hostname: {0}")]
    Hostname(io::Error),
    #[error("writing /etc/machine-id: {0}")]
    MachineId(io::Error),
}

/// The fewest host bytes that reseed the generator: 256 bits, a full ChaCha key.
pub const MIN_ENTROPY_BYTES: usize = 32;

/// The first phase: nothing in it may depend on, or leave behind, anything of one sandbox.
pub fn early() -> Result<(), BootError> {
    // The kernel mounts nothing for an initramfs init; modules and disk lookup need these.
    let hardened = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    for (fstype, target, flags) in [
        ("proc", "/proc", hardened),
        ("sysfs", "/sys", hardened),
        ("devtmpfs", "/dev", libc::MS_NOSUID),
    ] {
        let _ = std::fs::create_dir_all(target);
        sys::mount(fstype, target, fstype, flags, "")
            .map_err(|source| BootError::EarlyMount { target, source })?;
    }
    sys::ensure_standard_fds();
    for error in modules::load_all(msb_protocol::EARLY_MODULE_LIST) {
        log!("{error}");
    }
    // The device drivers are loaded now too, but bind to their devices only after the hello
    // (see [`bind_devices`]): loading them took 0.2-0.4 s of a restored guest's start.
    set_autoprobe(false);
    for error in modules::load_all(msb_protocol::DEVICE_MODULE_LIST) {
        log!("{error}");
    }
    Ok(())
}

const VIRTIO_BUS: &str = "/sys/bus/virtio";

/// Whether drivers of the virtio bus bind to devices as they are registered.
fn set_autoprobe(on: bool) {
    let path = format!("{VIRTIO_BUS}/drivers_autoprobe");
    if let Err(error) = std::fs::write(&path, if on { "1" } else { "0" }) {
        log!("writing {path}: {error}");
    }
}

/// Binds every virtio device that has no driver yet (disks, network, entropy, balloon):
/// they read the sandbox's own configuration as they probe.
fn bind_devices() {
    set_autoprobe(true);
    let Ok(devices) = std::fs::read_dir(format!("{VIRTIO_BUS}/devices")) else {
        return;
    };
    for device in devices.flatten() {
        if device.path().join("driver").exists() {
            continue;
        }
        let name = device.file_name();
        if let Err(error) = std::fs::write(
            format!("{VIRTIO_BUS}/drivers_probe"),
            name.as_encoded_bytes(),
        ) {
            log!("binding {}: {error}", name.to_string_lossy());
        }
    }
}

/// The second phase, from the host's first hello.
pub fn finish(boot: &GuestBoot) -> Result<Booted, BootError> {
    if boot.entropy.len() < MIN_ENTROPY_BYTES {
        return Err(BootError::TooLittleEntropy(boot.entropy.len()));
    }
    sys::add_entropy_and_reseed(&boot.entropy).map_err(BootError::Entropy)?;
    sys::set_hostname(&boot.hostname).map_err(BootError::Hostname)?;
    bind_devices();
    rootfs::mount_root(&boot.root)?;
    rootfs::prepare_system_dirs()?;
    let old_root = rootfs::switch_root()?;
    let overlay = matches!(boot.root, GuestRoot::Overlay { .. });
    if overlay {
        ensure_machine_id().map_err(BootError::MachineId)?;
    }
    // Loopback now; the network interface, if the sandbox has one, from the host's hello.
    if let Err(error) = network::interface::bring_up("lo") {
        log!("cannot bring up lo: {error}");
    }
    Ok(Booted { old_root, overlay })
}

/// Gives the sandbox a machine id of its own when its image has none (an empty or missing
/// `/etc/machine-id`, as images ship it). Written to the sandbox's upper disk, so it stays
/// the same across restarts. A host directory root is never written to.
fn ensure_machine_id() -> io::Result<()> {
    const PATH: &str = "/etc/machine-id";
    let current = std::fs::read_to_string(PATH).unwrap_or_default();
    if is_machine_id(current.trim()) {
        return Ok(());
    }
    let mut id = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut random| {
        use std::io::Read;
        random.read_exact(&mut id)
    })?;
    let hex: String = id.iter().map(|byte| format!("{byte:02x}")).collect();
    let _ = std::fs::create_dir_all("/etc");
    // Not synced: shutdown flushes the upper disk (an fsync here cost a journal commit).
    let mut file = std::fs::File::create(PATH)?;
    writeln!(file, "{hex}")
}

/// 32 lowercase hex digits, not all zero (`man 5 machine-id`; "uninitialized" is not one).
fn is_machine_id(text: &str) -> bool {
    text.len() == 32
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && text.bytes().any(|b| b != b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_id_is_32_lowercase_hex_digits_not_all_zero() {
        assert!(is_machine_id("4a3b2c1d4a3b2c1d4a3b2c1d4a3b2c1d"));
        assert!(!is_machine_id(""));
        assert!(!is_machine_id("uninitialized"));
        assert!(!is_machine_id("00000000000000000000000000000000"));
        assert!(!is_machine_id("4A3B2C1D4A3B2C1D4A3B2C1D4A3B2C1D"));
        assert!(!is_machine_id("4a3b2c1d"));
    }
}

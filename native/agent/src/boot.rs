//! The first phase of `/init`: from the bare initramfs to the sandbox's own root file system.

use crate::cmdline::{self, CmdlineError, RootSpec};
use crate::rootfs::{self, RootError};
use crate::{modules, network, sys};
use std::io;
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
    #[error("reading /proc/cmdline: {0}")]
    ReadCmdline(io::Error),
    #[error(transparent)]
    Cmdline(#[from] CmdlineError),
    #[error(transparent)]
    Root(#[from] RootError),
    #[error("setting the hostname: {0}")]
    Hostname(io::Error),
}

pub fn boot() -> Result<Booted, BootError> {
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
    for error in modules::load_all() {
        log!("{error}");
    }
    let line = std::fs::read_to_string("/proc/cmdline").map_err(BootError::ReadCmdline)?;
    let config = cmdline::parse(&line)?;
    if let Some(hostname) = &config.hostname {
        sys::set_hostname(hostname).map_err(BootError::Hostname)?;
    }
    rootfs::mount_root(&config.root)?;
    rootfs::prepare_system_dirs()?;
    let old_root = rootfs::switch_root()?;
    // Loopback now; the network interface, if the sandbox has one, from the host's hello.
    if let Err(error) = network::interface::bring_up("lo") {
        log!("cannot bring up lo: {error}");
    }
    Ok(Booted {
        old_root,
        overlay: matches!(config.root, RootSpec::Overlay { .. }),
    })
}

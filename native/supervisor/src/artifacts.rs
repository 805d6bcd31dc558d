//! What a boot needs besides the sandbox's own files: QEMU, the guest kernel and the
//! initramfs holding the guest agent. Found, never downloaded (that is `msb install`).

use crate::error::{Result, SupervisorError};
use crate::paths;
use msb_engine::kernel::{self, KernelArtifacts};
use std::path::{Path, PathBuf};

/// A user-provided kernel (ELF vmlinux or bzImage) and its modules directory.
pub const KERNEL_ENV: &str = "MSB_KERNEL";
pub const KERNEL_MODULES_ENV: &str = "MSB_KERNEL_MODULES";

/// Everything needed to boot a VM.
pub struct BootArtifacts {
    pub qemu: PathBuf,
    pub kernel: KernelArtifacts,
    pub initramfs: PathBuf,
}

/// The kernel of `MSB_KERNEL`, else the one `msb install` put in the cache.
pub fn installed_kernel() -> Result<KernelArtifacts> {
    if let Some(vmlinux) = std::env::var_os(KERNEL_ENV).filter(|v| !v.is_empty()) {
        let modules = std::env::var_os(KERNEL_MODULES_ENV).ok_or_else(|| {
            SupervisorError::InvalidConfig(format!(
                "{KERNEL_ENV} is set but {KERNEL_MODULES_ENV} is not"
            ))
        })?;
        return kernel::from_paths(Path::new(&vmlinux), Path::new(&modules))
            .map_err(|error| SupervisorError::InvalidConfig(format!("{KERNEL_ENV}: {error}")));
    }
    kernel::find_installed(&paths::cache_dir())
        .ok_or_else(|| SupervisorError::NotInstalled("the guest kernel is not installed".into()))
}

/// Finds what a boot needs; builds the initramfs (with `agent`) if only that is missing.
pub fn boot_artifacts(agent: &Path) -> Result<BootArtifacts> {
    let qemu = msb_engine::qemu::find_qemu()
        .map_err(|error| SupervisorError::NotInstalled(error.to_string()))?;
    let kernel = installed_kernel()?;
    let initramfs = msb_engine::initramfs::ensure(&paths::cache_dir(), &kernel, agent)
        .map_err(|error| SupervisorError::Install(error.to_string()))?;
    Ok(BootArtifacts {
        qemu,
        kernel,
        initramfs,
    })
}

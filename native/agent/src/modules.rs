//! Loading the kernel modules the initramfs carries. The host computed the dependency order
//! and wrote it to two lists in `/lib/modules` (`msb_protocol::EARLY_MODULE_LIST` and
//! `DEVICE_MODULE_LIST`), so no depmod data is needed in the guest.

use crate::sys;
use std::os::fd::AsFd;
use std::path::Path;

const MODULE_DIR: &str = "/lib/modules";

#[derive(Debug, thiserror::Error)]
#[error("module {name}: {source}")]
pub struct ModuleError {
    name: String,
    source: std::io::Error,
}

/// The module file names in load order: one per line, blank lines ignored.
pub fn parse_order(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|name| !name.is_empty() && !name.contains('/'))
        .collect()
}

/// Loads every module listed in `list`. A module that fails is reported and skipped: a missing
/// optional driver (balloon, rng) must not keep the sandbox from booting, and a missing
/// essential one shows up as a clear error later (no disk, no agent port).
pub fn load_all(list: &str) -> Vec<ModuleError> {
    let Ok(order) = std::fs::read_to_string(Path::new(MODULE_DIR).join(list)) else {
        return Vec::new();
    };
    parse_order(&order)
        .into_iter()
        .filter_map(|name| load(name).err())
        .collect()
}

fn load(name: &str) -> Result<(), ModuleError> {
    let error = |source| ModuleError {
        name: name.to_string(),
        source,
    };
    let file = std::fs::File::open(Path::new(MODULE_DIR).join(name)).map_err(error)?;
    match sys::finit_module(file.as_fd()) {
        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => Err(error(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_file_lists_names_in_order() {
        assert_eq!(
            parse_order("virtio_ring.ko\nvirtio.ko\n\n  virtio_mmio.ko \n"),
            ["virtio_ring.ko", "virtio.ko", "virtio_mmio.ko"]
        );
        assert!(
            parse_order("../etc/passwd\n").is_empty(),
            "names never leave the module directory"
        );
    }
}

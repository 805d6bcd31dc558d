//! Installing what a sandbox needs before it can boot (the guest kernel, the initramfs with
//! our agent, the default image) and telling whether it is there.

use crate::binaries;
use crate::error::{Result, RuntimeError};
use msb_engine::kernel;
use msb_images::base;
use msb_state::{Database, ImageRecord, NewImage};
use msb_supervisor::artifacts::installed_kernel;
use msb_supervisor::{database, paths};
use std::path::Path;

/// The static busybox the default image is built from (Debian package busybox-static).
const BUSYBOX: &str = "/bin/busybox";

/// Whether QEMU, the guest kernel, the agent and supervisor binaries and the default image
/// are all there.
pub fn is_installed() -> bool {
    msb_engine::qemu::find_qemu().is_ok()
        && installed_kernel().is_ok()
        && base::find_base_image(&paths::cache_dir()).is_some()
        && binaries::agent().is_ok()
        && binaries::supervisor().is_ok()
}

/// Installs the kernel, builds the initramfs and the default image, and registers the image
/// in this home's database. Idempotent: finished steps are skipped.
pub fn install(progress: &mut dyn FnMut(&str)) -> Result<()> {
    let cache = paths::cache_dir();
    std::fs::create_dir_all(&cache)
        .map_err(RuntimeError::io(format!("creating {}", cache.display())))?;
    msb_engine::qemu::find_qemu().map_err(|error| RuntimeError::Install(error.to_string()))?;
    let agent = binaries::agent()?;
    let kernel = match installed_kernel() {
        Ok(kernel) => kernel,
        Err(_) => kernel::install(&cache, progress)
            .map_err(|error| RuntimeError::Install(error.to_string()))?,
    };
    progress(&format!("kernel {} ready", kernel.release));
    msb_engine::initramfs::ensure(&cache, &kernel, &agent)
        .map_err(|error| RuntimeError::Install(error.to_string()))?;
    progress("initramfs ready");
    let mut db = database::open()?;
    let image = register_base_image(&mut db, true)?;
    progress(&format!(
        "default image {} ready ({})",
        image.name, image.digest
    ));
    Ok(())
}

/// Records the cached default image in this home's database, building it first when
/// `build` is set. Homes share the cache, so a new home needs only this registration.
pub fn register_base_image(db: &mut Database, build: bool) -> Result<ImageRecord> {
    let cache = paths::cache_dir();
    let built = match base::find_base_image(&cache) {
        Some(built) => built,
        None if build => {
            check_static_busybox(Path::new(BUSYBOX))?;
            base::ensure_base_image(&cache, Path::new(BUSYBOX))
                .map_err(|error| RuntimeError::Install(error.to_string()))?
        }
        None => {
            return Err(RuntimeError::NotInstalled(
                "the default image is not built".into(),
            ))
        }
    };
    let path = built.path.display().to_string();
    db.put_image(&NewImage {
        name: base::BASE_IMAGE_NAME,
        kind: "ext4",
        path: &path,
        digest: &built.digest,
        size_bytes: built.size_bytes,
        layers: &[],
        config: None,
    })?;
    Ok(db
        .image(base::BASE_IMAGE_NAME)?
        .expect("image just recorded"))
}

/// The default image runs the host's busybox in the guest, so it must not need a dynamic
/// loader: an ELF without a PT_INTERP program header.
fn check_static_busybox(path: &Path) -> Result<()> {
    let missing = || {
        RuntimeError::Install(format!(
            "{} is missing or not a static binary; install the Debian package busybox-static",
            path.display()
        ))
    };
    let bytes = std::fs::read(path).map_err(|_| missing())?;
    if elf_has_interpreter(&bytes).ok_or_else(missing)? {
        return Err(missing());
    }
    Ok(())
}

/// `Some(true)` when a 64-bit little-endian ELF has a PT_INTERP segment; `None` if not an ELF.
fn elf_has_interpreter(bytes: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if bytes.get(..4)? != b"\x7fELF" || *bytes.get(4)? != 2 || *bytes.get(5)? != 1 {
        return None;
    }
    let read_u16 = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let phoff = u64::from_le_bytes(bytes.get(0x20..0x28)?.try_into().ok()?) as usize;
    let phentsize = read_u16(0x36)? as usize;
    let phnum = read_u16(0x38)? as usize;
    for index in 0..phnum {
        let at = phoff + index * phentsize;
        let kind = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
        if kind == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_binaries_have_an_interpreter() {
        let python = std::fs::read("/bin/sh").unwrap();
        assert_eq!(elf_has_interpreter(&python), Some(true));
        assert_eq!(elf_has_interpreter(b"not an elf"), None);
    }
}

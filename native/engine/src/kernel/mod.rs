//! The guest kernel: Debian's cloud kernel as an ELF `vmlinux` plus the modules the guest
//! agent loads, cached per release.
//!
//! Cache layout (under `cache_dir/kernel/`):
//! `<release>/vmlinux`, `<release>/modules/*.ko`, `<release>/modules/order` (file names in
//! load order) and `current` (the release in use). A release directory is built under a
//! temporary name and renamed into place, so one that exists is complete.

mod apt;
mod bzimage;
mod lz4_legacy;
mod modules;

pub use apt::{AptError, METAPACKAGE};
pub use bzimage::BzImageError;
pub use lz4_legacy::Lz4LegacyError;
pub use modules::{is_device_driver, ModuleError, GUEST_MODULES};

use crate::fsutil::{self, TempDir};
use modules::Presence;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;
use thiserror::Error;

const KERNEL_DIR: &str = "kernel";
const CURRENT_FILE: &str = "current";
const VMLINUX: &str = "vmlinux";
const MODULES_DIR: &str = "modules";
const ORDER_FILE: &str = "order";
const INSTALL_PREFIX: &str = ".install";

/// A bootable kernel and the modules to load, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelArtifacts {
    pub release: String,
    pub vmlinux: PathBuf,
    /// `.ko` files in load order.
    pub modules: Vec<PathBuf>,
}

#[derive(Debug, Error)]
pub enum KernelError {
    #[error(transparent)]
    Apt(#[from] AptError),
    #[error("extracting vmlinux from {path}: {source}")]
    BzImage { path: PathBuf, source: BzImageError },
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is neither an ELF vmlinux nor a bzImage")]
    NotAKernel { path: PathBuf },
    #[error("the kernel package unpacked at {dir} has {found} (expected one kernel release)")]
    UnexpectedPackage { dir: PathBuf, found: String },
    #[error("{path} has no `order` file, or it names files that are missing")]
    BadModuleOrder { path: PathBuf },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KernelError + '_ {
    move |source| KernelError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The installed kernel named by `kernel/current`, if it is complete.
pub fn find_installed(cache_dir: &Path) -> Option<KernelArtifacts> {
    let root = cache_dir.join(KERNEL_DIR);
    let release = fs::read_to_string(root.join(CURRENT_FILE)).ok()?;
    load_release(&root, release.trim()).ok()
}

/// Reads back a release directory of the cache.
fn load_release(root: &Path, release: &str) -> Result<KernelArtifacts, KernelError> {
    let dir = root.join(checked_release(release, root)?);
    let vmlinux = dir.join(VMLINUX);
    if !starts_with(&vmlinux, bzimage::ELF_MAGIC) {
        return Err(KernelError::NotAKernel { path: vmlinux });
    }
    let modules = read_order(&dir.join(MODULES_DIR))?;
    Ok(KernelArtifacts {
        release: release.to_string(),
        vmlinux,
        modules,
    })
}

/// A release names a directory: refuse anything that could escape the cache.
fn checked_release<'a>(release: &'a str, root: &Path) -> Result<&'a str, KernelError> {
    let bad = release.is_empty() || release.starts_with('.') || release.contains(['/', '\0', '\n']);
    if bad {
        return Err(KernelError::UnexpectedPackage {
            dir: root.to_path_buf(),
            found: format!("release {release:?}"),
        });
    }
    Ok(release)
}

fn starts_with(path: &Path, magic: &[u8]) -> bool {
    use std::io::Read;
    let mut head = vec![0u8; magic.len()];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && head == magic
}

/// The modules listed by `<dir>/order`, which must all exist.
fn read_order(dir: &Path) -> Result<Vec<PathBuf>, KernelError> {
    let bad = || KernelError::BadModuleOrder {
        path: dir.to_path_buf(),
    };
    let text = fs::read_to_string(dir.join(ORDER_FILE)).map_err(|_| bad())?;
    let modules: Vec<PathBuf> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| dir.join(l.trim()))
        .collect();
    if modules.iter().all(|m| m.is_file()) {
        Ok(modules)
    } else {
        Err(bad())
    }
}

/// Installs the kernel of Debian's `linux-image-cloud-amd64` into the cache (apt-get
/// download + dpkg -x, never into the host's `/boot`). Returns the installed one if present.
pub fn install(
    cache_dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<KernelArtifacts, KernelError> {
    if let Some(installed) = find_installed(cache_dir) {
        return Ok(installed);
    }
    progress(&format!("resolving {METAPACKAGE}"));
    let package = apt::resolve_image_package()?;
    let root = prepare_root(cache_dir)?;
    // A release built earlier but not yet made current (a crash between the two renames).
    if let Some(existing) = apt::release_of(&package).and_then(|r| load_release(&root, r).ok()) {
        set_current(&root, &existing.release)?;
        return Ok(existing);
    }
    let work = TempDir::new_in(&root, INSTALL_PREFIX).map_err(io_error(&root))?;
    let download = work.path().join("download");
    fs::create_dir(&download).map_err(io_error(&download))?;
    progress(&format!("downloading {package}"));
    let deb = apt::download(&package, &download)?;
    install_unpacked(&root, &work, &deb, progress)
}

/// Installs from a kernel .deb already on disk (offline hosts, tests).
pub fn install_from_deb(
    cache_dir: &Path,
    deb: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<KernelArtifacts, KernelError> {
    let root = prepare_root(cache_dir)?;
    let work = TempDir::new_in(&root, INSTALL_PREFIX).map_err(io_error(&root))?;
    install_unpacked(&root, &work, deb, progress)
}

fn prepare_root(cache_dir: &Path) -> Result<PathBuf, KernelError> {
    let root = cache_dir.join(KERNEL_DIR);
    fs::create_dir_all(&root).map_err(io_error(&root))?;
    fsutil::remove_stale(&root, INSTALL_PREFIX);
    Ok(root)
}

fn install_unpacked(
    root: &Path,
    work: &TempDir,
    deb: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<KernelArtifacts, KernelError> {
    let tree = work.path().join("tree");
    progress(&format!(
        "unpacking {}",
        deb.file_name().unwrap_or_default().to_string_lossy()
    ));
    apt::unpack(deb, &tree)?;
    let (release, modules_tree) = package_release(&tree)?;
    checked_release(&release, root)?;
    let staging = work.path().join("release");
    let vmlinuz = tree.join("boot").join(format!("vmlinuz-{release}"));
    progress("extracting vmlinux");
    let started = Instant::now();
    write_vmlinux(&vmlinuz, &staging.join(VMLINUX))?;
    progress(&format!(
        "vmlinux extracted in {} ms",
        started.elapsed().as_millis()
    ));
    let count = copy_modules(&modules_tree, &staging.join(MODULES_DIR))?;
    progress(&format!("copied {count} kernel modules"));
    publish(root, &staging, &release)
}

/// The single release under `lib/modules` (or `usr/lib/modules` on merged-/usr packages).
fn package_release(tree: &Path) -> Result<(String, PathBuf), KernelError> {
    let base = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|p| tree.join(p))
        .find(|p| p.is_dir());
    let base = base.ok_or_else(|| KernelError::UnexpectedPackage {
        dir: tree.to_path_buf(),
        found: "no lib/modules".into(),
    })?;
    let releases: Vec<String> = fs::read_dir(&base)
        .map_err(io_error(&base))?
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    match releases.as_slice() {
        [release] => Ok((release.clone(), base.join(release))),
        _ => Err(KernelError::UnexpectedPackage {
            dir: base,
            found: format!("releases {releases:?}"),
        }),
    }
}

fn write_vmlinux(vmlinuz: &Path, target: &Path) -> Result<(), KernelError> {
    let image = fs::read(vmlinuz).map_err(io_error(vmlinuz))?;
    let elf = bzimage::extract_vmlinux(&image).map_err(|source| KernelError::BzImage {
        path: vmlinuz.to_path_buf(),
        source,
    })?;
    let parent = target.parent().unwrap_or(target);
    fs::create_dir_all(parent).map_err(io_error(parent))?;
    fsutil::write_synced(target, &elf).map_err(io_error(target))
}

/// Copies the guest modules (and their dependencies) into `target` with an `order` file.
fn copy_modules(tree: &Path, target: &Path) -> Result<usize, KernelError> {
    let ordered = modules::load_order(tree, Presence::Required)?;
    fs::create_dir_all(target).map_err(io_error(target))?;
    let mut order = String::new();
    for module in &ordered {
        let name = module.file_name().unwrap_or_default();
        let copy = target.join(name);
        fs::copy(module, &copy).map_err(io_error(module))?;
        fs::File::open(&copy)
            .and_then(|f| f.sync_all())
            .map_err(io_error(&copy))?;
        order.push_str(&name.to_string_lossy());
        order.push('\n');
    }
    fsutil::write_synced(&target.join(ORDER_FILE), order.as_bytes()).map_err(io_error(target))?;
    Ok(ordered.len())
}

/// Renames the staged release into place (keeping an equal one a concurrent installer
/// published first) and makes it current.
fn publish(root: &Path, staging: &Path, release: &str) -> Result<KernelArtifacts, KernelError> {
    let dir = root.join(release);
    if let Err(error) = fs::rename(staging, &dir) {
        // Renaming onto a non-empty directory fails: someone else finished this release.
        load_release(root, release).map_err(|_| KernelError::Io {
            path: dir.clone(),
            source: error,
        })?;
    }
    set_current(root, release)?;
    load_release(root, release)
}

fn set_current(root: &Path, release: &str) -> Result<(), KernelError> {
    let path = root.join(CURRENT_FILE);
    fsutil::write_atomic(&path, format!("{release}\n").as_bytes()).map_err(io_error(&path))
}

/// A kernel the user provides: `vmlinux` is an ELF vmlinux or a bzImage (QEMU's microvm boots
/// both; the ELF is faster). `modules_dir` is either a directory in our cache layout (with an
/// `order` file) or a `lib/modules/<release>` tree, where absent guest modules are assumed to
/// be built into the kernel.
pub fn from_paths(vmlinux: &Path, modules_dir: &Path) -> Result<KernelArtifacts, KernelError> {
    let image = fs::read(vmlinux).map_err(io_error(vmlinux))?;
    let is_elf = image.starts_with(bzimage::ELF_MAGIC);
    if !is_elf && bzimage::SetupHeader::parse(&image).is_err() {
        return Err(KernelError::NotAKernel {
            path: vmlinux.to_path_buf(),
        });
    }
    if !modules_dir.is_dir() {
        return Err(KernelError::Io {
            path: modules_dir.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "modules directory not found",
            ),
        });
    }
    let modules = if modules_dir.join(ORDER_FILE).is_file() {
        read_order(modules_dir)?
    } else {
        modules::load_order(modules_dir, Presence::Optional)?
    };
    let release = user_release(&image, is_elf, &modules, vmlinux);
    Ok(KernelArtifacts {
        release,
        vmlinux: vmlinux.to_path_buf(),
        modules,
    })
}

/// Names a user kernel: the release its modules were built for, else the one the image
/// announces, else its file name.
fn user_release(image: &[u8], is_elf: bool, modules: &[PathBuf], path: &Path) -> String {
    let from_modules = modules
        .first()
        .and_then(|m| modules::read_modinfo(m).ok())
        .and_then(|f| modules::vermagic_release(&f));
    let from_image = || {
        if is_elf {
            elf_release(image)
        } else {
            bzimage::release(image)
        }
    };
    from_modules.or_else(from_image).unwrap_or_else(|| {
        path.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    })
}

/// The release in an uncompressed kernel's `Linux version <release> ...` banner.
fn elf_release(image: &[u8]) -> Option<String> {
    const BANNER: &[u8] = b"Linux version ";
    let at = image.windows(BANNER.len()).position(|w| w == BANNER)? + BANNER.len();
    let rest = &image[at..image.len().min(at + 128)];
    let end = rest.iter().position(|&b| b == b' ' || b == 0)?;
    std::str::from_utf8(&rest[..end])
        .ok()
        .filter(|r| !r.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::testing::scratch;

    fn fake_release(root: &Path, release: &str, modules: &[&str]) {
        let dir = root.join(release);
        fs::create_dir_all(dir.join(MODULES_DIR)).unwrap();
        fs::write(dir.join(VMLINUX), b"\x7fELF rest").unwrap();
        for m in modules {
            fs::write(dir.join(MODULES_DIR).join(m), b"ko").unwrap();
        }
        fs::write(dir.join(MODULES_DIR).join(ORDER_FILE), modules.join("\n")).unwrap();
    }

    #[test]
    fn installed_kernel_is_found_through_current() {
        let cache = scratch("find");
        let root = cache.path().join(KERNEL_DIR);
        assert_eq!(find_installed(cache.path()), None);
        fake_release(
            &root,
            "6.1.0-1-cloud-amd64",
            &["virtio_ring.ko", "virtio.ko"],
        );
        assert_eq!(find_installed(cache.path()), None, "not current yet");
        set_current(&root, "6.1.0-1-cloud-amd64").unwrap();
        let found = find_installed(cache.path()).unwrap();
        assert_eq!(found.release, "6.1.0-1-cloud-amd64");
        assert_eq!(
            found
                .modules
                .iter()
                .map(|m| m.file_name().unwrap().to_str().unwrap())
                .collect::<Vec<_>>(),
            ["virtio_ring.ko", "virtio.ko"]
        );
    }

    #[test]
    fn incomplete_or_hostile_releases_are_refused() {
        let cache = scratch("refuse");
        let root = cache.path().join(KERNEL_DIR);
        fake_release(&root, "r1", &["a.ko"]);
        fs::remove_file(root.join("r1/modules/a.ko")).unwrap();
        set_current(&root, "r1").unwrap();
        assert_eq!(find_installed(cache.path()), None);
        set_current(&root, "../escape").unwrap();
        assert_eq!(find_installed(cache.path()), None);
    }

    #[test]
    fn publishing_twice_keeps_the_first_complete_release() {
        let cache = scratch("publish");
        let root = cache.path().join(KERNEL_DIR);
        fake_release(&root, "r2", &["a.ko"]);
        let staging = cache.path().join("staging");
        fake_release(&staging, "r2", &["b.ko"]);
        let artifacts = publish(&root, &staging.join("r2"), "r2").unwrap();
        assert_eq!(artifacts.modules, [root.join("r2/modules/a.ko")]);
        assert_eq!(find_installed(cache.path()), Some(artifacts));
    }

    #[test]
    fn user_kernel_from_our_layout_or_a_module_tree() {
        let dir = scratch("user");
        let vmlinux = dir.path().join("vmlinux");
        fs::write(
            &vmlinux,
            b"\x7fELF...Linux version 6.9.0-custom (me@host) #1\0",
        )
        .unwrap();
        let tree = dir.path().join("tree/kernel/drivers");
        fs::create_dir_all(&tree).unwrap();
        fs::write(
            tree.join("virtio_ring.ko"),
            modules::tests::module_elf(b"depends=\0vermagic=6.9.0-mods SMP\0"),
        )
        .unwrap();
        fs::write(
            tree.join("virtio.ko"),
            modules::tests::module_elf(b"depends=virtio_ring\0"),
        )
        .unwrap();
        let artifacts = from_paths(&vmlinux, &dir.path().join("tree")).unwrap();
        assert_eq!(
            artifacts.modules,
            [tree.join("virtio_ring.ko"), tree.join("virtio.ko")]
        );
        assert_eq!(artifacts.release, "6.9.0-mods");
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert_eq!(
            from_paths(&vmlinux, &empty).unwrap().release,
            "6.9.0-custom"
        );
        fs::write(&vmlinux, b"MZ not a kernel").unwrap();
        assert!(matches!(
            from_paths(&vmlinux, &empty),
            Err(KernelError::NotAKernel { .. })
        ));
    }
}

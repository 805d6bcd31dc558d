//! The initramfs: our guest agent as `/init` plus the kernel modules it loads.
//!
//! Uncompressed on purpose: the kernel unpacks a plain cpio faster than it decompresses one,
//! and the file only lives in the host's page cache. Cached by content, so a new agent build
//! or kernel gets a new archive and running sandboxes keep theirs.

use crate::cpio::{Entry, Writer};
use crate::fsutil;
use crate::kernel::{self, KernelArtifacts};
use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Bumped whenever the archive's layout changes, so that old cached archives are not reused.
/// 2: the module order split into an early and a device list.
const FORMAT_VERSION: &str = "msb-initramfs-2";
const CACHE_DIR: &str = "initramfs";
const DIRECTORIES: &[&str] = &["dev", "proc", "sys", "newroot", "lib", "lib/modules"];
/// The console device (major 5, minor 1): the kernel opens it for init's stdio before /dev
/// is mounted, and would run init without a console if it were missing.
const CONSOLE: (&str, u32, u32) = ("dev/console", 5, 1);

#[derive(Debug, Error)]
pub enum InitramfsError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("module path {0} has no usable file name")]
    BadModuleName(PathBuf),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> InitramfsError + '_ {
    move |source| InitramfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A file going into the archive under `/lib/modules/<name>`.
struct Module {
    name: String,
    bytes: Vec<u8>,
}

/// Returns the cached initramfs for this agent and kernel, building it if absent.
pub fn ensure(
    cache_dir: &Path,
    kernel: &KernelArtifacts,
    agent_binary: &Path,
) -> Result<PathBuf, InitramfsError> {
    let agent = fs::read(agent_binary).map_err(io_error(agent_binary))?;
    let modules = read_modules(&kernel.modules)?;
    let dir = cache_dir.join(CACHE_DIR);
    let path = dir.join(format!(
        "{}.cpio",
        cache_key(&agent, &kernel.release, &modules)
    ));
    if path.is_file() {
        return Ok(path);
    }
    fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let temp = dir.join(fsutil::unique_name(".build"));
    let result = write_archive(&temp, &agent, &modules)
        .and_then(|()| fs::rename(&temp, &path).map_err(io_error(&path)));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map(|()| path)
}

fn read_modules(paths: &[PathBuf]) -> Result<Vec<Module>, InitramfsError> {
    paths
        .iter()
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|n| !n.contains('\n'))
                .ok_or_else(|| InitramfsError::BadModuleName(path.clone()))?;
            let bytes = fs::read(path).map_err(io_error(path))?;
            Ok(Module {
                name: name.to_string(),
                bytes,
            })
        })
        .collect()
}

/// SHA-256 over everything that ends up in the archive, each piece length-prefixed so that
/// different inputs cannot produce the same byte stream.
fn cache_key(agent: &[u8], release: &str, modules: &[Module]) -> String {
    let mut hash = Sha256::new();
    let mut piece = |bytes: &[u8]| {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    piece(FORMAT_VERSION.as_bytes());
    piece(agent);
    piece(release.as_bytes());
    for module in modules {
        piece(module.name.as_bytes());
        piece(&module.bytes);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn write_archive(path: &Path, agent: &[u8], modules: &[Module]) -> Result<(), InitramfsError> {
    let file = File::create(path).map_err(io_error(path))?;
    let mut writer = Writer::new(BufWriter::new(file));
    let list = |devices: bool| -> String {
        modules
            .iter()
            .filter(|m| kernel::is_device_driver(&m.name) == devices)
            .map(|m| format!("{}\n", m.name))
            .collect()
    };
    let (early, devices) = (list(false), list(true));
    let write = |writer: &mut Writer<_>| -> std::io::Result<()> {
        for dir in DIRECTORIES {
            writer.add(&Entry::dir(dir))?;
        }
        writer.add(&Entry::char_device(CONSOLE.0, 0o600, CONSOLE.1, CONSOLE.2))?;
        writer.add(&Entry::file("init", 0o755, agent))?;
        for module in modules {
            writer.add(&Entry::file(
                &format!("lib/modules/{}", module.name),
                0o644,
                &module.bytes,
            ))?;
        }
        for (name, order) in [
            (msb_protocol::EARLY_MODULE_LIST, &early),
            (msb_protocol::DEVICE_MODULE_LIST, &devices),
        ] {
            writer.add(&Entry::file(
                &format!("lib/modules/{name}"),
                0o644,
                order.as_bytes(),
            ))?;
        }
        Ok(())
    };
    write(&mut writer).map_err(io_error(path))?;
    let mut out = writer.finish().map_err(io_error(path))?;
    out.flush().map_err(io_error(path))?;
    let file = out.into_inner().map_err(|e| InitramfsError::Io {
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::{parse, S_IFCHR, S_IFDIR, S_IFREG};
    use crate::fsutil::testing::scratch;

    fn setup(dir: &Path) -> (KernelArtifacts, PathBuf) {
        let agent = dir.join("agent");
        fs::write(&agent, b"\x7fELF agent").unwrap();
        let mut modules = Vec::new();
        for (name, body) in [("virtio_ring.ko", "ring"), ("virtio-rng.ko", "rng")] {
            let path = dir.join(name);
            fs::write(&path, body).unwrap();
            modules.push(path);
        }
        (
            KernelArtifacts {
                release: "6.1.0-test".into(),
                vmlinux: dir.join("vmlinux"),
                modules,
            },
            agent,
        )
    }

    #[test]
    fn archive_holds_init_devices_modules_and_order() {
        let dir = scratch("initramfs");
        let (kernel, agent) = setup(dir.path());
        let path = ensure(dir.path(), &kernel, &agent).unwrap();
        let entries = parse(&fs::read(&path).unwrap());
        let find = |p: &str| {
            entries
                .iter()
                .find(|e| e.path == p)
                .unwrap_or_else(|| panic!("{p} missing"))
        };
        assert_eq!(find("init").data, b"\x7fELF agent");
        assert_eq!(find("init").mode, S_IFREG | 0o755);
        assert_eq!(find("dev/console").mode & S_IFCHR, S_IFCHR);
        assert_eq!(find("dev/console").rdev, (5, 1));
        for d in DIRECTORIES {
            assert_eq!(find(d).mode & S_IFDIR, S_IFDIR);
        }
        assert_eq!(find("lib/modules/virtio-rng.ko").data, b"rng");
        assert_eq!(find("lib/modules/order").data, b"virtio_ring.ko\n");
        assert_eq!(find("lib/modules/order.devices").data, b"virtio-rng.ko\n");
    }

    #[test]
    fn cached_by_content() {
        let dir = scratch("initramfs-cache");
        let (kernel, agent) = setup(dir.path());
        let first = ensure(dir.path(), &kernel, &agent).unwrap();
        assert_eq!(ensure(dir.path(), &kernel, &agent).unwrap(), first);
        fs::write(&agent, b"\x7fELF agent v2").unwrap();
        let second = ensure(dir.path(), &kernel, &agent).unwrap();
        assert_ne!(second, first);
        let leftovers = fs::read_dir(dir.path().join(CACHE_DIR)).unwrap().count();
        assert_eq!(leftovers, 2, "no temporary files remain");
    }

    #[test]
    fn missing_agent_is_an_io_error_naming_it() {
        let dir = scratch("initramfs-missing");
        let (kernel, _) = setup(dir.path());
        let error = ensure(dir.path(), &kernel, &dir.path().join("nope")).unwrap_err();
        assert!(error.to_string().contains("nope"), "{error}");
    }
}

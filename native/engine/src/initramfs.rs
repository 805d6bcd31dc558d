//! The initramfs: our guest agent as `/init` plus the kernel modules it loads, written as an
//! uncompressed cpio "newc" archive (no decompression at boot) and cached by content.

use crate::kernel::KernelArtifacts;
use crate::{at, PathError};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bumped whenever the archive layout changes, so caches rebuild.
const LAYOUT_VERSION: u32 = 1;
const MODULES_DIR: &str = "lib/modules";

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error(transparent)]
    Io(#[from] PathError),
    #[error("module path {0} has no file name")]
    BadModule(String),
}

/// Returns the cached initramfs for this agent and kernel, building it when absent.
pub fn ensure(
    cache_dir: &Path,
    kernel: &KernelArtifacts,
    agent: &Path,
) -> Result<PathBuf, InitramfsError> {
    let agent_bytes = fs::read(agent).map_err(at(agent))?;
    let mut modules = Vec::new();
    for path in &kernel.modules {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| InitramfsError::BadModule(path.display().to_string()))?;
        modules.push((name.to_string(), fs::read(path).map_err(at(path))?));
    }
    let digest = content_digest(&agent_bytes, &kernel.release, &modules);
    let dir = cache_dir.join("initramfs");
    let target = dir.join(format!("{digest}.cpio"));
    if target.is_file() {
        return Ok(target);
    }
    fs::create_dir_all(&dir).map_err(at(&dir))?;
    let archive = build(&agent_bytes, &modules);
    let staged = dir.join(format!(".{digest}.{}", std::process::id()));
    fs::write(&staged, archive).map_err(at(&staged))?;
    fs::rename(&staged, &target).map_err(at(&target))?;
    Ok(target)
}

fn content_digest(agent: &[u8], release: &str, modules: &[(String, Vec<u8>)]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(LAYOUT_VERSION.to_le_bytes());
    hasher.update(agent);
    hasher.update(release.as_bytes());
    for (name, bytes) in modules {
        hasher.update(name.as_bytes());
        hasher.update(bytes);
    }
    format!("{:x}", hasher.finalize())
}

/// The archive's bytes.
pub fn build(agent: &[u8], modules: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut writer = CpioWriter::default();
    for dir in ["dev", "proc", "sys", "newroot", "lib", MODULES_DIR] {
        writer.entry(dir, 0o040755, &[], 0);
    }
    // The kernel opens /dev/console before running /init.
    writer.entry("dev/console", 0o020600, &[], makedev(5, 1));
    writer.entry("init", 0o100755, agent, 0);
    let mut order = String::new();
    for (name, bytes) in modules {
        writer.entry(&format!("{MODULES_DIR}/{name}"), 0o100644, bytes, 0);
        order.push_str(name);
        order.push('\n');
    }
    writer.entry(
        &format!("{MODULES_DIR}/order"),
        0o100644,
        order.as_bytes(),
        0,
    );
    writer.finish()
}

fn makedev(major: u32, minor: u32) -> u32 {
    (major << 8) | minor
}

#[derive(Default)]
struct CpioWriter {
    out: Vec<u8>,
    inode: u32,
}

impl CpioWriter {
    /// One newc entry: a 110-byte ASCII header, the NUL-terminated name and the data, each
    /// padded to 4 bytes. `rdev` packs the device number of a device node.
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: u32) {
        self.inode += 1;
        let fields = [
            self.inode,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev >> 8,
            rdev & 0xff,
            name.len() as u32 + 1,
            0,
        ];
        let _ = write!(self.out, "070701");
        for field in fields {
            let _ = write!(self.out, "{field:08x}");
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], 0);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads (name, mode, data) entries back from a newc archive.
    fn parse(mut bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut entries = Vec::new();
        let mut offset = 0;
        let field = |header: &[u8], index: usize| {
            u32::from_str_radix(
                std::str::from_utf8(&header[6 + index * 8..14 + index * 8]).unwrap(),
                16,
            )
            .unwrap()
        };
        loop {
            assert_eq!(&bytes[..6], b"070701");
            let header = &bytes[..110];
            let (mode, size, name_len) = (
                field(header, 1),
                field(header, 6) as usize,
                field(header, 11) as usize,
            );
            let name = String::from_utf8(bytes[110..110 + name_len - 1].to_vec()).unwrap();
            let data_start = (offset + 110 + name_len).next_multiple_of(4) - offset;
            let data = bytes[data_start..data_start + size].to_vec();
            let next = (offset + data_start + size).next_multiple_of(4) - offset;
            if name == "TRAILER!!!" {
                return entries;
            }
            entries.push((name, mode, data));
            offset += next;
            bytes = &bytes[next..];
        }
    }

    #[test]
    fn archive_holds_init_modules_and_order() {
        let archive = build(
            b"AGENT",
            &[
                ("virtio.ko".into(), b"one".to_vec()),
                ("virtio_blk.ko".into(), b"two".to_vec()),
            ],
        );
        let entries = parse(&archive);
        let init = entries.iter().find(|e| e.0 == "init").unwrap();
        assert_eq!((init.1, init.2.as_slice()), (0o100755, b"AGENT".as_slice()));
        let order = entries.iter().find(|e| e.0 == "lib/modules/order").unwrap();
        assert_eq!(order.2, b"virtio.ko\nvirtio_blk.ko\n");
        assert!(entries
            .iter()
            .any(|e| e.0 == "dev/console" && e.1 == 0o020600));
    }

    #[test]
    fn ensure_caches_by_content() {
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        let module = dir.path().join("virtio.ko");
        fs::write(&agent, b"v1").unwrap();
        fs::write(&module, b"m").unwrap();
        let kernel = KernelArtifacts {
            release: "r".into(),
            vmlinux: agent.clone(),
            modules: vec![module],
        };
        let first = ensure(dir.path(), &kernel, &agent).unwrap();
        assert_eq!(ensure(dir.path(), &kernel, &agent).unwrap(), first);
        fs::write(&agent, b"v2").unwrap();
        assert_ne!(
            ensure(dir.path(), &kernel, &agent).unwrap(),
            first,
            "a new agent must rebuild"
        );
    }
}

//! Kernel modules the guest needs, and the order to load them in.
//!
//! The Debian package ships no `modules.dep` (depmod writes it at installation, which we skip),
//! so dependencies come from each module's own `.modinfo` section (`depends=a,b`), and the
//! load order is a topological sort of them.

use msb_protocol::filesystem::DiskFilesystem;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What the guest agent uses besides the disk file systems' modules
/// ([`filesystem_module`]): virtio transport, console port, disks, network, overlayfs,
/// virtio-fs, entropy and balloon. Dependencies are added by [`load_order`].
pub const GUEST_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "virtio_console",
    "virtio_blk",
    "failover",
    "net_failover",
    "virtio_net",
    "overlay",
    "fuse",
    "virtiofs",
    "virtio_rng",
    "virtio_balloon",
];

/// The drivers of devices whose configuration differs between sandboxes (disk sizes and
/// serials, the MAC) or that feed the guest fresh entropy: the guest loads them only after
/// the hello, so that a guest restored from a template binds them to its own devices.
const DEVICE_DRIVERS: &[&str] = &[
    "virtio_blk",
    "virtio_net",
    "virtiofs",
    "virtio_rng",
    "virtio_balloon",
];

/// Whether the module file `file_name` (`virtio-rng.ko`) is one of [`DEVICE_DRIVERS`]; the
/// kernel treats `-` and `_` in module names alike.
pub fn is_device_driver(file_name: &str) -> bool {
    let name = file_name.strip_suffix(MODULE_SUFFIX).unwrap_or(file_name);
    DEVICE_DRIVERS.contains(&name.replace('-', "_").as_str())
}

/// The module that provides a file system a disk may hold, `None` when Debian's cloud kernel
/// has it built in (`CONFIG_EXT4_FS=y`, which serves ext2 and ext3 too). EROFS is what image
/// layers may be besides ext4.
fn filesystem_module(filesystem: DiskFilesystem) -> Option<&'static str> {
    match filesystem {
        DiskFilesystem::Ext2 | DiskFilesystem::Ext3 | DiskFilesystem::Ext4 => None,
        DiskFilesystem::Erofs => Some("erofs"),
    }
}

/// Every module the initramfs carries, before dependencies: [`GUEST_MODULES`], then one per
/// supported disk file system that is not built in.
fn wanted_modules() -> Vec<&'static str> {
    let filesystems = DiskFilesystem::ALL
        .into_iter()
        .filter_map(filesystem_module);
    GUEST_MODULES.iter().copied().chain(filesystems).collect()
}

const MODULE_SUFFIX: &str = ".ko";
/// Suffixes of compressed modules, which a plain `init_module` cannot load.
const COMPRESSED_SUFFIXES: &[&str] = &[".ko.xz", ".ko.zst", ".ko.gz"];

#[derive(Debug, Error)]
pub enum ModuleError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadModule { path: PathBuf, reason: String },
    #[error("kernel module {name} is not in {dir}")]
    Missing { name: String, dir: PathBuf },
    #[error("kernel module {path} is compressed; only uncompressed .ko files can be loaded by the guest agent")]
    Compressed { path: PathBuf },
    #[error("kernel modules depend on each other in a cycle through {0}")]
    Cycle(String),
}

/// Module names use `_` and `-` interchangeably (`virtio-rng.ko` is module `virtio_rng`).
pub(crate) fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

/// The NUL-separated `key=value` strings of an ELF64 module's `.modinfo` section.
pub(crate) fn modinfo(elf: &[u8]) -> Result<Vec<(String, String)>, String> {
    let section = find_section(elf, ".modinfo")?.ok_or("no .modinfo section")?;
    Ok(section
        .split(|&b| b == 0)
        .filter_map(|entry| {
            let text = std::str::from_utf8(entry).ok()?;
            let (key, value) = text.split_once('=')?;
            Some((key.to_string(), value.to_string()))
        })
        .collect())
}

/// The modules named by a `depends=` field (empty when there is none or it is blank).
pub(crate) fn depends(fields: &[(String, String)]) -> Vec<String> {
    fields
        .iter()
        .filter(|(key, _)| key == "depends")
        .flat_map(|(_, value)| value.split(','))
        .filter(|name| !name.is_empty())
        .map(canonical)
        .collect()
}

/// The kernel release a module was built for: the first word of `vermagic=`.
pub(crate) fn vermagic_release(fields: &[(String, String)]) -> Option<String> {
    let (_, value) = fields.iter().find(|(key, _)| key == "vermagic")?;
    value.split_whitespace().next().map(str::to_string)
}

fn read_at<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], String> {
    bytes
        .get(at..at.checked_add(N).ok_or("offset overflow")?)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| format!("ELF truncated at {at:#x}"))
}

fn u16_at(bytes: &[u8], at: usize) -> Result<usize, String> {
    Ok(u16::from_le_bytes(read_at(bytes, at)?) as usize)
}

fn u32_at(bytes: &[u8], at: usize) -> Result<usize, String> {
    Ok(u32::from_le_bytes(read_at(bytes, at)?) as usize)
}

fn u64_at(bytes: &[u8], at: usize) -> Result<usize, String> {
    usize::try_from(u64::from_le_bytes(read_at(bytes, at)?)).map_err(|e| e.to_string())
}

/// The content of the section called `wanted` in a 64-bit little-endian ELF file.
fn find_section<'a>(elf: &'a [u8], wanted: &str) -> Result<Option<&'a [u8]>, String> {
    if !elf.starts_with(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let table = u64_at(elf, 0x28)?;
    let entry_size = u16_at(elf, 0x3a)?;
    let count = u16_at(elf, 0x3c)?;
    let names_index = u16_at(elf, 0x3e)?;
    let header = |index: usize| table + index * entry_size;
    let content = |index: usize| -> Result<&'a [u8], String> {
        let offset = u64_at(elf, header(index) + 0x18)?;
        let size = u64_at(elf, header(index) + 0x20)?;
        elf.get(offset..offset.checked_add(size).ok_or("size overflow")?)
            .ok_or_else(|| format!("section {index} lies outside the file"))
    };
    let names = content(names_index)?;
    for index in 0..count {
        let name_offset = u32_at(elf, header(index))?;
        let name = names.get(name_offset..).ok_or("bad section name offset")?;
        let name = name.split(|&b| b == 0).next().unwrap_or_default();
        if name == wanted.as_bytes() {
            return content(index).map(Some);
        }
    }
    Ok(None)
}

/// Every `.ko` below `dir`, by canonical module name.
pub(crate) fn index_tree(dir: &Path) -> Result<HashMap<String, PathBuf>, ModuleError> {
    let mut index = HashMap::new();
    let mut compressed = HashMap::new();
    walk(dir, &mut |path| {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return;
        };
        if let Some(stem) = name.strip_suffix(MODULE_SUFFIX) {
            index.insert(canonical(stem), path.to_path_buf());
        } else if let Some(stem) = COMPRESSED_SUFFIXES
            .iter()
            .find_map(|s| name.strip_suffix(s))
        {
            compressed.insert(canonical(stem), path.to_path_buf());
        }
    })?;
    // Compressed modules only matter when the uncompressed one is absent; remember them so
    // that a lookup can say why a module is unusable instead of "missing".
    for (name, path) in compressed {
        index.entry(name).or_insert(path);
    }
    Ok(index)
}

fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) -> Result<(), ModuleError> {
    let io = |source| ModuleError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if entry.file_type().map_err(io)?.is_dir() {
            walk(&path, visit)?;
        } else {
            visit(&path);
        }
    }
    Ok(())
}

/// Whether every wanted module must exist (a Debian kernel) or absent ones are taken to be
/// built in (a user's own kernel). Dependencies must exist either way: `depends=` only names
/// loadable modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presence {
    Required,
    Optional,
}

/// A module's dependencies by canonical name, or `None` when the module is absent.
pub(crate) type Lookup<'a> = dyn FnMut(&str) -> Result<Option<Vec<String>>, ModuleError> + 'a;

/// Orders `wanted` and their transitive dependencies so that every module comes after the
/// ones it depends on. `lookup` gives a module's dependencies, or `None` when it is absent.
pub(crate) fn topo_order(
    wanted: &[&str],
    presence: Presence,
    lookup: &mut Lookup,
    dir: &Path,
) -> Result<Vec<String>, ModuleError> {
    let mut sorter = Sorter {
        lookup,
        dir,
        done: HashSet::new(),
        visiting: Vec::new(),
        order: Vec::new(),
    };
    for name in wanted {
        sorter.visit(&canonical(name), presence)?;
    }
    Ok(sorter.order)
}

struct Sorter<'a> {
    lookup: &'a mut Lookup<'a>,
    dir: &'a Path,
    done: HashSet<String>,
    visiting: Vec<String>,
    order: Vec<String>,
}

impl Sorter<'_> {
    /// Depth-first, emitting a module after all of its dependencies (post-order).
    fn visit(&mut self, name: &str, presence: Presence) -> Result<(), ModuleError> {
        if self.done.contains(name) {
            return Ok(());
        }
        if self.visiting.iter().any(|n| n == name) {
            return Err(ModuleError::Cycle(name.to_string()));
        }
        let Some(deps) = (self.lookup)(name)? else {
            return match presence {
                Presence::Optional => Ok(()),
                Presence::Required => Err(ModuleError::Missing {
                    name: name.to_string(),
                    dir: self.dir.to_path_buf(),
                }),
            };
        };
        self.visiting.push(name.to_string());
        for dep in deps {
            self.visit(&dep, Presence::Required)?;
        }
        self.visiting.pop();
        self.done.insert(name.to_string());
        self.order.push(name.to_string());
        Ok(())
    }
}

/// The `.ko` files of the [`wanted_modules`] found below `dir`, in load order.
pub(crate) fn load_order(dir: &Path, presence: Presence) -> Result<Vec<PathBuf>, ModuleError> {
    let index = index_tree(dir)?;
    let mut lookup = |name: &str| -> Result<Option<Vec<String>>, ModuleError> {
        let Some(path) = index.get(name) else {
            return Ok(None);
        };
        if !path.to_string_lossy().ends_with(MODULE_SUFFIX) {
            return Err(ModuleError::Compressed { path: path.clone() });
        }
        read_modinfo(path).map(|fields| Some(depends(&fields)))
    };
    let names = topo_order(&wanted_modules(), presence, &mut lookup, dir)?;
    Ok(names.iter().map(|name| index[name].clone()).collect())
}

pub(crate) fn read_modinfo(path: &Path) -> Result<Vec<(String, String)>, ModuleError> {
    let bytes = fs::read(path).map_err(|source| ModuleError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    modinfo(&bytes).map_err(|reason| ModuleError::BadModule {
        path: path.to_path_buf(),
        reason,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal ELF64 LE file with a section-name table and a `.modinfo` section.
    pub(crate) fn module_elf(modinfo: &[u8]) -> Vec<u8> {
        let names = b"\0.shstrtab\0.modinfo\0";
        let names_at = 64usize;
        let info_at = names_at + names.len();
        let table_at = (info_at + modinfo.len()).next_multiple_of(8);
        let mut elf = vec![0u8; table_at];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x28..0x30].copy_from_slice(&(table_at as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf[names_at..info_at].copy_from_slice(names);
        elf[info_at..info_at + modinfo.len()].copy_from_slice(modinfo);
        let mut section = |name: u32, offset: usize, size: usize| {
            let mut header = [0u8; 64];
            header[..4].copy_from_slice(&name.to_le_bytes());
            header[0x18..0x20].copy_from_slice(&(offset as u64).to_le_bytes());
            header[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&header);
        };
        section(0, 0, 0);
        section(1, names_at, names.len());
        section(11, info_at, modinfo.len());
        elf
    }

    #[test]
    fn device_drivers_are_told_apart_by_module_name() {
        assert!(is_device_driver("virtio-rng.ko"));
        assert!(is_device_driver("virtio_blk.ko"));
        assert!(!is_device_driver("virtio_console.ko"));
        assert!(!is_device_driver("overlay.ko"));
    }

    #[test]
    fn modinfo_fields_and_depends_are_parsed() {
        let elf = module_elf(b"license=GPL\0depends=virtio,virtio-ring\0vermagic=6.1.0-9-x SMP mod_unload \0name=virtio_net\0");
        let fields = modinfo(&elf).unwrap();
        assert_eq!(depends(&fields), ["virtio", "virtio_ring"]);
        assert_eq!(vermagic_release(&fields).as_deref(), Some("6.1.0-9-x"));
        assert!(depends(&modinfo(&module_elf(b"depends=\0")).unwrap()).is_empty());
    }

    #[test]
    fn files_without_modinfo_are_rejected() {
        assert!(modinfo(b"not an elf").is_err());
        let mut elf = module_elf(b"x=y\0");
        // Rename the section so it is no longer found.
        let at = elf.windows(8).position(|w| w == b".modinfo").unwrap();
        elf[at + 1] = b'X';
        assert!(modinfo(&elf).unwrap_err().contains("no .modinfo"));
    }

    fn graph(edges: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(name, deps)| {
                (
                    name.to_string(),
                    deps.iter().map(|d| d.to_string()).collect(),
                )
            })
            .collect()
    }

    fn sort(
        wanted: &[&str],
        presence: Presence,
        graph: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<String>, ModuleError> {
        let mut lookup = |name: &str| Ok(graph.get(name).cloned());
        topo_order(wanted, presence, &mut lookup, Path::new("/mods"))
    }

    #[test]
    fn dependencies_come_first_and_are_pulled_in_transitively() {
        let g = graph(&[
            ("virtio_ring", &[]),
            ("virtio", &["virtio_ring"]),
            ("failover", &[]),
            ("net_failover", &["failover"]),
            ("virtio_net", &["virtio_ring", "virtio", "net_failover"]),
            ("erofs", &["libcrc32c"]),
            ("libcrc32c", &[]),
        ]);
        let order = sort(&["virtio_net", "erofs"], Presence::Required, &g).unwrap();
        assert_eq!(
            order,
            [
                "virtio_ring",
                "virtio",
                "failover",
                "net_failover",
                "virtio_net",
                "libcrc32c",
                "erofs"
            ]
        );
    }

    #[test]
    fn missing_and_cyclic_modules_are_errors() {
        let g = graph(&[("a", &["b"]), ("b", &["a"]), ("c", &["gone"])]);
        assert!(matches!(
            sort(&["a"], Presence::Required, &g),
            Err(ModuleError::Cycle(_))
        ));
        assert!(matches!(
            sort(&["x"], Presence::Required, &g),
            Err(ModuleError::Missing { .. })
        ));
        assert_eq!(
            sort(&["x"], Presence::Optional, &g).unwrap(),
            Vec::<String>::new()
        );
        // An optional module that is present still needs all its dependencies.
        assert!(matches!(
            sort(&["c"], Presence::Optional, &g),
            Err(ModuleError::Missing { .. })
        ));
    }

    #[test]
    fn the_erofs_module_is_carried_and_the_ext_family_is_built_in() {
        let wanted = wanted_modules();
        assert_eq!(wanted[..GUEST_MODULES.len()], *GUEST_MODULES);
        assert_eq!(wanted[GUEST_MODULES.len()..], ["erofs"]);
    }

    #[test]
    fn dashes_and_underscores_name_the_same_module() {
        let g = graph(&[("virtio_rng", &[])]);
        assert_eq!(
            sort(&["virtio-rng"], Presence::Required, &g).unwrap(),
            ["virtio_rng"]
        );
    }
}

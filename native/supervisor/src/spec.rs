//! The sandbox configuration as the runtime and the supervisor read it. The SDK validates and
//! serialises it (pydantic `SandboxConfig`); this reads the part the host acts on (exec
//! defaults such as `env` and `workdir` are applied by the SDK) and checks again what the host
//! relies on.

use crate::error::{Result, SupervisorError};
use crate::logging::LogLevel;
use msb_net::gateway::NetworkSpec;
use msb_net::secrets::SecretSpec;
use msb_protocol::filesystem::DiskFilesystem;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageSource {
    /// A host directory shared live as the root filesystem.
    Bind { path: String },
    /// An image from the local store.
    Local { name: String },
    /// An OCI image, pulled into the local store (by the SDK, as its pull policy says) under
    /// its canonical reference before the sandbox is created.
    Oci { reference: String },
    /// A host disk image file as the read-only lower of the root (never written: the
    /// sandbox writes to its own upper disk); `fstype` `None` lets the guest detect it.
    Disk {
        path: String,
        format: DiskFormat,
        fstype: Option<DiskFilesystem>,
    },
}

/// Format of a disk image volume, as QEMU names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
        }
    }
}

/// What is mounted at one guest path.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mount {
    /// A named volume (`msb volume create`).
    Named { name: String, readonly: bool },
    /// A live host directory, shared with virtio-fs.
    Bind { path: String, readonly: bool },
    /// A fresh tmpfs of at most `size_mib` (the guest kernel's default when `None`).
    Tmpfs {
        size_mib: Option<u32>,
        readonly: bool,
    },
    /// A host disk image file; `fstype` `None` lets the guest detect it.
    Disk {
        path: String,
        format: DiskFormat,
        fstype: Option<String>,
        readonly: bool,
    },
}

impl Mount {
    pub fn readonly(&self) -> bool {
        match self {
            Self::Named { readonly, .. }
            | Self::Bind { readonly, .. }
            | Self::Tmpfs { readonly, .. }
            | Self::Disk { readonly, .. } => *readonly,
        }
    }

    /// The virtio-mmio transports the mount takes: a disk or a virtio-fs share; tmpfs none.
    pub fn virtio_devices(&self) -> usize {
        usize::from(!matches!(self, Self::Tmpfs { .. }))
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct SandboxSpec {
    pub name: String,
    pub image: ImageSource,
    pub cpus: u8,
    pub memory_mib: u32,
    /// Guest path → mount. Sorted by path, so a parent directory's mount comes before the
    /// mounts inside it.
    #[serde(default)]
    pub volumes: BTreeMap<String, Mount>,
    /// The supervisor's log level; `None` leaves it to the runtime that starts it.
    #[serde(default)]
    pub log_level: Option<LogLevel>,
    /// Policy, DNS and published ports; absent means public-only.
    #[serde(default)]
    pub network: NetworkSpec,
    /// Secrets the gateway substitutes for their placeholders; their values come from the
    /// runtime over a pipe, never from here.
    #[serde(default)]
    pub secrets: Vec<SecretSpec>,
}

impl SandboxSpec {
    pub fn from_json(json: &str) -> Result<Self> {
        let spec: Self = serde_json::from_str(json)
            .map_err(|error| SupervisorError::InvalidConfig(format!("sandbox config: {error}")))?;
        spec.network
            .validate()
            .map_err(|error| SupervisorError::InvalidConfig(error.to_string()))?;
        for (target, mount) in &spec.volumes {
            check_guest_path(target)?;
            if matches!(
                mount,
                Mount::Tmpfs {
                    size_mib: Some(0),
                    ..
                }
            ) {
                return Err(SupervisorError::InvalidConfig(format!(
                    "volume {target}: a tmpfs size must be at least 1 MiB"
                )));
            }
        }
        Ok(spec)
    }

    /// The named volumes mounted, with whether read-only.
    pub fn named_volumes(&self) -> impl Iterator<Item = (&str, bool)> {
        self.volumes.values().filter_map(|mount| match mount {
            Mount::Named { name, readonly } => Some((name.as_str(), *readonly)),
            _ => None,
        })
    }
}

/// A mount point must be an absolute, normalized path other than `/`: the SDK normalizes
/// them, so two spellings of one directory can never be two mounts.
fn check_guest_path(path: &str) -> Result<()> {
    let normalized = path.starts_with('/')
        && path.len() > 1
        && !path.contains('\0')
        && path[1..]
            .split('/')
            .all(|part| !matches!(part, "" | "." | ".."));
    if normalized {
        Ok(())
    } else {
        Err(SupervisorError::InvalidConfig(format!(
            "volume {path:?}: a guest path must be absolute and normalized, and not /"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_volumes(volumes: &str) -> Result<SandboxSpec> {
        SandboxSpec::from_json(&format!(
            r#"{{"name":"a","image":{{"kind":"local","name":"msb-base"}},"cpus":1,"memory_mib":256,"volumes":{volumes}}}"#
        ))
    }

    #[test]
    fn reads_the_sdk_config_shape() {
        let spec = SandboxSpec::from_json(
            r#"{"name":"a","image":{"kind":"local","name":"msb-base"},"cpus":2,"memory_mib":256,"env":{},"workdir":null}"#,
        )
        .unwrap();
        assert_eq!((spec.cpus, spec.memory_mib), (2, 256));
        assert!(matches!(spec.image, ImageSource::Local { ref name } if name == "msb-base"));
        assert!(spec.volumes.is_empty());
        assert_eq!(spec.log_level, None);
    }

    #[test]
    fn reads_the_supervisor_log_level() {
        let config = |level: &str| {
            format!(
                r#"{{"name":"a","image":{{"kind":"local","name":"msb-base"}},"cpus":1,"memory_mib":256,"log_level":{level}}}"#
            )
        };
        let spec = SandboxSpec::from_json(&config(r#""debug""#)).unwrap();
        assert_eq!(spec.log_level, Some(LogLevel::Debug));
        assert_eq!(
            SandboxSpec::from_json(&config("null")).unwrap().log_level,
            None
        );
        assert!(matches!(
            SandboxSpec::from_json(&config(r#""loud""#)),
            Err(SupervisorError::InvalidConfig(_))
        ));
    }

    #[test]
    fn reads_a_disk_image_root() {
        let spec = SandboxSpec::from_json(
            r#"{"name":"a","image":{"kind":"disk","path":"/d/root.qcow2","format":"qcow2","fstype":"ext4"},"cpus":1,"memory_mib":256}"#,
        )
        .unwrap();
        assert!(matches!(
            spec.image,
            ImageSource::Disk { ref path, format: DiskFormat::Qcow2, fstype: Some(DiskFilesystem::Ext4) }
                if path == "/d/root.qcow2"
        ));
        let unsupported_fstype = SandboxSpec::from_json(
            r#"{"name":"a","image":{"kind":"disk","path":"/d/r","format":"raw","fstype":"xfs"},"cpus":1,"memory_mib":256}"#,
        );
        assert!(
            matches!(unsupported_fstype, Err(SupervisorError::InvalidConfig(message)) if message.contains("xfs"))
        );
        let bad_format = SandboxSpec::from_json(
            r#"{"name":"a","image":{"kind":"disk","path":"/d/r","format":"vmdk","fstype":null},"cpus":1,"memory_mib":256}"#,
        );
        assert!(matches!(bad_format, Err(SupervisorError::InvalidConfig(_))));
    }

    #[test]
    fn reads_every_kind_of_volume_sorted_by_guest_path() {
        let spec = with_volumes(
            r#"{
                "/data/cache": {"kind": "tmpfs", "size_mib": 64, "readonly": false},
                "/data": {"kind": "named", "name": "data", "readonly": false},
                "/src": {"kind": "bind", "path": "/home/me/src", "readonly": true},
                "/seed": {"kind": "disk", "path": "/d/seed.qcow2", "format": "qcow2", "fstype": null, "readonly": true},
                "/data-old": {"kind": "named", "name": "old", "readonly": true}
            }"#,
        )
        .unwrap();
        let targets: Vec<&str> = spec.volumes.keys().map(String::as_str).collect();
        assert_eq!(
            targets,
            ["/data", "/data-old", "/data/cache", "/seed", "/src"]
        );
        assert_eq!(
            spec.volumes["/seed"],
            Mount::Disk {
                path: "/d/seed.qcow2".into(),
                format: DiskFormat::Qcow2,
                fstype: None,
                readonly: true
            }
        );
        assert_eq!(
            spec.volumes["/data/cache"],
            Mount::Tmpfs {
                size_mib: Some(64),
                readonly: false
            }
        );
        let named: Vec<(&str, bool)> = spec.named_volumes().collect();
        assert_eq!(named, [("data", false), ("old", true)]);
        let devices: usize = spec.volumes.values().map(Mount::virtio_devices).sum();
        assert_eq!(devices, 4);
    }

    #[test]
    fn guest_paths_must_be_absolute_normalized_and_not_the_root() {
        for path in [
            "data",
            "/",
            "/data/",
            "//data",
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/a\\u0000",
        ] {
            let volumes = format!(
                r#"{{"{path}": {{"kind": "tmpfs", "size_mib": null, "readonly": false}}}}"#
            );
            assert!(
                matches!(
                    with_volumes(&volumes),
                    Err(SupervisorError::InvalidConfig(_))
                ),
                "{path:?} must be refused"
            );
        }
        assert!(
            with_volumes(r#"{"/a/b.c": {"kind": "tmpfs", "size_mib": 1, "readonly": true}}"#)
                .is_ok()
        );
    }

    #[test]
    fn bad_mounts_are_invalid_config() {
        for volumes in [
            r#"{"/t": {"kind": "tmpfs", "size_mib": 0, "readonly": false}}"#,
            r#"{"/d": {"kind": "disk", "path": "/x", "format": "vmdk", "fstype": null, "readonly": false}}"#,
            r#"{"/n": {"kind": "named", "readonly": false}}"#,
            r#"{"/n": {"kind": "nfs", "readonly": false}}"#,
        ] {
            assert!(
                matches!(
                    with_volumes(volumes),
                    Err(SupervisorError::InvalidConfig(_))
                ),
                "{volumes} must be refused"
            );
        }
    }

    #[test]
    fn malformed_config_is_invalid_config() {
        assert!(matches!(
            SandboxSpec::from_json("{}"),
            Err(SupervisorError::InvalidConfig(_))
        ));
    }
}

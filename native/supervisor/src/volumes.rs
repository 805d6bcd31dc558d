//! A sandbox's volumes as the VM gets them: named and disk volumes become virtio-blk disks,
//! bind volumes virtio-fs shares (each with its own virtiofsd); tmpfs volumes need no device.
//! What the agent is asked to mount once it answered comes with them.

use crate::error::Result;
use crate::paths::{self, SandboxFiles};
use crate::spec::{DiskFormat, Mount, SandboxSpec};
use crate::virtiofsd::Helper;
use msb_engine::qemu::{ExtraDisk, Share};
use msb_protocol::guest::{MountRequest, MountSource};
use std::path::{Path, PathBuf};

/// A volume's disk serial or virtio-fs tag is this and its index in guest-path order.
const VOLUME_ID_PREFIX: &str = "vol";
/// The file system of a named volume's image.
const NAMED_VOLUME_FSTYPE: &str = "ext4";

/// What the VM gets for its volumes, and what the agent is then asked to mount.
#[derive(Default)]
pub struct Volumes {
    pub disks: Vec<ExtraDisk>,
    pub shares: Vec<Share>,
    pub mounts: Vec<MountRequest>,
}

/// The devices of `spec`'s volumes; the virtiofsd of each bind volume joins `helpers`.
pub fn attach(
    spec: &SandboxSpec,
    files: &SandboxFiles,
    helpers: &mut Vec<Helper>,
) -> Result<Volumes> {
    let mut volumes = Volumes::default();
    for (index, (target, mount)) in spec.volumes.iter().enumerate() {
        let id = format!("{VOLUME_ID_PREFIX}{index}");
        let source = match mount {
            Mount::Named { name, readonly } => volumes.disk(
                paths::volume_image(name)?,
                id,
                *readonly,
                DiskFormat::Raw,
                Some(NAMED_VOLUME_FSTYPE.into()),
            ),
            Mount::Disk {
                path,
                format,
                fstype,
                readonly,
            } => volumes.disk(path.into(), id, *readonly, *format, fstype.clone()),
            Mount::Bind { path, readonly } => {
                let socket = files.volume_socket(&id);
                helpers.push(Helper::spawn(Path::new(path), &socket, *readonly)?);
                volumes.shares.push(Share {
                    vhost_socket: socket,
                    tag: id.clone(),
                });
                MountSource::Virtiofs { tag: id }
            }
            Mount::Tmpfs { size_mib, .. } => MountSource::Tmpfs {
                size_mib: *size_mib,
            },
        };
        volumes.mounts.push(MountRequest {
            target: target.clone(),
            source,
            readonly: mount.readonly(),
        });
    }
    Ok(volumes)
}

impl Volumes {
    /// Adds a disk (never written by QEMU when the mount is read-only; see `ExtraDisk`) found
    /// by the guest by `serial`.
    fn disk(
        &mut self,
        path: PathBuf,
        serial: String,
        readonly: bool,
        format: DiskFormat,
        fstype: Option<String>,
    ) -> MountSource {
        self.disks.push(ExtraDisk {
            path,
            serial: serial.clone(),
            readonly,
            format: format.as_str().into(),
        });
        MountSource::Disk { serial, fstype }
    }
}

//! Volumes: `Mount` requests put a virtio-blk disk, a virtio-fs share or a fresh tmpfs at a
//! path of the sandbox. They arrive after the switch into the sandbox's root, so targets are
//! paths of that root. Shutdown unmounts them with every other mount (see
//! [`crate::shutdown`]), which flushes a disk before the VM powers off.
//!
//! The kernel modules for virtio-fs (and FUSE beneath it) are loaded at boot whatever the
//! root is (see [`crate::modules`]), so a share can be mounted in a sandbox on disks too.

use super::dirs::{create_dirs, DEFAULT_DIR_MODE};
use super::error::{describe, FsError};
use super::ops;
use crate::rootfs::{self, RootError};
use crate::sys;
use msb_protocol::guest::{MountRequest, MountSource};
use std::io;
use std::path::{Component, Path};

/// What to pass to mount(2) for a source, once found.
struct Resolved {
    /// The source for messages: "disk vol0 (/dev/vdb, ext4)".
    what: String,
    device: String,
    fstype: String,
}

/// Carries out a `Mount` request.
pub fn mount(request: &MountRequest) -> Result<(), FsError> {
    let target = check_target(&request.target)?;
    let data = mount_data(&request.source)?;
    let flags = mount_flags(request.readonly);
    let source = resolve(&request.source, target)?;
    let failed = |detail: String, error: &io::Error| FsError::Failed {
        message: format!("mount {} on {target}: {detail}", source.what),
        errno: error.raw_os_error(),
    };
    create_dirs(Path::new(target), DEFAULT_DIR_MODE)
        .map_err(|e| failed(format!("creating {target}: {}", describe(&e)), &e))?;
    sys::mount(&source.device, target, &source.fstype, flags, &data).map_err(|e| {
        let hint = rootfs::driver_hint(&e, &source.fstype);
        failed(format!("{}{hint}", describe(&e)), &e)
    })
}

/// A target must be an absolute path without `..` (which could lead out of where the host
/// meant) and not the root itself, which a volume would hide.
pub fn check_target(target: &str) -> Result<&str, FsError> {
    let invalid = |why: &str| Err(FsError::Invalid(format!("mount target {target:?} {why}")));
    // Absolute and free of NUL bytes, as every file system request's path.
    ops::absolute(target)?;
    let path = Path::new(target);
    if path.components().any(|part| part == Component::ParentDir) {
        return invalid("contains a .. component");
    }
    if path.components().all(|part| part == Component::RootDir) {
        return invalid("is the root");
    }
    Ok(target)
}

pub fn mount_flags(readonly: bool) -> libc::c_ulong {
    if readonly {
        libc::MS_RDONLY
    } else {
        0
    }
}

/// The file system specific options: a tmpfs is world-writable and sticky like /tmp, and
/// bounded when asked.
pub fn mount_data(source: &MountSource) -> Result<String, FsError> {
    match source {
        MountSource::Disk { serial, .. } if serial.is_empty() => {
            Err(FsError::Invalid("a disk volume needs a serial".into()))
        }
        MountSource::Virtiofs { tag } if tag.is_empty() => {
            Err(FsError::Invalid("a virtio-fs volume needs a tag".into()))
        }
        // tmpfs reads size=0 as "unlimited", the opposite of what a 0 would mean.
        MountSource::Tmpfs { size_mib: Some(0) } => Err(FsError::Invalid(
            "a tmpfs volume cannot have a size of 0".into(),
        )),
        MountSource::Tmpfs {
            size_mib: Some(size),
        } => Ok(format!("mode=1777,size={size}m")),
        MountSource::Tmpfs { size_mib: None } => Ok("mode=1777".into()),
        MountSource::Disk { .. } | MountSource::Virtiofs { .. } => Ok(String::new()),
    }
}

fn resolve(source: &MountSource, target: &str) -> Result<Resolved, FsError> {
    match source {
        MountSource::Disk { serial, fstype } => {
            resolve_disk(serial, fstype.as_deref()).map_err(|error| {
                let (errno, hint) = match &error {
                    RootError::Read { source, .. } => (source.raw_os_error(), ""),
                    RootError::UnknownFilesystem { .. } => (None, "; name its fstype to mount it"),
                    _ => (None, ""),
                };
                FsError::Failed {
                    message: format!("mount disk {serial} on {target}: {error}{hint}"),
                    errno,
                }
            })
        }
        MountSource::Virtiofs { tag } => Ok(Resolved {
            what: format!("virtio-fs share {tag}"),
            device: tag.clone(),
            fstype: "virtiofs".into(),
        }),
        MountSource::Tmpfs { .. } => Ok(Resolved {
            what: "tmpfs".into(),
            device: "tmpfs".into(),
            fstype: "tmpfs".into(),
        }),
    }
}

/// Finds the disk (waiting briefly, as at boot, for one still being probed) and its file
/// system type: the requested one, or what its superblock says.
fn resolve_disk(serial: &str, fstype: Option<&str>) -> Result<Resolved, RootError> {
    let disks = rootfs::wait_for_disks(&[serial])?;
    let device = disks
        .get(serial)
        .cloned()
        .ok_or_else(|| RootError::DiskMissing {
            serial: serial.into(),
            seconds: 0.0,
            seen: "none".into(),
        })?;
    let fstype = match fstype {
        Some(fstype) => fstype.to_string(),
        None => rootfs::filesystem_of(&device)?.to_string(),
    };
    Ok(Resolved {
        what: rootfs::describe_disk(serial, &device, &fstype),
        device,
        fstype,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_absolute_without_parent_components() {
        assert_eq!(check_target("/data").unwrap(), "/data");
        assert_eq!(check_target("/mnt/./a b/").unwrap(), "/mnt/./a b/");
        for bad in ["data", "", "/a/../etc", "/..", "/", "//", "/a\0b"] {
            assert!(
                matches!(check_target(bad), Err(FsError::Invalid(_))),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn readonly_sets_ms_rdonly() {
        assert_eq!(mount_flags(true), libc::MS_RDONLY);
        assert_eq!(mount_flags(false), 0);
    }

    #[test]
    fn tmpfs_options_are_sticky_and_optionally_bounded() {
        let tmpfs = |size_mib| mount_data(&MountSource::Tmpfs { size_mib });
        assert_eq!(tmpfs(None).unwrap(), "mode=1777");
        assert_eq!(tmpfs(Some(64)).unwrap(), "mode=1777,size=64m");
        assert!(matches!(tmpfs(Some(0)), Err(FsError::Invalid(_))));
        let disk = MountSource::Disk {
            serial: "vol0".into(),
            fstype: None,
        };
        assert_eq!(mount_data(&disk).unwrap(), "");
        let share = MountSource::Virtiofs { tag: "work".into() };
        assert_eq!(mount_data(&share).unwrap(), "");
    }

    #[test]
    fn sources_need_names() {
        let disk = MountSource::Disk {
            serial: String::new(),
            fstype: Some("ext4".into()),
        };
        assert!(matches!(mount_data(&disk), Err(FsError::Invalid(_))));
        let share = MountSource::Virtiofs { tag: String::new() };
        assert!(matches!(mount_data(&share), Err(FsError::Invalid(_))));
    }

    #[test]
    fn a_refused_request_touches_nothing() {
        let request = MountRequest {
            target: "relative/dir".into(),
            source: MountSource::Tmpfs { size_mib: None },
            readonly: false,
        };
        assert!(matches!(mount(&request), Err(FsError::Invalid(_))));
        assert!(!Path::new("relative").exists());
    }
}

//! A sandbox's root file system: its image, resolved once per start against the host and the
//! image store, and the root disk QEMU gets for it.

use crate::error::{Result, SupervisorError};
use crate::paths::SandboxFiles;
use crate::spec::{DiskFormat, ImageSource};
use msb_engine::qemu::{RootDisk, Share};
use msb_state::{Database, ImageRecord};
use std::path::{Path, PathBuf};

/// Guest tag of a virtio-fs root.
const ROOT_TAG: &str = "rootfs";

/// What a sandbox's root file system is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootImage {
    /// Read-only layer images of a stored image, top-most first, under the sandbox's
    /// writable upper disk.
    Layers(Vec<PathBuf>),
    /// A host directory shared live (virtio-fs).
    Bind(PathBuf),
    /// A host disk image file, read-only, under the sandbox's writable upper disk.
    Disk {
        path: PathBuf,
        format: DiskFormat,
        fstype: Option<String>,
    },
}

impl RootImage {
    /// The root of a stored image (local or OCI).
    pub fn of_record(record: &ImageRecord) -> Self {
        Self::Layers(
            record
                .lower_layers()
                .into_iter()
                .map(PathBuf::from)
                .collect(),
        )
    }

    /// Resolves `source`: a host root must exist as what its kind says; a stored image must
    /// be recorded in `db`.
    pub fn resolve(source: &ImageSource, db: &Database) -> Result<Self> {
        match source {
            ImageSource::Bind { path } => Self::bind(path),
            ImageSource::Disk {
                path,
                format,
                fstype,
            } => Self::disk_image(path, *format, fstype.clone()),
            ImageSource::Local { name } | ImageSource::Oci { reference: name } => {
                let record = db.image(name)?.ok_or_else(|| {
                    SupervisorError::ImageNotFound(name.clone(), "see `msb images`".into())
                })?;
                Ok(Self::of_record(&record))
            }
        }
    }

    fn bind(path: &str) -> Result<Self> {
        if Path::new(path).is_dir() {
            Ok(Self::Bind(PathBuf::from(path)))
        } else {
            Err(SupervisorError::ImageNotFound(
                path.into(),
                "a bind root must be an existing directory".into(),
            ))
        }
    }

    fn disk_image(path: &str, format: DiskFormat, fstype: Option<String>) -> Result<Self> {
        if std::fs::metadata(path).is_ok_and(|metadata| metadata.is_file()) {
            Ok(Self::Disk {
                path: PathBuf::from(path),
                format,
                fstype,
            })
        } else {
            Err(SupervisorError::ImageNotFound(
                path.into(),
                "a disk image root must be an existing regular file".into(),
            ))
        }
    }

    /// Whether the sandbox writes to an upper disk of its own (every root but a bind's).
    pub fn has_upper(&self) -> bool {
        !matches!(self, Self::Bind(_))
    }

    /// The root file system as QEMU gets it.
    pub fn disk(&self, files: &SandboxFiles) -> Result<RootDisk> {
        Ok(match self {
            Self::Layers(lowers) => RootDisk::Overlay {
                lowers: lowers.clone(),
                upper: files.upper_disk(),
            },
            Self::Bind(_) => RootDisk::Virtiofs(Share {
                vhost_socket: files.virtiofs_socket(),
                tag: ROOT_TAG.into(),
            }),
            Self::Disk {
                path,
                format,
                fstype,
            } => RootDisk::Overlay {
                lowers: vec![disk_lower(path, *format, fstype.as_deref())?],
                upper: files.upper_disk(),
            },
        })
    }
}

/// The one place a disk image root's format and file system type are handed to the engine.
///
/// The engine opens every lower as a raw drive and the guest agent detects ext4 or EROFS on
/// it, so until lowers carry a QEMU format and an fstype, only raw images of those file
/// systems can be a root; anything else is refused here rather than booted wrong.
fn disk_lower(path: &Path, format: DiskFormat, fstype: Option<&str>) -> Result<PathBuf> {
    if format != DiskFormat::Raw {
        return Err(SupervisorError::InvalidConfig(format!(
            "{}: a {} disk image cannot be a root file system yet (raw only)",
            path.display(),
            format.as_str()
        )));
    }
    if let Some(other) = fstype.filter(|fstype| !DETECTED_ROOT_FSTYPES.contains(fstype)) {
        return Err(SupervisorError::InvalidConfig(format!(
            "{}: a {other} disk image cannot be a root file system yet (ext4 or erofs)",
            path.display()
        )));
    }
    Ok(path.to_path_buf())
}

/// The file systems the guest agent recognises on a lower without being told.
const DETECTED_ROOT_FSTYPES: [&str; 2] = ["ext4", "erofs"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bind_root_must_be_an_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in_memory().unwrap();
        let bind = |path: &Path| ImageSource::Bind {
            path: path.display().to_string(),
        };
        let root = RootImage::resolve(&bind(dir.path()), &db).unwrap();
        assert_eq!(root, RootImage::Bind(dir.path().to_path_buf()));
        assert!(!root.has_upper());
        let missing = dir.path().join("missing");
        assert!(matches!(
            RootImage::resolve(&bind(&missing), &db),
            Err(SupervisorError::ImageNotFound(..))
        ));
    }

    fn disk(path: &Path, format: DiskFormat, fstype: Option<&str>) -> ImageSource {
        ImageSource::Disk {
            path: path.display().to_string(),
            format,
            fstype: fstype.map(String::from),
        }
    }

    #[test]
    fn a_disk_image_root_must_be_an_existing_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in_memory().unwrap();
        let image = dir.path().join("root.img");
        std::fs::write(&image, b"").unwrap();
        let root = RootImage::resolve(&disk(&image, DiskFormat::Raw, None), &db).unwrap();
        assert!(root.has_upper());
        for not_a_file in [dir.path().to_path_buf(), dir.path().join("missing")] {
            assert!(matches!(
                RootImage::resolve(&disk(&not_a_file, DiskFormat::Raw, None), &db),
                Err(SupervisorError::ImageNotFound(..))
            ));
        }
    }

    #[test]
    fn a_disk_image_root_is_the_lower_of_an_overlay() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in_memory().unwrap();
        let files = SandboxFiles::in_dir(dir.path().join("sandbox"));
        let image = dir.path().join("root.img");
        std::fs::write(&image, b"").unwrap();
        let raw = RootImage::resolve(&disk(&image, DiskFormat::Raw, Some("ext4")), &db).unwrap();
        assert_eq!(
            raw.disk(&files).unwrap(),
            RootDisk::Overlay {
                lowers: vec![image.clone()],
                upper: files.upper_disk(),
            }
        );
        for (format, fstype) in [(DiskFormat::Qcow2, None), (DiskFormat::Raw, Some("xfs"))] {
            let root = RootImage::resolve(&disk(&image, format, fstype), &db).unwrap();
            assert!(matches!(
                root.disk(&files),
                Err(SupervisorError::InvalidConfig(_))
            ));
        }
    }

    #[test]
    fn a_stored_image_must_be_recorded() {
        let db = Database::open_in_memory().unwrap();
        let local = ImageSource::Local {
            name: "absent".into(),
        };
        assert!(matches!(
            RootImage::resolve(&local, &db),
            Err(SupervisorError::ImageNotFound(name, _)) if name == "absent"
        ));
    }
}

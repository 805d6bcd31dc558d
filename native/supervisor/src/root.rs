//! A sandbox's root file system: its image, resolved once per start against the host and the
//! image store, and the root disk QEMU gets for it.

use crate::error::{Result, SupervisorError};
use crate::paths::SandboxFiles;
use crate::spec::{DiskFormat, ImageSource};
use msb_engine::qemu::{Lower, RootDisk, Share};
use msb_protocol::filesystem::DiskFilesystem;
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
        fstype: Option<DiskFilesystem>,
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
            } => Self::disk_image(path, *format, *fstype),
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

    fn disk_image(path: &str, format: DiskFormat, fstype: Option<DiskFilesystem>) -> Result<Self> {
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
    pub fn disk(&self, files: &SandboxFiles) -> RootDisk {
        match self {
            Self::Layers(layers) => RootDisk::Overlay {
                lowers: layers.iter().cloned().map(Lower::Layer).collect(),
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
                lowers: vec![Lower::Disk {
                    path: path.clone(),
                    format: format.as_str().into(),
                    fstype: *fstype,
                }],
                upper: files.upper_disk(),
            },
        }
    }
}

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

    fn disk(path: &Path, format: DiskFormat, fstype: Option<DiskFilesystem>) -> ImageSource {
        ImageSource::Disk {
            path: path.display().to_string(),
            format,
            fstype,
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
        let image = dir.path().join("root.qcow2");
        std::fs::write(&image, b"").unwrap();
        let source = disk(&image, DiskFormat::Qcow2, Some(DiskFilesystem::Ext4));
        let root = RootImage::resolve(&source, &db).unwrap();
        assert_eq!(
            root.disk(&files),
            RootDisk::Overlay {
                lowers: vec![Lower::Disk {
                    path: image.clone(),
                    format: "qcow2".into(),
                    fstype: Some(DiskFilesystem::Ext4),
                }],
                upper: files.upper_disk(),
            }
        );
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

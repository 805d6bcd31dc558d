//! A sandbox's root file system: its image, resolved once per start against the host and the
//! image store, and the root disk QEMU gets for it.

use crate::error::{Result, SupervisorError};
use crate::paths::SandboxFiles;
use crate::spec::ImageSource;
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
        })
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

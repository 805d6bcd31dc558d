//! The file systems a root file system disk may hold. The host refuses any other before it
//! boots a VM, and the guest agent mounts these by name; both take the list from here so
//! that they cannot disagree about it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A file system the guest kernel can mount from a disk: Debian's cloud kernel has ext4
/// built in, serving ext2 and ext3 as well (`CONFIG_EXT4_USE_FOR_EXT2=y`), and the
/// initramfs carries the EROFS module. Adding a variant means shipping its module (the
/// engine's module list matches on this enum, so it cannot be forgotten).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFilesystem {
    Ext2,
    Ext3,
    Ext4,
    Erofs,
}

impl DiskFilesystem {
    pub const ALL: [Self; 4] = [Self::Ext2, Self::Ext3, Self::Ext4, Self::Erofs];

    /// The name mount(2) knows it by, which is also its name in configurations.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ext2 => "ext2",
            Self::Ext3 => "ext3",
            Self::Ext4 => "ext4",
            Self::Erofs => "erofs",
        }
    }
}

impl fmt::Display for DiskFilesystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "file system {name:?} is not supported (supported: {})",
    supported_names()
)]
pub struct UnsupportedFilesystem {
    pub name: String,
}

fn supported_names() -> String {
    DiskFilesystem::ALL.map(DiskFilesystem::name).join(", ")
}

impl FromStr for DiskFilesystem {
    type Err = UnsupportedFilesystem;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|filesystem| filesystem.name() == name)
            .ok_or_else(|| UnsupportedFilesystem {
                name: name.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::value::{Error as ValueError, StrDeserializer};
    use serde::de::IntoDeserializer;

    #[test]
    fn every_supported_name_parses_back_and_deserializes_alike() {
        for filesystem in DiskFilesystem::ALL {
            let name = filesystem.name();
            assert_eq!(name.parse(), Ok(filesystem));
            assert_eq!(filesystem.to_string(), name);
            let deserializer: StrDeserializer<ValueError> = name.into_deserializer();
            assert_eq!(DiskFilesystem::deserialize(deserializer), Ok(filesystem));
        }
    }

    #[test]
    fn an_unsupported_name_is_refused_with_the_supported_list() {
        let error = "xfs".parse::<DiskFilesystem>().unwrap_err();
        assert_eq!(error.name, "xfs");
        assert_eq!(
            error.to_string(),
            r#"file system "xfs" is not supported (supported: ext2, ext3, ext4, erofs)"#
        );
        for near_miss in ["", "EXT4", "ext4 ", "ext"] {
            assert!(
                near_miss.parse::<DiskFilesystem>().is_err(),
                "{near_miss:?}"
            );
        }
        let deserializer: StrDeserializer<ValueError> = "xfs".into_deserializer();
        assert!(DiskFilesystem::deserialize(deserializer).is_err());
    }
}

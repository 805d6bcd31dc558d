//! The `msb.*` keys of the kernel command line: how the host tells the agent to build the
//! root file system before anything else can talk to it.

use msb_protocol::filesystem::{DiskFilesystem, UnsupportedFilesystem};

/// Where the sandbox's root file system comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSpec {
    /// A host directory shared with virtio-fs under this tag.
    Virtiofs { tag: String },
    /// virtio-blk disks, named by their serial: read-only lowers (top-most first) joined by
    /// overlayfs over a writable upper disk.
    Overlay {
        lowers: Vec<LowerSpec>,
        upper: String,
    },
}

/// One read-only lower: `SERIAL`, or `SERIAL:FSTYPE` in `msb.lower`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerSpec {
    pub serial: String,
    /// The file system to mount it with; `None` means detect it from the superblock.
    pub fstype: Option<DiskFilesystem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    pub root: RootSpec,
    pub hostname: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    #[error(
        "the kernel command line has no msb.root= (expected msb.root=virtiofs or msb.root=overlay)"
    )]
    NoRoot,
    #[error("msb.root={0:?} is neither virtiofs nor overlay")]
    UnknownRoot(String),
    #[error("msb.root={root} needs a non-empty {key}=")]
    Missing {
        root: &'static str,
        key: &'static str,
    },
    #[error("msb.lower entry {0:?} is neither SERIAL nor SERIAL:FSTYPE")]
    MalformedLower(String),
    #[error("msb.lower entry {serial}: {source}")]
    UnsupportedFilesystem {
        serial: String,
        source: UnsupportedFilesystem,
    },
}

/// The value of `key=...`; the last occurrence wins, as for the kernel's own parameters.
fn value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_ascii_whitespace()
        .filter_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .next_back()
}

fn required<'a>(
    line: &'a str,
    root: &'static str,
    key: &'static str,
) -> Result<&'a str, CmdlineError> {
    value(line, key)
        .filter(|v| !v.is_empty())
        .ok_or(CmdlineError::Missing { root, key })
}

/// Parses `/proc/cmdline`. Keys other than the ones below (including unknown `msb.*`) are
/// ignored, so the host can add keys for newer agents.
pub fn parse(line: &str) -> Result<BootConfig, CmdlineError> {
    let root = match value(line, "msb.root").ok_or(CmdlineError::NoRoot)? {
        "virtiofs" => RootSpec::Virtiofs {
            tag: required(line, "virtiofs", "msb.root_tag")?.to_string(),
        },
        "overlay" => {
            let lowers: Vec<LowerSpec> = required(line, "overlay", "msb.lower")?
                .split(',')
                .filter(|entry| !entry.is_empty())
                .map(parse_lower)
                .collect::<Result<_, _>>()?;
            if lowers.is_empty() {
                return Err(CmdlineError::Missing {
                    root: "overlay",
                    key: "msb.lower",
                });
            }
            RootSpec::Overlay {
                lowers,
                upper: required(line, "overlay", "msb.upper")?.to_string(),
            }
        }
        other => return Err(CmdlineError::UnknownRoot(other.to_string())),
    };
    let hostname = value(line, "msb.hostname")
        .filter(|name| !name.is_empty())
        .map(String::from);
    Ok(BootConfig { root, hostname })
}

/// `SERIAL` or `SERIAL:FSTYPE`. A file system the agent cannot mount is refused here, before
/// any disk is touched, rather than as a failed mount.
fn parse_lower(entry: &str) -> Result<LowerSpec, CmdlineError> {
    let malformed = || CmdlineError::MalformedLower(entry.to_string());
    let (serial, fstype) = match entry.split_once(':') {
        None => (entry, None),
        Some((serial, name)) if !name.is_empty() && !name.contains(':') => (serial, Some(name)),
        Some(_) => return Err(malformed()),
    };
    if serial.is_empty() {
        return Err(malformed());
    }
    let fstype = fstype.map(str::parse).transpose().map_err(|source| {
        CmdlineError::UnsupportedFilesystem {
            serial: serial.to_string(),
            source,
        }
    })?;
    Ok(LowerSpec {
        serial: serial.to_string(),
        fstype,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_root_with_layers_and_hostname() {
        let config = parse(
            "console=ttyS0 quiet reboot=t msb.hostname=web msb.root=overlay msb.lower=layer0,layer1 msb.upper=upper\n",
        )
        .unwrap();
        assert_eq!(
            config.root,
            RootSpec::Overlay {
                lowers: vec![lower("layer0", None), lower("layer1", None)],
                upper: "upper".into()
            }
        );
        assert_eq!(config.hostname.as_deref(), Some("web"));
    }

    fn lower(serial: &str, fstype: Option<DiskFilesystem>) -> LowerSpec {
        LowerSpec {
            serial: serial.into(),
            fstype,
        }
    }

    fn lowers(value: &str) -> Result<Vec<LowerSpec>, CmdlineError> {
        match parse(&format!(
            "msb.root=overlay msb.lower={value} msb.upper=upper"
        ))?
        .root
        {
            RootSpec::Overlay { lowers, .. } => Ok(lowers),
            other => panic!("an overlay root was parsed as {other:?}"),
        }
    }

    #[test]
    fn a_lower_may_name_its_file_system() {
        assert_eq!(
            lowers("layer0:ext4,layer1,layer2:erofs").unwrap(),
            [
                lower("layer0", Some(DiskFilesystem::Ext4)),
                lower("layer1", None),
                lower("layer2", Some(DiskFilesystem::Erofs)),
            ]
        );
        for filesystem in DiskFilesystem::ALL {
            assert_eq!(
                lowers(&format!("layer0:{filesystem}")).unwrap(),
                [lower("layer0", Some(filesystem))]
            );
        }
    }

    #[test]
    fn a_file_system_the_agent_cannot_mount_is_refused_by_name() {
        let error = lowers("layer0,layer1:xfs").unwrap_err();
        assert!(
            matches!(&error, CmdlineError::UnsupportedFilesystem { serial, source }
                if serial == "layer1" && source.name == "xfs"),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("layer1") && message.contains("\"xfs\""),
            "{message}"
        );
        assert!(
            message.contains("ext4, erofs"),
            "names what is supported: {message}"
        );
    }

    #[test]
    fn malformed_lowers_are_refused() {
        for bad in ["layer0:", ":ext4", "layer0:ext4:ext4", "layer0::ext4"] {
            assert_eq!(
                lowers(bad),
                Err(CmdlineError::MalformedLower(bad.into())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn virtiofs_root_and_unknown_keys() {
        let config =
            parse("msb.root=virtiofs msb.root_tag=rootfs msb.future=1 msb.rootx=y").unwrap();
        assert_eq!(
            config.root,
            RootSpec::Virtiofs {
                tag: "rootfs".into()
            }
        );
        assert_eq!(config.hostname, None);
    }

    #[test]
    fn keys_must_match_exactly_and_last_wins() {
        // `msb.root_tag` must not be read as `msb.root`.
        assert_eq!(parse("msb.root_tag=x"), Err(CmdlineError::NoRoot));
        let config =
            parse("msb.root=overlay msb.root=virtiofs msb.root_tag=a msb.root_tag=b").unwrap();
        assert_eq!(config.root, RootSpec::Virtiofs { tag: "b".into() });
    }

    #[test]
    fn missing_and_invalid_roots_are_errors() {
        assert_eq!(parse("console=ttyS0"), Err(CmdlineError::NoRoot));
        assert_eq!(
            parse("msb.root=nfs"),
            Err(CmdlineError::UnknownRoot("nfs".into()))
        );
        assert_eq!(
            parse("msb.root=virtiofs"),
            Err(CmdlineError::Missing {
                root: "virtiofs",
                key: "msb.root_tag"
            })
        );
        assert_eq!(
            parse("msb.root=overlay msb.lower=, msb.upper=u"),
            Err(CmdlineError::Missing {
                root: "overlay",
                key: "msb.lower"
            })
        );
        assert_eq!(
            parse("msb.root=overlay msb.lower=l0 msb.upper="),
            Err(CmdlineError::Missing {
                root: "overlay",
                key: "msb.upper"
            })
        );
    }
}

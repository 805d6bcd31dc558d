//! The `msb.*` keys of the kernel command line, which tell the agent how to build the root.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSpec {
    Virtiofs {
        tag: String,
    },
    /// Disk serials: lower layers top-most first, then the writable upper.
    Overlay {
        lowers: Vec<String>,
        upper: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootConfig {
    pub root: RootSpec,
    pub hostname: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CmdlineError {
    #[error("msb.root is missing from the kernel command line")]
    NoRoot,
    #[error("msb.root={0:?} is not virtiofs or overlay")]
    UnknownRoot(String),
    #[error("msb.root={root} needs {key}")]
    Missing {
        root: &'static str,
        key: &'static str,
    },
}

fn value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
}

pub fn parse(line: &str) -> Result<BootConfig, CmdlineError> {
    let root = match value(line, "msb.root").ok_or(CmdlineError::NoRoot)? {
        "virtiofs" => RootSpec::Virtiofs {
            tag: value(line, "msb.root_tag")
                .ok_or(CmdlineError::Missing {
                    root: "virtiofs",
                    key: "msb.root_tag",
                })?
                .into(),
        },
        "overlay" => RootSpec::Overlay {
            lowers: value(line, "msb.lower")
                .ok_or(CmdlineError::Missing {
                    root: "overlay",
                    key: "msb.lower",
                })?
                .split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            upper: value(line, "msb.upper")
                .ok_or(CmdlineError::Missing {
                    root: "overlay",
                    key: "msb.upper",
                })?
                .into(),
        },
        other => return Err(CmdlineError::UnknownRoot(other.into())),
    };
    Ok(BootConfig {
        root,
        hostname: value(line, "msb.hostname").map(String::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_root_with_layers() {
        let config = parse("console=ttyS0 quiet msb.hostname=web msb.root=overlay msb.lower=layer0,layer1 msb.upper=upper").unwrap();
        assert_eq!(
            config.root,
            RootSpec::Overlay {
                lowers: vec!["layer0".into(), "layer1".into()],
                upper: "upper".into()
            }
        );
        assert_eq!(config.hostname.as_deref(), Some("web"));
    }

    #[test]
    fn virtiofs_root_and_errors() {
        assert_eq!(
            parse("msb.root=virtiofs msb.root_tag=rootfs").unwrap().root,
            RootSpec::Virtiofs {
                tag: "rootfs".into()
            }
        );
        assert_eq!(parse("quiet"), Err(CmdlineError::NoRoot));
        assert_eq!(
            parse("msb.root=nfs"),
            Err(CmdlineError::UnknownRoot("nfs".into()))
        );
        assert!(matches!(
            parse("msb.root=overlay msb.lower=a"),
            Err(CmdlineError::Missing { .. })
        ));
        // A key must match whole: msb.rootx is not msb.root.
        assert_eq!(parse("msb.rootx=overlay"), Err(CmdlineError::NoRoot));
    }
}

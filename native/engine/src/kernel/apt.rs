//! Fetching Debian's cloud kernel package with apt, without installing it on the host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use thiserror::Error;

/// Debian's metapackage that always depends on the current cloud kernel.
pub const METAPACKAGE: &str = "linux-image-cloud-amd64";
const IMAGE_PREFIX: &str = "linux-image-";

#[derive(Debug, Error)]
pub enum AptError {
    #[error("{tool} is not available ({source}); the guest kernel comes from Debian packages")]
    ToolMissing {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("apt does not know {METAPACKAGE}: the package lists are missing or stale; run apt-get update ({detail})")]
    ListsMissing { detail: String },
    #[error("{METAPACKAGE} depends on no versioned linux-image package")]
    NoImageDependency,
    #[error("`{command}` failed: {detail}")]
    Failed { command: String, detail: String },
    #[error("apt-get download left no .deb in {0}")]
    NoDownload(PathBuf),
}

fn run(tool: &'static str, args: &[&str], dir: Option<&Path>) -> Result<Output, AptError> {
    let mut command = Command::new(tool);
    command.args(args).env("LC_ALL", "C");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    command
        .output()
        .map_err(|source| AptError::ToolMissing { tool, source })
}

fn failure(tool: &str, args: &[&str], output: &Output) -> AptError {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let detail = stderr
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    AptError::Failed {
        command: format!("{tool} {}", args.join(" ")),
        detail: detail.trim().to_string(),
    }
}

/// The versioned kernel package the metapackage's candidate depends on, e.g.
/// `linux-image-6.1.0-56-cloud-amd64`.
pub(crate) fn resolve_image_package() -> Result<String, AptError> {
    let args = ["show", "--no-all-versions", METAPACKAGE];
    let output = run("apt-cache", &args, None)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() || stdout.trim().is_empty() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(AptError::ListsMissing {
            detail: stderr.trim().replace('\n', "; "),
        });
    }
    image_dependency(&stdout).ok_or(AptError::NoImageDependency)
}

/// Picks the versioned `linux-image-<release>` package out of a package stanza's `Depends:`.
pub(crate) fn image_dependency(stanza: &str) -> Option<String> {
    let depends = stanza
        .lines()
        .find_map(|line| line.strip_prefix("Depends:"))?;
    depends
        .split([',', '|'])
        .filter_map(|alternative| alternative.split_whitespace().next())
        .find(|name| {
            name.strip_prefix(IMAGE_PREFIX)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// The kernel release a `linux-image-<release>` package carries.
pub(crate) fn release_of(package: &str) -> Option<&str> {
    package.strip_prefix(IMAGE_PREFIX).filter(|r| !r.is_empty())
}

/// Downloads `package`'s .deb into `dir` and returns its path. As root apt warns that it
/// cannot drop privileges to `_apt` for a root-owned directory; the download still works.
pub(crate) fn download(package: &str, dir: &Path) -> Result<PathBuf, AptError> {
    let args = ["download", package];
    let output = run("apt-get", &args, Some(dir))?;
    if !output.status.success() {
        return Err(failure("apt-get", &args, &output));
    }
    let debs = std::fs::read_dir(dir)
        .map_err(|error| AptError::Failed {
            command: format!("listing {}", dir.display()),
            detail: error.to_string(),
        })?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "deb"));
    debs.ok_or_else(|| AptError::NoDownload(dir.to_path_buf()))
}

/// Unpacks a .deb's files into `target` (no maintainer scripts, nothing touches `/boot`).
pub(crate) fn unpack(deb: &Path, target: &Path) -> Result<(), AptError> {
    let (deb, target) = (deb.to_string_lossy(), target.to_string_lossy());
    let args = ["-x", deb.as_ref(), target.as_ref()];
    let output = run("dpkg", &args, None)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failure("dpkg", &args, &output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_versioned_image_is_found_among_the_dependencies() {
        let stanza = "Package: linux-image-cloud-amd64\nVersion: 6.1.192-2\n\
                      Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)\nDescription: x\n";
        assert_eq!(
            image_dependency(stanza).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        let alternatives = "Depends: initramfs-tools | linux-initramfs-tool, linux-image-6.12.9+deb13-cloud-amd64-unsigned\n";
        assert_eq!(
            image_dependency(alternatives).as_deref(),
            Some("linux-image-6.12.9+deb13-cloud-amd64-unsigned")
        );
        assert_eq!(
            image_dependency("Depends: linux-image-cloud-amd64-dbg\n"),
            None
        );
        assert_eq!(image_dependency("Package: x\n"), None);
    }

    #[test]
    fn missing_lists_tell_the_user_to_run_apt_get_update() {
        let error = AptError::ListsMissing {
            detail: "E: No packages found".into(),
        };
        assert!(error.to_string().contains("run apt-get update"), "{error}");
    }

    #[test]
    fn release_is_the_package_name_without_prefix() {
        assert_eq!(
            release_of("linux-image-6.1.0-56-cloud-amd64"),
            Some("6.1.0-56-cloud-amd64")
        );
        assert_eq!(release_of("linux-headers-6.1"), None);
    }
}

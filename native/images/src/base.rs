//! The default image, `msb-base`: a small root filesystem built locally from Debian's
//! `busybox-static`, so that sandboxes work offline on first start.

use crate::{ext4, file_digest, io_error, ImageError, Result};
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const BASE_IMAGE_NAME: &str = "msb-base";
/// Bumped whenever the tree built here changes, so caches rebuild.
const BASE_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub path: PathBuf,
    pub digest: String,
    pub size_bytes: u64,
}

fn marker_path(cache_dir: &Path) -> PathBuf {
    cache_dir
        .join("images")
        .join(format!("{BASE_IMAGE_NAME}.ref"))
}

/// Directory of read-only layer files, named by digest.
pub fn layers_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("layers")
}

/// The cached base image, if it was built by this format version.
pub fn find_base_image(cache_dir: &Path) -> Option<BuiltImage> {
    let marker = fs::read_to_string(marker_path(cache_dir)).ok()?;
    let mut fields = marker.split_whitespace();
    let format: u32 = fields.next()?.parse().ok()?;
    let digest = fields.next()?.to_string();
    if format != BASE_FORMAT {
        return None;
    }
    let path = layer_path(cache_dir, &digest);
    let size_bytes = fs::metadata(&path).ok()?.len();
    Some(BuiltImage {
        path,
        digest,
        size_bytes,
    })
}

fn layer_path(cache_dir: &Path, digest: &str) -> PathBuf {
    layers_dir(cache_dir).join(format!("{}.ext4", digest.replace(':', "-")))
}

/// Builds the base image from a static busybox binary unless it is already cached.
pub fn ensure_base_image(cache_dir: &Path, busybox: &Path) -> Result<BuiltImage> {
    if let Some(image) = find_base_image(cache_dir) {
        return Ok(image);
    }
    let work = cache_dir
        .join("images")
        .join(format!(".build-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    let result = build(cache_dir, busybox, &work);
    let _ = fs::remove_dir_all(&work);
    result
}

fn build(cache_dir: &Path, busybox: &Path, work: &Path) -> Result<BuiltImage> {
    let tree = work.join("rootfs");
    populate_tree(&tree, busybox)?;
    let staged = work.join("layer.ext4");
    ext4::image_from_directory(&tree, &staged, BASE_IMAGE_NAME)?;
    let digest = file_digest(&staged)?;
    let path = layer_path(cache_dir, &digest);
    fs::create_dir_all(layers_dir(cache_dir)).map_err(io_error(cache_dir))?;
    fs::rename(&staged, &path).map_err(io_error(&path))?;
    // The marker is written last and atomically: a crash before it leaves only an unused layer.
    let marker = marker_path(cache_dir);
    let staged_marker = work.join("marker");
    fs::write(&staged_marker, format!("{BASE_FORMAT} {digest}\n"))
        .map_err(io_error(&staged_marker))?;
    fs::rename(&staged_marker, &marker).map_err(io_error(&marker))?;
    let size_bytes = fs::metadata(&path).map_err(io_error(&path))?.len();
    Ok(BuiltImage {
        path,
        digest,
        size_bytes,
    })
}

const FILES: &[(&str, &str, u32)] = &[
    (
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        0o644,
    ),
    ("etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644),
    (
        "etc/shadow",
        "root:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
        0o600,
    ),
    ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n", 0o644),
    (
        "etc/os-release",
        "NAME=\"msb-base\"\nID=msb-base\nPRETTY_NAME=\"microsandbox-tui base (busybox)\"\n",
        0o644,
    ),
    ("etc/profile", "export PS1='\\u@\\h:\\w\\$ '\n", 0o644),
];

const DIRECTORIES: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("etc", 0o755),
    ("root", 0o700),
    ("home", 0o755),
    ("tmp", 0o1777),
    ("var/tmp", 0o1777),
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("run", 0o755),
    ("mnt", 0o755),
];

fn populate_tree(tree: &Path, busybox: &Path) -> Result<()> {
    for (dir, mode) in DIRECTORIES {
        let path = tree.join(dir);
        fs::create_dir_all(&path).map_err(io_error(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).map_err(io_error(&path))?;
    }
    for (file, text, mode) in FILES {
        let path = tree.join(file);
        fs::write(&path, text).map_err(io_error(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).map_err(io_error(&path))?;
    }
    let target = tree.join("bin/busybox");
    fs::copy(busybox, &target).map_err(io_error(&target))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(0o755)).map_err(io_error(&target))?;
    for applet in applet_paths(busybox)? {
        let link = tree.join(applet.trim_start_matches('/'));
        if link == target || link.exists() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        symlink("/bin/busybox", &link).map_err(io_error(&link))?;
    }
    Ok(())
}

/// Where each applet belongs (`/bin/sh`, `/usr/bin/awk`, ...), as busybox itself reports.
fn applet_paths(busybox: &Path) -> Result<Vec<String>> {
    let output = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|error| ImageError::ToolFailed {
            tool: "busybox".into(),
            detail: error.to_string(),
        })?;
    if !output.status.success() {
        return Err(ImageError::ToolFailed {
            tool: "busybox --list-full".into(),
            detail: String::from_utf8_lossy(&output.stderr).into(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_BUSYBOX: &str = "/bin/busybox";

    #[test]
    fn base_image_is_built_once_and_found_again() {
        if !Path::new(HOST_BUSYBOX).exists() {
            panic!("{HOST_BUSYBOX} is missing: the test set-up installs busybox-static");
        }
        let cache = tempfile::tempdir().unwrap();
        let built = ensure_base_image(cache.path(), Path::new(HOST_BUSYBOX)).unwrap();
        assert!(built.digest.starts_with("sha256:"));
        assert_eq!(find_base_image(cache.path()), Some(built.clone()));
        assert_eq!(
            ensure_base_image(cache.path(), Path::new(HOST_BUSYBOX)).unwrap(),
            built
        );
        let sh = Command::new("debugfs")
            .args(["-R", "stat /bin/sh"])
            .arg(&built.path)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&sh.stdout).contains("symlink"),
            "/bin/sh must link to busybox"
        );
    }
}

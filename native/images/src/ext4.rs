//! ext4 image files made with `mkfs.ext4` (Debian package e2fsprogs).

use crate::{io_error, ImageError, Result};
use std::fs::File;
use std::path::Path;
use std::process::Command;

const MKFS: &str = "mkfs.ext4";
/// Free room left in a layer image beyond its content, so that ext4's own metadata fits.
const LAYER_HEADROOM_BYTES: u64 = 8 << 20;

/// Makes a read-only layer image holding the tree at `source`.
pub fn image_from_directory(source: &Path, target: &Path, label: &str) -> Result<()> {
    let size = directory_size(source)? * 5 / 4 + LAYER_HEADROOM_BYTES;
    allocate_sparse(target, size)?;
    mkfs(
        target,
        &[
            "-d",
            &source.display().to_string(),
            "-L",
            label,
            "-m",
            "0",
            "-N",
            &inode_count(source)?.to_string(),
        ],
    )
}

/// Makes an empty, sparse writable image of `size_bytes` (only written blocks use disk).
pub fn empty_image(target: &Path, size_bytes: u64, label: &str) -> Result<()> {
    allocate_sparse(target, size_bytes)?;
    mkfs(
        target,
        &[
            "-L",
            label,
            "-m",
            "0",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1",
        ],
    )
}

fn allocate_sparse(target: &Path, size_bytes: u64) -> Result<()> {
    let file = File::create(target).map_err(io_error(target))?;
    file.set_len(size_bytes).map_err(io_error(target))
}

fn mkfs(target: &Path, extra: &[&str]) -> Result<()> {
    let output = Command::new(MKFS)
        .args(["-q", "-F", "-t", "ext4"])
        .args(extra)
        .arg(target)
        .output()
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => ImageError::ToolMissing {
                tool: MKFS.into(),
                package: "e2fsprogs".into(),
            },
            _ => ImageError::ToolFailed {
                tool: MKFS.into(),
                detail: error.to_string(),
            },
        })?;
    if !output.status.success() {
        let _ = std::fs::remove_file(target);
        return Err(ImageError::ToolFailed {
            tool: MKFS.into(),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn walk(path: &Path, visit: &mut dyn FnMut(&std::fs::Metadata)) -> Result<()> {
    let metadata = std::fs::symlink_metadata(path).map_err(io_error(path))?;
    visit(&metadata);
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io_error(path))? {
            walk(&entry.map_err(io_error(path))?.path(), visit)?;
        }
    }
    Ok(())
}

fn directory_size(path: &Path) -> Result<u64> {
    let mut total = 0;
    // Each entry costs at least one block.
    walk(path, &mut |metadata| total += metadata.len().max(4096))?;
    Ok(total)
}

fn inode_count(path: &Path) -> Result<u64> {
    let mut count = 0;
    walk(path, &mut |_| count += 1)?;
    Ok(count + 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_from_directory_holds_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hello"), b"world").unwrap();
        let image = dir.path().join("layer.ext4");
        image_from_directory(&tree, &image, "test").unwrap();
        let listing = Command::new("debugfs")
            .args(["-R", "cat /etc/hello"])
            .arg(&image)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&listing.stdout), "world");
    }

    #[test]
    fn empty_image_is_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("upper.ext4");
        empty_image(&image, 1 << 30, "upper").unwrap();
        let metadata = std::fs::metadata(&image).unwrap();
        assert_eq!(metadata.len(), 1 << 30);
        use std::os::unix::fs::MetadataExt;
        assert!(
            metadata.blocks() * 512 < 64 << 20,
            "a fresh upper must not occupy its full size"
        );
    }
}

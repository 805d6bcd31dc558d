//! ext4 image files made with `mkfs.ext4` (Debian package e2fsprogs).

use crate::{io_error, ImageError, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
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

/// Space of an ext4 file system as its superblock records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceUsage {
    pub total_bytes: u64,
    /// Blocks in use (data and the file system's own metadata) times the block size.
    pub used_bytes: u64,
}

/// Where the superblock starts, and the fields of it that [`space_usage`] reads (offsets
/// from its start, as in the kernel's `struct ext4_super_block`).
const SUPERBLOCK_OFFSET: u64 = 1024;
const SUPERBLOCK_BYTES: usize = 1024;
const BLOCKS_COUNT_LO: usize = 0x04;
const FREE_BLOCKS_COUNT_LO: usize = 0x0c;
const LOG_BLOCK_SIZE: usize = 0x18;
const MAGIC: usize = 0x38;
const FEATURE_INCOMPAT: usize = 0x60;
const BLOCKS_COUNT_HI: usize = 0x150;
const FREE_BLOCKS_COUNT_HI: usize = 0x158;
const EXT4_MAGIC: u16 = 0xef53;
/// With this incompatible feature the block counts have high 32-bit halves.
const INCOMPAT_64BIT: u32 = 0x80;

/// Reads the space usage of the ext4 file system in `image`. The kernel writes its counters
/// to the superblock when the file system is synced or unmounted, so for an image mounted
/// in a running guest this is as of the guest's last sync.
pub fn space_usage(image: &Path) -> Result<SpaceUsage> {
    let mut file = File::open(image).map_err(io_error(image))?;
    let mut superblock = [0u8; SUPERBLOCK_BYTES];
    file.seek(SeekFrom::Start(SUPERBLOCK_OFFSET))
        .and_then(|_| file.read_exact(&mut superblock))
        .map_err(io_error(image))?;
    parse_superblock(&superblock).ok_or_else(|| ImageError::NotExt4 {
        path: image.display().to_string(),
    })
}

fn parse_superblock(superblock: &[u8; SUPERBLOCK_BYTES]) -> Option<SpaceUsage> {
    let u32_at = |offset: usize| {
        u32::from_le_bytes(superblock[offset..offset + 4].try_into().expect("4 bytes"))
    };
    if u16::from_le_bytes([superblock[MAGIC], superblock[MAGIC + 1]]) != EXT4_MAGIC {
        return None;
    }
    let wide = u32_at(FEATURE_INCOMPAT) & INCOMPAT_64BIT != 0;
    let count = |lo: usize, hi: usize| {
        let high = if wide { u64::from(u32_at(hi)) } else { 0 };
        high << 32 | u64::from(u32_at(lo))
    };
    let blocks = count(BLOCKS_COUNT_LO, BLOCKS_COUNT_HI);
    let free = count(FREE_BLOCKS_COUNT_LO, FREE_BLOCKS_COUNT_HI);
    // ext4 blocks are 1 KiB to 64 KiB; anything else is not a superblock we understand.
    let block_size = 1024u64
        .checked_shl(u32_at(LOG_BLOCK_SIZE))
        .filter(|size| *size <= 1 << 16)?;
    Some(SpaceUsage {
        total_bytes: blocks * block_size,
        used_bytes: blocks.checked_sub(free)? * block_size,
    })
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

    /// `dumpe2fs -h`'s value of `field` (a count of blocks, or the block size).
    fn dumpe2fs(image: &Path, field: &str) -> u64 {
        let output = Command::new("dumpe2fs")
            .arg("-h")
            .arg(image)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let line = text
            .lines()
            .find(|line| line.starts_with(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[test]
    fn space_usage_matches_dumpe2fs_and_grows_with_content() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("volume.ext4");
        empty_image(&image, 16 << 20, "volume").unwrap();
        let fresh = space_usage(&image).unwrap();
        let block_size = dumpe2fs(&image, "Block size");
        let used_blocks = dumpe2fs(&image, "Block count") - dumpe2fs(&image, "Free blocks");
        assert_eq!(fresh.total_bytes, 16 << 20);
        assert_eq!(fresh.used_bytes, used_blocks * block_size);
        assert!(fresh.used_bytes > 0, "the journal alone uses blocks");

        let content = dir.path().join("content");
        std::fs::write(&content, vec![7u8; 3 << 20]).unwrap();
        let written = Command::new("debugfs")
            .arg("-w")
            .arg("-R")
            .arg(format!("write {} content", content.display()))
            .arg(&image)
            .output()
            .unwrap();
        assert!(written.status.success());
        let grown = space_usage(&image).unwrap().used_bytes - fresh.used_bytes;
        assert!(
            (3 << 20..4 << 20).contains(&grown),
            "3 MiB of content used {grown} bytes"
        );
    }

    #[test]
    fn superblocks_are_parsed_with_64_bit_counts_and_refused_without_the_magic() {
        let mut superblock = [0u8; SUPERBLOCK_BYTES];
        assert_eq!(parse_superblock(&superblock), None);
        superblock[MAGIC..MAGIC + 2].copy_from_slice(&EXT4_MAGIC.to_le_bytes());
        superblock[LOG_BLOCK_SIZE] = 2; // 4 KiB blocks
        superblock[FEATURE_INCOMPAT] = INCOMPAT_64BIT as u8;
        superblock[BLOCKS_COUNT_LO..BLOCKS_COUNT_LO + 4].copy_from_slice(&10u32.to_le_bytes());
        superblock[BLOCKS_COUNT_HI..BLOCKS_COUNT_HI + 4].copy_from_slice(&1u32.to_le_bytes());
        superblock[FREE_BLOCKS_COUNT_LO..FREE_BLOCKS_COUNT_LO + 4]
            .copy_from_slice(&4u32.to_le_bytes());
        let usage = parse_superblock(&superblock).unwrap();
        assert_eq!(usage.total_bytes, ((1u64 << 32) + 10) * 4096);
        assert_eq!(usage.used_bytes, ((1u64 << 32) + 6) * 4096);
        superblock[LOG_BLOCK_SIZE] = 40;
        assert_eq!(parse_superblock(&superblock), None);
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

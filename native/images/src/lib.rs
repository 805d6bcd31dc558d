//! Root filesystem images.
//!
//! Images are stored as read-only ext4 files (layers) in the runtime cache, named by their
//! content digest so that sandboxes and images share them. A sandbox adds a sparse writable
//! ext4 upper of its own; the guest joins them with overlayfs.

pub mod base;
pub mod ext4;

use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{tool} failed: {detail}")]
    ToolFailed { tool: String, detail: String },
    #[error("{tool} is not installed (Debian package {package})")]
    ToolMissing { tool: String, package: String },
    #[error("{path} holds no ext4 file system")]
    NotExt4 { path: String },
    #[error("i/o error at {path}: {source}")]
    Io { path: String, source: io::Error },
}

pub type Result<T> = std::result::Result<T, ImageError>;

pub(crate) fn io_error(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `sha256:<hex>` of a file's bytes.
pub fn file_digest(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(io_error(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(io_error(path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(format!("sha256:{:x}", hasher.finalize()))
}

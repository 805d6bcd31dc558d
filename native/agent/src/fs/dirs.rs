//! Creating directories with exactly the mode asked for, whatever the umask.

use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Mode of new directories without one of their own, parents included.
pub const DEFAULT_DIR_MODE: u32 = 0o755;

/// `mkdir` that applies `mode` exactly, whatever the umask.
pub fn create_dir_exact(dir: &Path, mode: u32) -> io::Result<()> {
    fs::create_dir(dir)?;
    fs::set_permissions(dir, Permissions::from_mode(mode))
}

/// Creates `dir` and its missing ancestors, each with exactly `mode`. Existing directories
/// (or symlinks to directories) are left as they are.
pub fn create_dirs(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent, mode)?;
    }
    match create_dir_exact(dir, mode) {
        // Someone else created it meanwhile.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        other => other,
    }
}

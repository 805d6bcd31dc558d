//! The programs the runtime ships beside itself in the package's `_bin/` directory: the guest
//! agent (put into the initramfs) and the supervisor (one process per running sandbox).
//!
//! `_bin/` is found from the file of this loaded extension module (`_native*.so` lives in the
//! `microsandbox_tui` package directory), never by importing the Python package, so a
//! supervisor gets the binaries of exactly the runtime that started it.

use crate::error::{Result, RuntimeError};
use std::path::{Path, PathBuf};

/// Overrides the guest agent binary.
pub const AGENT_ENV: &str = "MSB_AGENT";
/// Overrides the supervisor binary.
pub const SUPERVISOR_ENV: &str = "MSB_SUPERVISOR";

const AGENT_NAME: &str = "msb-agent";
const SUPERVISOR_NAME: &str = "msb-supervisor";

/// The guest agent binary: `MSB_AGENT`, else `_bin/msb-agent`.
pub fn agent() -> Result<PathBuf> {
    find(AGENT_ENV, AGENT_NAME, "guest agent")
}

/// The supervisor binary: `MSB_SUPERVISOR`, else `_bin/msb-supervisor`.
pub fn supervisor() -> Result<PathBuf> {
    find(SUPERVISOR_ENV, SUPERVISOR_NAME, "supervisor")
}

fn find(env: &str, name: &str, what: &str) -> Result<PathBuf> {
    let path = match std::env::var_os(env).filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => bin_dir()?.join(name),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(RuntimeError::NotInstalled(format!(
            "{what} binary not found at {}",
            path.display()
        )))
    }
}

/// `_bin/` beside the file this code was loaded from.
fn bin_dir() -> Result<PathBuf> {
    let module = loaded_from().ok_or_else(|| {
        RuntimeError::NotInstalled("cannot tell where the native module was loaded from".into())
    })?;
    Ok(module.parent().unwrap_or(Path::new("/")).join("_bin"))
}

/// The file of the shared object holding this function (`dladdr`).
fn loaded_from() -> Option<PathBuf> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let address = loaded_from as *const libc::c_void;
    // SAFETY: dladdr fills `info` for an address of this object; it reads nothing else.
    if unsafe { libc::dladdr(address, info.as_mut_ptr()) } == 0 {
        return None;
    }
    // SAFETY: dladdr succeeded, so `info` is initialised.
    let info = unsafe { info.assume_init() };
    if info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated path owned by the dynamic loader, valid while we copy it.
    let name = unsafe { CStr::from_ptr(info.dli_fname) };
    let path = Path::new(std::ffi::OsStr::from_bytes(name.to_bytes()));
    std::fs::canonicalize(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bin_directory_is_beside_the_loaded_object() {
        // In a test the object is the test executable itself.
        let executable = std::env::current_exe().unwrap().canonicalize().unwrap();
        assert_eq!(loaded_from().unwrap(), executable);
        assert_eq!(
            bin_dir().unwrap(),
            executable.parent().unwrap().join("_bin")
        );
    }
}

//! The VM engine behind the runtime's narrow seam: what to boot (kernel, initramfs), how
//! (accelerator, QEMU `microvm` command line), measured facts of the host (TSC rate).

pub mod accel;
pub mod initramfs;
pub mod kernel;
pub mod qemu;
pub mod tsc;

use std::path::Path;

/// An i/o error together with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct PathError {
    pub path: String,
    #[source]
    pub source: std::io::Error,
}

pub(crate) fn at(path: &Path) -> impl FnOnce(std::io::Error) -> PathError + '_ {
    move |source| PathError {
        path: path.display().to_string(),
        source,
    }
}

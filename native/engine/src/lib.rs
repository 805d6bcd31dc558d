//! The VM engine behind the runtime's narrow seam: what to boot (guest kernel, initramfs),
//! how (accelerator choice, the QEMU `microvm` command line), and how to talk to a running
//! VM (QMP). See docs/ARCHITECTURE.md, "The VM engine".

pub mod accel;
pub mod initramfs;
pub mod kernel;
pub mod qemu;
pub mod qmp;
pub mod snapshot;
pub mod tsc;

mod cpio;
mod fsutil;

pub use qemu::EngineError;

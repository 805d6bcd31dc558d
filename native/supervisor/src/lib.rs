//! The supervisor of one sandbox, and what it shares with the runtime that starts it.
//!
//! A supervisor is a process of its own (the `msb-supervisor` binary), one per running
//! sandbox: it owns the QEMU child, the agent channel (shared by many clients) and the
//! sandbox's status in the database. The runtime and the supervisor agree through the
//! modules made public here: the sandbox spec the supervisor reads, the per-sandbox files
//! it writes, the metrics sample format, boot artifacts, the state database and logging.

pub mod artifacts;
pub mod database;
pub mod error;
pub mod logging;
pub mod logs;
pub mod metrics;
pub mod network;
pub mod paths;
pub mod process;
pub mod root;
pub mod secrets;
pub mod spec;
pub mod supervise;
pub mod templates;

mod controls;
pub mod handshake;
mod lifecycle;
pub mod ready;
mod relay;
mod sampler;
mod sessions;
mod signals;
mod virtiofsd;
pub mod vm;
mod volumes;

pub use error::{Result, SupervisorError};

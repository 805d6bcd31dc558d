//! Wire protocol between the host runtime and the guest agent, and between SDK clients and a
//! sandbox's supervisor.
//!
//! Every message travels in a frame:
//!
//! ```text
//! +----------------+----------------+-------+----------------------+
//! | len: u32 (BE)  | id: u32 (BE)   | flags | body (MessagePack)   |
//! +----------------+----------------+-------+----------------------+
//! ```
//!
//! `len` counts the bytes after itself (id + flags + body). `id` names the request a frame
//! belongs to, so many exec sessions share one channel. Frames larger than
//! [`MAX_FRAME_LEN`] are rejected before any allocation, because the guest is untrusted.
//!
//! [`filesystem`] is the other fact both sides share: which file systems a root disk may hold.

pub mod control;
pub mod filesystem;
pub mod frame;
pub mod guest;

pub use frame::{
    Frame, FrameDecoder, FrameError, FLAG_CONTROL, FLAG_END, MAX_FRAME_LEN, MAX_PAYLOAD_CHUNK,
};

/// Version of the message set. Bumped on any incompatible change; both sides refuse a peer
/// with a different major version during the hello handshake. A new field that decodes to a
/// default when absent (`#[serde(default)]`) is compatible: older peers ignore it.
pub const PROTOCOL_VERSION: u32 = 3;

/// The initramfs's module lists in `/lib/modules`, file names in load order: the first is
/// loaded before the agent waits for the hello (modules that keep no per-sandbox state), the
/// second after it (device drivers, which read each sandbox's disks and MAC as they bind).
pub const EARLY_MODULE_LIST: &str = "order";
pub const DEVICE_MODULE_LIST: &str = "order.devices";

/// Name of the virtio-serial port that carries the agent channel.
pub const AGENT_PORT_NAME: &str = "agent";

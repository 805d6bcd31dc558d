//! Pulling OCI images from registries into a local content store.
//!
//! An image is pulled as: resolve the reference to a manifest (picking this machine's
//! platform from an index), fetch the config, download each compressed layer blob with
//! digest verification, and turn each layer into a read-only ext4 image keyed by its
//! uncompressed digest (`diff_id`), so that images sharing a layer share one file. The guest
//! stacks those ext4 layers with overlayfs; OCI whiteouts are therefore written in
//! overlayfs' own form while extracting.
//!
//! Everything lands in the store through a temporary file and an atomic rename, so a
//! failed or cancelled pull never leaves a partial entry behind.

pub mod auth;
pub mod digest;
pub mod error;
mod http;
pub mod layer;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod store;

pub use auth::Credentials;
pub use digest::Digest;
pub use error::{Error, Result};
pub use pull::{
    local, pull, ImageConfig, LayerSize, Progress, PullOptions, PulledImage, PulledLayer,
};
pub use reference::Reference;
pub use store::Store;

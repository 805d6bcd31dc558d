//! The one error type of this crate: callers (the Python runtime) map its variants to
//! their own exceptions, so every failure a user can act on has a variant of its own.

use std::io;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("invalid digest {value:?}: {reason}")]
    InvalidDigest { value: String, reason: String },
    #[error("unsupported digest algorithm {algorithm:?} (only sha256 is supported)")]
    UnsupportedDigestAlgorithm { algorithm: String },
    #[error("content does not match its digest {digest}: got {actual}")]
    DigestMismatch { digest: String, actual: String },
    #[error("content of {digest} has {actual} bytes, expected {expected}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("not authorized by registry {registry}: {detail}")]
    Unauthorized { registry: String, detail: String },
    #[error("not found: {reference}")]
    NotFound { reference: String },
    #[error("HTTP {status} from {url}: {detail}")]
    Http {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("cannot reach {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("invalid manifest: {detail}")]
    InvalidManifest { detail: String },
    #[error("invalid image config: {detail}")]
    InvalidConfig { detail: String },
    #[error("image has no {wanted} variant (available: {})", available.join(", "))]
    PlatformNotFound {
        wanted: String,
        available: Vec<String>,
    },
    #[error("unsupported media type {media_type}")]
    UnsupportedMediaType { media_type: String },
    #[error("layer entry {entry:?} refused: {reason}")]
    UnsafePath { entry: String, reason: String },
    #[error("invalid layer {digest}: {detail}")]
    InvalidLayer { digest: String, detail: String },
    #[error("cannot use docker config {path}: {detail}")]
    DockerConfig { path: String, detail: String },
    #[error("cannot build layer image: {0}")]
    Image(#[from] msb_images::ImageError),
    #[error("i/o error at {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("pull cancelled")]
    Cancelled,
}

pub type Result<T> = std::result::Result<T, Error>;

/// Attaches the path to an I/O error, which on its own never says which file failed.
pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

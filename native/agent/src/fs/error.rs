//! How a file system request or a mount fails, and how that reaches the host.

use msb_protocol::guest::{AgentError, AgentErrorKind};
use std::fmt::Display;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The request itself is wrong (a relative path, stray mode bits, ...).
    #[error("{0}")]
    Invalid(String),
    /// A system call failed while doing `action` ("write /data/x").
    #[error("{action}: {}", describe(source))]
    Io { action: String, source: io::Error },
    /// A failure with a message of its own (a mount: no such disk, an unknown file system).
    #[error("{message}")]
    Failed { message: String, errno: Option<i32> },
    /// The host cancelled the request, or left.
    #[error("cancelled")]
    Cancelled,
}

impl FsError {
    pub fn io(op: &str, path: impl Display, source: io::Error) -> Self {
        FsError::Io {
            action: format!("{op} {path}"),
            source,
        }
    }

    /// The error frame's content. A missing path is `PathNotFound`, so that clients can tell
    /// it from other failures without decoding errnos.
    pub fn to_agent_error(&self) -> AgentError {
        let (kind, errno) = match self {
            FsError::Invalid(_) => (AgentErrorKind::InvalidRequest, None),
            FsError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => (
                AgentErrorKind::PathNotFound,
                Some(source.raw_os_error().unwrap_or(libc::ENOENT)),
            ),
            FsError::Io { source, .. } => (AgentErrorKind::Filesystem, source.raw_os_error()),
            FsError::Failed { errno, .. } => (AgentErrorKind::Filesystem, *errno),
            FsError::Cancelled => (AgentErrorKind::Filesystem, None),
        };
        AgentError {
            kind,
            message: self.to_string(),
            errno,
        }
    }
}

/// An I/O error as a sentence, without the " (os error N)" that std appends: the errno
/// travels in its own field.
pub fn describe(error: &io::Error) -> String {
    let text = error.to_string();
    match error.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map_or_else(|| text.clone(), str::to_string),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_paths_and_other_failures_map_to_kinds_with_errnos() {
        let missing = FsError::io("read", "/x", io::Error::from_raw_os_error(libc::ENOENT));
        let error = missing.to_agent_error();
        assert_eq!(error.kind, AgentErrorKind::PathNotFound);
        assert_eq!(error.errno, Some(libc::ENOENT));
        assert_eq!(error.message, "read /x: No such file or directory");
        let full = FsError::io(
            "write",
            "/data/x",
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        let error = full.to_agent_error();
        assert_eq!(error.kind, AgentErrorKind::Filesystem);
        assert_eq!(error.errno, Some(libc::ENOSPC));
        assert_eq!(error.message, "write /data/x: No space left on device");
        let invalid = FsError::Invalid("relative".into()).to_agent_error();
        assert_eq!(
            (invalid.kind, invalid.errno),
            (AgentErrorKind::InvalidRequest, None)
        );
        let cancelled = FsError::Cancelled.to_agent_error();
        assert_eq!(
            (cancelled.kind, cancelled.message.as_str()),
            (AgentErrorKind::Filesystem, "cancelled")
        );
    }
}

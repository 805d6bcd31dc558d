//! The supervisor's error type. The runtime maps every variant onto its own error (and so onto
//! a typed Python exception).

use msb_protocol::guest::AgentError;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("{0}")]
    InvalidConfig(String),
    #[error("no image named {0:?}: {1}")]
    ImageNotFound(String, String),
    #[error("sandbox {name:?} failed to start: {reason}")]
    Start { name: String, reason: String },
    /// Something a boot needs (QEMU, the guest kernel, virtiofsd) is missing.
    #[error("{0}; run `msb install` (or `await install()`)")]
    NotInstalled(String),
    /// Preparing a boot artifact (the initramfs) failed.
    #[error("install failed: {0}")]
    Install(String),
    #[error("{0}")]
    Accelerator(String),
    /// A published port's host address (`ADDRESS:PORT/PROTOCOL`) is bound by someone else.
    #[error("host port {address} is already in use")]
    PortInUse { address: String },
    /// A secret of the config has no value: neither the runtime nor a client gave one.
    #[error("secret {0} has no value: pass it again with secrets=[...] or give it a source")]
    SecretValueMissing(String),
    /// The network could not be set up.
    #[error("network: {0}")]
    Network(String),
    /// The guest agent or a helper did not behave as the protocol says.
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    State(#[from] msb_state::StateError),
    #[error("{0}")]
    Image(#[from] msb_images::ImageError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

impl SupervisorError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

pub type Result<T> = std::result::Result<T, SupervisorError>;

/// The agent's message with its errno, and the errno's meaning unless the message says it.
pub fn describe_agent_error(error: &AgentError) -> String {
    let Some(errno) = error.errno else {
        return error.message.clone();
    };
    let meaning = std::io::Error::from_raw_os_error(errno).to_string();
    let meaning = meaning.split(" (os error").next().unwrap_or_default();
    if error.message.contains(meaning) {
        format!("{} (errno {errno})", error.message)
    } else {
        format!("{} (errno {errno}: {meaning})", error.message)
    }
}

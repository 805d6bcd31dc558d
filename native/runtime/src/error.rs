//! The runtime's error type and its mapping onto the SDK's typed Python exceptions.

use msb_protocol::guest::{AgentError, AgentErrorKind};
use msb_supervisor::error::describe_agent_error;
use msb_supervisor::SupervisorError;
use pyo3::prelude::*;
use pyo3::types::PyModule;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{0}")]
    InvalidConfig(String),
    #[error("no sandbox named {0:?}")]
    SandboxNotFound(String),
    #[error("a sandbox named {0:?} already exists (pass replace=True to replace it)")]
    SandboxAlreadyExists(String),
    #[error("sandbox {name:?} is not running (status: {status})")]
    SandboxNotRunning { name: String, status: String },
    #[error("sandbox {0:?} is still running; stop it first")]
    SandboxStillRunning(String),
    #[error("sandbox {0:?} is already running")]
    SandboxAlreadyRunning(String),
    #[error("sandbox {name:?} failed to start: {reason}")]
    SandboxStart { name: String, reason: String },
    #[error("no image named {0:?}: {1}")]
    ImageNotFound(String, String),
    #[error("{0}")]
    ImagePullFailed(String),
    #[error("{0}")]
    RegistryAuth(String),
    #[error("pull of {0} cancelled")]
    PullCancelled(String),
    #[error("image {image:?} is used by {sandboxes}")]
    ImageInUse { image: String, sandboxes: String },
    #[error("volume {volume:?} is used by {sandboxes}; remove them first")]
    VolumeInUse { volume: String, sandboxes: String },
    /// A named volume is mounted read-write by one running sandbox at a time, or read-only by
    /// any number while none has it read-write.
    #[error("volume {volume:?} is mounted {how} by running sandbox {holder:?}")]
    VolumeBusy {
        volume: String,
        holder: String,
        how: &'static str,
    },
    /// A published port's host address is bound by another process.
    #[error("host port {address} is already in use")]
    PortInUse { address: String },
    /// A secret of the sandbox has no value to start or update it with.
    #[error("secret {0} has no value: pass it again with secrets=[...] or give it a source")]
    SecretValueMissing(String),
    #[error("{0}")]
    Network(String),
    /// The running sandbox's network refused a new policy: it is not our gateway (the
    /// slirp or passt baseline, or none at all), or it could not swap the policy in.
    #[error("{0}")]
    NetworkChange(String),
    #[error("{0}; run `msb install` (or `await install()`)")]
    NotInstalled(String),
    #[error("install failed: {0}")]
    Install(String),
    #[error("{0}")]
    Accelerator(String),
    #[error("{}", describe_agent_error(.0))]
    Agent(AgentError),
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

impl RuntimeError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }

    /// Name of the exception class in `microsandbox_tui.errors`.
    fn class_name(&self) -> &'static str {
        match self {
            Self::InvalidConfig(_) => "InvalidConfigError",
            Self::SandboxNotFound(_) => "SandboxNotFoundError",
            Self::SandboxAlreadyExists(_) => "SandboxAlreadyExistsError",
            Self::SandboxNotRunning { .. } => "SandboxNotRunningError",
            Self::SandboxStillRunning(_) | Self::SandboxAlreadyRunning(_) => {
                "SandboxStillRunningError"
            }
            Self::SandboxStart { .. } => "SandboxStartError",
            Self::ImageNotFound(..) => "ImageNotFoundError",
            Self::ImagePullFailed(_) => "ImagePullFailedError",
            Self::RegistryAuth(_) => "RegistryAuthError",
            Self::PullCancelled(_) => "PullCancelledError",
            Self::ImageInUse { .. } => "ImageInUseError",
            Self::VolumeInUse { .. } => "VolumeInUseError",
            Self::VolumeBusy { .. } => "VolumeBusyError",
            Self::PortInUse { .. } => "PortInUseError",
            Self::SecretValueMissing(_) => "SecretValueMissingError",
            Self::Network(_) => "MicrosandboxError",
            Self::NetworkChange(_) => "NetworkChangeError",
            Self::NotInstalled(_) => "RuntimeNotInstalledError",
            Self::Install(_) => "InstallError",
            Self::Accelerator(_) => "AcceleratorError",
            Self::Agent(error) => match error.kind {
                AgentErrorKind::CommandNotFound => "CommandNotFoundError",
                AgentErrorKind::NotExecutable => "CommandNotExecutableError",
                AgentErrorKind::InvalidCwd => "InvalidWorkingDirectoryError",
                AgentErrorKind::UnknownUser => "UnknownUserError",
                AgentErrorKind::InvalidRequest => "InvalidConfigError",
                AgentErrorKind::PathNotFound => "PathNotFoundError",
                AgentErrorKind::Filesystem => "FilesystemError",
                AgentErrorKind::VersionMismatch | AgentErrorKind::Internal => "ExecError",
            },
            Self::Protocol(_) => "AgentProtocolError",
            Self::State(msb_state::StateError::SandboxNotFound(_)) => "SandboxNotFoundError",
            Self::State(msb_state::StateError::SandboxExists(_)) => "SandboxAlreadyExistsError",
            Self::State(msb_state::StateError::VolumeNotFound(_)) => "VolumeNotFoundError",
            Self::State(msb_state::StateError::VolumeExists(_)) => "VolumeAlreadyExistsError",
            Self::State(_) => "StateError",
            Self::Io { .. } | Self::Image(_) => "MicrosandboxError",
        }
    }

    /// The guest errno a `FilesystemError` carries. A missing path is `ENOENT` by definition.
    fn errno(&self) -> Option<i32> {
        match self {
            Self::Agent(AgentError {
                kind: AgentErrorKind::PathNotFound,
                errno,
                ..
            }) => Some(errno.unwrap_or(libc::ENOENT)),
            Self::Agent(AgentError {
                kind: AgentErrorKind::Filesystem,
                errno,
                ..
            }) => *errno,
            _ => None,
        }
    }
}

impl From<SupervisorError> for RuntimeError {
    /// Every supervisor failure, as the runtime reports it (and so as the same Python
    /// exception class it was before the supervisor became a crate of its own).
    fn from(error: SupervisorError) -> Self {
        match error {
            SupervisorError::InvalidConfig(message) => Self::InvalidConfig(message),
            SupervisorError::ImageNotFound(name, hint) => Self::ImageNotFound(name, hint),
            SupervisorError::Start { name, reason } => Self::SandboxStart { name, reason },
            SupervisorError::NotInstalled(what) => Self::NotInstalled(what),
            SupervisorError::Install(reason) => Self::Install(reason),
            SupervisorError::Accelerator(reason) => Self::Accelerator(reason),
            SupervisorError::Protocol(reason) => Self::Protocol(reason),
            SupervisorError::PortInUse { address } => Self::PortInUse { address },
            SupervisorError::SecretValueMissing(env_var) => Self::SecretValueMissing(env_var),
            SupervisorError::Network(reason) => Self::Network(format!("network: {reason}")),
            SupervisorError::State(error) => Self::State(error),
            SupervisorError::Image(error) => Self::Image(error),
            SupervisorError::Io { context, source } => Self::Io { context, source },
        }
    }
}

impl From<RuntimeError> for PyErr {
    fn from(error: RuntimeError) -> Self {
        let message = error.to_string();
        Python::with_gil(|py| {
            let class = PyModule::import(py, "microsandbox_tui.errors")
                .and_then(|module| module.getattr(error.class_name()));
            let Ok(class) = class else {
                return pyo3::exceptions::PyRuntimeError::new_err(message);
            };
            let instance = match error.errno() {
                Some(errno) => class.call1((message, errno)),
                None => class.call1((message,)),
            };
            instance.map_or_else(|err| err, PyErr::from_value)
        })
    }
}

pub type Result<T> = std::result::Result<T, RuntimeError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(kind: AgentErrorKind, errno: Option<i32>) -> RuntimeError {
        RuntimeError::Agent(AgentError {
            kind,
            message: "rmdir /d".into(),
            errno,
        })
    }

    #[test]
    fn file_system_errors_carry_the_guest_errno() {
        let not_empty = agent(AgentErrorKind::Filesystem, Some(libc::ENOTEMPTY));
        assert_eq!(not_empty.class_name(), "FilesystemError");
        assert_eq!(not_empty.errno(), Some(libc::ENOTEMPTY));
        assert!(not_empty.to_string().starts_with("rmdir /d (errno 39: "));
        let missing = agent(AgentErrorKind::PathNotFound, None);
        assert_eq!(missing.class_name(), "PathNotFoundError");
        assert_eq!(missing.errno(), Some(libc::ENOENT));
    }

    #[test]
    fn the_errno_meaning_is_not_repeated() {
        let error = RuntimeError::Agent(AgentError {
            kind: AgentErrorKind::Filesystem,
            message: "write /x: No space left on device".into(),
            errno: Some(libc::ENOSPC),
        });
        assert_eq!(
            error.to_string(),
            "write /x: No space left on device (errno 28)"
        );
    }

    #[test]
    fn every_supervisor_error_keeps_its_exception_class() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let cases = [
            (
                SupervisorError::InvalidConfig("x".into()),
                "InvalidConfigError",
            ),
            (
                SupervisorError::ImageNotFound("i".into(), "h".into()),
                "ImageNotFoundError",
            ),
            (
                SupervisorError::Start {
                    name: "a".into(),
                    reason: "r".into(),
                },
                "SandboxStartError",
            ),
            (
                SupervisorError::NotInstalled("k".into()),
                "RuntimeNotInstalledError",
            ),
            (SupervisorError::Install("k".into()), "InstallError"),
            (SupervisorError::Accelerator("k".into()), "AcceleratorError"),
            (SupervisorError::Protocol("p".into()), "AgentProtocolError"),
            (
                SupervisorError::PortInUse {
                    address: "127.0.0.1:8080/tcp".into(),
                },
                "PortInUseError",
            ),
            (SupervisorError::Network("n".into()), "MicrosandboxError"),
            (
                SupervisorError::SecretValueMissing("OPENAI_API_KEY".into()),
                "SecretValueMissingError",
            ),
            (
                SupervisorError::State(msb_state::StateError::SandboxNotFound("a".into())),
                "SandboxNotFoundError",
            ),
            (
                SupervisorError::State(msb_state::StateError::Corrupt("c".into())),
                "StateError",
            ),
            (
                SupervisorError::Image(msb_images::ImageError::Io {
                    path: "c".into(),
                    source: io(),
                }),
                "MicrosandboxError",
            ),
            (
                SupervisorError::Io {
                    context: "c".into(),
                    source: io(),
                },
                "MicrosandboxError",
            ),
        ];
        for (error, class) in cases {
            let message = error.to_string();
            let mapped = RuntimeError::from(error);
            assert_eq!(mapped.class_name(), class, "{message}");
            assert_eq!(mapped.to_string(), message, "the message is kept");
        }
    }

    #[test]
    fn a_refused_policy_change_has_its_own_class() {
        let refused = RuntimeError::NetworkChange("this sandbox's network cannot change".into());
        assert_eq!(refused.class_name(), "NetworkChangeError");
        assert_eq!(refused.to_string(), "this sandbox's network cannot change");
    }

    #[test]
    fn other_errors_have_no_errno() {
        let internal = agent(AgentErrorKind::Internal, Some(libc::EIO));
        assert_eq!(internal.class_name(), "ExecError");
        assert_eq!(internal.errno(), None);
        assert_eq!(agent(AgentErrorKind::Filesystem, None).errno(), None);
    }
}

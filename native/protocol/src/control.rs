//! Messages between an SDK client and a sandbox's supervisor, in frames flagged
//! [`crate::FLAG_CONTROL`]. Guest messages travel on the same connection without the flag.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

/// Client → supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Supervisor and VM facts.
    Status,
    /// Graceful stop: the agent shuts the guest down; QEMU is killed if it has not exited
    /// after `timeout_ms`. With `wait`, the reply comes once the VM is gone; without, at once.
    Stop { timeout_ms: u64, wait: bool },
    /// Immediate stop: QEMU is killed.
    Kill,
    /// Freezes the VM's CPUs (QMP `stop`).
    Pause,
    /// Thaws a paused VM (QMP `cont`).
    Resume,
    /// The sandbox no longer dies with the process that created it.
    Detach,
    /// The exec sessions still running.
    ListSessions,
    /// Takes over a running session: its recent output is replayed, then live frames follow
    /// under this request's id, and stdin, resize and signal frames sent under this id reach
    /// it. A session has one client at a time; attaching moves it.
    Attach { session: u32 },
    /// Replaces the running sandbox's network policy: `policy` is the JSON of the network
    /// spec's policy (a preset name or a custom policy). New flows and DNS queries are decided
    /// by it at once, and open flows it denies are closed.
    SetNetworkPolicy { policy: String },
    /// Replaces the running sandbox's secrets with a whole new set (see [`SecretsUpdate`]).
    /// New flows use it at once, open intercepted flows from their next request.
    SetSecrets { secrets: SecretsUpdate },
}

/// A sandbox's new set of secrets, as the JSON text
/// `[{"config": <SecretConfig>, "value": "..." | null}, ...]`, where a `null` value keeps the
/// running value of that environment variable. It holds values: its `Debug` shows none of it,
/// and its text is zeroed when dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretsUpdate(String);

impl SecretsUpdate {
    pub fn new(json: String) -> Self {
        Self(json)
    }

    /// The JSON text, for the one place that parses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretsUpdate {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SecretsUpdate(<redacted>)")
    }
}

impl Drop for SecretsUpdate {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Supervisor → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlResponse {
    Status(SupervisorStatus),
    /// The request was carried out.
    Done,
    Error {
        message: String,
    },
    /// The first frame for a guest exec request: the id of the session it started, under which
    /// it can be listed and re-attached.
    SessionOpened {
        session: u32,
    },
    Sessions {
        sessions: Vec<SessionInfo>,
    },
}

/// A running exec session, as the supervisor tracks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session: u32,
    pub program: String,
    pub args: Vec<String>,
    pub tty: bool,
    pub started_at_ms: u64,
    /// Whether a client currently receives its output.
    pub attached: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorStatus {
    pub supervisor_pid: u32,
    pub vmm_pid: u32,
    pub accelerator: String,
    pub agent_version: String,
    pub kernel_release: String,
    /// Milliseconds from starting QEMU to the agent's hello.
    pub boot_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secrets_update_survives_the_wire_and_its_debug_shows_no_value() {
        let json = r#"[{"config": {"env_var": "KEY"}, "value": "hunter2-value"}]"#;
        let request = ControlRequest::SetSecrets {
            secrets: SecretsUpdate::new(json.into()),
        };
        let debug = format!("{request:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let frame = crate::Frame::new(7, crate::FLAG_CONTROL, &request).unwrap();
        let decoded: ControlRequest = frame.decode().unwrap();
        assert_eq!(decoded, request);
        let ControlRequest::SetSecrets { secrets } = decoded else {
            unreachable!("decoded as the request sent");
        };
        assert_eq!(secrets.expose(), json);
    }
}

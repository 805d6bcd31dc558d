//! Messages between an SDK client and a sandbox's supervisor, in frames flagged
//! [`crate::FLAG_CONTROL`]. Guest messages travel on the same connection without the flag.

use serde::{Deserialize, Serialize};

/// Client → supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ControlRequest {
    /// Supervisor and VM facts.
    Status,
    /// Graceful stop: the agent shuts the guest down; QEMU is killed if it has not exited
    /// after `timeout_ms`.
    Stop { timeout_ms: u64 },
    /// Immediate stop: QEMU is killed.
    Kill,
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

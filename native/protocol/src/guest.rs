//! Messages between the host and the guest agent.
//!
//! A request id is chosen by the host. Every agent message about that request carries the same
//! id; the last one carries [`crate::FLAG_END`]. Id 0 is reserved for the hello handshake.

use serde::{Deserialize, Serialize};

/// Request id of the hello handshake, the first frame in each direction.
pub const HELLO_ID: u32 = 0;

/// Host → agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HostMessage {
    /// First frame of a connection. Carries the host's wall clock, because the guest has no
    /// RTC.
    Hello {
        version: u32,
        unix_time_ns: u64,
    },
    Ping,
    /// Starts a process. Stdin, resize and signal frames for it use the same request id.
    Exec(ExecRequest),
    Stdin {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// End of input for the process (EOF on its stdin; for a PTY, the terminal's EOF key).
    CloseStdin,
    /// Delivers a signal to the process group of the request's process.
    Signal {
        signal: i32,
    },
    /// New terminal size for a PTY process.
    Resize {
        rows: u16,
        cols: u16,
    },
    /// Orderly shutdown: the agent stops processes, syncs and unmounts file systems, then
    /// powers the VM off.
    Shutdown,
    /// The guest's view of its resources (answered with `Stats`).
    Stats,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Program to run; looked up in `PATH` (from `env`, else a default) when it has no `/`.
    pub program: String,
    pub args: Vec<String>,
    /// Environment of the process, on top of the agent's defaults (`PATH`, `HOME`, `TERM`).
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    /// Wall-clock limit; on expiry the agent kills the process group with SIGKILL and reports
    /// `timed_out`.
    pub timeout_ms: Option<u64>,
    /// Keep stdin open for `Stdin` frames; otherwise stdin is `/dev/null`.
    pub stdin: bool,
    /// Run on a new pseudo-terminal of this size instead of pipes. Output then arrives as
    /// `Stdout` only.
    pub tty: Option<TerminalSize>,
    /// User name or numeric uid (optionally `user:group`) to run as.
    pub user: Option<String>,
    pub rlimits: Vec<ResourceLimit>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
}

/// A POSIX resource limit, applied with `setrlimit` before the program starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimit {
    /// Lower-case name without the `RLIMIT_` prefix: `nofile`, `cpu`, `as`, ...
    pub resource: String,
    pub soft: u64,
    pub hard: u64,
}

/// Agent → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    Hello {
        version: u32,
        agent_version: String,
        kernel_release: String,
    },
    Pong,
    Started {
        pid: u32,
    },
    Stdout {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    Stderr {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// The process ended (always with [`crate::FLAG_END`]). Exactly one of `code` and `signal`
    /// is set.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        timed_out: bool,
    },
    /// The request failed (always with [`crate::FLAG_END`]).
    Error(AgentError),
    /// Sent just before the agent powers the VM off.
    ShutdownAck,
    /// Answer to `Stats`, from the guest's /proc/meminfo.
    Stats {
        mem_total_bytes: u64,
        mem_available_bytes: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentError {
    pub kind: AgentErrorKind,
    pub message: String,
    /// The guest's errno, when the failure came from a system call.
    pub errno: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentErrorKind {
    /// The program does not exist in the guest.
    CommandNotFound,
    /// The program exists but cannot be executed (mode, format).
    NotExecutable,
    /// The working directory does not exist or is not a directory.
    InvalidCwd,
    /// The user to run as does not exist in the guest.
    UnknownUser,
    /// The request makes no sense (unknown id, bad rlimit name, ...).
    InvalidRequest,
    /// The peer speaks another protocol version.
    VersionMismatch,
    /// Any other failure of the agent.
    Internal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Frame;

    #[test]
    fn exec_request_round_trips() {
        let request = HostMessage::Exec(ExecRequest {
            program: "echo".into(),
            args: vec!["hi".into()],
            env: vec![("A".into(), "b".into())],
            cwd: Some("/tmp".into()),
            timeout_ms: Some(1000),
            stdin: true,
            tty: Some(TerminalSize { rows: 24, cols: 80 }),
            user: None,
            rlimits: vec![ResourceLimit {
                resource: "nofile".into(),
                soft: 64,
                hard: 64,
            }],
        });
        let frame = Frame::new(3, 0, &request).unwrap();
        assert_eq!(frame.decode::<HostMessage>().unwrap(), request);
    }

    #[test]
    fn binary_output_is_compact() {
        let data = vec![0xffu8; 4096];
        let frame = Frame::new(1, 0, &AgentMessage::Stdout { data }).unwrap();
        assert!(
            frame.body.len() < 4096 + 32,
            "bytes must not be encoded as an array of ints"
        );
    }
}

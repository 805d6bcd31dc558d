//! A client connection to a sandbox's supervisor, as the SDK uses it.
//!
//! One reader thread demultiplexes incoming frames by request id into per-request queues, so
//! several Python threads can run commands over the same connection at once.

use crate::error::{Result, RuntimeError};
use crate::records;
use msb_protocol::control::{ControlRequest, ControlResponse, SecretsUpdate, SessionInfo};
use msb_protocol::guest::{AgentMessage, ExecRequest, HostMessage, TerminalSize};
use msb_protocol::{Frame, FLAG_CONTROL};
use msb_supervisor::paths::SandboxFiles;
use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Pending = Arc<Mutex<Option<HashMap<u32, Sender<Frame>>>>>;

pub struct Connection {
    name: String,
    writer: Mutex<UnixStream>,
    /// `None` once the supervisor closed the connection.
    pending: Pending,
    next_id: AtomicU32,
}

/// Collected outcome of a command.
#[derive(Default)]
pub struct ExecOutcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
}

/// One event of a running command.
pub enum ExecEvent {
    Started {
        pid: u32,
    },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
        timed_out: bool,
    },
}

const CLOSED: &str = "the connection to the sandbox's supervisor closed";

impl Connection {
    pub fn open(name: &str) -> Result<Arc<Self>> {
        let files = SandboxFiles::new(name)?;
        let stream = UnixStream::connect(files.control_socket()).map_err(|error| {
            RuntimeError::SandboxNotRunning {
                name: name.to_string(),
                status: format!("its supervisor does not answer: {error}"),
            }
        })?;
        Self::over(name, stream)
    }

    /// A connection over an already connected stream to the supervisor of `name`.
    pub(crate) fn over(name: &str, stream: UnixStream) -> Result<Arc<Self>> {
        let reader = stream
            .try_clone()
            .map_err(RuntimeError::io("control socket"))?;
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        spawn_reader(reader, pending.clone());
        Ok(Arc::new(Self {
            name: name.to_string(),
            writer: Mutex::new(stream),
            pending,
            next_id: AtomicU32::new(1),
        }))
    }

    pub(crate) fn start(
        &self,
        flags: u8,
        message: &impl serde::Serialize,
    ) -> Result<(u32, Receiver<Frame>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = channel();
        match self.pending.lock().unwrap().as_mut() {
            Some(pending) => pending.insert(id, sender),
            None => return Err(self.closed()),
        };
        self.send(id, flags, message)?;
        Ok((id, receiver))
    }

    pub(crate) fn send(&self, id: u32, flags: u8, message: &impl serde::Serialize) -> Result<()> {
        let frame =
            Frame::new(id, flags, message).map_err(|e| RuntimeError::Protocol(e.to_string()))?;
        frame
            .write_to(&mut *self.writer.lock().unwrap())
            .map_err(|_| self.closed())
    }

    /// Starts a command and returns its event stream.
    pub fn exec_stream(self: &Arc<Self>, request: ExecRequest) -> Result<ExecStream> {
        let (id, frames) = self.start(0, &HostMessage::Exec(request))?;
        ExecStream::opened(self.clone(), id, frames)
    }

    /// Takes over a running session (see `ControlRequest::Attach`).
    pub fn attach(self: &Arc<Self>, session: u32) -> Result<ExecStream> {
        let (id, frames) = self.start(FLAG_CONTROL, &ControlRequest::Attach { session })?;
        ExecStream::opened(self.clone(), id, frames)
    }

    pub fn exec(self: &Arc<Self>, request: ExecRequest) -> Result<ExecOutcome> {
        let stream = self.exec_stream(request)?;
        let mut outcome = ExecOutcome::default();
        while let Some(event) = stream.next_event(None)? {
            match event {
                ExecEvent::Started { .. } => {}
                ExecEvent::Stdout(data) => outcome.stdout.extend_from_slice(&data),
                ExecEvent::Stderr(data) => outcome.stderr.extend_from_slice(&data),
                ExecEvent::Exited {
                    code,
                    signal,
                    timed_out,
                } => {
                    outcome.exit_code = code;
                    outcome.signal = signal;
                    outcome.timed_out = timed_out;
                }
            }
        }
        Ok(outcome)
    }

    /// Round trip to the guest agent.
    pub fn ping(&self) -> Result<Duration> {
        let started = Instant::now();
        let (_, frames) = self.start(0, &HostMessage::Ping)?;
        match decode_agent(&frames.recv().map_err(|_| self.closed())?)? {
            AgentMessage::Pong => Ok(started.elapsed()),
            other => Err(unexpected(&other)),
        }
    }

    pub fn control(&self, request: ControlRequest) -> Result<ControlResponse> {
        let (_, frames) = self.start(FLAG_CONTROL, &request)?;
        let frame = frames.recv().map_err(|_| self.closed())?;
        match decode_control(&frame)? {
            ControlResponse::Error { message } => Err(RuntimeError::Protocol(message)),
            other => Ok(other),
        }
    }

    pub fn sessions(&self) -> Result<Vec<SessionInfo>> {
        match self.control(ControlRequest::ListSessions)? {
            ControlResponse::Sessions { sessions } => Ok(sessions),
            other => Err(RuntimeError::Protocol(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Hands the running gateway a new policy (`policy_json`, as the stored config holds
    /// it). A refusal that names the policy (`network.policy: ...`) is a bad policy; any
    /// other is a network that cannot change its policy.
    pub fn set_network_policy(&self, policy_json: &str) -> Result<()> {
        let request = ControlRequest::SetNetworkPolicy {
            policy: policy_json.to_owned(),
        };
        let (_, frames) = self.start(FLAG_CONTROL, &request)?;
        let frame = frames.recv().map_err(|_| self.closed())?;
        match decode_control(&frame)? {
            ControlResponse::Done => Ok(()),
            ControlResponse::Error { message } => Err(policy_refusal(message)),
            other => Err(RuntimeError::Protocol(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Hands the running gateway a new set of secrets (`update_json`, see
    /// [`SecretsUpdate`]). A network that cannot take secrets is a `NetworkChange`; any other
    /// refusal names what was wrong with the set.
    pub fn set_secrets(&self, update_json: &str) -> Result<()> {
        let request = ControlRequest::SetSecrets {
            secrets: SecretsUpdate::new(update_json.to_owned()),
        };
        let (_, frames) = self.start(FLAG_CONTROL, &request)?;
        let frame = frames.recv().map_err(|_| self.closed())?;
        match decode_control(&frame)? {
            ControlResponse::Done => Ok(()),
            ControlResponse::Error { message } if message.starts_with(NO_SECRETS_PREFIX) => {
                Err(RuntimeError::NetworkChange(message))
            }
            ControlResponse::Error { message } => Err(RuntimeError::InvalidConfig(message)),
            other => Err(RuntimeError::Protocol(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// Stop and kill end the VM, and the supervisor closes the connection when it exits; that
    /// close counts as done as well.
    pub fn stop_vm(&self, request: ControlRequest) -> Result<()> {
        match self.control(request) {
            Ok(_) => Ok(()),
            Err(RuntimeError::Protocol(message)) if message == CLOSED => Ok(()),
            Err(RuntimeError::SandboxNotRunning { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// The supervisor went away: because the sandbox stopped (a typed "not running"), or
    /// because something broke.
    pub(crate) fn closed(&self) -> RuntimeError {
        match records::get(&self.name) {
            Ok(record) if !record.status.is_live() => RuntimeError::SandboxNotRunning {
                name: self.name.clone(),
                status: record.status.as_str().to_string(),
            },
            _ => RuntimeError::Protocol(CLOSED.into()),
        }
    }

    pub fn close(&self) {
        let _ = self
            .writer
            .lock()
            .unwrap()
            .shutdown(std::net::Shutdown::Both);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

/// A running command (or an attached session): its events, and its input side.
pub struct ExecStream {
    connection: Arc<Connection>,
    id: u32,
    session: u32,
    frames: Mutex<Receiver<Frame>>,
    finished: Mutex<bool>,
}

impl ExecStream {
    /// Waits for the supervisor's `SessionOpened` (or a refusal) before returning.
    fn opened(connection: Arc<Connection>, id: u32, frames: Receiver<Frame>) -> Result<Self> {
        let first = frames.recv().map_err(|_| connection.closed())?;
        let session = if first.flags & FLAG_CONTROL != 0 {
            match decode_control(&first)? {
                ControlResponse::SessionOpened { session } => session,
                ControlResponse::Error { message } => {
                    return Err(RuntimeError::InvalidConfig(message))
                }
                other => {
                    return Err(RuntimeError::Protocol(format!(
                        "unexpected reply {other:?}"
                    )))
                }
            }
        } else {
            // The agent refused the command before the supervisor could open a session.
            return Err(match decode_agent(&first)? {
                AgentMessage::Error(error) => RuntimeError::Agent(error),
                other => unexpected(&other),
            });
        };
        Ok(Self {
            connection,
            id,
            session,
            frames: Mutex::new(frames),
            finished: Mutex::new(false),
        })
    }

    pub fn session(&self) -> u32 {
        self.session
    }

    /// The next event, or `None` once the command has exited. With a `timeout`, `Ok(None)`
    /// can also mean that nothing arrived in time; [`ExecStream::is_finished`] tells which.
    pub fn next_event(&self, timeout: Option<Duration>) -> Result<Option<ExecEvent>> {
        let mut finished = self.finished.lock().unwrap();
        if *finished {
            return Ok(None);
        }
        let frames = self.frames.lock().unwrap();
        let frame = match timeout {
            None => frames.recv().map_err(|_| self.connection.closed())?,
            Some(timeout) => match frames.recv_timeout(timeout) {
                Ok(frame) => frame,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => return Ok(None),
                Err(_) => return Err(self.connection.closed()),
            },
        };
        if frame.flags & FLAG_CONTROL != 0 {
            *finished = true;
            return Err(match decode_control(&frame)? {
                ControlResponse::Error { message } => RuntimeError::Protocol(message),
                other => RuntimeError::Protocol(format!("unexpected reply {other:?}")),
            });
        }
        Ok(Some(match decode_agent(&frame)? {
            AgentMessage::Started { pid } => ExecEvent::Started { pid },
            AgentMessage::Stdout { data } => ExecEvent::Stdout(data),
            AgentMessage::Stderr { data } => ExecEvent::Stderr(data),
            AgentMessage::Exited {
                code,
                signal,
                timed_out,
            } => {
                *finished = true;
                ExecEvent::Exited {
                    code,
                    signal,
                    timed_out,
                }
            }
            AgentMessage::Error(error) => {
                *finished = true;
                return Err(RuntimeError::Agent(error));
            }
            other => return Err(unexpected(&other)),
        }))
    }

    pub fn is_finished(&self) -> bool {
        *self.finished.lock().unwrap()
    }

    pub fn write_stdin(&self, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(msb_protocol::MAX_PAYLOAD_CHUNK) {
            self.connection.send(
                self.id,
                0,
                &HostMessage::Stdin {
                    data: chunk.to_vec(),
                },
            )?;
        }
        Ok(())
    }

    pub fn close_stdin(&self) -> Result<()> {
        self.connection.send(self.id, 0, &HostMessage::CloseStdin)
    }

    pub fn signal(&self, signal: i32) -> Result<()> {
        self.connection
            .send(self.id, 0, &HostMessage::Signal { signal })
    }

    pub fn resize(&self, size: TerminalSize) -> Result<()> {
        self.connection.send(
            self.id,
            0,
            &HostMessage::Resize {
                rows: size.rows,
                cols: size.cols,
            },
        )
    }
}

/// The typed error of a supervisor's refusal of a new network policy.
fn policy_refusal(message: String) -> RuntimeError {
    if message.starts_with(BAD_POLICY_PREFIX) {
        RuntimeError::InvalidConfig(message)
    } else {
        RuntimeError::NetworkChange(message)
    }
}

/// How the supervisor's message begins when its network cannot take secrets.
const NO_SECRETS_PREFIX: &str = "this sandbox's network cannot change its secrets";

/// How the supervisor's message for a policy it cannot parse begins.
const BAD_POLICY_PREFIX: &str = "network.policy:";

pub(crate) fn decode_agent(frame: &Frame) -> Result<AgentMessage> {
    frame
        .decode()
        .map_err(|e| RuntimeError::Protocol(format!("malformed agent message: {e}")))
}

fn decode_control(frame: &Frame) -> Result<ControlResponse> {
    frame
        .decode()
        .map_err(|e| RuntimeError::Protocol(format!("malformed supervisor message: {e}")))
}

pub(crate) fn unexpected(message: &AgentMessage) -> RuntimeError {
    RuntimeError::Protocol(format!("unexpected agent message {message:?}"))
}

fn spawn_reader(mut reader: UnixStream, pending: Pending) {
    std::thread::spawn(move || {
        while let Ok(frame) = Frame::read_from(&mut reader) {
            let mut guard = pending.lock().unwrap();
            let Some(map) = guard.as_mut() else { break };
            let end = frame.is_end();
            let id = frame.id;
            if let Some(sender) = map.get(&id) {
                let _ = sender.send(frame);
            }
            if end {
                map.remove(&id);
            }
        }
        // Dropping every sender wakes all waiters with a disconnect.
        pending.lock().unwrap().take();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_policy_is_a_bad_policy_or_a_network_that_cannot_change() {
        let bad = policy_refusal("network.policy: rules[0].port: 0 is not a port".into());
        assert!(matches!(bad, RuntimeError::InvalidConfig(_)), "{bad:?}");
        for message in [
            "this sandbox's network cannot change its policy: it runs the slirp baseline",
            "this supervisor cannot change a network policy yet",
        ] {
            let refused = policy_refusal(message.into());
            assert!(
                matches!(refused, RuntimeError::NetworkChange(_)),
                "{refused:?}"
            );
            assert_eq!(refused.to_string(), message);
        }
    }
}

//! A client connection to a sandbox's supervisor, as the SDK uses it.
//!
//! One reader thread demultiplexes incoming frames by request id into per-request queues, so
//! several Python threads can run commands over the same connection at once.

use crate::error::{Result, RuntimeError};
use crate::paths::SandboxFiles;
use msb_protocol::control::{ControlRequest, ControlResponse};
use msb_protocol::guest::{AgentMessage, ExecRequest, HostMessage};
use msb_protocol::{Frame, FLAG_CONTROL};
use std::collections::HashMap;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Instant;

type Pending = Arc<Mutex<Option<HashMap<u32, Sender<Frame>>>>>;

pub struct Connection {
    name: String,
    writer: Mutex<UnixStream>,
    /// `None` once the supervisor closed the connection.
    pending: Pending,
    next_id: AtomicU32,
}

/// Collected outcome of a command.
pub struct ExecOutcome {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
}

impl Connection {
    pub fn open(name: &str) -> Result<Self> {
        let files = SandboxFiles::new(name)?;
        let stream = UnixStream::connect(files.control_socket()).map_err(|error| {
            RuntimeError::SandboxNotRunning {
                name: name.to_string(),
                status: format!("its supervisor does not answer: {error}"),
            }
        })?;
        let reader = stream
            .try_clone()
            .map_err(RuntimeError::io("control socket"))?;
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        spawn_reader(reader, pending.clone());
        Ok(Self {
            name: name.to_string(),
            writer: Mutex::new(stream),
            pending,
            next_id: AtomicU32::new(1),
        })
    }

    fn start(&self, flags: u8, message: &impl serde::Serialize) -> Result<(u32, Receiver<Frame>)> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = channel();
        match self.pending.lock().unwrap().as_mut() {
            Some(pending) => pending.insert(id, sender),
            None => return Err(self.closed()),
        };
        let frame =
            Frame::new(id, flags, message).map_err(|e| RuntimeError::Protocol(e.to_string()))?;
        frame
            .write_to(&mut *self.writer.lock().unwrap())
            .map_err(|_| self.closed())?;
        Ok((id, receiver))
    }

    pub fn exec(&self, request: ExecRequest) -> Result<ExecOutcome> {
        let (_, frames) = self.start(0, &HostMessage::Exec(request))?;
        let mut outcome = ExecOutcome {
            stdout: Vec::new(),
            stderr: Vec::new(),
            exit_code: None,
            signal: None,
            timed_out: false,
        };
        loop {
            let frame = frames.recv().map_err(|_| self.closed())?;
            match decode_agent(&frame)? {
                AgentMessage::Started { .. } => {}
                AgentMessage::Stdout { data } => outcome.stdout.extend_from_slice(&data),
                AgentMessage::Stderr { data } => outcome.stderr.extend_from_slice(&data),
                AgentMessage::Exited {
                    code,
                    signal,
                    timed_out,
                } => {
                    outcome.exit_code = code;
                    outcome.signal = signal;
                    outcome.timed_out = timed_out;
                    return Ok(outcome);
                }
                AgentMessage::Error(error) => return Err(RuntimeError::Agent(error)),
                other => return Err(unexpected(&other)),
            }
        }
    }

    /// Round trip to the guest agent.
    pub fn ping(&self) -> Result<std::time::Duration> {
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
        let response: ControlResponse = frame
            .decode()
            .map_err(|e| RuntimeError::Protocol(e.to_string()))?;
        match response {
            ControlResponse::Error { message } => Err(RuntimeError::Protocol(message)),
            other => Ok(other),
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
    fn closed(&self) -> RuntimeError {
        match crate::sandboxes::get(&self.name) {
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

const CLOSED: &str = "the connection to the sandbox's supervisor closed";

fn decode_agent(frame: &Frame) -> Result<AgentMessage> {
    frame
        .decode()
        .map_err(|e| RuntimeError::Protocol(format!("malformed agent message: {e}")))
}

fn unexpected(message: &AgentMessage) -> RuntimeError {
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

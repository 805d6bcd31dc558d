//! The agent channel shared by many clients.
//!
//! Each client numbers its requests in its own id space; the relay gives each request a
//! channel-wide agent id and routes the agent's frames back under the client's id. Guest
//! message bodies are forwarded without decoding them.

use super::Lifecycle;
use crate::error::Result;
use msb_protocol::control::{ControlRequest, ControlResponse, SupervisorStatus};
use msb_protocol::guest::{HostMessage, HELLO_ID};
use msb_protocol::{Frame, FrameError, FLAG_CONTROL, FLAG_END};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a signal-triggered stop waits for the guest before killing it.
pub const STOP_TIMEOUT_ON_SIGNAL: Duration = Duration::from_secs(10);
/// A kill takes effect at once; this only bounds the wait for QEMU's exit to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);

struct Client {
    writer: Mutex<UnixStream>,
    /// Client request id → agent request id, for requests still running.
    sessions: Mutex<HashMap<u32, u32>>,
}

impl Client {
    fn send(&self, frame: &Frame) -> std::result::Result<(), FrameError> {
        let mut writer = self.writer.lock().unwrap();
        frame.write_to(&mut *writer)
    }
}

struct Route {
    client: Arc<Client>,
    client_id: u32,
}

pub struct Relay {
    agent_writer: Mutex<UnixStream>,
    agent_reader: Mutex<Option<UnixStream>>,
    routes: Mutex<HashMap<u32, Route>>,
    next_agent_id: AtomicU32,
    status: SupervisorStatus,
    lifecycle: Arc<Lifecycle>,
}

impl Relay {
    pub fn new(
        agent: UnixStream,
        status: SupervisorStatus,
        lifecycle: Arc<Lifecycle>,
    ) -> Result<Arc<Self>> {
        let reader = agent
            .try_clone()
            .map_err(crate::error::RuntimeError::io("agent socket"))?;
        Ok(Arc::new(Self {
            agent_writer: Mutex::new(agent),
            agent_reader: Mutex::new(Some(reader)),
            routes: Mutex::default(),
            next_agent_id: AtomicU32::new(HELLO_ID + 1),
            status,
            lifecycle,
        }))
    }

    fn allocate_agent_id(&self) -> u32 {
        loop {
            let id = self.next_agent_id.fetch_add(1, Ordering::Relaxed);
            if id != HELLO_ID {
                return id;
            }
        }
    }

    fn send_to_agent(&self, frame: &Frame) -> std::result::Result<(), FrameError> {
        let mut writer = self.agent_writer.lock().unwrap();
        frame.write_to(&mut *writer)
    }

    /// Asks the agent for an orderly shutdown, recording why the VM stops.
    pub fn shutdown_guest(&self, reason: &str) {
        self.lifecycle.request(reason);
        let frame = Frame::new(self.allocate_agent_id(), FLAG_END, &HostMessage::Shutdown)
            .expect("tiny message");
        if self.send_to_agent(&frame).is_err() {
            self.lifecycle.kill_vm(reason);
        }
    }

    pub fn spawn_agent_reader(self: &Arc<Self>) {
        let relay = self.clone();
        let mut reader = self
            .agent_reader
            .lock()
            .unwrap()
            .take()
            .expect("agent reader started once");
        std::thread::spawn(move || {
            // Ends when QEMU closes the channel; the main thread then sees QEMU's exit.
            while let Ok(frame) = Frame::read_from(&mut reader) {
                relay.route_from_agent(frame);
            }
        });
    }

    fn route_from_agent(&self, frame: Frame) {
        let route = {
            let mut routes = self.routes.lock().unwrap();
            if frame.is_end() {
                routes.remove(&frame.id)
            } else {
                routes.get(&frame.id).map(|route| Route {
                    client: route.client.clone(),
                    client_id: route.client_id,
                })
            }
        };
        let Some(route) = route else { return };
        if frame.is_end() {
            route
                .client
                .sessions
                .lock()
                .unwrap()
                .remove(&route.client_id);
        }
        let forwarded = Frame {
            id: route.client_id,
            flags: frame.flags,
            body: frame.body,
        };
        // A client that went away is cleaned up by its own thread.
        let _ = route.client.send(&forwarded);
    }

    pub fn spawn_acceptor(self: &Arc<Self>, listener: UnixListener) {
        let relay = self.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let relay = relay.clone();
                std::thread::spawn(move || relay.serve_client(stream));
            }
        });
    }

    fn serve_client(self: Arc<Self>, stream: UnixStream) {
        let Ok(writer) = stream.try_clone() else {
            return;
        };
        let client = Arc::new(Client {
            writer: Mutex::new(writer),
            sessions: Mutex::default(),
        });
        let mut reader = stream;
        while let Ok(frame) = Frame::read_from(&mut reader) {
            let handled = if frame.flags & FLAG_CONTROL != 0 {
                self.handle_control(&client, &frame)
            } else {
                self.forward_to_agent(&client, frame)
            };
            if handled.is_err() {
                break;
            }
        }
        self.drop_client(&client);
    }

    fn forward_to_agent(
        &self,
        client: &Arc<Client>,
        frame: Frame,
    ) -> std::result::Result<(), FrameError> {
        if frame.id == HELLO_ID {
            // The handshake belongs to the supervisor alone.
            return Ok(());
        }
        let agent_id = {
            let mut sessions = client.sessions.lock().unwrap();
            match sessions.get(&frame.id) {
                Some(id) => *id,
                None => {
                    let id = self.allocate_agent_id();
                    sessions.insert(frame.id, id);
                    self.routes.lock().unwrap().insert(
                        id,
                        Route {
                            client: client.clone(),
                            client_id: frame.id,
                        },
                    );
                    id
                }
            }
        };
        self.send_to_agent(&Frame {
            id: agent_id,
            flags: frame.flags,
            body: frame.body,
        })
    }

    /// Processes of a client that disconnected are killed: nobody could read their output.
    fn drop_client(&self, client: &Arc<Client>) {
        let sessions: Vec<u32> = client
            .sessions
            .lock()
            .unwrap()
            .drain()
            .map(|(_, agent)| agent)
            .collect();
        let mut routes = self.routes.lock().unwrap();
        for agent_id in sessions {
            routes.remove(&agent_id);
            if let Ok(frame) = Frame::new(
                agent_id,
                0,
                &HostMessage::Signal {
                    signal: libc::SIGKILL,
                },
            ) {
                let _ = self.send_to_agent(&frame);
            }
        }
    }

    fn handle_control(
        &self,
        client: &Arc<Client>,
        frame: &Frame,
    ) -> std::result::Result<(), FrameError> {
        let response = match frame.decode::<ControlRequest>() {
            Ok(ControlRequest::Status) => ControlResponse::Status(self.status.clone()),
            Ok(ControlRequest::Stop { timeout_ms }) => {
                self.shutdown_guest("stopped");
                return self.reply_when_exited(client, frame.id, Duration::from_millis(timeout_ms));
            }
            Ok(ControlRequest::Kill) => {
                self.lifecycle.kill_vm("killed");
                return self.reply_when_exited(client, frame.id, KILL_WAIT);
            }
            Err(error) => ControlResponse::Error {
                message: format!("bad control request: {error}"),
            },
        };
        client.send(&Frame::new(frame.id, FLAG_CONTROL | FLAG_END, &response)?)
    }

    fn reply_when_exited(
        &self,
        client: &Arc<Client>,
        id: u32,
        timeout: Duration,
    ) -> std::result::Result<(), FrameError> {
        self.lifecycle.wait_exited(timeout);
        let sent = Frame::new(id, FLAG_CONTROL | FLAG_END, &ControlResponse::Done)
            .and_then(|frame| client.send(&frame));
        let _ = client.writer.lock().unwrap().flush();
        self.lifecycle.reply_sent();
        sent
    }
}

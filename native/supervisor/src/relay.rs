//! The agent channel shared by many clients.
//!
//! Each client numbers its requests in its own id space; the relay gives each request a
//! channel-wide agent id (which is also the session id) and routes the agent's frames back
//! under the client's id. Output bodies are forwarded without decoding them.

use crate::error::Result;
use crate::lifecycle::Lifecycle;
use crate::logs::RotatingLog;
use crate::sessions::{Owner, Peer, Session, SessionTable};
use msb_protocol::control::{ControlRequest, ControlResponse, SupervisorStatus};
use msb_protocol::guest::{AgentMessage, HostMessage, HELLO_ID};
use msb_protocol::{Frame, FrameError, FLAG_CONTROL, FLAG_END};
use std::collections::HashMap;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// How long a signal-triggered stop waits for the guest before killing it.
pub const STOP_TIMEOUT_ON_SIGNAL: Duration = Duration::from_secs(10);
/// A kill takes effect at once; this only bounds the wait for QEMU's exit to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);

struct Client {
    writer: Mutex<UnixStream>,
    /// Client request id → agent request id, for requests still running.
    routes: Mutex<HashMap<u32, u32>>,
}

impl Peer for Client {
    fn send(&self, frame: &Frame) -> bool {
        frame.write_to(&mut *self.writer.lock().unwrap()).is_ok()
    }

    fn forget(&self, client_id: u32) {
        self.routes.lock().unwrap().remove(&client_id);
    }
}

impl Client {
    fn control(&self, id: u32, flags: u8, response: &ControlResponse) -> bool {
        Frame::new(id, FLAG_CONTROL | flags, response).is_ok_and(|frame| self.send(&frame))
    }
}

/// Where the answers to the supervisor's own requests arrive.
struct Inbox(Mutex<mpsc::Sender<Frame>>);

impl Peer for Inbox {
    fn send(&self, frame: &Frame) -> bool {
        self.0.lock().unwrap().send(frame.clone()).is_ok()
    }

    fn forget(&self, _client_id: u32) {}
}

/// What the relay does with the VM on a client's behalf, beyond the agent channel.
pub trait VmControl: Send + Sync {
    fn pause(&self) -> std::result::Result<(), String>;
    fn resume(&self) -> std::result::Result<(), String>;
    fn detach(&self) -> std::result::Result<(), String>;
    /// Records that a graceful stop is under way.
    fn draining(&self) -> std::result::Result<(), String>;
    /// Swaps `policy` (a `PolicySpec`'s JSON) into the running network.
    fn set_network_policy(&self, policy: &str) -> std::result::Result<(), String>;
    /// Swaps a new set of secrets (the JSON of a `SecretsUpdate`) into the running network.
    fn set_secrets(&self, update_json: &str) -> std::result::Result<(), String>;
}

pub struct Relay {
    agent_writer: Mutex<UnixStream>,
    agent_reader: Mutex<Option<UnixStream>>,
    sessions: Mutex<SessionTable>,
    next_agent_id: AtomicU32,
    status: SupervisorStatus,
    lifecycle: Arc<Lifecycle>,
    vm: Arc<dyn VmControl>,
    /// Each command's start and end, one line each.
    exec_log: Mutex<RotatingLog>,
}

impl Relay {
    pub fn new(
        agent: UnixStream,
        status: SupervisorStatus,
        lifecycle: Arc<Lifecycle>,
        vm: Arc<dyn VmControl>,
        exec_log: RotatingLog,
    ) -> Result<Arc<Self>> {
        let reader = agent
            .try_clone()
            .map_err(crate::error::SupervisorError::io("agent socket"))?;
        Ok(Arc::new(Self {
            agent_writer: Mutex::new(agent),
            agent_reader: Mutex::new(Some(reader)),
            sessions: Mutex::default(),
            next_agent_id: AtomicU32::new(HELLO_ID + 1),
            status,
            lifecycle,
            vm,
            exec_log: Mutex::new(exec_log),
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
        frame.write_to(&mut *self.agent_writer.lock().unwrap())
    }

    fn send_message(&self, agent_id: u32, message: &HostMessage) {
        if let Ok(frame) = Frame::new(agent_id, 0, message) {
            let _ = self.send_to_agent(&frame);
        }
    }

    /// Asks the agent for an orderly shutdown, recording why the VM stops.
    pub fn shutdown_guest(&self, reason: &str) {
        self.lifecycle.request(reason);
        // Only informative: the final status is written when QEMU exits.
        let _ = self.vm.draining();
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

    /// Forwards a frame to the session's client, remembering output for a later attach. The
    /// table stays locked while sending, so an attach never sees a frame twice or misses one.
    fn route_from_agent(&self, frame: Frame) {
        let mut table = self.sessions.lock().unwrap();
        let Some(session) = table.by_id.get_mut(&frame.id) else {
            return;
        };
        session.remember(&frame);
        // Logged before the client hears of the end, so a client that reads the log after
        // its command returned finds the line.
        if frame.is_end() && session.info.is_some() {
            self.log_exec(&format!("session {} {}", frame.id, describe_end(&frame)));
        }
        if let Some(owner) = &session.owner {
            let forwarded = Frame {
                id: owner.client_id,
                flags: frame.flags,
                body: frame.body.clone(),
            };
            // The route goes before the client hears of the end: a client that sends more
            // under the id once it has the end would otherwise race the removal.
            if frame.is_end() {
                owner.peer.forget(owner.client_id);
            }
            // A client that went away is cleaned up by its own thread.
            owner.peer.send(&forwarded);
        }
        if frame.is_end() {
            table.by_id.remove(&frame.id);
        }
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
            routes: Mutex::default(),
        });
        let mut reader = stream;
        while let Ok(frame) = Frame::read_from(&mut reader) {
            if frame.flags & FLAG_CONTROL != 0 {
                self.handle_control(&client, &frame);
            } else {
                self.forward_to_agent(&client, frame);
            }
        }
        self.drop_client(&client);
    }

    fn forward_to_agent(&self, client: &Arc<Client>, frame: Frame) {
        if frame.id == HELLO_ID {
            // The handshake belongs to the supervisor alone.
            return;
        }
        let known = client.routes.lock().unwrap().get(&frame.id).copied();
        let agent_id = match known {
            Some(agent_id) => agent_id,
            None => match self.open_session(client, &frame) {
                Some(agent_id) => agent_id,
                None => return,
            },
        };
        let _ = self.send_to_agent(&Frame {
            id: agent_id,
            flags: frame.flags,
            body: frame.body,
        });
    }

    /// A new request from a client: records it (commands become sessions) and tells the
    /// client the session id before any output can arrive.
    fn open_session(&self, client: &Arc<Client>, frame: &Frame) -> Option<u32> {
        let message = frame.decode::<HostMessage>().ok()?;
        let agent_id = self.allocate_agent_id();
        let owner = Owner {
            peer: client.clone(),
            client_id: frame.id,
        };
        let session = match &message {
            HostMessage::Exec(request) => {
                let tty = if request.tty.is_some() {
                    " (terminal)"
                } else {
                    ""
                };
                let command = std::iter::once(&request.program).chain(&request.args);
                let command: Vec<&str> = command.map(String::as_str).collect();
                self.log_exec(&format!(
                    "session {agent_id} started{tty}: {}",
                    command.join(" ")
                ));
                Session::for_exec(agent_id, request, owner, msb_state::now_ms() as u64)
            }
            // Not sessions: nobody lists, attaches to or logs them. A write's chunks follow
            // the route opened here.
            HostMessage::Ping | HostMessage::Fs(_) => Session::new(owner, None),
            // Input, resize, signal or file data for a request that ended or never existed.
            _ => return None,
        };
        if session.info.is_some() {
            client.control(
                frame.id,
                0,
                &ControlResponse::SessionOpened { session: agent_id },
            );
        }
        self.sessions
            .lock()
            .unwrap()
            .by_id
            .insert(agent_id, session);
        client.routes.lock().unwrap().insert(frame.id, agent_id);
        Some(agent_id)
    }

    /// Terminal sessions of a client that disconnected keep running for a later attach; its
    /// other processes are killed, since nobody could read their output, and its file
    /// transfers are aborted (the agent takes a signal to a transfer as its cancellation).
    fn drop_client(&self, client: &Arc<Client>) {
        let routes: Vec<u32> = client
            .routes
            .lock()
            .unwrap()
            .drain()
            .map(|(_, agent)| agent)
            .collect();
        let mut table = self.sessions.lock().unwrap();
        for agent_id in routes {
            let Some(session) = table.by_id.get_mut(&agent_id) else {
                continue;
            };
            session.owner = None;
            if !session.survives_disconnect() {
                self.send_message(
                    agent_id,
                    &HostMessage::Signal {
                        signal: libc::SIGKILL,
                    },
                );
            }
        }
    }

    fn attach(
        &self,
        client: &Arc<Client>,
        client_id: u32,
        session_id: u32,
    ) -> std::result::Result<(), String> {
        let mut table = self.sessions.lock().unwrap();
        let session = table
            .by_id
            .get_mut(&session_id)
            .filter(|session| session.info.is_some())
            .ok_or_else(|| format!("no running session {session_id}"))?;
        let new_owner = Owner {
            peer: client.clone(),
            client_id,
        };
        if let Some(previous) = session.owner.replace(new_owner) {
            previous.peer.forget(previous.client_id);
            let moved = ControlResponse::Error {
                message: format!("session {session_id} was attached by another client"),
            };
            if let Ok(frame) = Frame::new(previous.client_id, FLAG_CONTROL | FLAG_END, &moved) {
                previous.peer.send(&frame);
            }
        }
        client.routes.lock().unwrap().insert(client_id, session_id);
        client.control(
            client_id,
            0,
            &ControlResponse::SessionOpened {
                session: session_id,
            },
        );
        for frame in session.replay() {
            client.send(&Frame {
                id: client_id,
                flags: frame.flags,
                body: frame.body.clone(),
            });
        }
        Ok(())
    }

    /// A request of the supervisor's own to the agent (not a client's), with its answer.
    pub fn ask_agent(&self, message: &HostMessage, timeout: Duration) -> Option<AgentMessage> {
        let (sender, receiver) = mpsc::channel();
        let agent_id = self.allocate_agent_id();
        let peer: Arc<dyn Peer> = Arc::new(Inbox(Mutex::new(sender)));
        let owner = Owner {
            peer,
            client_id: agent_id,
        };
        self.sessions
            .lock()
            .unwrap()
            .by_id
            .insert(agent_id, Session::new(owner, None));
        let answer = Frame::new(agent_id, 0, message)
            .ok()
            .filter(|frame| self.send_to_agent(frame).is_ok())
            .and_then(|_| receiver.recv_timeout(timeout).ok());
        if answer.is_none() {
            self.sessions.lock().unwrap().by_id.remove(&agent_id);
        }
        answer?.decode().ok()
    }

    fn log_exec(&self, message: &str) {
        // The log is informative; a full disk must not break the sandbox.
        let _ = self.exec_log.lock().unwrap().line(message);
    }

    fn handle_control(&self, client: &Arc<Client>, frame: &Frame) {
        let outcome = match frame.decode::<ControlRequest>() {
            Ok(ControlRequest::Status) => Ok(ControlResponse::Status(self.status.clone())),
            Ok(ControlRequest::ListSessions) => Ok(ControlResponse::Sessions {
                sessions: self.sessions.lock().unwrap().listing(),
            }),
            Ok(ControlRequest::Attach { session }) => {
                match self.attach(client, frame.id, session) {
                    Ok(()) => return,
                    Err(message) => Err(message),
                }
            }
            Ok(ControlRequest::Pause) => self.vm.pause().map(|()| ControlResponse::Done),
            Ok(ControlRequest::Resume) => self.vm.resume().map(|()| ControlResponse::Done),
            Ok(ControlRequest::Detach) => self.vm.detach().map(|()| ControlResponse::Done),
            Ok(ControlRequest::Stop { timeout_ms, wait }) => {
                self.shutdown_guest("stopped");
                let timeout = Duration::from_millis(timeout_ms);
                if wait {
                    return self.reply_when_exited(client, frame.id, timeout);
                }
                let lifecycle = self.lifecycle.clone();
                // Someone must still enforce the timeout after the early reply.
                std::thread::spawn(move || {
                    lifecycle.wait_exited(timeout);
                    lifecycle.reply_sent();
                });
                Ok(ControlResponse::Done)
            }
            Ok(ControlRequest::Kill) => {
                self.lifecycle.kill_vm("killed");
                return self.reply_when_exited(client, frame.id, KILL_WAIT);
            }
            Ok(ControlRequest::SetNetworkPolicy { policy }) => self
                .vm
                .set_network_policy(&policy)
                .map(|()| ControlResponse::Done),
            Ok(ControlRequest::SetSecrets { secrets }) => self
                .vm
                .set_secrets(secrets.expose())
                .map(|()| ControlResponse::Done),
            Err(error) => Err(format!("bad control request: {error}")),
        };
        let response = outcome.unwrap_or_else(|message| ControlResponse::Error { message });
        client.control(frame.id, FLAG_END, &response);
    }

    fn reply_when_exited(&self, client: &Arc<Client>, id: u32, timeout: Duration) {
        self.lifecycle.wait_exited(timeout);
        client.control(id, FLAG_END, &ControlResponse::Done);
        self.lifecycle.reply_sent();
    }
}

/// How a request ended, from its final frame.
fn describe_end(frame: &Frame) -> String {
    match frame.decode::<AgentMessage>() {
        Ok(AgentMessage::Exited {
            timed_out: true, ..
        }) => "timed out and was killed".into(),
        Ok(AgentMessage::Exited {
            code: Some(code), ..
        }) => format!("exited with code {code}"),
        Ok(AgentMessage::Exited {
            signal: Some(signal),
            ..
        }) => {
            format!("was killed by signal {signal}")
        }
        Ok(AgentMessage::Error(error)) => format!("failed: {}", error.message),
        Ok(other) => format!("ended with {other:?}"),
        Err(error) => format!("ended with an undecodable frame: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use msb_protocol::guest::FsRequest;

    struct NoVm;

    impl VmControl for NoVm {
        fn pause(&self) -> std::result::Result<(), String> {
            Ok(())
        }
        fn resume(&self) -> std::result::Result<(), String> {
            Ok(())
        }
        fn detach(&self) -> std::result::Result<(), String> {
            Ok(())
        }
        fn draining(&self) -> std::result::Result<(), String> {
            Ok(())
        }
        fn set_network_policy(&self, policy: &str) -> std::result::Result<(), String> {
            Err(format!("no network here to take {policy}"))
        }
        fn set_secrets(&self, _update_json: &str) -> std::result::Result<(), String> {
            Err("no network here to take secrets".into())
        }
    }

    /// A relay whose agent is the returned socket, and a connected client, with the relay's
    /// exec log.
    fn relay_with_client() -> (UnixStream, UnixStream, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "msb-relay-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let log_path = dir.join("exec.log");
        let (agent, relay_side) = UnixStream::pair().unwrap();
        let status = SupervisorStatus {
            supervisor_pid: 1,
            vmm_pid: 2,
            accelerator: "tcg".into(),
            agent_version: "test".into(),
            kernel_release: "test".into(),
            boot_ms: 0,
        };
        // A pid beyond any pid_max: nothing here kills the "VM", and if it did, nobody dies.
        let lifecycle = Arc::new(Lifecycle::new(i32::MAX as u32));
        let log = RotatingLog::open(&log_path, 1 << 20).unwrap();
        let relay = Relay::new(relay_side, status, lifecycle, Arc::new(NoVm), log).unwrap();
        relay.spawn_agent_reader();
        let (client, served) = UnixStream::pair().unwrap();
        std::thread::spawn(move || relay.serve_client(served));
        for stream in [&agent, &client] {
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
        }
        (agent, client, log_path)
    }

    fn send(stream: &mut UnixStream, id: u32, flags: u8, message: &impl serde::Serialize) {
        Frame::new(id, flags, message)
            .unwrap()
            .write_to(stream)
            .unwrap();
    }

    fn receive(stream: &mut UnixStream) -> (Frame, HostMessage) {
        let frame = Frame::read_from(stream).unwrap();
        let message = frame.decode().unwrap();
        (frame, message)
    }

    fn write_request() -> HostMessage {
        HostMessage::Fs(FsRequest::Write {
            path: "/tmp/file".into(),
            mode: None,
            append: false,
            create_parents: true,
        })
    }

    #[test]
    fn fs_requests_are_routed_but_are_not_sessions() {
        let (mut agent, mut client, log_path) = relay_with_client();
        send(&mut client, 7, 0, &write_request());
        let (request, message) = receive(&mut agent);
        assert_eq!(message, write_request());
        send(&mut agent, request.id, 0, &AgentMessage::FsReady);
        // The agent's answer is the client's first frame: no `SessionOpened` before it.
        let ready = Frame::read_from(&mut client).unwrap();
        assert_eq!((ready.id, ready.flags), (7, 0));
        assert_eq!(
            ready.decode::<AgentMessage>().unwrap(),
            AgentMessage::FsReady
        );

        send(&mut client, 8, FLAG_CONTROL, &ControlRequest::ListSessions);
        let listing = Frame::read_from(&mut client).unwrap();
        let listing: ControlResponse = listing.decode().unwrap();
        assert_eq!(listing, ControlResponse::Sessions { sessions: vec![] });

        send(
            &mut client,
            7,
            0,
            &HostMessage::FsChunk { data: vec![1; 3] },
        );
        send(&mut client, 7, FLAG_END, &HostMessage::FsFinish);
        let (chunk, message) = receive(&mut agent);
        assert_eq!(chunk.id, request.id);
        assert_eq!(message, HostMessage::FsChunk { data: vec![1; 3] });
        let (finish, message) = receive(&mut agent);
        assert_eq!((finish.id, message), (request.id, HostMessage::FsFinish));
        send(
            &mut agent,
            request.id,
            FLAG_END,
            &AgentMessage::FsWritten { bytes: 3 },
        );
        let written = Frame::read_from(&mut client).unwrap();
        assert_eq!((written.id, written.is_end()), (7, true));

        // The route ended with the answer: late data for it goes nowhere.
        send(&mut client, 7, 0, &HostMessage::FsChunk { data: vec![2] });
        send(&mut client, 9, 0, &HostMessage::Ping);
        let (ping, message) = receive(&mut agent);
        assert_ne!(ping.id, request.id);
        assert_eq!(message, HostMessage::Ping);
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert_eq!(log, "", "file requests are not logged as commands");
        std::fs::remove_dir_all(log_path.parent().unwrap()).unwrap();
    }

    #[test]
    fn a_disconnecting_client_cancels_its_transfers() {
        let (mut agent, client, log_path) = relay_with_client();
        let mut writer = client.try_clone().unwrap();
        send(&mut writer, 1, 0, &write_request());
        let (request, _) = receive(&mut agent);
        drop(writer);
        client.shutdown(std::net::Shutdown::Both).unwrap();
        let (cancel, message) = receive(&mut agent);
        assert_eq!(cancel.id, request.id);
        assert!(matches!(message, HostMessage::Signal { .. }), "{message:?}");
        std::fs::remove_dir_all(log_path.parent().unwrap()).unwrap();
    }
}

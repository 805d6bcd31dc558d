//! Serving the host: reading frames from the `agent` port and answering them.
//!
//! One thread reads and dispatches; it never blocks on a process (stdin has its own writer
//! threads, output its pump threads) nor on a disk (file system requests and mounts run on
//! threads of their own; only a write's data waits for room in its bounded queue, see
//! [`crate::fs`]). When the host leaves (end of file), the agent waits for a host to connect
//! again and serves it as a new connection: sessions and file transfers of the old host are
//! hung up and their late output is dropped. It never exits.

use crate::boot::{self, Booted};
use crate::channel::Channel;
use crate::exec::{self, input::Input};
use crate::fs::{self, Cancel, Piece};
use crate::network::{self, trust::GuestTrust, NetworkSetup};
use crate::port::{self, PortReader};
use crate::reaper::Reaper;
use crate::sessions::{Session, Sessions, Target};
use crate::workers::Workers;
use crate::{shutdown, sys};
use msb_protocol::guest::{
    AgentError, AgentErrorKind, AgentMessage, GuestBoot, GuestNetwork, HostMessage, HELLO_ID,
};
use msb_protocol::{Frame, FrameError, AGENT_PORT_NAME, FLAG_END, PROTOCOL_VERSION};
use std::io::BufReader;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How often to look for a host while none is connected.
const HOST_POLL: Duration = Duration::from_millis(20);
const READ_BUFFER: usize = 256 * 1024;
/// After a corrupt frame, how long to let the rest of the host's write arrive before dropping it.
const DISCARD_SETTLE: Duration = Duration::from_millis(50);

struct Server {
    /// Set by the first hello (see [`boot::finish`]); until then only a hello is served.
    booted: OnceLock<Booted>,
    context: exec::Context,
    fs: fs::Service,
    network: NetworkSetup,
}

/// What a steering frame found for its id.
#[derive(PartialEq, Eq)]
enum Steered {
    Applied,
    /// The request ended a moment ago: the frame is dropped.
    Ended,
    Unknown,
}

fn error(kind: AgentErrorKind, message: String) -> AgentMessage {
    AgentMessage::Error(AgentError {
        kind,
        message,
        errno: None,
    })
}

/// Serves the host forever.
pub fn serve() -> ! {
    let reaper = Arc::new(Reaper::default());
    {
        let reaper = reaper.clone();
        // Without the reaper no exit would ever be reported: a failure here is fatal.
        if let Err(spawn_error) = std::thread::Builder::new().spawn(move || reaper.run()) {
            log!("cannot start the reaper thread: {spawn_error}");
            crate::power::off();
        }
    }
    let channel = Arc::new(Channel::default());
    let server = Server {
        booted: OnceLock::new(),
        fs: fs::Service::new(channel.clone()),
        network: NetworkSetup::default(),
        context: exec::Context {
            channel,
            reaper,
            sessions: Arc::new(Sessions::default()),
            trust: Arc::new(GuestTrust::default()),
            workers: Workers::default(),
            cache: exec::Cache::default(),
        },
    };
    let path = port::wait_for(AGENT_PORT_NAME);
    log!(
        "serving on {} ({:.2} s after kernel start)",
        path.display(),
        uptime()
    );
    let mut port = open_port(&path);
    loop {
        let generation = server.context.channel.attach(port.clone());
        if server.booted.get().is_none() {
            // The point a template is saved at: the host waits for this before it does.
            server.send(generation, HELLO_ID, FLAG_END, &AgentMessage::AwaitingHello);
        }
        let mut reader = BufReader::with_capacity(READ_BUFFER, PortReader::new(port.clone()));
        let mut frames = 0u64;
        let ended = loop {
            match Frame::read_from(&mut reader) {
                Ok(frame) => {
                    frames += 1;
                    server.dispatch(frame, generation);
                }
                Err(corrupt @ (FrameError::TooLarge(_) | FrameError::TooShort(_))) => {
                    // The stream has no sync marker: drop what is buffered and go on with
                    // what the host sends next.
                    log!("corrupt frame from the host ({corrupt}); dropping its buffered input");
                    reader = BufReader::with_capacity(READ_BUFFER, PortReader::new(port.clone()));
                    discard_pending(&port);
                }
                Err(ended) => break ended,
            }
        };
        server.context.channel.detach();
        // The host that started these sessions is gone, and the next one must be free to
        // reuse their ids.
        server.context.sessions.hang_up(generation);
        server.fs.hang_up(generation);
        drop(reader);
        if is_end_of_file(&ended) {
            // No host is connected. Only a connection that carried frames is worth a line on
            // the console (before the first host, every read ends at once).
            if frames > 0 {
                log!("the host closed the channel; waiting for it to reconnect");
            }
            wait_for_host(&port);
        } else {
            log!("channel error ({ended}); reopening the port");
            drop(port);
            std::thread::sleep(HOST_POLL);
            port = open_port(&path);
        }
    }
}

fn is_end_of_file(error: &FrameError) -> bool {
    match error {
        FrameError::Closed => true,
        FrameError::Io(io_error) => io_error.kind() == std::io::ErrorKind::UnexpectedEof,
        _ => false,
    }
}

fn open_port(path: &std::path::Path) -> Arc<OwnedFd> {
    loop {
        match port::open(path) {
            Ok(port) => return Arc::new(port),
            Err(open_error) => {
                log!("cannot open {}: {open_error}", path.display());
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Waits until a host is connected to the port again. The port stays open meanwhile: when
/// the agent closed and reopened it while the host was away, it never saw the host return
/// (reads kept ending at once after QEMU had reconnected; QEMU 7.2, Linux 6.1).
fn wait_for_host(port: &OwnedFd) {
    use std::os::fd::AsRawFd;
    loop {
        // Without a host the port reports POLLHUP at once; with one, it is quiet or readable.
        let mut fds = [sys::pollfd(port.as_raw_fd(), libc::POLLIN)];
        if sys::poll(&mut fds, Some(Duration::ZERO)).is_ok() && fds[0].revents & libc::POLLHUP == 0
        {
            return;
        }
        std::thread::sleep(HOST_POLL);
    }
}

/// Reads and drops whatever the port holds right now, after a moment for bytes in flight.
fn discard_pending(port: &OwnedFd) {
    std::thread::sleep(DISCARD_SETTLE);
    let mut scratch = vec![0u8; READ_BUFFER];
    // Non-blocking: stops at "would block" (nothing more yet) or end of file (host gone).
    while matches!(sys::read(port.as_fd(), &mut scratch), Ok(read) if read > 0) {}
}

/// Seconds since the kernel started, for the console log.
fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

impl Server {
    fn send(&self, generation: u64, id: u32, flags: u8, message: &AgentMessage) {
        self.context.channel.send(generation, id, flags, message);
    }

    fn dispatch(&self, frame: Frame, generation: u64) {
        let id = frame.id;
        let message = match frame.decode::<HostMessage>() {
            Ok(message) => message,
            Err(decode_error) => {
                let reply = error(
                    AgentErrorKind::InvalidRequest,
                    format!("undecodable request: {decode_error}"),
                );
                return self.send(generation, id, FLAG_END, &reply);
            }
        };
        match message {
            HostMessage::Hello {
                version,
                unix_time_ns,
                boot,
                network,
                tls_ca_pem,
            } => self.hello(
                generation,
                version,
                unix_time_ns,
                &boot,
                network,
                tls_ca_pem,
            ),
            _ if self.booted.get().is_none() => {
                let reply = error(
                    AgentErrorKind::InvalidRequest,
                    "the guest has not booted: the first frame must be the hello".into(),
                );
                self.send(generation, id, FLAG_END, &reply)
            }
            HostMessage::Ping => self.send(generation, id, FLAG_END, &AgentMessage::Pong),
            HostMessage::Exec(request) => {
                if self.context.sessions.is_running(id) {
                    let reply = error(
                        AgentErrorKind::InvalidRequest,
                        format!("request id {id} is already running"),
                    );
                    return self.send(generation, id, FLAG_END, &reply);
                }
                if let Err(failure) = exec::start(&self.context, id, generation, request) {
                    self.send(generation, id, FLAG_END, &AgentMessage::Error(failure));
                }
            }
            HostMessage::Stdin { data } => self.steer(generation, id, "stdin", |session| {
                if let Some(input) = &session.input {
                    let _ = input.send(Input::Data(data));
                }
            }),
            HostMessage::CloseStdin => self.steer(generation, id, "close_stdin", |session| {
                if let Some(input) = &session.input {
                    let _ = input.send(Input::Close);
                }
                // A pipe is closed for good; a terminal can take another ^D later.
                if session.terminal.is_none() {
                    session.input = None;
                }
            }),
            HostMessage::Signal { signal } => self.signal(generation, id, signal),
            HostMessage::Resize { rows, cols } => self.steer(generation, id, "resize", |session| {
                if let Some(terminal) = &session.terminal {
                    use std::os::fd::AsFd;
                    // The kernel sends SIGWINCH to the terminal's foreground group.
                    let _ = sys::set_window_size(terminal.as_fd(), rows, cols);
                }
            }),
            HostMessage::Stats => self.send(generation, id, FLAG_END, &memory_stats()),
            HostMessage::Fs(request) => self.fs.start(id, generation, request),
            HostMessage::FsChunk { data } => self.fs.feed(id, generation, Piece::Data(data)),
            HostMessage::FsFinish => self.fs.feed(id, generation, Piece::Finish),
            HostMessage::Mount(request) => self.fs.mount(id, generation, request),
            HostMessage::Shutdown => {
                self.context.channel.send_last(
                    generation,
                    id,
                    FLAG_END,
                    &AgentMessage::ShutdownAck,
                );
                self.fs.stop_all(generation);
                let booted = self.booted.get().expect("only a booted guest gets here");
                shutdown::shutdown(&booted.old_root, booted.overlay);
            }
        }
    }

    /// Applies a stdin/signal/resize frame to its session. Frames for a session that just
    /// ended are dropped; frames for ids that never ran are answered with an error.
    fn steer(&self, generation: u64, id: u32, what: &str, action: impl FnOnce(&mut Session)) {
        if self.apply(id, action) == Steered::Unknown {
            self.refuse_steering(generation, id, what);
        }
    }

    /// Signals the process group of a session, or cancels a file system request.
    fn signal(&self, generation: u64, id: u32, signal: i32) {
        let mut steered = self.apply(id, |session| {
            if let Err(kill_error) = sys::kill(-session.pgid, signal) {
                // ESRCH: the group is gone while the output drains. EINVAL: a bad number.
                if kill_error.raw_os_error() != Some(libc::ESRCH) {
                    log!("request {id}: signal {signal}: {kill_error}");
                }
            }
        });
        // Also after a session of this id ended: the host may have reused the id since.
        if steered != Steered::Applied {
            match self.fs.cancel(id) {
                Cancel::Cancelled => steered = Steered::Applied,
                Cancel::Ended => steered = Steered::Ended,
                Cancel::Unknown => {}
            }
        }
        if steered == Steered::Unknown {
            self.refuse_steering(generation, id, "signal");
        }
    }

    fn apply(&self, id: u32, action: impl FnOnce(&mut Session)) -> Steered {
        self.context.sessions.with(id, |target| match target {
            Target::Running(session) => {
                action(session);
                Steered::Applied
            }
            Target::Finished => Steered::Ended,
            Target::Unknown => Steered::Unknown,
        })
    }

    fn refuse_steering(&self, generation: u64, id: u32, what: &str) {
        let reply = error(
            AgentErrorKind::InvalidRequest,
            format!("{what} for request {id}, which is not running"),
        );
        self.send(generation, id, FLAG_END, &reply);
    }

    /// The boot, finished from `boot` on the first hello. A guest that cannot finish booting
    /// tells the host why and powers off: nothing can work without its root.
    fn boot(&self, generation: u64, boot: &GuestBoot) -> Option<&Booted> {
        if let Some(booted) = self.booted.get() {
            return Some(booted);
        }
        log!(
            "booting {} ({:.2} s after kernel start)",
            boot.hostname,
            uptime()
        );
        match boot::finish(boot) {
            Ok(booted) => Some(self.booted.get_or_init(|| booted)),
            Err(boot_error) => {
                log!("boot failed: {boot_error}");
                let reply = error(
                    AgentErrorKind::Internal,
                    format!("boot failed: {boot_error}"),
                );
                self.context
                    .channel
                    .send_last(generation, HELLO_ID, FLAG_END, &reply);
                crate::power::off()
            }
        }
    }

    fn hello(
        &self,
        generation: u64,
        version: u32,
        unix_time_ns: u64,
        boot: &GuestBoot,
        network: Option<GuestNetwork>,
        tls_ca_pem: Option<String>,
    ) {
        if version != PROTOCOL_VERSION {
            let reply = error(
                AgentErrorKind::VersionMismatch,
                format!(
                    "this agent speaks protocol version {PROTOCOL_VERSION}, the host {version}"
                ),
            );
            return self.send(generation, HELLO_ID, FLAG_END, &reply);
        }
        if let Err(clock_error) = sys::set_realtime_clock(unix_time_ns) {
            log!("cannot set the clock: {clock_error}");
        }
        let Some(booted) = self.boot(generation, boot) else {
            return;
        };
        let root = if booted.overlay {
            network::Root::Ours
        } else {
            network::Root::LiveHostDirectory
        };
        if let Some(network) = network {
            self.network.apply(network, root);
        }
        if let Some(ca_pem) = tls_ca_pem {
            self.context.trust.install(&ca_pem, root);
        }
        let reply = AgentMessage::Hello {
            version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            kernel_release: sys::kernel_release(),
        };
        self.send(generation, HELLO_ID, FLAG_END, &reply);
    }
}

/// Total and available memory from /proc/meminfo (kB there, bytes here).
fn memory_stats() -> AgentMessage {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        meminfo
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    AgentMessage::Stats {
        mem_total_bytes: field("MemTotal"),
        mem_available_bytes: field("MemAvailable"),
    }
}

//! The agent channel: the `agent` virtio-serial port, its frames, and request dispatch.

use crate::exec::{self, Sessions};
use crate::reaper::Reaper;
use crate::sys;
use msb_protocol::guest::{AgentError, AgentErrorKind, AgentMessage, HostMessage, HELLO_ID};
use msb_protocol::{Frame, FrameError, AGENT_PORT_NAME, FLAG_END, PROTOCOL_VERSION};
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PORT_WAIT_STEP: Duration = Duration::from_millis(20);
/// How long processes get between SIGTERM and SIGKILL at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The write side, shared by every thread that answers the host. One lock per frame keeps
/// frames whole.
pub struct Channel {
    port: Mutex<Option<File>>,
}

impl Channel {
    pub fn send(&self, id: u32, flags: u8, message: &AgentMessage) {
        let Ok(frame) = Frame::new(id, flags, message) else {
            return;
        };
        let bytes = frame.to_bytes();
        let mut port = self.port.lock().unwrap();
        if let Some(file) = port.as_mut() {
            use std::io::Write;
            // A failed write means the host went away; the reader reopens the port.
            let _ = file.write_all(&bytes);
        }
    }

    fn replace(&self, file: Option<File>) {
        *self.port.lock().unwrap() = file;
    }
}

/// The device of the virtio-serial port named `agent`.
fn find_port() -> PathBuf {
    loop {
        if let Ok(entries) = std::fs::read_dir("/sys/class/virtio-ports") {
            for entry in entries.flatten() {
                let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
                if name.trim() == AGENT_PORT_NAME {
                    return PathBuf::from("/dev").join(entry.file_name());
                }
            }
        }
        std::thread::sleep(PORT_WAIT_STEP);
    }
}

fn open_port(path: &PathBuf) -> File {
    loop {
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
        {
            Ok(file) => return file,
            Err(error) => {
                eprintln!("msb-agent: cannot open {}: {error}", path.display());
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Serves the host forever.
pub fn serve(reaper: Arc<Reaper>) -> ! {
    {
        let reaper = reaper.clone();
        std::thread::spawn(move || reaper.run());
    }
    let channel = Arc::new(Channel {
        port: Mutex::new(None),
    });
    let sessions = Arc::new(Sessions::default());
    let path = find_port();
    loop {
        let mut reader = open_port(&path);
        channel.replace(reader.try_clone().ok());
        loop {
            match Frame::read_from(&mut reader) {
                Ok(frame) => dispatch(frame, &channel, &reaper, &sessions),
                // The host went away or the framing is corrupt: start over on a fresh open.
                Err(
                    FrameError::Closed
                    | FrameError::Io(_)
                    | FrameError::TooLarge(_)
                    | FrameError::TooShort(_),
                ) => break,
                Err(_) => unreachable!("read_from only fails with framing or i/o errors"),
            }
        }
        channel.replace(None);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn invalid(message: impl Into<String>) -> AgentMessage {
    AgentMessage::Error(AgentError {
        kind: AgentErrorKind::InvalidRequest,
        message: message.into(),
        errno: None,
    })
}

fn dispatch(frame: Frame, channel: &Arc<Channel>, reaper: &Arc<Reaper>, sessions: &Arc<Sessions>) {
    let id = frame.id;
    let message = match frame.decode::<HostMessage>() {
        Ok(message) => message,
        Err(error) => {
            return channel.send(
                id,
                FLAG_END,
                &invalid(format!("undecodable request: {error}")),
            )
        }
    };
    match message {
        HostMessage::Hello {
            version,
            unix_time_ns,
        } => hello(channel, version, unix_time_ns),
        HostMessage::Ping => channel.send(id, FLAG_END, &AgentMessage::Pong),
        HostMessage::Exec(request) => {
            if let Err(error) = exec::start(id, request, channel, reaper, sessions) {
                channel.send(id, FLAG_END, &AgentMessage::Error(error));
            }
        }
        HostMessage::Stdin { data } => sessions.write_input(id, data),
        HostMessage::CloseStdin => sessions.close_input(id),
        HostMessage::Signal { signal } => sessions.signal(id, signal),
        HostMessage::Resize { rows, cols } => {
            sessions.resize(id, msb_protocol::guest::TerminalSize { rows, cols })
        }
        HostMessage::Stats => channel.send(id, FLAG_END, &memory_stats()),
        HostMessage::Shutdown => {
            channel.send(id, FLAG_END, &AgentMessage::ShutdownAck);
            shutdown();
        }
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

fn hello(channel: &Channel, version: u32, unix_time_ns: u64) {
    if version != PROTOCOL_VERSION {
        let message = AgentError {
            kind: AgentErrorKind::VersionMismatch,
            message: format!("agent speaks protocol {PROTOCOL_VERSION}, host {version}"),
            errno: None,
        };
        return channel.send(HELLO_ID, FLAG_END, &AgentMessage::Error(message));
    }
    if let Err(error) = sys::set_clock(unix_time_ns) {
        eprintln!("msb-agent: cannot set the clock: {error}");
    }
    let kernel_release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    channel.send(
        HELLO_ID,
        FLAG_END,
        &AgentMessage::Hello {
            version: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            kernel_release,
        },
    );
}

/// Ends every process, flushes the file systems and powers off.
fn shutdown() -> ! {
    // SAFETY: kill(-1) signals every process but init; no memory-safety preconditions.
    unsafe { libc::kill(-1, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
    while std::time::Instant::now() < deadline && other_processes_exist() {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    sys::power_off()
}

fn other_processes_exist() -> bool {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc").is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Kernel threads have no command line; only user processes count.
            name.chars().all(|c| c.is_ascii_digit())
                && name != me
                && std::fs::read(entry.path().join("cmdline"))
                    .is_ok_and(|cmdline| !cmdline.is_empty())
        })
    })
}

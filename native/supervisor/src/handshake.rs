//! The start of the agent channel: QEMU connects the agent's virtio-serial port to the
//! supervisor's socket, the supervisor says hello (with the wall clock and what the guest
//! boots into), the agent finishes booting and answers with its version. An agent that has
//! not booted yet says `AwaitingHello` whenever a host connects; only a template build waits
//! for it (see [`crate::templates`]), here it is passed over.

use crate::error::{Result, SupervisorError};
use msb_protocol::guest::{AgentMessage, GuestBoot, GuestNetwork, HostMessage, HELLO_ID};
use msb_protocol::{Frame, FrameError, FLAG_END, PROTOCOL_VERSION};
use std::io::ErrorKind;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Upper bound of a cold boot, from QEMU's start to the agent's hello. TCG on a loaded 2-core
/// host boots in seconds; this only catches a guest that will never come up.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// The same for a guest restored from a template, which answers in well under a second on
/// an idle host: past this it is taken for broken and the sandbox boots cold instead.
pub const RESTORE_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long one read of the agent channel blocks before QEMU and the deadline are checked.
const READ_POLL: Duration = Duration::from_millis(250);

/// What the agent said about itself.
pub struct AgentHello {
    pub version: String,
    pub kernel_release: String,
}

/// Waits for the agent channel and the agent's hello, for at most `timeout`; fails if QEMU
/// exits first. `guest` is what the agent configures before it answers.
pub fn handshake(
    listener: &UnixListener,
    qemu: &mut Child,
    guest: &GuestSetup,
    timeout: Duration,
) -> Result<(UnixStream, AgentHello)> {
    let deadline = Instant::now() + timeout;
    let stream = accept_agent(listener, qemu, deadline)?;
    log::debug!("QEMU connected the agent channel; sending hello");
    hello(stream, qemu, guest, deadline)
}

/// What the hello tells the agent to set up before it answers.
#[derive(Debug, Clone)]
pub struct GuestSetup {
    pub boot: GuestBoot,
    /// `None`: no network interface.
    pub network: Option<GuestNetwork>,
    /// The interception CA the guest is to trust; `None`: TLS is not intercepted.
    pub tls_ca_pem: Option<String>,
}

/// Bytes of host randomness each boot's hello carries (see [`GuestBoot::entropy`]).
const ENTROPY_BYTES: usize = 64;

/// What a sandbox's guest boots into: `root`, its name, and fresh entropy.
pub fn guest_boot(root: msb_protocol::guest::GuestRoot, hostname: &str) -> Result<GuestBoot> {
    let mut entropy = vec![0u8; ENTROPY_BYTES];
    use std::io::Read as _;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut entropy))
        .map_err(SupervisorError::io("reading /dev/urandom"))?;
    Ok(GuestBoot {
        root,
        hostname: hostname.to_string(),
        entropy,
    })
}

/// Waits for QEMU to connect to the agent socket (a non-blocking listener), noticing if QEMU
/// dies first.
pub(crate) fn accept_agent(
    listener: &UnixListener,
    qemu: &mut Child,
    deadline: Instant,
) -> Result<UnixStream> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream
                    .set_nonblocking(false)
                    .map_err(SupervisorError::io("agent socket"))?;
                return Ok(stream);
            }
            Err(error) if error.kind() == ErrorKind::WouldBlock => {}
            Err(error) => return Err(SupervisorError::io("accepting the agent channel")(error)),
        }
        check_alive(qemu)?;
        if Instant::now() > deadline {
            return Err(SupervisorError::Protocol(
                "QEMU never connected the agent channel".into(),
            ));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn check_alive(qemu: &mut Child) -> Result<()> {
    match qemu.try_wait() {
        Ok(Some(status)) => Err(SupervisorError::Protocol(format!(
            "QEMU exited during boot ({status})"
        ))),
        _ => Ok(()),
    }
}

/// Sends the host's hello (with the wall clock, since the guest has no RTC) and waits for the
/// agent's. The hello is buffered until the guest opens its port.
fn hello(
    stream: UnixStream,
    qemu: &mut Child,
    guest: &GuestSetup,
    deadline: Instant,
) -> Result<(UnixStream, AgentHello)> {
    let frame = hello_frame(guest)?;
    frame.write_to(&mut &stream).map_err(protocol_error)?;
    let reply = loop {
        match next_agent_message(&stream, qemu, deadline)? {
            AgentMessage::AwaitingHello => {}
            reply => break reply,
        }
    };
    match reply {
        AgentMessage::Hello { version, agent_version, kernel_release } if version == PROTOCOL_VERSION => {
            log::debug!("the agent answered: version {agent_version}, kernel {kernel_release}");
            Ok((stream, AgentHello { version: agent_version, kernel_release }))
        }
        AgentMessage::Hello { version, .. } => Err(SupervisorError::Protocol(format!(
            "the guest agent speaks protocol {version}, this runtime {PROTOCOL_VERSION}; rebuild the initramfs"
        ))),
        AgentMessage::Error(error) => Err(SupervisorError::Protocol(format!("the guest agent: {}", error.message))),
        other => Err(SupervisorError::Protocol(format!("unexpected first message from the agent: {other:?}"))),
    }
}

/// Reads the agent's next message, polling so that a QEMU that exits or a deadline that
/// passes is noticed.
pub(crate) fn next_agent_message(
    stream: &UnixStream,
    qemu: &mut Child,
    deadline: Instant,
) -> Result<AgentMessage> {
    stream
        .set_read_timeout(Some(READ_POLL))
        .map_err(SupervisorError::io("agent socket"))?;
    let frame = loop {
        match Frame::read_from(&mut &*stream) {
            Ok(frame) => break frame,
            Err(FrameError::Io(error))
                if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                check_alive(qemu)?;
                if Instant::now() > deadline {
                    return Err(SupervisorError::Protocol(
                        "the guest agent did not answer".into(),
                    ));
                }
            }
            Err(error) => return Err(protocol_error(error)),
        }
    };
    stream
        .set_read_timeout(None)
        .map_err(SupervisorError::io("agent socket"))?;
    frame.decode::<AgentMessage>().map_err(protocol_error)
}

/// The host's hello, carrying the wall clock and what the guest is to set up.
pub fn hello_frame(guest: &GuestSetup) -> Result<Frame> {
    let unix_time_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    Frame::new(
        HELLO_ID,
        FLAG_END,
        &HostMessage::Hello {
            version: PROTOCOL_VERSION,
            unix_time_ns,
            boot: guest.boot.clone(),
            network: guest.network.clone(),
            tls_ca_pem: guest.tls_ca_pem.clone(),
        },
    )
    .map_err(protocol_error)
}

fn protocol_error(error: FrameError) -> SupervisorError {
    SupervisorError::Protocol(error.to_string())
}

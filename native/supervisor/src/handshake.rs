//! The start of the agent channel: QEMU connects the agent's virtio-serial port to the
//! supervisor's socket, the supervisor says hello (with the wall clock), the agent answers
//! with its version once the guest has booted.

use crate::error::{Result, SupervisorError};
use msb_protocol::guest::{AgentMessage, GuestNetwork, HostMessage, HELLO_ID};
use msb_protocol::{Frame, FrameError, FLAG_END, PROTOCOL_VERSION};
use std::io::ErrorKind;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Child;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Upper bound of a boot, from QEMU's start to the agent's hello. TCG on a loaded 2-core host
/// boots in seconds; this only catches a guest that will never come up.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// What the agent said about itself.
pub struct AgentHello {
    pub version: String,
    pub kernel_release: String,
}

/// Waits for the agent channel and the agent's hello; fails if QEMU exits first.
/// `guest` is what the agent configures before it answers.
pub fn handshake(
    listener: &UnixListener,
    qemu: &mut Child,
    guest: GuestSetup,
) -> Result<(UnixStream, AgentHello)> {
    let stream = accept_agent(listener, qemu)?;
    log::debug!("QEMU connected the agent channel; sending hello");
    hello(stream, qemu, guest)
}

/// What the hello tells the agent to set up before it answers.
#[derive(Debug, Clone, Default)]
pub struct GuestSetup {
    /// `None`: no network interface.
    pub network: Option<GuestNetwork>,
    /// The interception CA the guest is to trust; `None`: TLS is not intercepted.
    pub tls_ca_pem: Option<String>,
}

/// Waits for QEMU to connect to the agent socket, noticing if QEMU dies first.
fn accept_agent(listener: &UnixListener, qemu: &mut Child) -> Result<UnixStream> {
    let deadline = Instant::now() + BOOT_TIMEOUT;
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
/// agent's. The hello is buffered until the guest opens its port, i.e. until it has booted.
fn hello(
    stream: UnixStream,
    qemu: &mut Child,
    guest: GuestSetup,
) -> Result<(UnixStream, AgentHello)> {
    let frame = hello_frame(guest)?;
    frame.write_to(&mut &stream).map_err(protocol_error)?;
    stream
        .set_read_timeout(Some(Duration::from_millis(250)))
        .map_err(SupervisorError::io("agent socket"))?;
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let mut reader = &stream;
    let reply = loop {
        match Frame::read_from(&mut reader) {
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
    match reply.decode::<AgentMessage>().map_err(protocol_error)? {
        AgentMessage::Hello { version, agent_version, kernel_release } if version == PROTOCOL_VERSION => {
            log::debug!("the agent answered: version {agent_version}, kernel {kernel_release}");
            Ok((stream, AgentHello { version: agent_version, kernel_release }))
        }
        AgentMessage::Hello { version, .. } => Err(SupervisorError::Protocol(format!(
            "the guest agent speaks protocol {version}, this runtime {PROTOCOL_VERSION}; rebuild the initramfs"
        ))),
        other => Err(SupervisorError::Protocol(format!("unexpected first message from the agent: {other:?}"))),
    }
}

/// The host's hello, carrying the wall clock and what the guest is to set up.
pub fn hello_frame(guest: GuestSetup) -> Result<Frame> {
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
            network: guest.network,
            tls_ca_pem: guest.tls_ca_pem,
        },
    )
    .map_err(protocol_error)
}

fn protocol_error(error: FrameError) -> SupervisorError {
    SupervisorError::Protocol(error.to_string())
}

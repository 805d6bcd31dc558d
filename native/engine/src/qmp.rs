//! A minimal blocking client for QEMU's machine protocol (QMP): one JSON object per line.
//!
//! Every command carries an `id` that QEMU echoes, so a late reply to a command that timed
//! out is never mistaken for the answer to the next one. Asynchronous events are skipped.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};
use thiserror::Error;

/// How often `connect` retries while QEMU has not created its socket yet.
const CONNECT_RETRY: Duration = Duration::from_millis(20);
/// A reply line longer than this is not QMP we understand; it is not buffered further.
const MAX_LINE: u64 = 16 << 20;

#[derive(Debug, Error)]
pub enum QmpError {
    #[error("QMP i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP: no answer within {0:?}")]
    Timeout(Duration),
    #[error("QMP connection closed by QEMU")]
    Closed,
    #[error("QMP protocol error: {0}")]
    Protocol(String),
    #[error("QMP command {command} failed ({class}): {desc}")]
    Command {
        command: String,
        class: String,
        desc: String,
    },
}

/// Per-drive I/O counters from `query-blockstats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockStats {
    /// The drive id (`-drive id=...`), or the qdev path when the drive has none.
    pub device: String,
    pub rd_bytes: u64,
    pub wr_bytes: u64,
}

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    timeout: Duration,
    next_id: u64,
    /// The part of a line received before a read timed out, kept so the stream stays in step.
    pending: Vec<u8>,
}

impl Qmp {
    /// Connects (retrying until `timeout` while the socket does not exist or refuses), reads
    /// the greeting and leaves capabilities negotiation mode. `timeout` also bounds every
    /// later reply.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let stream = connect_with_retry(path, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            timeout,
            next_id: 0,
            pending: Vec::new(),
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "expected the QMP greeting, got {greeting}"
            )));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let id = self.send(command, arguments)?;
        self.reply(command, id)
    }

    /// The run state, e.g. `running`, `paused`, `prelaunch`, `shutdown`.
    pub fn query_status(&mut self) -> Result<String, QmpError> {
        let status = self.execute("query-status", None)?;
        status
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| QmpError::Protocol(format!("query-status without status: {status}")))
    }

    /// Hands QEMU descriptor `fd` under `name` (`getfd`), for commands that take `fd:NAME`.
    /// QEMU takes it from the command's message (`SCM_RIGHTS`); outgoing migrations accept
    /// only such named descriptors, not inherited ones.
    pub fn pass_fd(&mut self, name: &str, fd: BorrowedFd<'_>) -> Result<(), QmpError> {
        self.next_id += 1;
        let id = self.next_id;
        let line = format!(
            "{}\n",
            json!({ "execute": "getfd", "arguments": { "fdname": name }, "id": id })
        );
        send_with_fd(&self.writer, line.as_bytes(), fd)?;
        self.reply("getfd", id).map(drop)
    }

    /// Pauses the vCPUs.
    pub fn stop(&mut self) -> Result<(), QmpError> {
        self.execute("stop", None).map(drop)
    }

    /// Resumes the vCPUs.
    pub fn cont(&mut self) -> Result<(), QmpError> {
        self.execute("cont", None).map(drop)
    }

    /// Makes QEMU exit. QEMU may close the socket before (or instead of) answering, so the
    /// connection ending counts as success.
    pub fn quit(&mut self) -> Result<(), QmpError> {
        let sent = self.send("quit", None);
        match sent.and_then(|id| self.reply("quit", id)) {
            Ok(_) | Err(QmpError::Closed) => Ok(()),
            Err(QmpError::Io(error)) if is_disconnect(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Read/write byte counters of every drive.
    pub fn block_stats(&mut self) -> Result<Vec<BlockStats>, QmpError> {
        let reply = self.execute("query-blockstats", None)?;
        let entries = reply
            .as_array()
            .ok_or_else(|| QmpError::Protocol(format!("query-blockstats returned {reply}")))?;
        Ok(entries.iter().filter_map(parse_block_stats).collect())
    }

    fn send(&mut self, command: &str, arguments: Option<Value>) -> Result<u64, QmpError> {
        self.next_id += 1;
        let mut message = json!({ "execute": command, "id": self.next_id });
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        let mut line = message.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes())?;
        Ok(self.next_id)
    }

    /// Reads until the reply carrying `id`, skipping events and stale replies.
    fn reply(&mut self, command: &str, id: u64) -> Result<Value, QmpError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if Instant::now() > deadline {
                return Err(QmpError::Timeout(self.timeout));
            }
            let message = self.read_message()?;
            if message.get("event").is_some()
                || message.get("id").and_then(Value::as_u64) != Some(id)
            {
                continue;
            }
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                let text = |key: &str| {
                    error
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                return Err(QmpError::Command {
                    command: command.to_string(),
                    class: text("class"),
                    desc: text("desc"),
                });
            }
            return Err(QmpError::Protocol(format!("unexpected reply {message}")));
        }
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        let room = MAX_LINE.saturating_sub(self.pending.len() as u64);
        let read = (&mut self.reader)
            .take(room)
            .read_until(b'\n', &mut self.pending);
        match read {
            Ok(0) if self.pending.is_empty() => Err(QmpError::Closed),
            Ok(_) if !self.pending.ends_with(b"\n") => {
                Err(QmpError::Protocol("reply line too long or cut off".into()))
            }
            Ok(_) => {
                let line = std::mem::take(&mut self.pending);
                serde_json::from_slice(&line)
                    .map_err(|e| QmpError::Protocol(format!("bad JSON from QEMU: {e}")))
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(QmpError::Timeout(self.timeout))
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Writes `bytes` with `fd` attached as `SCM_RIGHTS`, in one `sendmsg`.
fn send_with_fd(socket: &UnixStream, bytes: &[u8], fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; the pointers set below outlive the sendmsg call.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = space as _;
    // SAFETY: the control buffer holds one header with room for one descriptor.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&message);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), raw);
    }
    // SAFETY: a valid msghdr on a connected socket.
    let sent = unsafe { libc::sendmsg(socket.as_raw_fd(), &message, 0) };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if (sent as usize) < bytes.len() {
        // The descriptor went with the first bytes; the rest is an ordinary write.
        (&*socket).write_all(&bytes[sent as usize..])?;
    }
    Ok(())
}

fn connect_with_retry(path: &Path, timeout: Duration) -> Result<UnixStream, QmpError> {
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect(path) {
            Ok(stream) => return Ok(stream),
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::NotFound | ErrorKind::ConnectionRefused
                ) =>
            {
                if Instant::now() >= deadline {
                    return Err(QmpError::Timeout(timeout));
                }
                std::thread::sleep(CONNECT_RETRY);
            }
            Err(error) => return Err(error.into()),
        }
    }
}

fn is_disconnect(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof
    )
}

fn parse_block_stats(entry: &Value) -> Option<BlockStats> {
    let name = |key: &str| {
        entry
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let device = name("device")
        .or_else(|| name("qdev"))
        .or_else(|| name("node-name"))?;
    let stats = entry.get("stats")?;
    let counter = |key: &str| stats.get(key).and_then(Value::as_u64).unwrap_or(0);
    Some(BlockStats {
        device: device.to_string(),
        rd_bytes: counter("rd_bytes"),
        wr_bytes: counter("wr_bytes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::testing::scratch;
    use std::os::unix::net::UnixListener;

    /// A scripted QMP server: sends the greeting, then for each request line the canned
    /// replies (with `$ID` replaced by the request's id).
    fn fake_server(dir: &Path, script: Vec<Vec<&'static str>>) -> std::path::PathBuf {
        let path = dir.join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            writeln!(
                writer,
                r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#
            )
            .unwrap();
            for replies in script {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 {
                    return;
                }
                let request: Value = serde_json::from_str(&line).unwrap();
                let id = request["id"].to_string();
                for reply in replies {
                    writeln!(writer, "{}", reply.replace("$ID", &id)).unwrap();
                }
            }
        });
        path
    }

    #[test]
    fn events_and_stale_replies_are_skipped_and_errors_are_typed() {
        let dir = scratch("qmp-fake");
        let socket = fake_server(
            dir.path(),
            vec![
                vec![r#"{"return": {}, "id": $ID}"#],
                vec![
                    r#"{"event": "STOP", "timestamp": {}}"#,
                    r#"{"return": {"status": "stale"}, "id": 999}"#,
                    r#"{"return": {"status": "paused", "running": false}, "id": $ID}"#,
                ],
                vec![r#"{"error": {"class": "GenericError", "desc": "no such thing"}, "id": $ID}"#],
                vec![
                    r#"{"return": [{"device": "upper", "stats": {"rd_bytes": 10, "wr_bytes": 20}}, {"device": "", "qdev": "/machine/x", "stats": {"rd_bytes": 1, "wr_bytes": 2}}], "id": $ID}"#,
                ],
            ],
        );
        let mut qmp = Qmp::connect(&socket, Duration::from_secs(5)).unwrap();
        assert_eq!(qmp.query_status().unwrap(), "paused");
        let error = qmp.execute("bogus", Some(json!({"x": 1}))).unwrap_err();
        assert!(
            matches!(&error, QmpError::Command { desc, .. } if desc == "no such thing"),
            "{error}"
        );
        assert_eq!(
            qmp.block_stats().unwrap(),
            [
                BlockStats {
                    device: "upper".into(),
                    rd_bytes: 10,
                    wr_bytes: 20
                },
                BlockStats {
                    device: "/machine/x".into(),
                    rd_bytes: 1,
                    wr_bytes: 2
                },
            ]
        );
        // The server's script is over: it closes, which quit() takes as success.
        qmp.quit().unwrap();
    }

    #[test]
    fn a_silent_server_times_out() {
        let dir = scratch("qmp-silent");
        let socket = dir.path().join("qmp.sock");
        let _listener = UnixListener::bind(&socket).unwrap();
        let error = Qmp::connect(&socket, Duration::from_millis(200))
            .err()
            .unwrap();
        assert!(matches!(error, QmpError::Timeout(_)), "{error}");
    }

    #[test]
    fn a_missing_socket_times_out() {
        let dir = scratch("qmp-missing");
        let error = Qmp::connect(&dir.path().join("none"), Duration::from_millis(100))
            .err()
            .unwrap();
        assert!(matches!(error, QmpError::Timeout(_)), "{error}");
    }
}

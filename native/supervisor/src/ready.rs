//! The pipe on which the supervisor tells the process that started it how start-up went: one
//! line, `ready`, `port-in-use: ADDRESS:PORT/PROTOCOL` or `error: REASON`.

use std::io::Write;
use std::os::fd::FromRawFd;

const READY: &str = "ready";
const PORT_IN_USE: &str = "port-in-use: ";
const ERROR: &str = "error: ";

/// How start-up went, as one line of the pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ready,
    /// A published port is bound by someone else (`127.0.0.1:8080/tcp`).
    PortInUse(String),
    Failed(String),
}

impl Outcome {
    pub fn line(&self) -> String {
        match self {
            Self::Ready => READY.to_string(),
            Self::PortInUse(address) => format!("{PORT_IN_USE}{address}"),
            Self::Failed(reason) => format!("{ERROR}{reason}"),
        }
    }

    /// The outcome a line reports; `None` for an empty one (the supervisor ended silently).
    pub fn parse(line: &str) -> Option<Self> {
        let line = line.trim();
        if line.is_empty() {
            None
        } else if line == READY {
            Some(Self::Ready)
        } else if let Some(address) = line.strip_prefix(PORT_IN_USE) {
            Some(Self::PortInUse(address.to_string()))
        } else {
            Some(Self::Failed(line.trim_start_matches(ERROR).to_string()))
        }
    }
}

/// Reports the outcome of start-up to the process that created the sandbox.
pub struct ReadyPipe(Option<std::fs::File>);

impl ReadyPipe {
    pub fn new(fd: Option<i32>) -> Self {
        // SAFETY: the creator passes a pipe descriptor that this process owns from now on.
        // It must not leak into QEMU: the creator reads until every writer has closed it.
        Self(fd.map(|fd| unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            std::fs::File::from_raw_fd(fd)
        }))
    }

    pub fn send(&mut self, outcome: &Outcome) {
        if let Some(mut pipe) = self.0.take() {
            let _ = writeln!(pipe, "{}", outcome.line());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_survives_its_line() {
        for outcome in [
            Outcome::Ready,
            Outcome::PortInUse("127.0.0.1:8080/tcp".into()),
            Outcome::Failed("the guest agent did not answer".into()),
        ] {
            assert_eq!(
                Outcome::parse(&format!("{}\n", outcome.line())),
                Some(outcome)
            );
        }
        assert_eq!(Outcome::parse(" \n"), None);
    }
}

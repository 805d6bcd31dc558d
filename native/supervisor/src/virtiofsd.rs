//! virtiofsd helpers: one per shared host directory (a bind root or a bind volume).

use crate::error::{Result, SupervisorError};
use crate::process;
use msb_engine::qemu::{self, EngineError};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const HELPER_SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A virtiofsd serving one directory; stopping it also removes its socket.
pub struct Helper {
    child: Child,
    socket: PathBuf,
}

impl Helper {
    /// Starts a virtiofsd for `source` and waits until it listens on `socket`.
    pub fn spawn(source: &Path, socket: &Path, readonly: bool) -> Result<Self> {
        // A socket left by an earlier run would look like this virtiofsd listening.
        let _ = std::fs::remove_file(socket);
        let mut command =
            qemu::virtiofsd_command(source, socket, readonly).map_err(|error| match error {
                EngineError::NulInPath(_) => SupervisorError::InvalidConfig(error.to_string()),
                other => SupervisorError::NotInstalled(other.to_string()),
            })?;
        log::debug!("starting {command:?}");
        let child = process::kill_with_parent(command.stdin(Stdio::null()))
            .spawn()
            .map_err(SupervisorError::io("starting virtiofsd"))?;
        let mut helper = Self {
            child,
            socket: socket.to_path_buf(),
        };
        match wait_for_socket(socket, &mut helper.child) {
            Ok(()) => Ok(helper),
            Err(error) => {
                helper.stop();
                Err(error)
            }
        }
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn wait_for_socket(socket: &Path, helper: &mut Child) -> Result<()> {
    let deadline = Instant::now() + HELPER_SOCKET_TIMEOUT;
    while !socket.exists() {
        if let Ok(Some(status)) = helper.try_wait() {
            return Err(SupervisorError::Protocol(format!(
                "virtiofsd exited before listening ({status})"
            )));
        }
        if Instant::now() > deadline {
            return Err(SupervisorError::Protocol(format!(
                "virtiofsd did not create {}",
                socket.display()
            )));
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    Ok(())
}

//! Where the runtime keeps things. The one place that knows the layout of the home and cache.

use crate::error::SupervisorError;
use msb_net::gateway::CaPaths;
use std::path::PathBuf;

/// Overrides the runtime home (database, sandboxes, logs).
pub const HOME_ENV: &str = "MSB_HOME";
/// Overrides the cache of kernels, initramfs images and layers, which may be shared by homes.
pub const CACHE_ENV: &str = "MSB_CACHE_DIR";
/// Longest sandbox or volume name, also enforced by the SDK's validated config.
pub const MAX_NAME_LENGTH: usize = 63;

pub fn home_dir() -> PathBuf {
    if let Some(home) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    user_home().join(".microsandbox-tui")
}

/// Defaults to the user's cache directory rather than the home, so that several homes (tests
/// use throw-away ones) share one downloaded kernel and one set of layers.
pub fn cache_dir() -> PathBuf {
    if let Some(cache) = std::env::var_os(CACHE_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(cache);
    }
    let user_cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| user_home().join(".cache"));
    user_cache.join("microsandbox-tui").join("runtime")
}

fn user_home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into())
}

/// The home's interception CA (`tls/ca.pem`, `tls/ca.key`), generated on first use by a
/// sandbox whose TLS is intercepted without a CA of the user's.
pub fn interception_ca() -> CaPaths {
    let dir = interception_ca_dir();
    CaPaths {
        cert: dir.join("ca.pem"),
        key: dir.join("ca.key"),
    }
}

/// The directory of the home's interception CA, whose `.lock` serialises its generation.
pub fn interception_ca_dir() -> PathBuf {
    home_dir().join("tls")
}

pub fn database_path() -> PathBuf {
    home_dir().join("state.db")
}

/// The directory of one sandbox: sockets, logs, its writable disk.
pub fn sandbox_dir(name: &str) -> Result<PathBuf, SupervisorError> {
    check_name("sandbox", name)?;
    Ok(home_dir().join("sandboxes").join(name))
}

/// Named volumes, one ext4 image file each.
fn volumes_dir() -> PathBuf {
    home_dir().join("volumes")
}

/// The image file of the named volume `name`.
pub fn volume_image(name: &str) -> Result<PathBuf, SupervisorError> {
    check_name("volume", name)?;
    Ok(volumes_dir().join(format!("{name}.ext4")))
}

/// Where a volume is formatted before it is recorded and renamed into place: a name no
/// volume can have (names never start with a dot), unique to this process.
pub fn volume_staging_image(name: &str) -> Result<PathBuf, SupervisorError> {
    check_name("volume", name)?;
    Ok(volumes_dir().join(format!(".{name}.{}.tmp", std::process::id())))
}

/// Names become file names, so this guards against path tricks even if a caller skipped
/// the SDK's validation. `what` names the kind of thing in the error.
fn check_name(what: &str, name: &str) -> Result<(), SupervisorError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LENGTH
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(SupervisorError::InvalidConfig(format!(
            "invalid {what} name {name:?}: use up to {MAX_NAME_LENGTH} letters, digits, '_', \
             '.' and '-', starting with a letter or digit"
        )))
    }
}

/// Files inside a sandbox directory.
pub struct SandboxFiles {
    pub dir: PathBuf,
}

impl SandboxFiles {
    pub fn new(name: &str) -> Result<Self, SupervisorError> {
        Ok(Self {
            dir: sandbox_dir(name)?,
        })
    }

    /// The same layout in another directory (benchmarks boot VMs outside any home).
    pub fn in_dir(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn control_socket(&self) -> PathBuf {
        self.dir.join("control.sock")
    }
    pub fn agent_socket(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub fn virtiofs_socket(&self) -> PathBuf {
        self.dir.join("virtiofs.sock")
    }
    /// The virtiofsd socket of the bind volume whose guest tag is `tag`.
    pub fn volume_socket(&self, tag: &str) -> PathBuf {
        self.dir.join(format!("{tag}.sock"))
    }
    pub fn upper_disk(&self) -> PathBuf {
        self.dir.join("upper.ext4")
    }
    pub fn console_socket(&self) -> PathBuf {
        self.dir.join("console.sock")
    }

    /// Commands run in the sandbox and how they ended.
    pub fn exec_log(&self) -> PathBuf {
        self.dir.join("exec.log")
    }

    /// The supervisor's latest metrics sample.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.json")
    }

    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    pub fn supervisor_log(&self) -> PathBuf {
        self.dir.join("supervisor.log")
    }

    /// The gateway's flow log: one JSON record per line (see `msb_net::gateway::flow_log`).
    pub fn network_log(&self) -> PathBuf {
        self.dir.join("network.log")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_path_tricks_are_refused() {
        for name in ["", "a/b", "..", ".hidden", "-x", &"a".repeat(64)] {
            assert!(sandbox_dir(name).is_err(), "{name:?} must be refused");
            assert!(volume_image(name).is_err(), "{name:?} must be refused");
        }
        assert!(sandbox_dir("web-1.test_x").is_ok());
        let image = volume_image("data-1").unwrap();
        assert_eq!(image.file_name().unwrap(), "data-1.ext4");
        let staging = volume_staging_image("data-1").unwrap();
        assert_eq!(staging.parent(), image.parent());
        assert!(staging
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with('.'));
    }
}

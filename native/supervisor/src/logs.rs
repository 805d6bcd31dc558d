//! Size-bounded logs: when a log reaches its limit it moves to `NAME.1` (replacing the older
//! one) and a new file starts, so a sandbox never holds more than twice the limit per log.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Largest size of one log file before it rotates.
pub const MAX_LOG_BYTES: u64 = 1 << 20;

pub struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
    limit: u64,
}

impl RotatingLog {
    pub fn open(path: &Path, limit: u64) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
            limit,
        })
    }

    /// The previous generation of a log.
    pub fn rotated_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_owned();
        name.push(".1");
        PathBuf::from(name)
    }

    pub fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.limit {
            std::fs::rename(&self.path, Self::rotated_path(&self.path))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Appends one line prefixed with the UTC time.
    pub fn line(&mut self, message: &str) -> std::io::Result<()> {
        self.append(format!("{} {message}\n", utc_timestamp(SystemTime::now())).as_bytes())
    }
}

pub use msb_net::utc::utc_timestamp;

/// The last `count` lines of the log at `path`, joined; `None` when it is missing or empty.
/// Errors quote them so that a failure says what the guest or QEMU printed last.
pub fn last_lines(path: &Path, count: usize) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(count)..].join("\n");
    (!tail.is_empty()).then_some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rotates_at_its_limit_and_keeps_one_generation() {
        let dir = std::env::temp_dir().join(format!("msb-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("console.log");
        let mut log = RotatingLog::open(&path, 100).unwrap();
        for _ in 0..5 {
            log.append(&[b'x'; 60]).unwrap();
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 60);
        assert_eq!(
            std::fs::metadata(RotatingLog::rotated_path(&path))
                .unwrap()
                .len(),
            60
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn last_lines_gives_the_end_of_a_log_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        assert_eq!(last_lines(&path, 2), None);
        std::fs::write(&path, "").unwrap();
        assert_eq!(last_lines(&path, 2), None);
        std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
        assert_eq!(last_lines(&path, 2).as_deref(), Some("two\nthree"));
        assert_eq!(last_lines(&path, 9).as_deref(), Some("one\ntwo\nthree"));
    }
}

//! File-system helpers for the caches: everything is built aside and renamed into place, so a
//! crash or a concurrent builder never exposes a half-written file or directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Distinguishes temporary names made by different threads of one process.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name no other process or thread is using: `<prefix>-<pid>-<nanos>-<counter>`.
/// The pid comes first after the prefix so that leftovers of dead processes can be found.
pub(crate) fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{nanos}-{count}", std::process::id())
}

/// A directory removed (with its content) when dropped.
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<parent>/<prefix>-<pid>-...`; `parent` must exist.
    pub(crate) fn new_in(parent: &Path, prefix: &str) -> io::Result<Self> {
        let path = parent.join(unique_name(prefix));
        fs::create_dir(&path)?;
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes `<parent>/<prefix>-<pid>-*` entries left behind by processes that no longer exist
/// (a builder killed mid-way cannot clean up after itself).
pub(crate) fn remove_stale(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    let lead = format!("{prefix}-");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&lead)) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let path = entry.path();
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
    }
}

/// Writes `bytes` to `path` through a synced temporary file in the same directory and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let temp = parent.join(unique_name(".write"));
    let result = write_synced(&temp, bytes).and_then(|()| fs::rename(&temp, path));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Writes and fsyncs a file, so that a rename after it never publishes an empty file after a
/// power loss.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
pub(crate) mod testing {
    use super::TempDir;

    /// A scratch directory for a unit test, under the system temp dir.
    pub(crate) fn scratch(label: &str) -> TempDir {
        TempDir::new_in(&std::env::temp_dir(), &format!("msb-engine-test-{label}"))
            .expect("creating a scratch directory")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temporaries() {
        let dir = testing::scratch("atomic");
        let target = dir.path().join("file");
        write_atomic(&target, b"one").unwrap();
        write_atomic(&target, b"two").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn stale_entries_of_dead_processes_are_removed_and_live_ones_kept() {
        let dir = testing::scratch("stale");
        // pid 0 never names a user process in /proc; our own pid is alive.
        let dead = dir.path().join(".install-0-1-2");
        let alive = dir
            .path()
            .join(format!(".install-{}-1-2", std::process::id()));
        fs::create_dir(&dead).unwrap();
        fs::create_dir(&alive).unwrap();
        remove_stale(dir.path(), ".install");
        assert!(!dead.exists());
        assert!(alive.exists());
    }

    #[test]
    fn temp_dir_is_removed_on_drop() {
        let dir = testing::scratch("drop");
        let inner = TempDir::new_in(dir.path(), "x").unwrap();
        let path = inner.path().to_path_buf();
        fs::write(path.join("f"), b"x").unwrap();
        drop(inner);
        assert!(!path.exists());
    }
}

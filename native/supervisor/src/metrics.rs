//! Per-sandbox metrics. The supervisor samples its VM once a second and writes the sample to
//! `metrics.json` in the sandbox directory; readers (50 sandboxes at 1 Hz in the dashboard)
//! only read small files, and never wait on a VM.

use crate::paths::SandboxFiles;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// How often a supervisor samples its VM.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSample {
    /// Host CPU time of the VM over the last interval; 100 = one core busy.
    pub cpu_percent: f64,
    /// Guest memory in use (MemTotal - MemAvailable), from the agent.
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
    /// QEMU's resident memory on the host.
    pub host_rss_bytes: u64,
    /// Cumulative since boot, from QMP block statistics.
    pub disk_read_bytes: u64,
    pub disk_write_bytes: u64,
    /// Cumulative since boot (the network stack is not there yet: 0).
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub uptime_ms: u64,
    /// When the sample was taken, in milliseconds since the Unix epoch.
    pub sampled_at: u64,
}

/// CPU time (user + system) of a process, in seconds.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) sit at 11 and 12.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / per_second)
}

/// Resident memory of a process, in bytes.
pub fn process_rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    Some(pages * page)
}

/// Replaces the sample file atomically, so a reader never sees half a sample.
pub fn write(files: &SandboxFiles, sample: &MetricsSample) -> std::io::Result<()> {
    let target = files.metrics();
    let staged = target.with_extension("json.tmp");
    std::fs::write(
        &staged,
        serde_json::to_vec(sample).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&staged, &target)
}

pub fn read(path: &Path) -> Option<MetricsSample> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_time_and_resident_memory() {
        let pid = std::process::id();
        let busy_until = std::time::Instant::now() + Duration::from_millis(50);
        while std::time::Instant::now() < busy_until {}
        assert!(process_cpu_seconds(pid).unwrap() > 0.0);
        assert!(process_rss_bytes(pid).unwrap() > 1 << 20);
    }

    #[test]
    fn samples_round_trip_through_the_file() {
        let dir = std::env::temp_dir().join(format!("msb-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = SandboxFiles::in_dir(dir.clone());
        let sample = MetricsSample {
            cpu_percent: 12.5,
            disk_write_bytes: 7,
            ..Default::default()
        };
        write(&files, &sample).unwrap();
        assert_eq!(read(&files.metrics()), Some(sample));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

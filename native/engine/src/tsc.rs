//! The host's TSC rate. Under TCG the guest TSC runs at the host's rate, and the guest kernel
//! needs it on its command line (`tsc_early_khz`), because calibrating against the PIT can
//! hang early boot when no HPET or PM timer exists (DESIGN §2).

use std::path::Path;
use std::time::{Duration, Instant};

const CACHE_FILE: &str = "host-tsc-khz";
const MEASURE_FOR: Duration = Duration::from_millis(100);

/// Measured once and cached in `cache_dir`.
pub fn host_tsc_khz(cache_dir: &Path) -> u64 {
    let cache = cache_dir.join(CACHE_FILE);
    if let Some(khz) = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|text| text.trim().parse().ok())
    {
        return khz;
    }
    let khz = measure();
    let _ = std::fs::create_dir_all(cache_dir);
    let _ = std::fs::write(&cache, format!("{khz}\n"));
    khz
}

fn measure() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    let read = || unsafe { core::arch::x86_64::_rdtsc() };
    let (start_tsc, start) = (read(), Instant::now());
    std::thread::sleep(MEASURE_FOR);
    let (end_tsc, elapsed) = (read(), start.elapsed());
    let khz = (end_tsc - start_tsc) as f64 / elapsed.as_secs_f64() / 1000.0;
    // Round to a MHz: the exact digits vary per run and would only churn the cache.
    ((khz / 1000.0).round() * 1000.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_rate_is_plausible_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        let khz = host_tsc_khz(dir.path());
        assert!((100_000..10_000_000).contains(&khz), "{khz} kHz");
        std::fs::write(dir.path().join(CACHE_FILE), "1234\n").unwrap();
        assert_eq!(host_tsc_khz(dir.path()), 1234);
    }
}

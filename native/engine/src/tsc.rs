//! The host's TSC rate, for the guest kernel command line under TCG.
//!
//! Why: under TCG the guest's TSC ticks at the host's rate. Left to itself the guest
//! calibrates the TSC against the PIT, which under emulation sometimes fails and hangs early
//! boot; `tsc_early_khz=<rate>` skips that calibration (docs/ARCHITECTURE.md, "Why TCG, and the TSC").

use crate::fsutil;
use std::path::Path;
use std::time::Duration;

const CACHE_FILE: &str = "host-tsc-khz";
const MEASURE_FOR: Duration = Duration::from_millis(100);
/// Anything outside this range is a broken measurement or cache file, not a CPU.
const PLAUSIBLE_KHZ: std::ops::RangeInclusive<u64> = 100_000..=10_000_000;
/// When the kernel's own figure is this close to ours it is the better one (see `refine`).
const AGREEMENT_PER_MILLE: u64 = 2;

/// The host TSC rate in kHz, measured once and cached in `cache_dir/host-tsc-khz`. Returns 0
/// when no rate can be found; callers then leave the guest to calibrate by itself.
pub fn host_tsc_khz(cache_dir: &Path) -> u64 {
    let cache = cache_dir.join(CACHE_FILE);
    if let Some(khz) = read_cache(&cache) {
        return khz;
    }
    let cpuinfo = cpuinfo_khz(&std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default());
    let khz = refine(measure_khz(), cpuinfo);
    if PLAUSIBLE_KHZ.contains(&khz) && std::fs::create_dir_all(cache_dir).is_ok() {
        // Best effort: a failed write only means measuring again next time.
        let _ = fsutil::write_atomic(&cache, format!("{khz}\n").as_bytes());
    }
    khz
}

fn read_cache(path: &Path) -> Option<u64> {
    let khz = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    PLAUSIBLE_KHZ.contains(&khz).then_some(khz)
}

/// Prefers the kernel's `cpu MHz` when it agrees with the measurement: with
/// `tsc_known_freq` it is the exact TSC rate, while 100 ms of sleeping carries some jitter.
/// When they disagree (`cpu MHz` shows the current, scaled frequency on bare metal) the
/// measurement wins; if the measurement failed, `cpu MHz` is all there is.
fn refine(measured: Option<u64>, cpuinfo: Option<u64>) -> u64 {
    match (measured, cpuinfo) {
        (Some(m), Some(c)) if m.abs_diff(c) * 1000 <= m * AGREEMENT_PER_MILLE => c,
        (Some(m), _) => m,
        (None, Some(c)) => c,
        (None, None) => 0,
    }
}

/// The first `cpu MHz` line, in kHz.
fn cpuinfo_khz(cpuinfo: &str) -> Option<u64> {
    let line = cpuinfo.lines().find(|line| line.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split_once(':')?.1.trim().parse().ok()?;
    let khz = (mhz * 1000.0).round() as u64;
    PLAUSIBLE_KHZ.contains(&khz).then_some(khz)
}

fn monotonic_raw_ns() -> Option<u128> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec we pass.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_RAW, &mut now) };
    (status == 0).then(|| now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128)
}

/// TSC ticks per millisecond of CLOCK_MONOTONIC_RAW (not NTP-slewed) over ~100 ms.
#[cfg(target_arch = "x86_64")]
fn measure_khz() -> Option<u64> {
    // SAFETY: rdtsc has no preconditions on x86_64.
    let tsc = || unsafe { core::arch::x86_64::_rdtsc() };
    let (start_ns, start_tsc) = (monotonic_raw_ns()?, tsc());
    std::thread::sleep(MEASURE_FOR);
    let (end_tsc, end_ns) = (tsc(), monotonic_raw_ns()?);
    let ticks = end_tsc.checked_sub(start_tsc)? as u128;
    let elapsed_ns = end_ns.checked_sub(start_ns).filter(|&ns| ns > 0)?;
    let khz = u64::try_from(ticks * 1_000_000 / elapsed_ns).ok()?;
    PLAUSIBLE_KHZ.contains(&khz).then_some(khz)
}

#[cfg(not(target_arch = "x86_64"))]
fn measure_khz() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::testing::scratch;

    #[test]
    fn cpu_mhz_is_parsed_in_khz() {
        let text = "processor\t: 0\ncpu MHz\t\t: 2596.142\ncache size\t: 512 KB\n";
        assert_eq!(cpuinfo_khz(text), Some(2_596_142));
        assert_eq!(cpuinfo_khz("cpu MHz\t: nonsense\n"), None);
        assert_eq!(cpuinfo_khz(""), None);
    }

    #[test]
    fn the_kernel_figure_wins_only_when_it_agrees() {
        assert_eq!(refine(Some(2_596_300), Some(2_596_142)), 2_596_142);
        assert_eq!(refine(Some(2_596_300), Some(1_500_000)), 2_596_300);
        assert_eq!(refine(None, Some(1_500_000)), 1_500_000);
        assert_eq!(refine(None, None), 0);
    }

    #[test]
    fn measured_once_then_read_from_the_cache() {
        let dir = scratch("tsc");
        let khz = host_tsc_khz(dir.path());
        assert!(PLAUSIBLE_KHZ.contains(&khz), "{khz} kHz");
        std::fs::write(dir.path().join(CACHE_FILE), "1234567\n").unwrap();
        assert_eq!(host_tsc_khz(dir.path()), 1_234_567);
    }

    #[test]
    fn a_corrupt_cache_is_measured_again() {
        let dir = scratch("tsc-corrupt");
        std::fs::write(dir.path().join(CACHE_FILE), "12\n").unwrap();
        assert!(PLAUSIBLE_KHZ.contains(&host_tsc_khz(dir.path())));
    }
}

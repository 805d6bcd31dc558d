//! Choosing the accelerator: KVM only where it is real hardware virtualisation, else TCG.
//!
//! Why so careful: on the project's machines `/dev/kvm` exists but is a nested PVM module
//! without `vmx`/`svm`, and unmodified guest kernels die there with KVM emulation failures.
//! An openable `/dev/kvm` alone proves nothing (docs/ARCHITECTURE.md, "Why TCG, and the TSC").

use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use thiserror::Error;

/// Forces the accelerator: `auto` (the default), `kvm` or `tcg`.
pub const ACCEL_ENV: &str = "MSB_ACCEL";

/// `_IO(KVMIO, 0x00)` and `_IO(KVMIO, 0x01)` from `<linux/kvm.h>`.
const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
/// The only KVM API version Linux has ever shipped.
const KVM_API_VERSION: libc::c_int = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Accelerator {
    Kvm,
    Tcg,
}

impl fmt::Display for Accelerator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelRequest {
    Auto,
    Kvm,
    Tcg,
}

impl FromStr for AccelRequest {
    type Err = AccelError;

    fn from_str(text: &str) -> Result<Self, AccelError> {
        match text {
            "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "tcg" => Ok(Self::Tcg),
            other => Err(AccelError::UnknownRequest(other.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    pub accelerator: Accelerator,
    /// Why this accelerator, for `msb doctor` and the TUI status bar.
    pub reason: String,
}

#[derive(Debug, Error)]
pub enum AccelError {
    #[error("accelerator {0:?} is not one of auto, kvm, tcg (set by {ACCEL_ENV})")]
    UnknownRequest(String),
    #[error("KVM was requested but cannot run guests here: {0}")]
    KvmUnusable(String),
}

/// The request in `MSB_ACCEL`; unset or empty means `auto`.
pub fn request_from_env() -> Result<AccelRequest, AccelError> {
    match std::env::var(ACCEL_ENV) {
        Ok(value) if !value.trim().is_empty() => value.trim().parse(),
        _ => Ok(AccelRequest::Auto),
    }
}

/// Where the host facts come from; tests point these at files of their own.
#[derive(Debug, Clone)]
pub struct KvmHost {
    pub device: PathBuf,
    pub cpuinfo: PathBuf,
    /// Present when `/dev/kvm` is the nested PVM implementation.
    pub pvm_module: PathBuf,
}

impl KvmHost {
    pub fn system() -> Self {
        Self {
            device: "/dev/kvm".into(),
            cpuinfo: "/proc/cpuinfo".into(),
            pvm_module: "/sys/module/kvm_pvm".into(),
        }
    }

    /// Why KVM cannot run an unmodified guest here, or `None` when it can. Every static check
    /// is reported, so a reason reads like "no vmx/svm; nested PVM"; the VM-creation probe
    /// only runs when they all pass.
    pub fn unusable_reason(&self) -> Option<String> {
        let device = open_device(&self.device);
        let cpuinfo = std::fs::read_to_string(&self.cpuinfo).unwrap_or_default();
        let problems: Vec<String> = [
            device.as_ref().err().cloned(),
            check_cpu_flags(&cpuinfo).err(),
            check_pvm(&self.pvm_module).err(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !problems.is_empty() {
            return Some(problems.join("; "));
        }
        device.and_then(|file| probe(&file)).err()
    }
}

fn open_device(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|error| format!("{} cannot be opened read-write ({error})", path.display()))
}

/// Hardware virtualisation shows as `vmx` (Intel) or `svm` (AMD) in every CPU's flags.
fn check_cpu_flags(cpuinfo: &str) -> Result<(), String> {
    let has_flag = cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .filter_map(|line| line.split_once(':'))
        .any(|(_, flags)| flags.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if has_flag {
        Ok(())
    } else {
        Err("the CPU has no vmx or svm flag in /proc/cpuinfo (no hardware virtualisation)".into())
    }
}

fn check_pvm(module: &Path) -> Result<(), String> {
    if module.exists() {
        Err(format!(
            "{} is loaded: /dev/kvm is nested PVM, which cannot run an unmodified guest kernel",
            module.display()
        ))
    } else {
        Ok(())
    }
}

/// Asks the device for its API version and creates (then closes) an empty VM.
fn probe(device: &File) -> Result<(), String> {
    // SAFETY: argument-less ioctls on a descriptor we own; no memory is passed.
    let version = unsafe { libc::ioctl(device.as_raw_fd(), KVM_GET_API_VERSION, 0) };
    if version != KVM_API_VERSION {
        let error = std::io::Error::last_os_error();
        return Err(format!(
            "KVM_GET_API_VERSION returned {version}, expected {KVM_API_VERSION} ({error})"
        ));
    }
    // SAFETY: as above; the returned descriptor is owned (and closed) right away.
    let vm = unsafe { libc::ioctl(device.as_raw_fd(), KVM_CREATE_VM, 0) };
    if vm < 0 {
        return Err(format!(
            "KVM_CREATE_VM failed ({})",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `vm` is a fresh descriptor nobody else owns.
    drop(unsafe { OwnedFd::from_raw_fd(vm) });
    Ok(())
}

/// Chooses for this host.
pub fn choose(request: AccelRequest) -> Result<AccelChoice, AccelError> {
    choose_on(request, &KvmHost::system())
}

/// Chooses for the host described by `host`.
pub fn choose_on(request: AccelRequest, host: &KvmHost) -> Result<AccelChoice, AccelError> {
    let choice = |accelerator, reason: String| {
        Ok(AccelChoice {
            accelerator,
            reason,
        })
    };
    match request {
        AccelRequest::Tcg => choice(Accelerator::Tcg, format!("requested ({ACCEL_ENV}=tcg)")),
        AccelRequest::Kvm => match host.unusable_reason() {
            None => choice(Accelerator::Kvm, format!("requested ({ACCEL_ENV}=kvm)")),
            Some(problem) => Err(AccelError::KvmUnusable(problem)),
        },
        AccelRequest::Auto => match host.unusable_reason() {
            None => choice(
                Accelerator::Kvm,
                "hardware virtualisation is available".into(),
            ),
            Some(problem) => choice(
                Accelerator::Tcg,
                format!("software emulation, KVM unusable: {problem}"),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsutil::testing::scratch;
    use crate::fsutil::TempDir;
    use std::fs;

    /// A fake host: `device` is a regular file (openable, but every KVM ioctl fails on it).
    fn host(dir: &TempDir, flags: &str, pvm: bool, device: bool) -> KvmHost {
        let host = KvmHost {
            device: dir.path().join("kvm"),
            cpuinfo: dir.path().join("cpuinfo"),
            pvm_module: dir.path().join("kvm_pvm"),
        };
        fs::write(
            &host.cpuinfo,
            format!("processor\t: 0\nflags\t\t: fpu {flags} sse2\n\nprocessor\t: 1\n"),
        )
        .unwrap();
        if pvm {
            fs::create_dir(&host.pvm_module).unwrap();
        }
        if device {
            fs::write(&host.device, b"").unwrap();
        }
        host
    }

    #[test]
    fn requests_parse_exactly() {
        assert_eq!("auto".parse::<AccelRequest>().unwrap(), AccelRequest::Auto);
        assert_eq!("kvm".parse::<AccelRequest>().unwrap(), AccelRequest::Kvm);
        assert_eq!("tcg".parse::<AccelRequest>().unwrap(), AccelRequest::Tcg);
        assert!(matches!(
            "hvf".parse::<AccelRequest>(),
            Err(AccelError::UnknownRequest(_))
        ));
        assert_eq!(Accelerator::Kvm.to_string(), "kvm");
        assert_eq!(Accelerator::Tcg.to_string(), "tcg");
    }

    #[test]
    fn cpu_flags_must_contain_vmx_or_svm_as_whole_words() {
        assert!(check_cpu_flags("flags\t: fpu vmx sse").is_ok());
        assert!(check_cpu_flags("flags\t: fpu svm").is_ok());
        assert!(check_cpu_flags("flags\t: fpu vmxnot").is_err());
        assert!(check_cpu_flags("vmx flags: none\n").is_err());
        assert!(check_cpu_flags("").is_err());
    }

    #[test]
    fn nested_pvm_without_flags_falls_back_to_tcg_naming_both_reasons() {
        let dir = scratch("accel-pvm");
        let choice = choose_on(AccelRequest::Auto, &host(&dir, "", true, true)).unwrap();
        assert_eq!(choice.accelerator, Accelerator::Tcg);
        assert!(choice.reason.contains("vmx or svm"), "{}", choice.reason);
        assert!(choice.reason.contains("nested PVM"), "{}", choice.reason);
    }

    #[test]
    fn missing_device_is_reported() {
        let dir = scratch("accel-nodev");
        let reason = host(&dir, "vmx", false, false).unusable_reason().unwrap();
        assert!(reason.contains("cannot be opened"), "{reason}");
        assert!(!reason.contains("vmx or svm"), "{reason}");
    }

    #[test]
    fn the_probe_runs_when_static_checks_pass_and_its_failure_counts() {
        let dir = scratch("accel-probe");
        let reason = host(&dir, "svm", false, true).unusable_reason().unwrap();
        assert!(reason.contains("KVM_GET_API_VERSION"), "{reason}");
    }

    #[test]
    fn forced_kvm_on_an_unusable_host_is_an_error_and_forced_tcg_always_works() {
        let dir = scratch("accel-forced");
        let fake = host(&dir, "", true, true);
        let error = choose_on(AccelRequest::Kvm, &fake).unwrap_err();
        assert!(error.to_string().contains("nested PVM"), "{error}");
        assert_eq!(
            choose_on(AccelRequest::Tcg, &fake).unwrap().accelerator,
            Accelerator::Tcg
        );
    }
}

//! Choosing the accelerator: KVM only where it is real, else TCG (DESIGN §2).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Forces the accelerator: `auto` (default), `kvm` or `tcg`.
pub const ACCEL_ENV: &str = "MSB_ACCEL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "kvm" => Ok(Self::Kvm),
            "tcg" => Ok(Self::Tcg),
            other => Err(AccelError::UnknownRequest(other.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelChoice {
    pub accelerator: Accelerator,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    #[error("{ACCEL_ENV}={0:?} is not one of auto, kvm, tcg")]
    UnknownRequest(String),
    #[error("{ACCEL_ENV}=kvm, but KVM cannot run guests here: {0}")]
    KvmUnusable(String),
}

pub fn request_from_env() -> Result<AccelRequest, AccelError> {
    std::env::var(ACCEL_ENV).unwrap_or_default().parse()
}

/// The host facts the choice depends on, gathered separately so the rules can be tested.
pub struct HostFacts {
    pub cpuinfo: String,
    pub pvm_module: bool,
    pub kvm_probe: Result<(), String>,
}

impl HostFacts {
    pub fn read() -> Self {
        Self {
            cpuinfo: std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
            pvm_module: Path::new("/sys/module/kvm_pvm").exists(),
            kvm_probe: probe_kvm(),
        }
    }
}

/// Why KVM cannot be used, or `None` when it is real hardware virtualisation.
pub fn kvm_unusable_reason(facts: &HostFacts) -> Option<String> {
    let has_flag = facts
        .cpuinfo
        .lines()
        .filter(|line| line.starts_with("flags"))
        .any(|line| {
            line.split_whitespace()
                .any(|flag| flag == "vmx" || flag == "svm")
        });
    if !has_flag {
        return Some("the CPU has no vmx/svm flag (no hardware virtualisation)".into());
    }
    if facts.pvm_module {
        return Some(
            "/dev/kvm is nested PVM (kvm_pvm), which cannot run an unmodified guest kernel".into(),
        );
    }
    facts.kvm_probe.clone().err()
}

pub fn choose(request: AccelRequest) -> Result<AccelChoice, AccelError> {
    choose_with(request, &HostFacts::read())
}

pub fn choose_with(request: AccelRequest, facts: &HostFacts) -> Result<AccelChoice, AccelError> {
    let kvm_problem = match request {
        AccelRequest::Tcg => None,
        _ => kvm_unusable_reason(facts),
    };
    Ok(match (request, kvm_problem) {
        (AccelRequest::Tcg, _) => AccelChoice {
            accelerator: Accelerator::Tcg,
            reason: format!("forced by {ACCEL_ENV}=tcg"),
        },
        (AccelRequest::Kvm, None) => AccelChoice {
            accelerator: Accelerator::Kvm,
            reason: format!("forced by {ACCEL_ENV}=kvm"),
        },
        (AccelRequest::Kvm, Some(problem)) => return Err(AccelError::KvmUnusable(problem)),
        (AccelRequest::Auto, None) => AccelChoice {
            accelerator: Accelerator::Kvm,
            reason: "hardware virtualisation available".into(),
        },
        (AccelRequest::Auto, Some(problem)) => AccelChoice {
            accelerator: Accelerator::Tcg,
            reason: format!("software emulation: {problem}"),
        },
    })
}

const KVM_GET_API_VERSION: libc::c_ulong = 0xAE00;
const KVM_CREATE_VM: libc::c_ulong = 0xAE01;
const KVM_API_VERSION: i32 = 12;

/// Opens /dev/kvm and creates (and drops) a VM.
fn probe_kvm() -> Result<(), String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|error| format!("cannot open /dev/kvm: {error}"))?;
    // SAFETY: KVM ioctls on a descriptor we own; the VM descriptor is owned and closed below.
    unsafe {
        let version = libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION, 0);
        if version != KVM_API_VERSION {
            return Err(format!(
                "KVM API version {version}, expected {KVM_API_VERSION}"
            ));
        }
        let vm = libc::ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0);
        if vm < 0 {
            return Err(format!(
                "KVM_CREATE_VM failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        drop(OwnedFd::from_raw_fd(vm));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(flags: &str, pvm: bool, probe: Result<(), String>) -> HostFacts {
        HostFacts {
            cpuinfo: format!("processor\t: 0\nflags\t\t: fpu {flags} sse\n"),
            pvm_module: pvm,
            kvm_probe: probe,
        }
    }

    #[test]
    fn auto_uses_kvm_only_when_it_is_real() {
        let real = facts("vmx", false, Ok(()));
        assert_eq!(
            choose_with(AccelRequest::Auto, &real).unwrap().accelerator,
            Accelerator::Kvm
        );
        let no_flag = facts("", false, Ok(()));
        let choice = choose_with(AccelRequest::Auto, &no_flag).unwrap();
        assert_eq!(choice.accelerator, Accelerator::Tcg);
        assert!(choice.reason.contains("vmx/svm"));
        let pvm = facts("svm", true, Ok(()));
        assert!(choose_with(AccelRequest::Auto, &pvm)
            .unwrap()
            .reason
            .contains("PVM"));
        let broken = facts("vmx", false, Err("cannot open /dev/kvm".into()));
        assert_eq!(
            choose_with(AccelRequest::Auto, &broken)
                .unwrap()
                .accelerator,
            Accelerator::Tcg
        );
    }

    #[test]
    fn forcing_kvm_where_it_cannot_work_is_an_error() {
        let pvm = facts("vmx", true, Ok(()));
        assert!(matches!(
            choose_with(AccelRequest::Kvm, &pvm),
            Err(AccelError::KvmUnusable(_))
        ));
        assert_eq!(
            choose_with(AccelRequest::Tcg, &pvm).unwrap().accelerator,
            Accelerator::Tcg
        );
    }

    #[test]
    fn requests_parse() {
        assert_eq!("".parse::<AccelRequest>().unwrap(), AccelRequest::Auto);
        assert_eq!("KVM".parse::<AccelRequest>().unwrap(), AccelRequest::Kvm);
        assert!("hvf".parse::<AccelRequest>().is_err());
    }
}

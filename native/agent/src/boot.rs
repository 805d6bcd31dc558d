//! Turning the bare initramfs into the sandbox's system: kernel modules, the root file system
//! (overlay of image layers, or a virtio-fs share), the usual pseudo file systems.

use crate::cmdline::{self, RootSpec};
use crate::sys;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

const NEW_ROOT: &str = "/newroot";
const MODULE_DIR: &str = "/lib/modules";
/// Disks appear shortly after virtio_blk loads; this bounds the wait.
const DISK_WAIT: Duration = Duration::from_secs(10);

pub fn prepare_guest() -> io::Result<()> {
    sys::mount("proc", "/proc", "proc", 0, "")?;
    sys::mount("sysfs", "/sys", "sysfs", 0, "")?;
    sys::mount("devtmpfs", "/dev", "devtmpfs", 0, "")?;
    load_modules();
    let line = std::fs::read_to_string("/proc/cmdline")?;
    let config = cmdline::parse(&line)
        .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
    if let Some(hostname) = &config.hostname {
        sys::set_hostname(hostname)?;
    }
    mount_root(&config.root)?;
    mount_system_dirs(NEW_ROOT)?;
    sys::switch_root(NEW_ROOT)?;
    if let Err(error) = sys::loopback_up() {
        eprintln!("msb-agent: cannot bring lo up: {error}");
    }
    Ok(())
}

/// Loads the modules the initramfs carries, in the order the host computed.
fn load_modules() {
    let Ok(order) = std::fs::read_to_string(format!("{MODULE_DIR}/order")) else {
        return;
    };
    for name in order.lines().map(str::trim).filter(|name| !name.is_empty()) {
        if let Err(error) = sys::load_module(&Path::new(MODULE_DIR).join(name)) {
            eprintln!("msb-agent: module {name}: {error}");
        }
    }
}

fn mount_root(root: &RootSpec) -> io::Result<()> {
    sys::mkdir_all(NEW_ROOT)?;
    match root {
        RootSpec::Virtiofs { tag } => sys::mount(tag, NEW_ROOT, "virtiofs", 0, ""),
        RootSpec::Overlay { lowers, upper } => {
            let mut lower_dirs = Vec::new();
            for (index, serial) in lowers.iter().enumerate() {
                let dir = format!("/.msb/lower/{index}");
                sys::mkdir_all(&dir)?;
                sys::mount(&disk_by_serial(serial)?, &dir, "ext4", libc::MS_RDONLY, "")?;
                lower_dirs.push(dir);
            }
            sys::mkdir_all("/.msb/upper")?;
            sys::mount(&disk_by_serial(upper)?, "/.msb/upper", "ext4", 0, "")?;
            sys::mkdir_all("/.msb/upper/upper")?;
            sys::mkdir_all("/.msb/upper/work")?;
            let options = format!(
                "lowerdir={},upperdir=/.msb/upper/upper,workdir=/.msb/upper/work",
                lower_dirs.join(":")
            );
            sys::mount("overlay", NEW_ROOT, "overlay", 0, &options)
        }
    }
}

/// The `/dev/vdX` whose virtio serial is `serial`.
fn disk_by_serial(serial: &str) -> io::Result<String> {
    let deadline = Instant::now() + DISK_WAIT;
    loop {
        if let Ok(entries) = std::fs::read_dir("/sys/block") {
            for entry in entries.flatten() {
                let found =
                    std::fs::read_to_string(entry.path().join("serial")).unwrap_or_default();
                if found.trim() == serial {
                    return Ok(format!("/dev/{}", entry.file_name().to_string_lossy()));
                }
            }
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no disk with serial {serial:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn mount_system_dirs(root: &str) -> io::Result<()> {
    let mounts: [(&str, &str, &str, libc::c_ulong, &str); 6] = [
        (
            "proc",
            "proc",
            "proc",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            "",
        ),
        (
            "sysfs",
            "sys",
            "sysfs",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            "",
        ),
        ("devtmpfs", "dev", "devtmpfs", libc::MS_NOSUID, "mode=0755"),
        (
            "devpts",
            "dev/pts",
            "devpts",
            libc::MS_NOSUID | libc::MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620",
        ),
        (
            "tmpfs",
            "dev/shm",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=1777",
        ),
        (
            "tmpfs",
            "run",
            "tmpfs",
            libc::MS_NOSUID | libc::MS_NODEV,
            "mode=0755",
        ),
    ];
    for (source, target, fstype, flags, data) in mounts {
        let path = format!("{root}/{target}");
        sys::mkdir_all(&path)?;
        sys::mount(source, &path, fstype, flags, data)?;
    }
    // With a private devpts instance, /dev/ptmx must point into it.
    let ptmx = format!("{root}/dev/ptmx");
    let _ = std::fs::remove_file(&ptmx);
    std::os::unix::fs::symlink("pts/ptmx", &ptmx)
}

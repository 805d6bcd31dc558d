//! Orderly shutdown: end every process, flush and detach the file systems, power off.

use crate::rootfs::UPPER_MOUNT;
use crate::{power, sys};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long processes get between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
/// How long SIGKILLed processes get to disappear (they may be in uninterruptible I/O).
const KILL_WAIT: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(10);
/// `PF_KTHREAD` in the flags field of `/proc/PID/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;
/// File systems without anything to flush; unmounting them is noise.
const VOLATILE: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "tmpfs",
    "mqueue",
    "cgroup",
    "cgroup2",
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "pstore",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "binfmt_misc",
];

pub fn shutdown(old_root: &OwnedFd, overlay: bool) -> ! {
    // kill(-1) reaches every process except init itself; the reaper collects them.
    let _ = sys::kill(-1, libc::SIGTERM);
    wait_for_no_processes(GRACE);
    let _ = sys::kill(-1, libc::SIGKILL);
    wait_for_no_processes(KILL_WAIT);
    sys::sync();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for point in to_unmount(&mounts) {
        if let Err(error) = sys::unmount(&point) {
            if let Err(error) = sys::remount(&point, libc::MS_RDONLY) {
                log!("cannot unmount or write-protect {point}: {error}");
            } else {
                log!("cannot unmount {point}: {error}; made it read-only");
            }
        }
    }
    // The root first (an overlay writes into the upper disk), then the upper disk itself,
    // which lives outside the root and is reached through the initramfs root.
    if let Err(error) = sys::remount("/", libc::MS_RDONLY) {
        log!("cannot make / read-only: {error}");
    }
    if overlay {
        let upper =
            sys::fchdir(old_root.as_fd()).and_then(|()| sys::remount(UPPER_MOUNT, libc::MS_RDONLY));
        if let Err(error) = upper {
            log!("cannot make the upper disk read-only: {error}");
        }
    }
    power::off()
}

fn wait_for_no_processes(limit: Duration) {
    let started = Instant::now();
    while started.elapsed() < limit && other_processes_exist() {
        std::thread::sleep(POLL);
    }
}

/// Whether any process other than init and kernel threads is alive.
fn other_processes_exist() -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|name| name.parse::<u32>().ok()) else {
            return false;
        };
        if pid == 1 {
            return false;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        parse_stat(&stat).is_some_and(|stat| stat.flags & PF_KTHREAD == 0 && stat.state != 'Z')
    })
}

#[derive(Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub flags: u64,
}

/// State and flags from `/proc/PID/stat`. The command name may contain spaces and
/// parentheses, so fields are counted from its last `)`.
pub fn parse_stat(stat: &str) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state: ppid pgrp session tty_nr tpgid flags.
    let flags = fields.nth(5)?.parse().ok()?;
    Some(ProcStat { state, flags })
}

#[derive(Debug, PartialEq, Eq)]
pub struct Mount {
    pub point: String,
    pub fstype: String,
}

/// Mount points and types from `/proc/self/mountinfo`, in mount order.
pub fn mount_points(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let point = before.split(' ').nth(4)?;
            let fstype = after.split(' ').next()?;
            Some(Mount {
                point: unescape(point),
                fstype: fstype.to_string(),
            })
        })
        .collect()
}

/// The mount points to detach before power-off, the most recent (innermost) first: every
/// mount but the root and those with nothing to flush. Volumes (disks, virtio-fs shares)
/// are mounted in the sandbox's root, so they are among them.
pub fn to_unmount(mountinfo: &str) -> Vec<String> {
    mount_points(mountinfo)
        .into_iter()
        .rev()
        .filter(|mount| mount.point != "/" && !VOLATILE.contains(&mount.fstype.as_str()))
        .map(|mount| mount.point)
        .collect()
}

/// Undoes the kernel's octal escapes (`\040` for a space, ...) in mountinfo paths.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let octal = bytes
            .get(index + 1..index + 4)
            .filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)));
        match (bytes[index], octal) {
            (b'\\', Some(digits)) => {
                out.push(
                    digits
                        .iter()
                        .fold(0u8, |value, digit| value.wrapping_mul(8) + (digit - b'0')),
                );
                index += 4;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command_name() {
        let stat = "42 (my (odd) cmd) S 1 42 42 0 -1 4194560 120 0 0 0 0 0 0 0 20 0 1 0 100 0 0";
        assert_eq!(
            parse_stat(stat),
            Some(ProcStat {
                state: 'S',
                flags: 4194560
            })
        );
        let kthread = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0";
        assert_ne!(parse_stat(kthread).unwrap().flags & PF_KTHREAD, 0);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn volumes_are_unmounted_innermost_first_and_tmpfs_is_left_alone() {
        let text = "22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/.msb/lower/0\n\
                    23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw\n\
                    40 22 254:32 / /data rw,relatime - ext4 /dev/vdc rw\n\
                    41 22 0:40 / /share rw,relatime - virtiofs work rw\n\
                    42 22 0:41 / /scratch rw,relatime - tmpfs tmpfs rw,mode=1777\n\
                    43 40 254:48 / /data/inner ro,relatime - erofs /dev/vdd ro\n";
        assert_eq!(to_unmount(text), ["/data/inner", "/share", "/data"]);
    }

    #[test]
    fn mountinfo_points_and_types() {
        let text = "22 1 0:21 / / rw,relatime - overlay overlay rw,lowerdir=/.msb/lower/0\n\
                    23 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs devtmpfs rw\n\
                    30 22 254:2 / /mnt/my\\040data rw - ext4 /dev/vdc rw\n";
        assert_eq!(
            mount_points(text),
            [
                Mount {
                    point: "/".into(),
                    fstype: "overlay".into()
                },
                Mount {
                    point: "/dev".into(),
                    fstype: "devtmpfs".into()
                },
                Mount {
                    point: "/mnt/my data".into(),
                    fstype: "ext4".into()
                },
            ]
        );
    }
}

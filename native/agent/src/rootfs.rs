//! Building the sandbox's root file system at `/newroot` (an overlay of image layers on
//! virtio-blk disks, or a virtio-fs share), giving it the usual kernel file systems, and
//! switching into it.

use crate::sys;
use msb_protocol::filesystem::DiskFilesystem;
use msb_protocol::guest::{GuestLower, GuestRoot};
use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

pub const NEW_ROOT: &str = "/newroot";
/// Where the disks of an overlay root are mounted in the initramfs. After the switch they
/// stay mounted but out of the sandbox's sight; shutdown reaches them through the old root.
pub const UPPER_MOUNT: &str = ".msb/upper";
const LOWER_MOUNT: &str = ".msb/lower";
/// Disks appear shortly after virtio_blk loads (probing is asynchronous); this bounds the wait.
const DISK_WAIT: Duration = Duration::from_secs(5);
const DISK_POLL: Duration = Duration::from_millis(5);

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("no disk with serial {serial:?} appeared within {seconds:.1} s (disks seen: {seen})")]
    DiskMissing {
        serial: String,
        seconds: f64,
        seen: String,
    },
    #[error("{device} holds neither an ext2/3/4 nor an EROFS file system")]
    UnknownFilesystem { device: String },
    #[error("reading {path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("creating {path}: {source}")]
    Create { path: String, source: io::Error },
    #[error("mounting {what} on {target}: {source}{}", driver_hint(source, fstype))]
    Mount {
        what: String,
        target: String,
        fstype: String,
        source: io::Error,
    },
    #[error("switching into the new root: {0}")]
    Switch(io::Error),
}

fn mount(
    what: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), RootError> {
    let description = format!("{what} ({fstype})");
    mount_described(description, what, target, fstype, flags, data)
}

/// mount(2), failing with `description` as what was mounted.
fn mount_described(
    description: String,
    what: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
) -> Result<(), RootError> {
    sys::mount(what, target, fstype, flags, data).map_err(|source| RootError::Mount {
        what: description,
        target: target.to_string(),
        fstype: fstype.to_string(),
        source,
    })
}

/// What a failed mount(2) means when it is ENODEV: the kernel knows no such file system, so
/// its module is missing from the initramfs or failed to load at boot (the console says).
pub fn driver_hint(error: &io::Error, fstype: &str) -> String {
    if error.raw_os_error() == Some(libc::ENODEV) {
        format!(" (the kernel has no {fstype} driver)")
    } else {
        String::new()
    }
}

/// How a disk is named in messages: "disk layer0 (/dev/vda, ext4)".
pub fn describe_disk(serial: &str, device: &str, fstype: &str) -> String {
    format!("disk {serial} ({device}, {fstype})")
}

/// Mounts the disk `serial` (at `device`) on `target` with `fstype`.
fn mount_disk(
    serial: &str,
    device: &str,
    target: &str,
    fstype: DiskFilesystem,
    flags: libc::c_ulong,
) -> Result<(), RootError> {
    let fstype = fstype.name();
    let description = describe_disk(serial, device, fstype);
    mount_described(description, device, target, fstype, flags, "")
}

fn create_dir(path: &str) -> Result<(), RootError> {
    std::fs::create_dir_all(path).map_err(|source| RootError::Create {
        path: path.to_string(),
        source,
    })
}

/// Mounts the root file system the hello describes at [`NEW_ROOT`].
pub fn mount_root(root: &GuestRoot) -> Result<(), RootError> {
    create_dir(NEW_ROOT)?;
    match root {
        GuestRoot::Virtiofs { tag } => mount(tag, NEW_ROOT, "virtiofs", 0, ""),
        GuestRoot::Overlay { lowers, upper } => {
            let mut serials: Vec<&str> = lowers.iter().map(|l| l.serial.as_str()).collect();
            serials.push(upper);
            let disks = wait_for_disks(&serials)?;
            let mut lower_dirs = Vec::with_capacity(lowers.len());
            for (index, lower) in lowers.iter().enumerate() {
                let dir = format!("/{LOWER_MOUNT}/{index}");
                create_dir(&dir)?;
                mount_lower(lower, &disks[lower.serial.as_str()], &dir)?;
                lower_dirs.push(dir);
            }
            let upper_dir = format!("/{UPPER_MOUNT}");
            create_dir(&upper_dir)?;
            let device = &disks[upper.as_str()];
            mount_disk(upper, device, &upper_dir, filesystem_of(device)?, 0)?;
            create_dir(&format!("{upper_dir}/upper"))?;
            create_dir(&format!("{upper_dir}/work"))?;
            let options = overlay_options(&lower_dirs, &upper_dir);
            mount("overlay", NEW_ROOT, "overlay", 0, &options)
        }
    }
}

/// Mounts a lower read-only with the file system the host named, else the detected one.
fn mount_lower(lower: &GuestLower, device: &str, dir: &str) -> Result<(), RootError> {
    let fstype = match lower.fstype {
        Some(fstype) => fstype,
        None => filesystem_of(device)?,
    };
    mount_disk(&lower.serial, device, dir, fstype, libc::MS_RDONLY)
}

/// overlayfs options; `lowerdir` lists the top-most layer first, like the command line.
pub fn overlay_options(lower_dirs: &[String], upper_dir: &str) -> String {
    format!(
        "lowerdir={},upperdir={upper_dir}/upper,workdir={upper_dir}/work",
        lower_dirs.join(":")
    )
}

/// Maps each serial to its `/dev/vdX`, waiting for disks that are still being probed.
pub fn wait_for_disks<'a>(serials: &[&'a str]) -> Result<HashMap<&'a str, String>, RootError> {
    let started = Instant::now();
    loop {
        let present = disks_by_serial();
        let missing = serials.iter().find(|serial| {
            // The device node comes from devtmpfs a moment after the sysfs entry.
            !present
                .get(**serial)
                .is_some_and(|device| Path::new(device).exists())
        });
        match missing {
            None => {
                return Ok(serials
                    .iter()
                    .map(|serial| (*serial, present[*serial].clone()))
                    .collect())
            }
            Some(serial) if started.elapsed() >= DISK_WAIT => {
                let mut seen: Vec<String> =
                    present.iter().map(|(s, d)| format!("{d}={s}")).collect();
                seen.sort();
                return Err(RootError::DiskMissing {
                    serial: serial.to_string(),
                    seconds: started.elapsed().as_secs_f64(),
                    seen: if seen.is_empty() {
                        "none".into()
                    } else {
                        seen.join(", ")
                    },
                });
            }
            Some(_) => std::thread::sleep(DISK_POLL),
        }
    }
}

/// Serial → device path for every virtio disk currently known to sysfs.
fn disks_by_serial() -> HashMap<String, String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let serial = std::fs::read_to_string(entry.path().join("serial")).ok()?;
            let serial = serial.trim_end_matches(['\n', '\0']).trim();
            (!serial.is_empty()).then(|| {
                (
                    serial.to_string(),
                    format!("/dev/{}", entry.file_name().to_string_lossy()),
                )
            })
        })
        .collect()
}

/// The file system type to mount a disk with, from its superblock magic. Layers may be ext4
/// or EROFS images (docs/ARCHITECTURE.md, "Images and root file systems"); the upper is ext4; volumes may be either.
pub fn filesystem_of(device: &str) -> Result<DiskFilesystem, RootError> {
    let mut superblock = [0u8; 2048];
    std::fs::File::open(device)
        .and_then(|mut file| file.read_exact(&mut superblock))
        .map_err(|source| RootError::Read {
            path: device.to_string(),
            source,
        })?;
    detect_filesystem(&superblock).ok_or_else(|| RootError::UnknownFilesystem {
        device: device.to_string(),
    })
}

/// Recognises ext2/3/4 (magic 0xEF53 at byte 1080, mounted with the ext4 driver) and EROFS
/// (magic 0xE0F5E1E2 at byte 1024).
pub fn detect_filesystem(superblock: &[u8]) -> Option<DiskFilesystem> {
    if superblock.get(1080..1082) == Some(&[0x53, 0xEF]) {
        Some(DiskFilesystem::Ext4)
    } else if superblock.get(1024..1028) == Some(&[0xE2, 0xE1, 0xF5, 0xE0]) {
        Some(DiskFilesystem::Erofs)
    } else {
        None
    }
}

/// Gives the new root `/proc`, `/sys`, `/dev` (moved from the initramfs), `/dev/pts`,
/// `/dev/shm`, `/run` and `/tmp`.
pub fn prepare_system_dirs() -> Result<(), RootError> {
    for dir in ["proc", "sys", "dev"] {
        let target = format!("{NEW_ROOT}/{dir}");
        create_dir(&target)?;
        mount(&format!("/{dir}"), &target, "", libc::MS_MOVE, "")?;
    }
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    // Every sandbox gets its own pty instance; ptmxmode=0666 lets any user open pts/ptmx.
    let pts = format!("{NEW_ROOT}/dev/pts");
    create_dir(&pts)?;
    mount(
        "devpts",
        &pts,
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
    )?;
    ensure_ptmx(&format!("{NEW_ROOT}/dev/ptmx"))?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        // Shells need /dev/fd for process substitution; devtmpfs does not provide it.
        let _ = std::os::unix::fs::symlink(target, format!("{NEW_ROOT}/dev/{name}"));
    }
    let shm = format!("{NEW_ROOT}/dev/shm");
    create_dir(&shm)?;
    mount("tmpfs", &shm, "tmpfs", nosuid_nodev, "mode=1777")?;
    let run = format!("{NEW_ROOT}/run");
    create_dir(&run)?;
    mount("tmpfs", &run, "tmpfs", nosuid_nodev, "mode=0755")?;
    let tmp = format!("{NEW_ROOT}/tmp");
    if !Path::new(&tmp).exists() {
        create_dir(&tmp)?;
        // mkdir is subject to the umask; /tmp must be world-writable and sticky.
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))
            .map_err(|source| RootError::Create { path: tmp, source })?;
    }
    Ok(())
}

/// devtmpfs provides `/dev/ptmx` (mode 0666), which since Linux 4.7 opens the devpts instance
/// mounted at the sibling `pts`. Should it be missing, a symlink to `pts/ptmx` does the same.
fn ensure_ptmx(path: &str) -> Result<(), RootError> {
    let is_device = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device());
    if is_device {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    std::os::unix::fs::symlink("pts/ptmx", path).map_err(|source| RootError::Create {
        path: path.to_string(),
        source,
    })
}

/// Moves [`NEW_ROOT`] over `/` and enters it. The initramfs (rootfs) cannot be
/// `pivot_root`ed, hence move + chroot. Returns a descriptor of the old root, through which
/// shutdown can still reach the disks mounted under it.
pub fn switch_root() -> Result<OwnedFd, RootError> {
    let old_root: OwnedFd = std::fs::File::open("/").map_err(RootError::Switch)?.into();
    std::env::set_current_dir(NEW_ROOT).map_err(RootError::Switch)?;
    mount(".", "/", "", libc::MS_MOVE, "")?;
    sys::chroot(".").map_err(RootError::Switch)?;
    std::env::set_current_dir("/").map_err(RootError::Switch)?;
    Ok(old_root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_magic_selects_the_driver() {
        let mut ext = vec![0u8; 2048];
        ext[1080] = 0x53;
        ext[1081] = 0xEF;
        assert_eq!(detect_filesystem(&ext), Some(DiskFilesystem::Ext4));
        let mut erofs = vec![0u8; 2048];
        erofs[1024..1028].copy_from_slice(&0xE0F5_E1E2u32.to_le_bytes());
        assert_eq!(detect_filesystem(&erofs), Some(DiskFilesystem::Erofs));
        assert_eq!(detect_filesystem(&[0u8; 2048]), None);
        assert_eq!(detect_filesystem(&[0u8; 10]), None);
    }

    #[test]
    fn a_failed_disk_mount_names_the_disk_and_the_file_system_tried() {
        let failure = |errno| RootError::Mount {
            what: describe_disk("layer0", "/dev/vda", "erofs"),
            target: "/.msb/lower/0".into(),
            fstype: "erofs".into(),
            source: io::Error::from_raw_os_error(errno),
        };
        assert_eq!(
            failure(libc::EINVAL).to_string(),
            "mounting disk layer0 (/dev/vda, erofs) on /.msb/lower/0: Invalid argument (os error 22)"
        );
        assert!(failure(libc::ENODEV)
            .to_string()
            .ends_with("(os error 19) (the kernel has no erofs driver)"));
    }

    #[test]
    fn overlay_lists_top_layer_first() {
        let lowers = vec!["/.msb/lower/0".to_string(), "/.msb/lower/1".to_string()];
        assert_eq!(
            overlay_options(&lowers, "/.msb/upper"),
            "lowerdir=/.msb/lower/0:/.msb/lower/1,upperdir=/.msb/upper/upper,workdir=/.msb/upper/work"
        );
    }
}

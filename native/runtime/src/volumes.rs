//! Named volumes, and the checks a sandbox's volumes must pass before it starts.
//!
//! A named volume is an ext4 image file of exactly its quota's size (sparse: only what the
//! guest writes uses host disk) in the home's `volumes` directory. The quota is enforced by
//! the guest's file system: writing past it fails with ENOSPC in the guest, and the host file
//! never grows. Which sandboxes use a volume follows from their stored configs, the one
//! source of that fact.

use crate::error::{Result, RuntimeError};
use crate::records;
use msb_engine::qemu::{BASE_VIRTIO_DEVICES, VIRTIO_MMIO_TRANSPORTS};
use msb_state::{Database, VolumeRecord};
use msb_supervisor::spec::{Mount, SandboxSpec};
use msb_supervisor::{database, paths};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// Smallest quota: below it ext4's own journal and tables would leave little room.
pub const MIN_QUOTA_MIB: u64 = 8;
/// Largest quota, 1 TiB (the file is sparse, so this costs nothing up front).
pub const MAX_QUOTA_MIB: u64 = 1 << 20;
/// ext4 volume labels hold 16 bytes.
const LABEL_BYTES: usize = 16;

/// A named volume as the SDK sees it (`VolumeHandle`).
#[derive(Debug, Serialize)]
pub struct VolumeInfo {
    pub name: String,
    pub quota_mib: u64,
    /// What the guest stored, as of the guest's last sync or unmount of the volume.
    pub used_bytes: u64,
    pub created_at: i64,
    /// The sandboxes, in any state, whose config mounts it.
    pub in_use_by: Vec<String>,
    /// Its image file.
    pub path: String,
}

/// Creates the volume.
pub fn create(name: &str, quota_mib: u64) -> Result<VolumeInfo> {
    if !(MIN_QUOTA_MIB..=MAX_QUOTA_MIB).contains(&quota_mib) {
        return Err(RuntimeError::InvalidConfig(format!(
            "quota_mib: must be between {MIN_QUOTA_MIB} and {MAX_QUOTA_MIB} MiB, not {quota_mib}"
        )));
    }
    let image = paths::volume_image(name)?;
    let staging = paths::volume_staging_image(name)?;
    let mut db = database::open()?;
    // A taken name fails before the formatting work; the insert below decides races.
    if db.volume(name).is_ok() {
        return Err(msb_state::StateError::VolumeExists(name.into()).into());
    }
    let created = format(&staging, name, quota_mib).and_then(|overhead| {
        db.exclusive(|db| {
            let record = db.insert_volume(name, quota_mib, overhead)?;
            std::fs::rename(&staging, &image).map_err(RuntimeError::io(format!(
                "moving the new volume to {}",
                image.display()
            )))?;
            Ok(record)
        })
    });
    if created.is_err() {
        let _ = std::fs::remove_file(&staging);
    }
    describe_one(&created?, &[])
}

/// Formats the image (without reserved blocks, so the whole quota is usable; with a journal)
/// and returns what the empty file system already uses.
fn format(image: &Path, name: &str, quota_mib: u64) -> Result<u64> {
    if let Some(dir) = image.parent() {
        std::fs::create_dir_all(dir)
            .map_err(RuntimeError::io(format!("creating {}", dir.display())))?;
    }
    let label = &name[..name.len().min(LABEL_BYTES)];
    msb_images::ext4::empty_image(image, quota_mib << 20, label)?;
    Ok(msb_images::ext4::space_usage(image)?.used_bytes)
}

/// A volume as the SDK sees it.
///
/// `used_bytes` is what the guest stored, read from the file system's superblock less what
/// the empty file system used. The guest kernel updates the superblock when it syncs or
/// unmounts the volume, so for a volume in a running sandbox this is as of the last sync.
///
/// `None` when the image file is missing: the volume is being removed (its record goes with
/// the remover's commit, after the file) or created (its file arrives at the commit).
fn describe(record: &VolumeRecord, users: &[String]) -> Result<Option<VolumeInfo>> {
    let image = paths::volume_image(&record.name)?;
    let usage = match msb_images::ext4::space_usage(&image) {
        Err(msb_images::ImageError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(None)
        }
        usage => usage?,
    };
    Ok(Some(VolumeInfo {
        name: record.name.clone(),
        quota_mib: record.quota_mib,
        used_bytes: usage.used_bytes.saturating_sub(record.overhead_bytes),
        created_at: record.created_at,
        in_use_by: users.to_vec(),
        path: image.display().to_string(),
    }))
}

pub fn get(name: &str) -> Result<VolumeInfo> {
    let db = database::open()?;
    let record = db.volume(name)?;
    let users = users(&db)?.remove(name).unwrap_or_default();
    describe_one(&record, &users)
}

/// One volume; a volume in the middle of its removal is not found.
fn describe_one(record: &VolumeRecord, users: &[String]) -> Result<VolumeInfo> {
    describe(record, users)?
        .ok_or_else(|| msb_state::StateError::VolumeNotFound(record.name.clone()).into())
}

pub fn list() -> Result<Vec<VolumeInfo>> {
    let db = database::open()?;
    let users = users(&db)?;
    let volumes = db
        .volumes()?
        .iter()
        .map(|record| describe(record, users.get(&record.name).map_or(&[], Vec::as_slice)))
        .filter_map(Result::transpose)
        .collect::<Result<Vec<VolumeInfo>>>()?;
    Ok(volumes)
}

/// Deletes the volume's record and image file, together; refused while any sandbox's
/// config mounts it.
pub fn remove(name: &str) -> Result<()> {
    let image = paths::volume_image(name)?;
    database::open()?.exclusive(|db| {
        db.remove_volume(name)?;
        if let Some(sandboxes) = users(db)?.remove(name) {
            return Err(RuntimeError::VolumeInUse {
                volume: name.into(),
                sandboxes: sandboxes.join(", "),
            });
        }
        // Last: if this fails the record comes back, and the file is still there.
        match std::fs::remove_file(&image) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::io(
                format!("removing {}", image.display()),
            )(error)),
            _ => Ok(()),
        }
    })
}

/// Named volume → the sandboxes (in any state) whose config mounts it.
fn users(db: &Database) -> Result<HashMap<String, Vec<String>>> {
    let mut users: HashMap<String, Vec<String>> = HashMap::new();
    for sandbox in db.sandboxes()? {
        let Ok(spec) = SandboxSpec::from_json(&sandbox.config) else {
            continue;
        };
        for (volume, _) in spec.named_volumes() {
            users
                .entry(volume.to_string())
                .or_default()
                .push(sandbox.name.clone());
        }
    }
    Ok(users)
}

/// Checks what a sandbox's volumes need from the host before anything is recorded: bind
/// sources are directories, disk images are files, a named volume is mounted once, and the
/// VM's devices (`root_devices` for its root file system) fit QEMU's virtio-mmio transports.
pub fn check_mounts(spec: &SandboxSpec, root_devices: usize) -> Result<()> {
    let mut named: HashMap<&str, &str> = HashMap::new();
    for (target, mount) in &spec.volumes {
        let problem = match mount {
            Mount::Bind { path, .. } if !Path::new(path).is_dir() => {
                format!("{path} is not a directory")
            }
            Mount::Disk { path, .. } if !Path::new(path).is_file() => {
                format!("{path} is not a file")
            }
            // One file system mounted twice in one VM would be two writers of it.
            Mount::Named { name, .. } => match named.insert(name, target) {
                Some(other) => format!("volume {name:?} is also mounted at {other}"),
                None => continue,
            },
            _ => continue,
        };
        return Err(RuntimeError::InvalidConfig(format!(
            "volume {target}: {problem}"
        )));
    }
    let volume_devices: usize = spec.volumes.values().map(Mount::virtio_devices).sum();
    let devices = BASE_VIRTIO_DEVICES + root_devices + volume_devices;
    if devices > VIRTIO_MMIO_TRANSPORTS {
        return Err(RuntimeError::InvalidConfig(format!(
            "the VM would need {devices} virtio devices ({root_devices} for its root file \
             system, {volume_devices} for volumes, {BASE_VIRTIO_DEVICES} of its own) and QEMU's \
             microvm offers {VIRTIO_MMIO_TRANSPORTS}: use fewer disk and bind volumes"
        )));
    }
    Ok(())
}

/// Checks, in the transaction that records the sandbox as starting, that its named volumes
/// exist and that it may mount them: a volume is mounted read-write by one live sandbox at a
/// time, or read-only by any number while none has it read-write.
pub fn claim(db: &mut Database, spec: &SandboxSpec) -> Result<()> {
    let wanted: HashMap<&str, bool> = spec.named_volumes().collect();
    for name in wanted.keys() {
        db.volume(name)?;
    }
    if wanted.is_empty() {
        return Ok(());
    }
    for record in db.sandboxes()? {
        if record.name == spec.name {
            continue;
        }
        // A sandbox whose supervisor died holds nothing.
        let record = records::reconcile(db, record)?;
        let Ok(other) = SandboxSpec::from_json(&record.config) else {
            continue;
        };
        if !record.status.is_live() {
            continue;
        }
        for (volume, readonly) in other.named_volumes() {
            let shared = wanted
                .get(volume)
                .map(|wanted_readonly| readonly && *wanted_readonly);
            if shared == Some(false) {
                return Err(RuntimeError::VolumeBusy {
                    volume: volume.into(),
                    holder: record.name,
                    how: if readonly { "read-only" } else { "read-write" },
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use msb_state::SandboxStatus;

    fn spec(volumes: &str) -> SandboxSpec {
        spec_named("new", volumes)
    }

    fn spec_named(name: &str, volumes: &str) -> SandboxSpec {
        SandboxSpec::from_json(&config(name, volumes)).unwrap()
    }

    fn config(name: &str, volumes: &str) -> String {
        format!(
            r#"{{"name":"{name}","image":{{"kind":"local","name":"msb-base"}},"cpus":1,"memory_mib":256,"volumes":{volumes}}}"#
        )
    }

    fn bind(dir: &Path, count: usize) -> String {
        let entries: Vec<String> = (0..count)
            .map(|i| {
                format!(
                    r#""/b{i}": {{"kind": "bind", "path": "{}", "readonly": false}}"#,
                    dir.display()
                )
            })
            .collect();
        format!("{{{}}}", entries.join(","))
    }

    fn invalid(result: Result<()>) -> String {
        match result {
            Err(RuntimeError::InvalidConfig(message)) => message,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn bind_sources_must_be_directories_and_disks_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disk.img");
        std::fs::write(&file, b"").unwrap();
        let ok = spec(&format!(
            r#"{{"/d": {{"kind": "disk", "path": "{}", "format": "raw", "fstype": null, "readonly": false}},
                "/b": {{"kind": "bind", "path": "{}", "readonly": true}}}}"#,
            file.display(),
            dir.path().display()
        ));
        check_mounts(&ok, 2).unwrap();
        let missing = dir.path().join("missing");
        let bad_bind = spec(&format!(
            r#"{{"/b": {{"kind": "bind", "path": "{}", "readonly": false}}}}"#,
            missing.display()
        ));
        assert!(invalid(check_mounts(&bad_bind, 2)).contains("not a directory"));
        let bad_disk = spec(&format!(
            r#"{{"/d": {{"kind": "disk", "path": "{}", "format": "qcow2", "fstype": null, "readonly": false}}}}"#,
            dir.path().display()
        ));
        assert!(invalid(check_mounts(&bad_disk, 2)).contains("not a file"));
    }

    #[test]
    fn a_named_volume_is_mounted_once_per_sandbox() {
        let twice = spec(
            r#"{"/a": {"kind": "named", "name": "data", "readonly": true},
                "/b": {"kind": "named", "name": "data", "readonly": true}}"#,
        );
        assert!(invalid(check_mounts(&twice, 2)).contains("also mounted at /a"));
    }

    #[test]
    fn devices_must_fit_the_virtio_mmio_transports() {
        let dir = tempfile::tempdir().unwrap();
        // An overlay root of one layer takes 2 transports, the VM's own devices 4.
        let fits = VIRTIO_MMIO_TRANSPORTS - BASE_VIRTIO_DEVICES - 2;
        check_mounts(&spec(&bind(dir.path(), fits)), 2).unwrap();
        let message = invalid(check_mounts(&spec(&bind(dir.path(), fits + 1)), 2));
        assert!(message.contains("25 virtio devices"), "{message}");
        assert!(message.contains("offers 24"), "{message}");
        // tmpfs volumes take no device.
        let tmpfs: Vec<String> = (0..30)
            .map(|i| {
                format!(r#""/t{i}": {{"kind": "tmpfs", "size_mib": null, "readonly": false}}"#)
            })
            .collect();
        check_mounts(&spec(&format!("{{{}}}", tmpfs.join(","))), 2).unwrap();
    }

    fn running(db: &mut Database, name: &str, volumes: &str) {
        db.insert_sandbox(name, &config(name, volumes), false)
            .unwrap();
        // Alive: the supervisor is this test process.
        let pid = std::process::id();
        db.set_supervisor(name, pid, msb_supervisor::process::start_time(pid).unwrap())
            .unwrap();
        db.set_running(name, pid, "tcg", 1).unwrap();
    }

    const DATA_RW: &str = r#"{"/data": {"kind": "named", "name": "data", "readonly": false}}"#;
    const DATA_RO: &str = r#"{"/data": {"kind": "named", "name": "data", "readonly": true}}"#;

    #[test]
    fn one_writer_or_many_readers() {
        let mut db = Database::open_in_memory().unwrap();
        assert!(matches!(
            claim(&mut db, &spec(DATA_RW)),
            Err(RuntimeError::State(msb_state::StateError::VolumeNotFound(
                _
            )))
        ));
        db.insert_volume("data", 8, 0).unwrap();
        claim(&mut db, &spec(DATA_RW)).unwrap();

        running(&mut db, "reader", DATA_RO);
        claim(&mut db, &spec(DATA_RO)).unwrap();
        match claim(&mut db, &spec(DATA_RW)) {
            Err(RuntimeError::VolumeBusy { holder, how, .. }) => {
                assert_eq!((holder.as_str(), how), ("reader", "read-only"))
            }
            other => panic!("expected VolumeBusy, got {other:?}"),
        }

        running(&mut db, "writer", DATA_RW);
        for wanted in [DATA_RO, DATA_RW] {
            assert!(matches!(
                claim(&mut db, &spec(wanted)),
                Err(RuntimeError::VolumeBusy { .. })
            ));
        }
        db.set_status(
            "reader",
            msb_state::StatusChange {
                status: SandboxStatus::Stopped,
                reason: None,
            },
        )
        .unwrap();
        // A sandbox does not conflict with its own record (a restart).
        claim(&mut db, &spec_named("writer", DATA_RW)).unwrap();
        assert!(claim(&mut db, &spec(DATA_RO)).is_err());
    }
}

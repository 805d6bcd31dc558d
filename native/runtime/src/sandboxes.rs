//! The sandbox collection: create (start a supervisor and wait for the guest), start again,
//! remove, connect. Reads go through [`crate::records`], which reconciles the database with
//! reality.

use crate::client::Connection;
use crate::error::{Result, RuntimeError};
use crate::install;
use crate::launch::{self, Launch};
use crate::records::{self, get_with};
use crate::volumes;
use msb_images::base::BASE_IMAGE_NAME;
use msb_protocol::control::ControlRequest;
use msb_state::{Database, SandboxRecord, SandboxStatus, StateError, StatusChange};
use msb_supervisor::artifacts;
use msb_supervisor::database;
use msb_supervisor::paths::SandboxFiles;
use msb_supervisor::process;
use msb_supervisor::root::RootImage;
use msb_supervisor::secrets;
use msb_supervisor::spec::{ImageSource, SandboxSpec};
use std::time::Duration;

/// How long `replace` and failed starts wait for an old supervisor to go away.
const TEARDOWN_WAIT: Duration = Duration::from_secs(15);

pub struct CreateRequest<'a> {
    pub config_json: &'a str,
    pub replace: bool,
    pub launch: Launch<'a>,
}

pub fn create(request: CreateRequest<'_>) -> Result<SandboxRecord> {
    let spec = SandboxSpec::from_json(request.config_json)?;
    check_secrets(&spec, &request.launch)?;
    let files = SandboxFiles::new(&spec.name)?;
    artifacts::boot_artifacts(request.launch.agent)?;
    let mut db = database::open()?;
    let root = check_image(&mut db, &spec.image)?;
    check_volumes(&spec, &root, &files)?;
    if request.replace {
        match get_with(&mut db, &spec.name) {
            Ok(_) => teardown(&mut db, &spec.name)?,
            Err(RuntimeError::SandboxNotFound(_)) => {}
            Err(error) => return Err(error),
        }
    }
    db.exclusive(|db| {
        volumes::claim(db, &spec)?;
        db.insert_sandbox(&spec.name, request.config_json, request.launch.detached)
            .map_err(|error| match error {
                StateError::SandboxExists(name) => RuntimeError::SandboxAlreadyExists(name),
                other => other.into(),
            })
    })?;
    // Files left by a sandbox whose record is gone must not leak into this one.
    let _ = std::fs::remove_dir_all(&files.dir);
    let started = std::fs::create_dir_all(&files.dir)
        .map_err(RuntimeError::io(format!(
            "creating {}",
            files.dir.display()
        )))
        .and_then(|()| {
            launch::start_supervisor(&spec.name, &files, &request.launch, spec.log_level)
        });
    if let Err(error) = started {
        let _ = teardown(&mut db, &spec.name);
        return Err(error);
    }
    get_with(&mut db, &spec.name)
}

/// The sandbox's root, looked up once per create or start: a host root must exist, a stored
/// image must be recorded (the default image is registered on first use in a new home).
fn check_image(db: &mut Database, image: &ImageSource) -> Result<RootImage> {
    match image {
        ImageSource::Oci { reference } => {
            let record = db.image(reference)?.ok_or_else(|| {
                RuntimeError::ImageNotFound(reference.clone(), "pull it first (`msb pull`)".into())
            })?;
            db.touch_image(reference)?;
            Ok(RootImage::of_record(&record))
        }
        ImageSource::Local { name } => {
            if let Some(record) = db.image(name)? {
                return Ok(RootImage::of_record(&record));
            }
            // A new home shares the cache: register the default image on first use.
            if name == BASE_IMAGE_NAME {
                if let Ok(record) = install::register_base_image(db, false) {
                    return Ok(RootImage::of_record(&record));
                }
            }
            let known: Vec<String> = db.images()?.into_iter().map(|image| image.name).collect();
            let known = if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            };
            Err(RuntimeError::ImageNotFound(
                name.clone(),
                format!("local images: {known}"),
            ))
        }
        host => Ok(RootImage::resolve(host, db)?),
    }
}

/// Every secret of the spec has a value, and the set is one the gateway takes: checked
/// before anything is recorded or started.
fn check_secrets(spec: &SandboxSpec, launch: &Launch<'_>) -> Result<()> {
    secrets::build(&spec.secrets, launch.secret_values)?;
    Ok(())
}

fn check_volumes(spec: &SandboxSpec, root: &RootImage, files: &SandboxFiles) -> Result<()> {
    volumes::check_mounts(spec, root.disk(files).virtio_devices())
}

/// Boots a stopped or crashed sandbox again, with its recorded configuration and its disk.
pub fn start(name: &str, launch: Launch<'_>) -> Result<SandboxRecord> {
    artifacts::boot_artifacts(launch.agent)?;
    let mut db = database::open()?;
    let record = get_with(&mut db, name)?;
    if record.status.is_live() {
        return Err(RuntimeError::SandboxAlreadyRunning(name.into()));
    }
    let spec = SandboxSpec::from_json(&record.config)?;
    check_secrets(&spec, &launch)?;
    let root = check_image(&mut db, &spec.image)?;
    let files = SandboxFiles::new(name)?;
    check_volumes(&spec, &root, &files)?;
    db.set_detached(name, launch.detached)?;
    db.exclusive(|db| -> Result<()> {
        volumes::claim(db, &spec)?;
        Ok(db.set_status(
            name,
            StatusChange {
                status: SandboxStatus::Starting,
                reason: None,
            },
        )?)
    })?;
    if let Err(error) = launch::start_supervisor(name, &files, &launch, spec.log_level) {
        let reason = error.to_string();
        let _ = db.set_status(
            name,
            StatusChange {
                status: SandboxStatus::Crashed,
                reason: Some(&reason),
            },
        );
        return Err(error);
    }
    get_with(&mut db, name)
}

/// Stops whatever runs for `name` (killing it) and deletes its record and files.
fn teardown(db: &mut Database, name: &str) -> Result<()> {
    let record = db.sandbox(name)?;
    if let (Some(pid), Some(started)) = (record.supervisor_pid, record.supervisor_start) {
        if process::is_alive(pid, started) {
            let killed = Connection::open(name)
                .and_then(|connection| connection.stop_vm(ControlRequest::Kill));
            if killed.is_err() {
                process::signal(pid, libc::SIGKILL);
            }
            process::wait_gone(pid, started, TEARDOWN_WAIT);
        }
    }
    let files = SandboxFiles::new(name)?;
    let _ = std::fs::remove_dir_all(&files.dir);
    db.delete_sandbox(name)?;
    Ok(())
}

/// Deletes a sandbox; a running one only with `force` (it is killed first).
pub fn remove(name: &str, force: bool) -> Result<()> {
    let mut db = database::open()?;
    let record = get_with(&mut db, name)?;
    if record.status.is_live() && !force {
        return Err(RuntimeError::SandboxStillRunning(name.into()));
    }
    teardown(&mut db, name)
}

/// Connects to a running sandbox.
pub fn connect(name: &str) -> Result<std::sync::Arc<Connection>> {
    let record = records::get(name)?;
    if !matches!(
        record.status,
        SandboxStatus::Running | SandboxStatus::Paused
    ) {
        return Err(RuntimeError::SandboxNotRunning {
            name: name.into(),
            status: record.status.as_str().into(),
        });
    }
    Connection::open(name)
}

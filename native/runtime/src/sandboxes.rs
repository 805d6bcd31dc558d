//! The sandbox collection: create (start a supervisor and wait for the guest), list, get,
//! remove. Reads reconcile the database with reality, so a dead supervisor is reported as a
//! crash, never as running.

use crate::client::Connection;
use crate::error::{Result, RuntimeError};
use crate::install;
use crate::paths::{self, SandboxFiles};
use crate::process;
use crate::spec::{ImageSource, SandboxSpec};
use crate::supervisor::vm;
use crate::volumes;
use msb_images::base::BASE_IMAGE_NAME;
use msb_protocol::control::ControlRequest;
use msb_state::{Database, SandboxRecord, SandboxStatus, StateError, StatusChange};
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// A starting sandbox whose supervisor never registered after this long is reported crashed
/// (its creator died between recording it and starting the supervisor).
const ORPHANED_START_MS: i64 = 5 * 60 * 1000;
/// How long `replace` and failed starts wait for an old supervisor to go away.
const TEARDOWN_WAIT: Duration = Duration::from_secs(15);
/// The supervisor is told where its ready pipe is with this descriptor number.
const READY_FD: i32 = 3;

pub fn open_db() -> Result<Database> {
    let home = paths::home_dir();
    std::fs::create_dir_all(&home)
        .map_err(RuntimeError::io(format!("creating {}", home.display())))?;
    Ok(Database::open(&paths::database_path())?)
}

/// How to run a supervisor: which Python, attached or not, how long to wait for the guest.
pub struct Launch<'a> {
    pub python: &'a Path,
    /// The `microsandbox_tui` package the caller runs: the supervisor runs the same one.
    pub package: &'a Path,
    pub detached: bool,
    pub timeout: Duration,
    pub agent: &'a Path,
}

pub struct CreateRequest<'a> {
    pub config_json: &'a str,
    pub replace: bool,
    pub launch: Launch<'a>,
}

pub fn create(request: CreateRequest<'_>) -> Result<SandboxRecord> {
    let spec = SandboxSpec::from_json(request.config_json)?;
    let files = SandboxFiles::new(&spec.name)?;
    install::boot_artifacts(request.launch.agent)?;
    let mut db = open_db()?;
    check_image(&mut db, &spec.image)?;
    check_volumes(&db, &spec, &files)?;
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
        .and_then(|()| start_supervisor(&spec.name, &files, &request.launch));
    if let Err(error) = started {
        let _ = teardown(&mut db, &spec.name);
        return Err(error);
    }
    get_with(&mut db, &spec.name)
}

fn check_image(db: &mut Database, image: &ImageSource) -> Result<()> {
    match image {
        ImageSource::Bind { path } if Path::new(path).is_dir() => Ok(()),
        ImageSource::Bind { path } => Err(RuntimeError::ImageNotFound(
            path.clone(),
            "a bind root must be an existing directory".into(),
        )),
        ImageSource::Oci { reference } => {
            if db.image(reference)?.is_some() {
                db.touch_image(reference)?;
                return Ok(());
            }
            Err(RuntimeError::ImageNotFound(
                reference.clone(),
                "pull it first (`msb pull`)".into(),
            ))
        }
        ImageSource::Local { name } => {
            if db.image(name)?.is_some() {
                return Ok(());
            }
            // A new home shares the cache: register the default image on first use.
            if name == BASE_IMAGE_NAME && install::register_base_image(db, false).is_ok() {
                return Ok(());
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
    }
}

fn check_volumes(db: &Database, spec: &SandboxSpec, files: &SandboxFiles) -> Result<()> {
    let root = vm::root_disk(spec, files, db)?;
    volumes::check_mounts(spec, root.virtio_devices())
}

fn start_supervisor(name: &str, files: &SandboxFiles, request: &Launch<'_>) -> Result<()> {
    let (ready_read, ready_write) = pipe()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(files.supervisor_log())
        .map_err(RuntimeError::io("opening the supervisor log"))?;
    let mut command = Command::new(request.python);
    command
        .args([
            "-m",
            "microsandbox_tui.supervisor",
            name,
            "--ready-fd",
            &READY_FD.to_string(),
        ])
        .current_dir("/")
        .env("PYTHONPATH", python_path(request.package))
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(RuntimeError::io("supervisor log"))?,
        )
        .stderr(log);
    if !request.detached {
        command.args(["--parent-pid", &std::process::id().to_string()]);
    }
    let write_fd = ready_write.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            // Its own session: terminal signals meant for the creator do not hit it.
            libc::setsid();
            if libc::dup2(write_fd, READY_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(RuntimeError::io(format!(
        "starting {}",
        request.python.display()
    )))?;
    drop(ready_write);
    let outcome = read_ready(ready_read, request.timeout);
    // The supervisor runs on in its own session; reap it in the background when it ends.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    match outcome {
        Some(line) if line.trim() == "ready" => Ok(()),
        Some(line) if !line.trim().is_empty() => Err(RuntimeError::SandboxStart {
            name: name.into(),
            reason: line.trim().trim_start_matches("error: ").to_string(),
        }),
        _ => Err(RuntimeError::SandboxStart {
            name: name.into(),
            reason: format!(
                "the supervisor ended or did not report within {:?}; see {}",
                request.timeout,
                files.supervisor_log().display()
            ),
        }),
    }
}

/// `PYTHONPATH` for the supervisor: the caller's package first, so the supervisor never loads
/// another installation of the runtime than the client that started it.
fn python_path(package: &Path) -> std::ffi::OsString {
    let mut paths = vec![package.parent().unwrap_or(Path::new("/")).to_path_buf()];
    if let Some(existing) = std::env::var_os("PYTHONPATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors that we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(RuntimeError::io("creating the ready pipe")(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads the supervisor's one-line report, waiting at most `timeout`.
fn read_ready(pipe: OwnedFd, timeout: Duration) -> Option<String> {
    let mut poll = libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polling one descriptor we own.
    let ready = unsafe {
        libc::poll(
            &mut poll,
            1,
            timeout.as_millis().min(i32::MAX as u128) as i32,
        )
    };
    if ready <= 0 {
        return None;
    }
    let mut text = String::new();
    std::fs::File::from(pipe).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Boots a stopped or crashed sandbox again, with its recorded configuration and its disk.
pub fn start(name: &str, launch: Launch<'_>) -> Result<SandboxRecord> {
    install::boot_artifacts(launch.agent)?;
    let mut db = open_db()?;
    let record = get_with(&mut db, name)?;
    if record.status.is_live() {
        return Err(RuntimeError::SandboxAlreadyRunning(name.into()));
    }
    let spec = SandboxSpec::from_json(&record.config)?;
    check_image(&mut db, &spec.image)?;
    let files = SandboxFiles::new(name)?;
    check_volumes(&db, &spec, &files)?;
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
    if let Err(error) = start_supervisor(name, &files, &launch) {
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

/// Corrects a record whose supervisor is gone: the VM died with it.
pub fn reconcile(db: &mut Database, record: SandboxRecord) -> Result<SandboxRecord> {
    if !record.status.is_live() {
        return Ok(record);
    }
    match (record.supervisor_pid, record.supervisor_start) {
        (Some(pid), Some(started)) if !process::is_alive(pid, started) => {
            db.mark_crashed_if_owned_by(&record.name, pid, "the supervisor exited unexpectedly")?;
            Ok(db.sandbox(&record.name)?)
        }
        (None, _)
            if record.status == SandboxStatus::Starting
                && msb_state::now_ms() - record.created_at > ORPHANED_START_MS =>
        {
            db.set_status(
                &record.name,
                StatusChange {
                    status: SandboxStatus::Crashed,
                    reason: Some("never started"),
                },
            )?;
            Ok(db.sandbox(&record.name)?)
        }
        _ => Ok(record),
    }
}

fn get_with(db: &mut Database, name: &str) -> Result<SandboxRecord> {
    SandboxFiles::new(name)?;
    let record = db.sandbox(name).map_err(|error| match error {
        StateError::SandboxNotFound(name) => RuntimeError::SandboxNotFound(name),
        other => other.into(),
    })?;
    reconcile(db, record)
}

pub fn get(name: &str) -> Result<SandboxRecord> {
    get_with(&mut open_db()?, name)
}

pub fn list() -> Result<Vec<SandboxRecord>> {
    let mut db = open_db()?;
    let records = db.sandboxes()?;
    records
        .into_iter()
        .map(|record| reconcile(&mut db, record))
        .collect()
}

/// Deletes a sandbox; a running one only with `force` (it is killed first).
pub fn remove(name: &str, force: bool) -> Result<()> {
    let mut db = open_db()?;
    let record = get_with(&mut db, name)?;
    if record.status.is_live() && !force {
        return Err(RuntimeError::SandboxStillRunning(name.into()));
    }
    teardown(&mut db, name)
}

/// Connects to a running sandbox.
pub fn connect(name: &str) -> Result<std::sync::Arc<Connection>> {
    let record = get(name)?;
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

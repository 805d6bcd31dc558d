//! `microsandbox_tui._native`: the embedded microVM runtime, exposed to Python.
//!
//! Every blocking call releases the GIL; the SDK calls them from worker threads.

mod client;
mod doctor;
mod error;
mod fs;
mod images;
mod install;
mod logs;
mod metrics;
mod paths;
mod process;
mod py_fs;
mod sandboxes;
mod spec;
mod supervisor;
mod volumes;

use msb_protocol::control::ControlRequest;
use msb_protocol::guest::{ExecRequest, ResourceLimit, TerminalSize};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The directory of the `microsandbox_tui` package, where the guest agent is shipped.
fn package_dir(py: Python<'_>) -> PyResult<PathBuf> {
    let file: String = py
        .import("microsandbox_tui")?
        .getattr("__file__")?
        .extract()?;
    Ok(PathBuf::from(file)
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default())
}

#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pyfunction]
fn home_dir() -> String {
    paths::home_dir().display().to_string()
}

#[pyfunction]
fn cache_dir() -> String {
    paths::cache_dir().display().to_string()
}

#[pyfunction]
fn is_installed(py: Python<'_>) -> PyResult<bool> {
    let package = package_dir(py)?;
    Ok(py.allow_threads(|| install::is_installed(&package)))
}

#[pyfunction(name = "install")]
#[pyo3(signature = (progress=None))]
fn install_runtime(py: Python<'_>, progress: Option<PyObject>) -> PyResult<()> {
    let package = package_dir(py)?;
    py.allow_threads(|| {
        let mut report = |line: &str| {
            if let Some(callback) = &progress {
                Python::with_gil(|py| {
                    // A failing progress callback must not abort the installation.
                    let _ = callback.call1(py, (line,));
                });
            }
        };
        install::install(&package, &mut report)
    })?;
    Ok(())
}

#[pyfunction(name = "doctor")]
fn run_doctor(py: Python<'_>) -> PyResult<Vec<(String, bool, String)>> {
    let package = package_dir(py)?;
    let checks = py.allow_threads(|| doctor::run(&package));
    Ok(checks
        .into_iter()
        .map(|check| (check.name.to_string(), check.ok, check.detail))
        .collect())
}

/// A sandbox's database record.
#[pyclass(frozen, get_all, module = "microsandbox_tui._native")]
struct SandboxInfo {
    name: String,
    status: String,
    config_json: String,
    detached: bool,
    created_at_ms: i64,
    started_at_ms: Option<i64>,
    stopped_at_ms: Option<i64>,
    accelerator: Option<String>,
    boot_ms: Option<u64>,
    supervisor_pid: Option<u32>,
    vmm_pid: Option<u32>,
    exit_reason: Option<String>,
}

impl From<msb_state::SandboxRecord> for SandboxInfo {
    fn from(record: msb_state::SandboxRecord) -> Self {
        Self {
            name: record.name,
            status: record.status.as_str().to_string(),
            config_json: record.config,
            detached: record.detached,
            created_at_ms: record.created_at,
            started_at_ms: record.started_at,
            stopped_at_ms: record.stopped_at,
            accelerator: record.accelerator,
            boot_ms: record.boot_ms,
            supervisor_pid: record.supervisor_pid,
            vmm_pid: record.vmm_pid,
            exit_reason: record.exit_reason,
        }
    }
}

/// Stops a pull between chunks; the pull then fails with `PullCancelledError` and leaves
/// nothing partial in the store.
#[pyclass(frozen, module = "microsandbox_tui._native")]
struct PullCancel {
    flag: Arc<AtomicBool>,
}

#[pymethods]
impl PullCancel {
    #[new]
    fn new() -> Self {
        Self {
            flag: Arc::new(AtomicBool::new(false)),
        }
    }

    fn cancel(&self) {
        self.flag.store(true, Ordering::SeqCst);
    }
}

/// Starts a supervisor (through `start`) with this package's agent, outside the GIL.
fn launch_supervisor(
    py: Python<'_>,
    python: &str,
    detached: bool,
    timeout_s: f64,
    start: impl FnOnce(sandboxes::Launch<'_>) -> error::Result<msb_state::SandboxRecord> + Send,
) -> PyResult<SandboxInfo> {
    let package = package_dir(py)?;
    let record = py.allow_threads(|| {
        let agent = install::agent_binary(&package)?;
        start(sandboxes::Launch {
            python: python.as_ref(),
            package: &package,
            detached,
            timeout: Duration::from_secs_f64(timeout_s.max(0.0)),
            agent: &agent,
        })
    })?;
    Ok(record.into())
}

#[pyfunction]
fn create_sandbox(
    py: Python<'_>,
    config_json: String,
    replace: bool,
    detached: bool,
    python: String,
    timeout_s: f64,
) -> PyResult<SandboxInfo> {
    launch_supervisor(py, &python, detached, timeout_s, |launch| {
        sandboxes::create(sandboxes::CreateRequest {
            config_json: &config_json,
            replace,
            launch,
        })
    })
}

/// Boots a stopped or crashed sandbox again with its recorded configuration and disk.
#[pyfunction]
fn start_sandbox(
    py: Python<'_>,
    name: String,
    detached: bool,
    python: String,
    timeout_s: f64,
) -> PyResult<SandboxInfo> {
    launch_supervisor(py, &python, detached, timeout_s, |launch| {
        sandboxes::start(&name, launch)
    })
}

#[pyfunction]
fn list_sandboxes(py: Python<'_>) -> PyResult<Vec<SandboxInfo>> {
    let records = py.allow_threads(sandboxes::list)?;
    Ok(records.into_iter().map(SandboxInfo::from).collect())
}

#[pyfunction]
fn get_sandbox(py: Python<'_>, name: String) -> PyResult<SandboxInfo> {
    Ok(py.allow_threads(|| sandboxes::get(&name))?.into())
}

#[pyfunction]
#[pyo3(signature = (name, force=false))]
fn remove_sandbox(py: Python<'_>, name: String, force: bool) -> PyResult<()> {
    Ok(py.allow_threads(|| sandboxes::remove(&name, force))?)
}

/// The log file of a sandbox: `console` (the guest kernel's console) or `exec` (commands and
/// how they ended). The previous generation, if any, has the same path with `.1` appended.
#[pyfunction]
fn log_path(name: String, source: String) -> PyResult<String> {
    let files = paths::SandboxFiles::new(&name)?;
    let path = match source.as_str() {
        "console" => files.console_log(),
        "exec" => files.exec_log(),
        other => {
            return Err(error::RuntimeError::InvalidConfig(format!(
                "unknown log {other:?}: expected console or exec"
            ))
            .into())
        }
    };
    Ok(path.display().to_string())
}

/// A sandbox's latest metrics sample.
#[pyclass(frozen, get_all, module = "microsandbox_tui._native")]
struct Metrics {
    cpu_percent: f64,
    memory_bytes: u64,
    memory_limit_bytes: u64,
    host_rss_bytes: u64,
    disk_read_bytes: u64,
    disk_write_bytes: u64,
    net_rx_bytes: u64,
    net_tx_bytes: u64,
    uptime_ms: u64,
    sampled_at_ms: u64,
}

impl From<metrics::MetricsSample> for Metrics {
    fn from(sample: metrics::MetricsSample) -> Self {
        Self {
            cpu_percent: sample.cpu_percent,
            memory_bytes: sample.memory_bytes,
            memory_limit_bytes: sample.memory_limit_bytes,
            host_rss_bytes: sample.host_rss_bytes,
            disk_read_bytes: sample.disk_read_bytes,
            disk_write_bytes: sample.disk_write_bytes,
            net_rx_bytes: sample.net_rx_bytes,
            net_tx_bytes: sample.net_tx_bytes,
            uptime_ms: sample.uptime_ms,
            sampled_at_ms: sample.sampled_at_ms,
        }
    }
}

/// The latest sample of a running sandbox; `None` until its supervisor wrote the first one.
#[pyfunction]
fn sandbox_metrics(py: Python<'_>, name: String) -> PyResult<Option<Metrics>> {
    let sample = py.allow_threads(|| -> error::Result<_> {
        let record = sandboxes::get(&name)?;
        if !record.status.is_live() {
            return Err(error::RuntimeError::SandboxNotRunning {
                name: name.clone(),
                status: record.status.as_str().into(),
            });
        }
        Ok(metrics::read(&paths::SandboxFiles::new(&name)?.metrics()))
    })?;
    Ok(sample.map(Metrics::from))
}

/// Latest samples of every running sandbox: one database read and one small file each.
#[pyfunction]
fn all_metrics(py: Python<'_>) -> PyResult<Vec<(String, Metrics)>> {
    let samples = py.allow_threads(|| -> error::Result<_> {
        let mut samples = Vec::new();
        for record in sandboxes::list()? {
            if !record.status.is_live() {
                continue;
            }
            if let Some(sample) = metrics::read(&paths::SandboxFiles::new(&record.name)?.metrics())
            {
                samples.push((record.name, sample));
            }
        }
        Ok(samples)
    })?;
    Ok(samples
        .into_iter()
        .map(|(name, sample)| (name, Metrics::from(sample)))
        .collect())
}

#[pyfunction]
fn list_images(py: Python<'_>) -> PyResult<String> {
    Ok(py.allow_threads(images::list)?)
}

#[pyfunction]
fn inspect_image(py: Python<'_>, name: String) -> PyResult<String> {
    Ok(py.allow_threads(|| images::inspect(&name))?)
}

#[pyfunction]
fn remove_image(py: Python<'_>, name: String) -> PyResult<()> {
    Ok(py.allow_threads(|| images::remove(&name))?)
}

#[pyfunction]
fn prune_images(py: Python<'_>) -> PyResult<u64> {
    Ok(py.allow_threads(images::prune)?)
}

#[pyfunction]
fn canonical_reference(reference: &str) -> PyResult<String> {
    Ok(images::canonical_reference(reference)?)
}

/// Pulls `reference`; `progress` is called (with the GIL) with each progress event as JSON.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn pull_image(
    py: Python<'_>,
    reference: String,
    insecure: bool,
    username: Option<String>,
    password: Option<String>,
    token: Option<String>,
    progress: PyObject,
    cancel: &PullCancel,
) -> PyResult<String> {
    let credentials = match (token, username) {
        (Some(token), _) => Some(msb_oci::Credentials::Token(token)),
        (None, Some(username)) => Some(msb_oci::Credentials::Basic {
            username,
            password: password.unwrap_or_default(),
        }),
        (None, None) => None,
    };
    let options = msb_oci::PullOptions {
        insecure,
        credentials,
        docker_config: None,
    };
    let flag = cancel.flag.clone();
    Ok(py.allow_threads(move || {
        let mut report = |event: msb_oci::Progress| {
            let text = serde_json::to_string(&event).expect("progress serialises");
            Python::with_gil(|py| {
                // A failing callback must not fail the pull; Python sees the traceback.
                if let Err(error) = progress.call1(py, (text,)) {
                    error.print(py);
                }
            });
        };
        images::pull(&reference, &options, &mut report, &flag)
    })?)
}

/// Creates a named volume of `quota_mib` MiB; returns it as JSON (see `get_volume`).
#[pyfunction]
fn create_volume(py: Python<'_>, name: String, quota_mib: u64) -> PyResult<String> {
    Ok(py.allow_threads(|| volumes::create(&name, quota_mib))?)
}

#[pyfunction]
fn list_volumes(py: Python<'_>) -> PyResult<String> {
    Ok(py.allow_threads(volumes::list)?)
}

#[pyfunction]
fn get_volume(py: Python<'_>, name: String) -> PyResult<String> {
    Ok(py.allow_threads(|| volumes::get(&name))?)
}

#[pyfunction]
fn remove_volume(py: Python<'_>, name: String) -> PyResult<()> {
    Ok(py.allow_threads(|| volumes::remove(&name))?)
}

#[pyfunction]
#[pyo3(signature = (name, parent_pid=None, ready_fd=None))]
fn run_supervisor(
    py: Python<'_>,
    name: String,
    parent_pid: Option<u32>,
    ready_fd: Option<i32>,
) -> PyResult<()> {
    let package = package_dir(py)?;
    py.allow_threads(|| {
        let agent = install::agent_binary(&package)?;
        supervisor::run(&name, &agent, parent_pid, ready_fd)
    })?;
    Ok(())
}

/// The QEMU command line that boots the default image with its per-VM files (sockets,
/// console log, a fresh upper disk) in `work_dir`: the same kernel, initramfs and devices a
/// sandbox gets, without the supervisor. For benchmarks and debugging.
#[pyfunction]
fn boot_command(py: Python<'_>, work_dir: String) -> PyResult<Vec<String>> {
    let package = package_dir(py)?;
    let argv = py.allow_threads(|| -> error::Result<Vec<String>> {
        let agent = install::agent_binary(&package)?;
        let artifacts = install::boot_artifacts(&agent)?;
        let accelerator = msb_engine::accel::request_from_env()
            .and_then(msb_engine::accel::choose)
            .map_err(|e| error::RuntimeError::Accelerator(e.to_string()))?
            .accelerator;
        let image = install::register_base_image(&mut sandboxes::open_db()?, false)?;
        let files = paths::SandboxFiles::in_dir(PathBuf::from(&work_dir));
        // The benchmark plays the supervisor: it must listen on the console socket.
        msb_images::ext4::empty_image(
            &files.upper_disk(),
            supervisor::vm::UPPER_DISK_BYTES,
            "upper",
        )
        .map_err(|e| error::RuntimeError::Install(e.to_string()))?;
        let root = msb_engine::qemu::RootDisk::Overlay {
            lowers: vec![msb_engine::qemu::Lower::Layer(image.path.into())],
            upper: files.upper_disk(),
        };
        let config =
            supervisor::vm::vm_config("bench", 1, 512, &files, root, &artifacts, accelerator);
        let mut argv = vec![artifacts.qemu.display().to_string()];
        argv.extend(msb_engine::qemu::arguments(&config));
        Ok(argv)
    })?;
    Ok(argv)
}

/// The host's first frame on the agent channel (hello with the current time).
#[pyfunction]
fn hello_frame(py: Python<'_>) -> PyResult<Py<PyBytes>> {
    let bytes = supervisor::vm::hello_frame()?.to_bytes();
    Ok(PyBytes::new(py, &bytes).unbind())
}

#[pyclass(frozen, get_all, module = "microsandbox_tui._native")]
struct ExecResult {
    stdout: Py<PyBytes>,
    stderr: Py<PyBytes>,
    exit_code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
}

/// Options of a command, as the SDK passes them.
#[allow(clippy::too_many_arguments)]
fn exec_request(
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<String>,
    timeout_ms: Option<u64>,
    stdin: bool,
    tty: Option<(u16, u16)>,
    user: Option<String>,
    rlimits: Vec<(String, u64, u64)>,
) -> ExecRequest {
    ExecRequest {
        program,
        args,
        env,
        cwd,
        timeout_ms,
        stdin,
        tty: tty.map(|(rows, cols)| TerminalSize { rows, cols }),
        user,
        rlimits: rlimits
            .into_iter()
            .map(|(resource, soft, hard)| ResourceLimit {
                resource,
                soft,
                hard,
            })
            .collect(),
    }
}

/// A client connection to a running sandbox's supervisor.
#[pyclass(frozen, module = "microsandbox_tui._native")]
struct Connection {
    inner: Arc<client::Connection>,
}

#[pymethods]
impl Connection {
    #[staticmethod]
    fn open(py: Python<'_>, name: String) -> PyResult<Self> {
        let inner = py.allow_threads(|| sandboxes::connect(&name))?;
        Ok(Self { inner })
    }

    #[pyo3(signature = (program, args, env, cwd=None, timeout_ms=None, user=None, rlimits=Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn exec(
        &self,
        py: Python<'_>,
        program: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        cwd: Option<String>,
        timeout_ms: Option<u64>,
        user: Option<String>,
        rlimits: Vec<(String, u64, u64)>,
    ) -> PyResult<ExecResult> {
        let request = exec_request(
            program, args, env, cwd, timeout_ms, false, None, user, rlimits,
        );
        let outcome = py.allow_threads(|| self.inner.exec(request))?;
        Ok(ExecResult {
            stdout: PyBytes::new(py, &outcome.stdout).unbind(),
            stderr: PyBytes::new(py, &outcome.stderr).unbind(),
            exit_code: outcome.exit_code,
            signal: outcome.signal,
            timed_out: outcome.timed_out,
        })
    }

    #[pyo3(signature = (program, args, env, cwd=None, timeout_ms=None, tty=None, user=None, rlimits=Vec::new()))]
    #[allow(clippy::too_many_arguments)]
    fn exec_stream(
        &self,
        py: Python<'_>,
        program: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
        cwd: Option<String>,
        timeout_ms: Option<u64>,
        tty: Option<(u16, u16)>,
        user: Option<String>,
        rlimits: Vec<(String, u64, u64)>,
    ) -> PyResult<ExecStream> {
        let request = exec_request(
            program, args, env, cwd, timeout_ms, true, tty, user, rlimits,
        );
        let inner = py.allow_threads(|| self.inner.exec_stream(request))?;
        Ok(ExecStream { inner })
    }

    fn attach(&self, py: Python<'_>, session: u32) -> PyResult<ExecStream> {
        let inner = py.allow_threads(|| self.inner.attach(session))?;
        Ok(ExecStream { inner })
    }

    /// Running sessions: `(session, program, args, tty, started_at_ms, attached)` rows.
    #[allow(clippy::type_complexity)]
    fn sessions(
        &self,
        py: Python<'_>,
    ) -> PyResult<Vec<(u32, String, Vec<String>, bool, u64, bool)>> {
        let sessions = py.allow_threads(|| self.inner.sessions())?;
        Ok(sessions
            .into_iter()
            .map(|s| {
                (
                    s.session,
                    s.program,
                    s.args,
                    s.tty,
                    s.started_at_ms,
                    s.attached,
                )
            })
            .collect())
    }

    fn ping(&self, py: Python<'_>) -> PyResult<f64> {
        Ok(py.allow_threads(|| self.inner.ping())?.as_secs_f64())
    }

    /// Graceful shutdown through the agent; with `wait`, returns once the VM is gone.
    #[pyo3(signature = (timeout_ms, wait=true))]
    fn stop(&self, py: Python<'_>, timeout_ms: u64, wait: bool) -> PyResult<()> {
        Ok(py.allow_threads(|| {
            self.inner
                .stop_vm(ControlRequest::Stop { timeout_ms, wait })
        })?)
    }

    fn kill(&self, py: Python<'_>) -> PyResult<()> {
        Ok(py.allow_threads(|| self.inner.stop_vm(ControlRequest::Kill))?)
    }

    fn pause(&self, py: Python<'_>) -> PyResult<()> {
        py.allow_threads(|| self.inner.control(ControlRequest::Pause))?;
        Ok(())
    }

    fn resume(&self, py: Python<'_>) -> PyResult<()> {
        py.allow_threads(|| self.inner.control(ControlRequest::Resume))?;
        Ok(())
    }

    fn detach(&self, py: Python<'_>) -> PyResult<()> {
        py.allow_threads(|| self.inner.control(ControlRequest::Detach))?;
        Ok(())
    }

    /// The guest file system, over this connection.
    fn fs(&self) -> py_fs::Fs {
        py_fs::Fs::new(self.inner.clone())
    }

    fn close(&self) {
        self.inner.close();
    }
}

/// A running command's events and input.
#[pyclass(frozen, module = "microsandbox_tui._native")]
struct ExecStream {
    inner: client::ExecStream,
}

#[pymethods]
impl ExecStream {
    #[getter]
    fn session(&self) -> u32 {
        self.inner.session()
    }

    #[getter]
    fn finished(&self) -> bool {
        self.inner.is_finished()
    }

    /// The next event as a tuple: `("started", pid)`, `("stdout", bytes)`, `("stderr", bytes)`,
    /// `("exited", code, signal, timed_out)`; `None` when finished or when `timeout_s` passed.
    #[pyo3(signature = (timeout_s=None))]
    fn next_event(&self, py: Python<'_>, timeout_s: Option<f64>) -> PyResult<Option<PyObject>> {
        let timeout = timeout_s.map(|t| Duration::from_secs_f64(t.max(0.0)));
        let event = py.allow_threads(|| self.inner.next_event(timeout))?;
        Ok(match event {
            None => None,
            Some(client::ExecEvent::Started { pid }) => {
                Some(("started", pid).into_pyobject(py)?.into_any().unbind())
            }
            Some(client::ExecEvent::Stdout(data)) => Some(
                ("stdout", PyBytes::new(py, &data))
                    .into_pyobject(py)?
                    .into_any()
                    .unbind(),
            ),
            Some(client::ExecEvent::Stderr(data)) => Some(
                ("stderr", PyBytes::new(py, &data))
                    .into_pyobject(py)?
                    .into_any()
                    .unbind(),
            ),
            Some(client::ExecEvent::Exited {
                code,
                signal,
                timed_out,
            }) => Some(
                ("exited", code, signal, timed_out)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind(),
            ),
        })
    }

    fn write_stdin(&self, py: Python<'_>, data: Vec<u8>) -> PyResult<()> {
        Ok(py.allow_threads(|| self.inner.write_stdin(&data))?)
    }

    fn close_stdin(&self, py: Python<'_>) -> PyResult<()> {
        Ok(py.allow_threads(|| self.inner.close_stdin())?)
    }

    fn signal(&self, py: Python<'_>, signal: i32) -> PyResult<()> {
        Ok(py.allow_threads(|| self.inner.signal(signal))?)
    }

    fn resize(&self, py: Python<'_>, rows: u16, cols: u16) -> PyResult<()> {
        Ok(py.allow_threads(|| self.inner.resize(TerminalSize { rows, cols }))?)
    }
}

/// A terminal emulator for a guest PTY's output (for drawing it inside the dashboard).
#[pyclass(module = "microsandbox_tui._native")]
struct Terminal {
    inner: msb_terminal::Terminal,
}

/// A run of equally styled text: `(text, foreground, background, bold, dim, italic,
/// underline, inverse)`; colours are `default`, `color(N)` or `#rrggbb`.
type SegmentTuple = (String, String, String, bool, bool, bool, bool, bool);

#[pymethods]
impl Terminal {
    #[new]
    #[pyo3(signature = (rows, cols, scrollback=10_000))]
    fn new(rows: u16, cols: u16, scrollback: usize) -> Self {
        Self {
            inner: msb_terminal::Terminal::new(rows, cols, scrollback),
        }
    }

    fn feed(&mut self, data: &[u8]) {
        self.inner.feed(data);
    }

    /// Answers to the program's queries (e.g. the cursor position for `ESC [ 6 n`) since the
    /// previous call, to write to its input.
    fn take_replies<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.take_replies())
    }

    fn resize(&mut self, rows: u16, cols: u16) {
        self.inner.resize(rows, cols);
    }

    #[getter]
    fn size(&self) -> (u16, u16) {
        self.inner.size()
    }

    /// Rows that changed since the previous call.
    fn dirty_rows(&mut self) -> Vec<u16> {
        self.inner.dirty_rows()
    }

    fn row_segments(&self, row: u16) -> Vec<SegmentTuple> {
        self.inner
            .row_segments(row)
            .into_iter()
            .map(|s| {
                let style = s.style;
                (
                    s.text,
                    style.foreground,
                    style.background,
                    style.bold,
                    style.dim,
                    style.italic,
                    style.underline,
                    style.inverse,
                )
            })
            .collect()
    }

    /// `(row, col, visible)`.
    #[getter]
    fn cursor(&self) -> (u16, u16, bool) {
        self.inner.cursor()
    }

    fn contents(&self) -> String {
        self.inner.contents()
    }

    #[getter]
    fn title(&self) -> String {
        self.inner.title().to_string()
    }

    #[getter]
    fn alternate_screen(&self) -> bool {
        self.inner.alternate_screen()
    }

    #[getter]
    fn bracketed_paste(&self) -> bool {
        self.inner.bracketed_paste()
    }

    #[getter]
    fn application_cursor(&self) -> bool {
        self.inner.application_cursor()
    }

    #[getter]
    fn mouse_mode(&self) -> &'static str {
        self.inner.mouse_mode()
    }

    #[getter]
    fn scrollback(&self) -> usize {
        self.inner.scrollback()
    }

    #[setter]
    fn set_scrollback(&mut self, rows: usize) {
        self.inner.set_scrollback(rows);
    }
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(version, module)?)?;
    module.add_function(wrap_pyfunction!(home_dir, module)?)?;
    module.add_function(wrap_pyfunction!(cache_dir, module)?)?;
    module.add_function(wrap_pyfunction!(is_installed, module)?)?;
    module.add_function(wrap_pyfunction!(install_runtime, module)?)?;
    module.add_function(wrap_pyfunction!(run_doctor, module)?)?;
    module.add_function(wrap_pyfunction!(create_sandbox, module)?)?;
    module.add_function(wrap_pyfunction!(start_sandbox, module)?)?;
    module.add_function(wrap_pyfunction!(list_sandboxes, module)?)?;
    module.add_function(wrap_pyfunction!(get_sandbox, module)?)?;
    module.add_function(wrap_pyfunction!(remove_sandbox, module)?)?;
    module.add_function(wrap_pyfunction!(list_images, module)?)?;
    module.add_function(wrap_pyfunction!(inspect_image, module)?)?;
    module.add_function(wrap_pyfunction!(remove_image, module)?)?;
    module.add_function(wrap_pyfunction!(prune_images, module)?)?;
    module.add_function(wrap_pyfunction!(canonical_reference, module)?)?;
    module.add_function(wrap_pyfunction!(pull_image, module)?)?;
    module.add_function(wrap_pyfunction!(create_volume, module)?)?;
    module.add_function(wrap_pyfunction!(list_volumes, module)?)?;
    module.add_function(wrap_pyfunction!(get_volume, module)?)?;
    module.add_function(wrap_pyfunction!(remove_volume, module)?)?;
    module.add_function(wrap_pyfunction!(log_path, module)?)?;
    module.add_function(wrap_pyfunction!(sandbox_metrics, module)?)?;
    module.add_function(wrap_pyfunction!(all_metrics, module)?)?;
    module.add_class::<Metrics>()?;
    module.add_function(wrap_pyfunction!(run_supervisor, module)?)?;
    module.add_function(wrap_pyfunction!(boot_command, module)?)?;
    module.add_function(wrap_pyfunction!(hello_frame, module)?)?;
    module.add_class::<SandboxInfo>()?;
    module.add_class::<PullCancel>()?;
    module.add_class::<ExecResult>()?;
    module.add_class::<Connection>()?;
    module.add_class::<ExecStream>()?;
    module.add_class::<Terminal>()?;
    py_fs::register(module)?;
    Ok(())
}

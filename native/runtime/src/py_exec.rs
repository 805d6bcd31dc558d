//! Python bindings of a client connection to a sandbox's supervisor ([`crate::client`]):
//! commands (collected or streamed), sessions, and the VM's lifecycle controls.

use crate::client;
use crate::py_fs;
use crate::sandboxes;
use crate::wire::to_json;
use msb_protocol::control::{ControlRequest, SessionInfo};
use msb_protocol::guest::{ExecRequest, ResourceLimit, TerminalSize};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// A running session as the SDK's `SessionInfo`.
#[derive(Serialize)]
struct Session<'a> {
    session: u32,
    program: &'a str,
    args: &'a [String],
    tty: bool,
    started_at: u64,
    attached: bool,
}

impl<'a> Session<'a> {
    fn of(info: &'a SessionInfo) -> Self {
        Self {
            session: info.session,
            program: &info.program,
            args: &info.args,
            tty: info.tty,
            started_at: info.started_at_ms,
            attached: info.attached,
        }
    }
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

    /// Running sessions as a JSON list of `{session, program, args, tty, started_at,
    /// attached}`.
    fn sessions(&self, py: Python<'_>) -> PyResult<String> {
        let sessions = py.allow_threads(|| self.inner.sessions())?;
        let sessions: Vec<Session<'_>> = sessions.iter().map(Session::of).collect();
        Ok(to_json(&sessions))
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

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<ExecResult>()?;
    module.add_class::<Connection>()?;
    module.add_class::<ExecStream>()?;
    Ok(())
}

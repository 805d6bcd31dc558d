//! Python bindings of the runtime as a whole: version, locations, installation, `msb doctor`
//! and logging.

use crate::error::RuntimeError;
use crate::wire::to_json;
use crate::{doctor, install};
use msb_supervisor::logging::{self, Destination, LogLevel};
use msb_supervisor::paths;
use pyo3::prelude::*;

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
fn is_installed(py: Python<'_>) -> bool {
    py.allow_threads(install::is_installed)
}

#[pyfunction(name = "install")]
#[pyo3(signature = (progress=None))]
fn install_runtime(py: Python<'_>, progress: Option<PyObject>) -> PyResult<()> {
    py.allow_threads(|| {
        let mut report = |line: &str| {
            if let Some(callback) = &progress {
                Python::with_gil(|py| {
                    // A failing progress callback must not abort the installation.
                    let _ = callback.call1(py, (line,));
                });
            }
        };
        install::install(&mut report)
    })?;
    Ok(())
}

/// The host checks as a JSON list of `{name, ok, detail}`.
#[pyfunction(name = "doctor")]
fn run_doctor(py: Python<'_>) -> String {
    to_json(&py.allow_threads(doctor::run))
}

/// Sends the runtime's log records of `level` and above (trace, debug, info, warn, error;
/// `None`: off) to stderr, or appended to the file at `path`.
#[pyfunction]
#[pyo3(signature = (level, path=None))]
fn configure_logging(level: Option<&str>, path: Option<&str>) -> PyResult<()> {
    let level = level
        .map(str::parse::<LogLevel>)
        .transpose()
        .map_err(RuntimeError::from)?;
    let destination = match path {
        None => Destination::Stderr,
        Some(path) => Destination::File(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(RuntimeError::io(format!("opening the log file {path}")))?,
        ),
    };
    logging::configure(level, destination);
    Ok(())
}

/// Logging as `MSB_LOG` says, to stderr (off when it is unset or names no level).
pub fn configure_logging_from_env() {
    logging::configure(LogLevel::from_env().ok().flatten(), Destination::Stderr);
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(version, module)?)?;
    module.add_function(wrap_pyfunction!(home_dir, module)?)?;
    module.add_function(wrap_pyfunction!(cache_dir, module)?)?;
    module.add_function(wrap_pyfunction!(is_installed, module)?)?;
    module.add_function(wrap_pyfunction!(install_runtime, module)?)?;
    module.add_function(wrap_pyfunction!(run_doctor, module)?)?;
    module.add_function(wrap_pyfunction!(configure_logging, module)?)?;
    Ok(())
}

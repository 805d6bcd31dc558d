//! `microsandbox_tui._native`: the embedded microVM runtime, exposed to Python.
//!
//! Every blocking call releases the GIL; the SDK calls them from worker threads. Records
//! cross as JSON text ([`wire`]). Each `py_*` module binds the domain module beside it.

mod binaries;
mod client;
mod doctor;
mod error;
mod fs;
mod images;
mod install;
mod launch;
mod policy;
mod records;
mod sandboxes;
mod secrets;
mod volumes;
mod wire;

#[cfg(feature = "bench")]
mod bench;
mod py_exec;
mod py_fs;
mod py_images;
mod py_metrics;
mod py_runtime;
mod py_sandboxes;
mod py_terminal;
mod py_volumes;

use pyo3::prelude::*;

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    py_runtime::configure_logging_from_env();
    py_runtime::register(module)?;
    py_sandboxes::register(module)?;
    py_metrics::register(module)?;
    py_images::register(module)?;
    py_volumes::register(module)?;
    py_exec::register(module)?;
    py_fs::register(module)?;
    py_terminal::register(module)?;
    #[cfg(feature = "bench")]
    bench::register(module)?;
    Ok(())
}

//! Python bindings of the named volumes ([`crate::volumes`]), each returned as a `Volume`
//! JSON record.

use crate::volumes;
use crate::wire::to_json;
use pyo3::prelude::*;

/// Creates a named volume of `quota_mib` MiB.
#[pyfunction]
fn create_volume(py: Python<'_>, name: String, quota_mib: u64) -> PyResult<String> {
    Ok(py.allow_threads(|| volumes::create(&name, quota_mib).map(|volume| to_json(&volume)))?)
}

#[pyfunction]
fn list_volumes(py: Python<'_>) -> PyResult<String> {
    Ok(py.allow_threads(|| volumes::list().map(|volumes| to_json(&volumes)))?)
}

#[pyfunction]
fn get_volume(py: Python<'_>, name: String) -> PyResult<String> {
    Ok(py.allow_threads(|| volumes::get(&name).map(|volume| to_json(&volume)))?)
}

#[pyfunction]
fn remove_volume(py: Python<'_>, name: String) -> PyResult<()> {
    Ok(py.allow_threads(|| volumes::remove(&name))?)
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(create_volume, module)?)?;
    module.add_function(wrap_pyfunction!(list_volumes, module)?)?;
    module.add_function(wrap_pyfunction!(get_volume, module)?)?;
    module.add_function(wrap_pyfunction!(remove_volume, module)?)?;
    Ok(())
}

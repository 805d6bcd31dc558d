//! Python bindings of the metrics samples the supervisors write (`MetricsSample` as JSON).

use crate::error::{Result, RuntimeError};
use crate::records;
use crate::wire::to_json;
use msb_supervisor::metrics;
use msb_supervisor::paths::SandboxFiles;
use pyo3::prelude::*;
use std::collections::BTreeMap;

/// The latest sample of a running sandbox; `None` until its supervisor wrote the first one.
#[pyfunction]
fn sandbox_metrics(py: Python<'_>, name: String) -> PyResult<Option<String>> {
    let sample = py.allow_threads(|| -> Result<_> {
        let record = records::get(&name)?;
        if !record.status.is_live() {
            return Err(RuntimeError::SandboxNotRunning {
                name: name.clone(),
                status: record.status.as_str().into(),
            });
        }
        Ok(metrics::read(&SandboxFiles::new(&name)?.metrics()))
    })?;
    Ok(sample.as_ref().map(to_json))
}

/// Latest samples of every running sandbox, as a JSON object by sandbox name: one database
/// read of the live records (stopped ones cost nothing) and one small file each.
#[pyfunction]
fn all_metrics(py: Python<'_>) -> PyResult<String> {
    Ok(py.allow_threads(|| -> Result<String> {
        let mut samples = BTreeMap::new();
        for record in records::list_live()? {
            if !record.status.is_live() {
                continue;
            }
            if let Some(sample) = metrics::read(&SandboxFiles::new(&record.name)?.metrics()) {
                samples.insert(record.name, sample);
            }
        }
        Ok(to_json(&samples))
    })?)
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(sandbox_metrics, module)?)?;
    module.add_function(wrap_pyfunction!(all_metrics, module)?)?;
    Ok(())
}

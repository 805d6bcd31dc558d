//! Python bindings of the local image store ([`crate::images`]): pulls with progress and
//! cancellation, listing, inspecting, removing, pruning.

use crate::images;
use crate::wire::to_json;
use pyo3::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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

#[pyfunction]
fn list_images(py: Python<'_>) -> PyResult<String> {
    Ok(py.allow_threads(|| images::list().map(|images| to_json(&images)))?)
}

#[pyfunction]
fn inspect_image(py: Python<'_>, name: String) -> PyResult<String> {
    Ok(py.allow_threads(|| images::inspect(&name).map(|image| to_json(&image)))?)
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
            let text = to_json(&event);
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

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<PullCancel>()?;
    module.add_function(wrap_pyfunction!(list_images, module)?)?;
    module.add_function(wrap_pyfunction!(inspect_image, module)?)?;
    module.add_function(wrap_pyfunction!(remove_image, module)?)?;
    module.add_function(wrap_pyfunction!(prune_images, module)?)?;
    module.add_function(wrap_pyfunction!(canonical_reference, module)?)?;
    module.add_function(wrap_pyfunction!(pull_image, module)?)?;
    Ok(())
}

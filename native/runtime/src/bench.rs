//! `_native.bench`: what the benchmarks need beyond the SDK, compiled only with the `bench`
//! feature (development builds; a release wheel has none of it).

use crate::binaries;
use crate::error::{Result, RuntimeError};
use crate::install;
use msb_supervisor::paths::SandboxFiles;
use msb_supervisor::root::RootImage;
use msb_supervisor::{artifacts, database, vm};
use pyo3::prelude::*;
use std::path::PathBuf;

/// The QEMU command line that boots the default image with its per-VM files (sockets,
/// console log, a fresh upper disk) in `work_dir`: the same kernel, initramfs and devices a
/// sandbox gets, without the supervisor. For benchmarks and debugging.
#[pyfunction]
fn boot_command(py: Python<'_>, work_dir: String) -> PyResult<Vec<String>> {
    Ok(py.allow_threads(|| bare_boot_argv(PathBuf::from(work_dir)))?)
}

fn bare_boot_argv(work_dir: PathBuf) -> Result<Vec<String>> {
    let agent = binaries::agent()?;
    let artifacts = artifacts::boot_artifacts(&agent)?;
    let accelerator = msb_engine::accel::request_from_env()
        .and_then(msb_engine::accel::choose)
        .map_err(|e| RuntimeError::Accelerator(e.to_string()))?
        .accelerator;
    let image = install::register_base_image(&mut database::open()?, false)?;
    let files = SandboxFiles::in_dir(work_dir);
    // The benchmark plays the supervisor: it must listen on the console socket.
    msb_images::ext4::empty_image(&files.upper_disk(), vm::UPPER_DISK_BYTES, "upper")
        .map_err(|e| RuntimeError::Install(e.to_string()))?;
    let root = RootImage::of_record(&image).disk(&files);
    let config = vm::vm_config("bench", 1, 512, &files, root, &artifacts, accelerator);
    let mut argv = vec![artifacts.qemu.display().to_string()];
    argv.extend(msb_engine::qemu::arguments(&config));
    Ok(argv)
}

/// Adds the `bench` submodule, also importable as `microsandbox_tui._native.bench`.
pub fn register(parent: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = parent.py();
    let module = PyModule::new(py, "bench")?;
    module.add_function(wrap_pyfunction!(boot_command, &module)?)?;
    parent.add_submodule(&module)?;
    py.import("sys")?
        .getattr("modules")?
        .set_item("microsandbox_tui._native.bench", &module)?;
    Ok(())
}

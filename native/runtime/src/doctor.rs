//! `msb doctor`: what this host offers and what is missing, one check per row.

use crate::binaries;
use msb_engine::{accel, kernel, qemu};
use msb_supervisor::paths;
use serde::Serialize;
use std::path::PathBuf;

/// One row of the report; crosses into Python as `{name, ok, detail}`.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

fn check(name: &'static str, result: Result<String, String>) -> Check {
    match result {
        Ok(detail) => Check {
            name,
            ok: true,
            detail,
        },
        Err(detail) => Check {
            name,
            ok: false,
            detail,
        },
    }
}

pub fn run() -> Vec<Check> {
    let cache = paths::cache_dir();
    vec![
        check(
            "accelerator",
            accel::request_from_env()
                .and_then(accel::choose)
                .map(|choice| format!("{} ({})", choice.accelerator, choice.reason))
                .map_err(|error| error.to_string()),
        ),
        check(
            "qemu",
            qemu::find_qemu()
                .and_then(|path| {
                    qemu::qemu_version(&path)
                        .map(|version| format!("{} ({version})", path.display()))
                })
                .map_err(|error| error.to_string()),
        ),
        check(
            "kernel",
            kernel::find_installed(&cache)
                .map(|kernel| {
                    format!(
                        "{} at {} ({} modules)",
                        kernel.release,
                        kernel.vmlinux.display(),
                        kernel.modules.len()
                    )
                })
                .ok_or_else(|| format!("not installed in {}; run `msb install`", cache.display())),
        ),
        check("guest agent", binary(binaries::agent())),
        check("supervisor", binary(binaries::supervisor())),
        check(
            "default image",
            msb_images::base::find_base_image(&cache)
                .map(|image| format!("{} ({} bytes)", image.digest, image.size_bytes))
                .ok_or_else(|| "not built; run `msb install`".to_string()),
        ),
        check("home", Ok(paths::home_dir().display().to_string())),
        check("cache", Ok(cache.display().to_string())),
    ]
}

fn binary(found: crate::error::Result<PathBuf>) -> Result<String, String> {
    found
        .map(|path| path.display().to_string())
        .map_err(|error| error.to_string())
}

//! Python bindings of the guest file system requests ([`crate::fs`]), reached through
//! `Connection.fs()`. Every call blocks on the guest and releases the GIL.

use crate::client::Connection;
use crate::fs::{self, WriteOptions};
use crate::wire::to_json;
use msb_protocol::guest::{FsEntryKind, FsRequest};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// One guest path's metadata as the SDK's `FsEntry`.
#[derive(Serialize)]
struct FsEntry<'a> {
    path: &'a str,
    kind: FsEntryKind,
    size: u64,
    mode: u32,
    modified: i64,
    uid: u32,
    gid: u32,
    link_target: Option<&'a str>,
}

impl<'a> FsEntry<'a> {
    fn of(entry: &'a msb_protocol::guest::FsEntry) -> Self {
        Self {
            path: &entry.path,
            kind: entry.kind,
            size: entry.size,
            mode: entry.mode,
            modified: entry.modified_ms,
            uid: entry.uid,
            gid: entry.gid,
            link_target: entry.link_target.as_deref(),
        }
    }
}

/// The guest file system of a sandbox, over its connection.
#[pyclass(frozen, module = "microsandbox_tui._native")]
pub struct Fs {
    connection: Arc<Connection>,
}

impl Fs {
    pub fn new(connection: Arc<Connection>) -> Self {
        Self { connection }
    }

    fn run(&self, py: Python<'_>, request: FsRequest) -> PyResult<()> {
        Ok(py.allow_threads(|| self.connection.fs_do(request))?)
    }
}

#[pymethods]
impl Fs {
    /// The `FsEntry` JSON of `path`.
    fn stat(&self, py: Python<'_>, path: String, follow: bool) -> PyResult<String> {
        let entry = py.allow_threads(|| self.connection.fs_stat(path, follow))?;
        Ok(to_json(&FsEntry::of(&entry)))
    }

    /// A JSON list of `FsEntry`.
    fn list(&self, py: Python<'_>, path: String) -> PyResult<String> {
        let entries = py.allow_threads(|| self.connection.fs_list(path))?;
        let entries: Vec<FsEntry<'_>> = entries.iter().map(FsEntry::of).collect();
        Ok(to_json(&entries))
    }

    fn read<'py>(&self, py: Python<'py>, path: String) -> PyResult<Bound<'py, PyBytes>> {
        let data = py.allow_threads(|| self.connection.fs_read(path))?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (path, chunk_size=None))]
    fn open_read(
        &self,
        py: Python<'_>,
        path: String,
        chunk_size: Option<usize>,
    ) -> PyResult<FsReader> {
        let connection = self.connection.clone();
        let inner = py.allow_threads(|| fs::FsReader::open(connection, path, chunk_size))?;
        Ok(FsReader { inner })
    }

    fn write(
        &self,
        py: Python<'_>,
        path: String,
        data: &[u8],
        mode: Option<u32>,
        append: bool,
        create_parents: bool,
    ) -> PyResult<u64> {
        let options = WriteOptions {
            mode,
            append,
            create_parents,
        };
        Ok(py.allow_threads(|| self.connection.fs_write(path, data, options))?)
    }

    fn open_write(
        &self,
        py: Python<'_>,
        path: String,
        mode: Option<u32>,
        append: bool,
        create_parents: bool,
    ) -> PyResult<FsWriter> {
        let options = WriteOptions {
            mode,
            append,
            create_parents,
        };
        let connection = self.connection.clone();
        let inner = py.allow_threads(|| fs::FsWriter::open(connection, path, options))?;
        Ok(FsWriter { inner })
    }

    fn mkdir(
        &self,
        py: Python<'_>,
        path: String,
        mode: Option<u32>,
        parents: bool,
    ) -> PyResult<()> {
        self.run(
            py,
            FsRequest::Mkdir {
                path,
                mode,
                parents,
            },
        )
    }

    fn remove(&self, py: Python<'_>, path: String, recursive: bool) -> PyResult<()> {
        self.run(py, FsRequest::Remove { path, recursive })
    }

    fn rename(&self, py: Python<'_>, src: String, dst: String) -> PyResult<()> {
        self.run(py, FsRequest::Rename { from: src, to: dst })
    }

    fn copy(&self, py: Python<'_>, src: String, dst: String) -> PyResult<()> {
        self.run(py, FsRequest::Copy { from: src, to: dst })
    }

    fn symlink(&self, py: Python<'_>, target: String, link: String) -> PyResult<()> {
        self.run(py, FsRequest::Symlink { target, link })
    }

    fn chmod(&self, py: Python<'_>, path: String, mode: u32) -> PyResult<()> {
        self.run(py, FsRequest::Chmod { path, mode })
    }

    /// `(total_bytes, free_bytes, available_bytes)`.
    fn usage(&self, py: Python<'_>, path: String) -> PyResult<(u64, u64, u64)> {
        let usage = py.allow_threads(|| self.connection.fs_usage(path))?;
        Ok((usage.total_bytes, usage.free_bytes, usage.available_bytes))
    }
}

/// A file streamed from the guest.
#[pyclass(frozen, module = "microsandbox_tui._native")]
pub struct FsReader {
    inner: fs::FsReader,
}

#[pymethods]
impl FsReader {
    /// The next chunk; `None` at the end of the file or when `timeout_s` passed.
    #[pyo3(signature = (timeout_s=None))]
    fn next_chunk<'py>(
        &self,
        py: Python<'py>,
        timeout_s: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let timeout = timeout_s.map(|t| Duration::from_secs_f64(t.max(0.0)));
        let chunk = py.allow_threads(|| self.inner.next_chunk(timeout))?;
        Ok(chunk.map(|data| PyBytes::new(py, &data)))
    }

    #[getter]
    fn finished(&self) -> bool {
        self.inner.is_finished()
    }
}

/// A file streamed to the guest.
#[pyclass(frozen, module = "microsandbox_tui._native")]
pub struct FsWriter {
    inner: fs::FsWriter,
}

#[pymethods]
impl FsWriter {
    fn write(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        Ok(py.allow_threads(|| self.inner.write(data))?)
    }

    /// Ends the data; returns the bytes written.
    fn finish(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(py.allow_threads(|| self.inner.finish())?)
    }

    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        Ok(py.allow_threads(|| self.inner.abort())?)
    }
}

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Fs>()?;
    module.add_class::<FsReader>()?;
    module.add_class::<FsWriter>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_entries_name_fields_as_python_does() {
        let entry = msb_protocol::guest::FsEntry {
            path: "/etc/hosts".into(),
            kind: FsEntryKind::Symlink,
            size: 5,
            mode: 0o777,
            modified_ms: 1_700_000_000_123,
            uid: 0,
            gid: 0,
            link_target: Some("/x".into()),
        };
        assert_eq!(
            serde_json::to_value(FsEntry::of(&entry)).unwrap(),
            serde_json::json!({
                "path": "/etc/hosts", "kind": "symlink", "size": 5, "mode": 0o777,
                "modified": 1_700_000_000_123_i64, "uid": 0, "gid": 0, "link_target": "/x",
            })
        );
    }
}

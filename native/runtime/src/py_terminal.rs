//! Python bindings of the terminal emulator (`msb_terminal`) the dashboard draws a guest
//! PTY's output with.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

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

pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Terminal>()
}

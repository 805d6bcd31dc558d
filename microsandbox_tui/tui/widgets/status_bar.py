"""The line above the footer: accelerator, runtime home, sandbox counts, mouse and read-only
badges."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label


class StatusBar(Horizontal):
    """Facts about the host and the listing; each part is its own label, styled in CSS."""

    def compose(self) -> ComposeResult:
        yield Label("accel ?", id="status-accelerator", markup=False)
        yield Label("home ?", id="status-home", markup=False)
        yield Label("", id="status-counts", markup=False)
        yield Label("MOUSE OFF", id="status-mouse")
        yield Label("READ-ONLY", id="status-readonly")

    def set_host(self, accelerator: str | None, home: str | None) -> None:
        self.query_one("#status-accelerator", Label).update(f"accel {accelerator or '?'}")
        self.query_one("#status-home", Label).update(f"home {home or '?'}")

    def set_counts(self, total: int, running: int) -> None:
        noun = "sandbox" if total == 1 else "sandboxes"
        self.query_one("#status-counts", Label).update(f"{total} {noun}, {running} running")

    def set_mouse(self, enabled: bool) -> None:
        self.query_one("#status-mouse", Label).display = not enabled

    def set_readonly(self, readonly: bool) -> None:
        self.query_one("#status-readonly", Label).display = readonly

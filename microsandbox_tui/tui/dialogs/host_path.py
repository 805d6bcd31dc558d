"""Asks for a path on the host: where a download goes, or what to upload."""

from __future__ import annotations

import os

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from .form import FormDialog


class HostPathDialog(FormDialog[str]):
    """Dismisses with an absolute host path (``~`` expanded), or ``None`` when cancelled.
    With ``must_exist`` the path is checked before the dialog closes."""

    def __init__(self, title: str, value: str, *, confirm_label: str, must_exist: bool) -> None:
        super().__init__()
        self._title = title
        self._value = value
        self._confirm_label = confirm_label
        self._must_exist = must_exist

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label(self._title, classes="dialog-title", markup=False)
            yield Label("Host path", classes="field-label")
            yield Input(self._value, id="host-path")
            yield Static("", id="host-path-status", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self._confirm_label, id="confirm", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#host-path", Input).focus()

    def submit(self) -> None:
        text = self.query_one("#host-path", Input).value.strip()
        if not text:
            self.query_one("#host-path-status", Static).update("enter a path")
            return
        path = os.path.abspath(os.path.expanduser(text))
        if self._must_exist and not os.path.exists(path):
            self.query_one("#host-path-status", Static).update(f"{path} does not exist")
            return
        self.dismiss(path)

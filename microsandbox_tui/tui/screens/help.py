"""The key list, opened with ``?``."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical
from textual.screen import ModalScreen
from textual.widgets import Label

#: (keys, what they do, whether the action changes something and so is hidden read-only)
HELP_KEYS: tuple[tuple[str, str, bool], ...] = (
    ("j / ↓", "move down", False),
    ("k / ↑", "move up", False),
    ("r", "refresh now", False),
    ("c", "create a sandbox", True),
    ("x", "stop the selected sandbox (graceful)", True),
    ("u", "start a stopped or crashed sandbox", True),
    ("p", "pause or resume the selected sandbox", True),
    ("shift+r", "restart the selected sandbox", True),
    ("shift+k", "kill the selected sandbox (asks first)", True),
    ("l", "follow the logs (e: console or exec log)", False),
    ("ctrl+d", "delete the selected sandbox (asks first)", True),
    ("ctrl+p", "command palette", False),
    ("?", "show or close this help", False),
    ("esc", "close a dialog or this help", False),
    ("q", "quit", False),
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark", "close", "Close", key_display="esc"),
    ]

    def __init__(self, *, readonly: bool = False) -> None:
        super().__init__()
        self._readonly = readonly

    def compose(self) -> ComposeResult:
        with Vertical(id="help", classes="dialog"):
            yield Label("Keys", classes="dialog-title")
            with Grid(id="help-keys"):
                for keys, description, mutating in HELP_KEYS:
                    if mutating and self._readonly:
                        continue
                    yield Label(keys, classes="help-key", markup=False)
                    yield Label(description, classes="help-description", markup=False)
            if self._readonly:
                yield Label(
                    "Read-only: every action that changes a sandbox is disabled.",
                    id="help-readonly",
                )

    def action_close(self) -> None:
        self.dismiss(None)

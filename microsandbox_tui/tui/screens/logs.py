"""A sandbox's logs, followed live: the guest console, or the log of commands run in it."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Input

from microsandbox_tui import LogSource

from ..widgets import LogView, ViewBar
from .base import MsbScreen


class LogsScreen(MsbScreen):
    HELP_TITLE = "Logs"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="back"),
        Binding("e", "switch_source", "Console/Exec", id="log_source"),
        Binding("slash", "search", "Search", key_display="/", id="log_search"),
    ]

    def __init__(self, sandbox: str, source: LogSource = LogSource.CONSOLE) -> None:
        super().__init__()
        self.sandbox = sandbox
        self._initial_source = source

    @property
    def log_view(self) -> LogView:
        return self.query_one(LogView)

    @property
    def source(self) -> LogSource | None:
        return self.log_view.source

    def compose(self) -> ComposeResult:
        yield ViewBar("sandboxes", f"{self.sandbox} ▸ logs", id="view-bar")
        yield LogView(self.sandbox, id="log")
        yield Input(placeholder="search the log (enter keeps it, esc clears)", id="log-search")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log-search", Input).display = False
        self.log_view.follow(self._initial_source)

    def action_back(self) -> None:
        search = self.query_one("#log-search", Input)
        if search.display:
            search.value = ""
            search.display = False
            self.log_view.focus()
            return
        self.dismiss(None)

    def action_search(self) -> None:
        search = self.query_one("#log-search", Input)
        search.display = True
        search.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.log_view.search(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.log_view.focus()

    def action_switch_source(self) -> None:
        self.log_view.switch_source()

"""A sandbox's logs, followed live: the guest console, or the log of commands run in it."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, RichLog

from microsandbox_tui import LogSource, read_logs

#: Lines shown from before the screen opened; older ones stay in the log files.
BACKLOG_LINES = 1000
#: Lines kept in the view while following.
MAX_LINES = 10_000


class LogsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("e", "switch_source", "Console/Exec"),
    ]

    def __init__(self, sandbox: str, source: LogSource = LogSource.CONSOLE) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.source = source

    @property
    def log_view(self) -> RichLog:
        return self.query_one(RichLog)

    def compose(self) -> ComposeResult:
        yield RichLog(id="log", max_lines=MAX_LINES, wrap=False, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self._follow()

    def action_back(self) -> None:
        self.dismiss(None)

    def action_switch_source(self) -> None:
        self.source = LogSource.EXEC if self.source is LogSource.CONSOLE else LogSource.CONSOLE
        self._follow()

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def _follow(self) -> None:
        view = self.log_view
        view.clear()
        view.border_title = f"{self.sandbox} · {self.source} log"
        try:
            async for line in read_logs(self.sandbox, self.source, tail=BACKLOG_LINES, follow=True):
                view.write(line)
        except Exception as error:
            self.app.notify(str(error), title=type(error).__name__, severity="error", markup=False)
            return
        view.border_subtitle = "the sandbox is not running: end of log"

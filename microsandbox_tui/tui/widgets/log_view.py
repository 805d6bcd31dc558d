"""A sandbox's log followed live, used by the logs screen and the detail screen's Logs tab."""

from __future__ import annotations

from collections import deque

from textual import work
from textual.widgets import RichLog

from microsandbox_tui import LogSource, read_logs

#: Lines shown from before the view opened; older ones stay in the log files.
BACKLOG_LINES = 1000
#: Lines kept in the view while following.
MAX_LINES = 10_000


class LogView(RichLog):
    """Follows one log of one sandbox until the sandbox stops; :meth:`follow` switches."""

    def __init__(self, sandbox: str, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=MAX_LINES, wrap=False, markup=False, highlight=False)
        self.sandbox = sandbox
        self.source: LogSource | None = None
        #: Every line received, so that a search can be changed or cleared later.
        self._lines: deque[str] = deque(maxlen=MAX_LINES)
        self.query_text = ""

    def search(self, text: str) -> None:
        """Shows only the lines containing ``text`` (case-insensitive); empty shows all."""
        self.query_text = text
        self.clear()
        for line in self._lines:
            if self._matches(line):
                self.write(line)

    def _matches(self, line: str) -> bool:
        return self.query_text.casefold() in line.casefold()

    def _add(self, line: str) -> None:
        self._lines.append(line)
        if self._matches(line):
            self.write(line)

    def follow(self, source: LogSource = LogSource.CONSOLE) -> None:
        """Shows the backlog of ``source`` and keeps appending its new lines."""
        self.source = source
        self._follow(source)

    def switch_source(self) -> None:
        """Console log ↔ log of commands run in the sandbox."""
        self.follow(LogSource.EXEC if self.source is LogSource.CONSOLE else LogSource.CONSOLE)

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def _follow(self, source: LogSource) -> None:
        self.clear()
        self._lines.clear()
        self.border_title = f"{self.sandbox} · {source} log"
        self.border_subtitle = ""
        try:
            async for line in read_logs(self.sandbox, source, tail=BACKLOG_LINES, follow=True):
                self._add(line)
        except Exception as error:
            self.app.notify(str(error), title=type(error).__name__, severity="error", markup=False)
            return
        self.border_subtitle = "the sandbox is not running: end of log"

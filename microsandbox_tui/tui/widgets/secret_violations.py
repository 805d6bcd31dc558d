"""The secret violations of a sandbox, followed live from its flow log: each time a
placeholder headed for a host its secret does not allow (records with the reason
``secret_violation``; only ``block_and_log`` and ``block_and_terminate`` secrets write them),
with the secret's env var and the host. Values never reach the flow log."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable

from .flow_log import feed_from_flow_log

if TYPE_CHECKING:
    from microsandbox_tui.network_log import FlowLogEntry


#: Flow-log entries read from before the view opened: violations are rare, so further back
#: than the flow log view's backlog.
BACKLOG_ENTRIES = 10_000
#: Violations kept in the view while following.
MAX_VIOLATIONS = 1000
COLUMNS = (("TIME", 8), ("SECRET", 20), ("HOST", 28), ("DESTINATION", 22))


def is_violation(entry: FlowLogEntry) -> bool:
    return entry.is_secret_violation


def violation_cells(entry: FlowLogEntry) -> tuple[str, str, str, str]:
    """The time, the secret, the host it was headed for (the gateway records it as the
    domain; the TLS name, if it differs, is in ``sni``) and the address."""
    host = entry.domain or entry.sni or "-"
    return entry.time.strftime("%H:%M:%S"), entry.secret or "-", host, entry.dst or "-"


class SecretViolationsView(Vertical):
    """The violations in one sandbox's flow log; :meth:`follow` starts reading it."""

    def __init__(self, sandbox: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sandbox = sandbox
        self.following = False
        self._violations: deque[FlowLogEntry] = deque(maxlen=MAX_VIOLATIONS)
        self._received = 0

    @property
    def table(self) -> DataTable[str]:
        return self.query_one("#violations-table", DataTable)

    @property
    def shown(self) -> list[FlowLogEntry]:
        """The violations the table shows, oldest first."""
        return list(self._violations)

    def compose(self) -> ComposeResult:
        yield DataTable(id="violations-table", cursor_type="row")

    def on_mount(self) -> None:
        for label, width in COLUMNS:
            self.table.add_column(label, width=width, key=label)
        self._describe()

    def _describe(self) -> None:
        self.table.border_title = f"Secret violations [{len(self._violations)}]"
        self.table.border_subtitle = "from the flow log" if self.following else "not followed"

    def add(self, entry: FlowLogEntry) -> None:
        """Shows ``entry`` if it is a violation, following the newest row when the cursor is
        on the last one."""
        if not is_violation(entry):
            return
        table = self.table
        self._received += 1
        if len(self._violations) == self._violations.maxlen:
            table.remove_row(str(self._received - len(self._violations)))
        self._violations.append(entry)
        at_end = table.cursor_row >= table.row_count - 1
        table.add_row(*violation_cells(entry), key=str(self._received))
        if at_end:
            table.move_cursor(row=table.row_count - 1)
        self._describe()

    def follow(self) -> None:
        """Shows the violations of the log's backlog and keeps appending new ones."""
        self.following = True
        self._describe()
        self._follow()

    @work(exclusive=True, group="secret-violations", exit_on_error=False)
    async def _follow(self) -> None:
        await feed_from_flow_log(self, self.sandbox, BACKLOG_ENTRIES, self.add)
        self.following = False
        self.table.border_subtitle = "end of the flow log"

"""A sandbox's flow log followed live: every flow and DNS decision with the rule that made it,
filtered to denied ones or by destination text. On a flow the policy denied, ``A`` asks for a
rule that allows its destination (the screen opens the rule form on it); a request a secret
blocked is not one: no rule would let its secret go there."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from microsandbox_tui import Direction, Rule
from microsandbox_tui.formatting import format_size
from microsandbox_tui.network import Protocol

if TYPE_CHECKING:
    from textual.widget import Widget

    from microsandbox_tui.network_log import FlowLogEntry

    from ..app import MsbApp

#: Entries shown from before the view opened; older ones stay in the log file.
BACKLOG_ENTRIES = 500
#: Entries kept in the view while following.
MAX_ENTRIES = 5000
#: The rule column shows the rule's index (as the editor numbers it) or ``default``; the
#: line under the table gives the selected entry whole, with the rule's text.
COLUMNS = (("TIME", 8), ("ACTION", 6), ("RULE", 7), ("FLOW", 60))
#: Protocols whose rules may name a port.
_PORTED = frozenset({Protocol.TCP, Protocol.UDP})


def flow_text(entry: FlowLogEntry) -> str:
    """What the entry is about: the flow, or the DNS question and its answer."""
    if entry.kind == "dns":
        answer = ", ".join(entry.answers) or entry.rcode or "-"
        return f"dns {entry.qtype} {entry.name} -> {answer}"
    names = entry.domain or entry.sni
    # The guest is the source of every egress flow: only the peer is worth the width (the
    # pane is narrow: at 110 columns the flow column shows about 20 characters).
    if entry.direction is Direction.INGRESS:
        flow = f"ingress {entry.protocol} {entry.src} -> {entry.dst}"
    else:
        flow = f"{entry.protocol} {entry.dst}"
    flow += f" ({names})" if names else ""
    if entry.kind == "close":
        sent, received = format_size(entry.bytes_sent or 0), format_size(entry.bytes_received or 0)
        flow += f" sent {sent}, received {received}"
    return flow


def decided_by(entry: FlowLogEntry) -> str:
    """The deciding rule with its text (``rule 2 allow@.example.com:tcp:443``), ``default``,
    or a close's reason."""
    if entry.kind == "close":
        return entry.reason or "-"
    if entry.rule is None:
        return entry.rule_text or "default"
    return f"rule {entry.rule} {entry.rule_text or ''}".rstrip()


def entry_cells(entry: FlowLogEntry) -> tuple[str, str, str, str]:
    time = entry.time.strftime("%H:%M:%S")
    if entry.kind == "close":
        return time, "close", "-", flow_text(entry)
    rule = "default" if entry.rule is None else f"#{entry.rule}"
    return time, str(entry.action or "-"), rule, flow_text(entry)


def entry_detail(entry: FlowLogEntry) -> str:
    """The whole entry on one line: time, action, flow, what decided it and why."""
    time = entry.time.strftime("%H:%M:%S.%f")[:-3]
    action = "close" if entry.kind == "close" else str(entry.action or "-")
    reason = f" · {entry.reason}" if entry.reason and entry.kind != "close" else ""
    source = f" from {entry.src}" if entry.src and entry.direction is not Direction.INGRESS else ""
    return f"{time} {action} {flow_text(entry)}{source} · {decided_by(entry)}{reason}"


def is_allowable(entry: FlowLogEntry) -> bool:
    """Whether a rule could allow what ``entry`` was refused: the policy denied it (not a
    secret, whose hosts no rule changes)."""
    return entry.denied and not entry.is_secret_violation


def allow_rule_for(entry: FlowLogEntry) -> Rule:
    """A rule allowing what ``entry`` was refused: its direction, protocol, port, and its
    domain when it was reached by name (else its address). A refused DNS question gets a rule
    for the name with no protocol or port, the kind of rule a query is decided by."""
    if entry.kind == "dns":
        return Rule.allow(destination=entry.name)
    protocol = Protocol(entry.protocol)
    return Rule.allow(
        direction=entry.direction or Direction.EGRESS,
        protocol=protocol,
        destination=entry.domain or entry.peer_host,
        port=entry.peer_port if protocol in _PORTED else None,
    )


async def feed_from_flow_log(
    widget: Widget, sandbox: str, tail: int, add: Callable[[FlowLogEntry], None]
) -> None:
    """Hands ``add`` the last ``tail`` entries of ``sandbox``'s flow log, then each new one,
    until the log ends (the sandbox stopped); an error is reported, not raised."""
    app = cast("MsbApp", widget.app)
    try:
        async for entry in app.source.network_log(sandbox, tail=tail, follow=True):
            add(entry)
    except Exception as error:
        app.report_error(error, context=f"reading the flow log of {sandbox}")


class FlowFilter(Input):
    """The destination filter's box: escape clears the filter and goes back to the table,
    rather than leaving the screen as escape does elsewhere on it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear filter", show=False)
    ]

    def action_clear_filter(self) -> None:
        self.value = ""
        self.post_message(self.Submitted(self, ""))


class FlowLogView(Vertical):
    """The flow log of one sandbox; :meth:`follow` starts reading it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("D", "toggle_denied", "Denied only", id="denied_only"),
        Binding("slash", "filter_flows", "Filter", id="filter_flows"),
        Binding("A", "allow_destination", "Allow destination", id="allow_destination"),
    ]

    class AllowRequested(Message):
        """The user asks for a rule allowing the destination of a denied entry."""

        def __init__(self, view: FlowLogView, entry: FlowLogEntry) -> None:
            super().__init__()
            self.view = view
            self.entry = entry

        @property
        def control(self) -> FlowLogView:
            return self.view

    def __init__(self, sandbox: str, *, editable: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sandbox = sandbox
        self.editable = editable
        self.denied_only = False
        self.query_text = ""
        self.following = False
        self._entries: deque[tuple[int, FlowLogEntry]] = deque(maxlen=MAX_ENTRIES)
        self._received = 0

    @property
    def table(self) -> DataTable[str]:
        return self.query_one("#flow-table", DataTable)

    @property
    def shown(self) -> list[FlowLogEntry]:
        """The entries the table shows, oldest first."""
        return [entry for _, entry in self._entries if self._matches(entry)]

    @property
    def selected(self) -> FlowLogEntry | None:
        table = self.table
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((entry for number, entry in self._entries if str(number) == key), None)

    def compose(self) -> ComposeResult:
        filter_input = FlowFilter(placeholder="destination contains…", id="flow-filter")
        filter_input.display = False
        yield filter_input
        yield DataTable(id="flow-table", cursor_type="row")
        yield Static("", id="flow-detail", markup=False)

    def on_mount(self) -> None:
        for label, width in COLUMNS:
            self.table.add_column(label, width=width, key=label)
        self._describe()

    def _describe(self) -> None:
        filters = ["denied only"] if self.denied_only else []
        filters += [f"destination: {self.query_text}"] if self.query_text else []
        shown, total = self.table.row_count, len(self._entries)
        self.table.border_title = f"Flow log [{shown}/{total}]" if filters else "Flow log"
        self.table.border_subtitle = " · ".join(filters) or "D denied only · / filter"

    def _matches(self, entry: FlowLogEntry) -> bool:
        if self.denied_only and not entry.denied:
            return False
        if not self.query_text:
            return True
        places = (entry.dst, entry.domain, entry.sni, entry.name, entry.peer_host)
        text = self.query_text.casefold()
        return any(text in place.casefold() for place in places if place)

    def add(self, entry: FlowLogEntry) -> None:
        """Appends ``entry`` (shown if it passes the filters), following the newest row when
        the cursor is on the last one."""
        self._received += 1
        number = self._received
        if len(self._entries) == self._entries.maxlen:
            oldest, _ = self._entries[0]
            if str(oldest) in self.table.rows:
                self.table.remove_row(str(oldest))
        self._entries.append((number, entry))
        if self._matches(entry):
            table = self.table
            at_end = table.cursor_row >= table.row_count - 1
            table.add_row(*entry_cells(entry), key=str(number))
            if at_end:
                table.move_cursor(row=table.row_count - 1)
        self._describe()

    def _refilter(self) -> None:
        table = self.table
        table.clear()
        for number, entry in self._entries:
            if self._matches(entry):
                table.add_row(*entry_cells(entry), key=str(number))
        table.move_cursor(row=table.row_count - 1)
        self._describe()

    def follow(self) -> None:
        """Shows the log's backlog and keeps appending its new entries."""
        self.following = True
        self._follow()

    @work(exclusive=True, group="flow-log", exit_on_error=False)
    async def _follow(self) -> None:
        await feed_from_flow_log(self, self.sandbox, BACKLOG_ENTRIES, self.add)
        self.following = False
        self.table.border_subtitle = "end of the flow log"

    # -- filters and the allow shortcut ----------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "allow_destination":
            if not self.editable:
                return False
            entry = self.selected if self.is_mounted else None
            return (entry is not None and is_allowable(entry)) or None
        return True

    def action_toggle_denied(self) -> None:
        self.denied_only = not self.denied_only
        self._refilter()

    def action_filter_flows(self) -> None:
        box = self.query_one("#flow-filter", Input)
        box.display = True
        box.focus()

    @on(Input.Changed, "#flow-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.query_text = event.value.strip()
        self._refilter()

    @on(Input.Submitted, "#flow-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        box = self.query_one("#flow-filter", Input)
        box.display = bool(self.query_text)
        self.table.focus()

    @on(DataTable.RowHighlighted, "#flow-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        entry = self.selected
        self.query_one("#flow-detail", Static).update(entry_detail(entry) if entry else "")
        self.screen.refresh_bindings()

    def action_allow_destination(self) -> None:
        entry = self.selected
        if entry is not None and is_allowable(entry):
            self.post_message(self.AllowRequested(self, entry))

"""The sandboxes view: a live table of every sandbox in the runtime home."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Input

from microsandbox_tui import SandboxInfo, SandboxStatus

from ..data import SandboxesSnapshot
from ..operations import load_host_info
from ..widgets import SandboxTable, StatusBar, ViewBar
from .logs import LogsScreen
from .sandbox_actions import LIFECYCLE_BINDINGS, SandboxActionsScreen


class SandboxesScreen(SandboxActionsScreen):
    HELP_TITLE = "Sandboxes"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "create", "Create", id="create"),
        *LIFECYCLE_BINDINGS,
        Binding("enter", "details", "Details", show=False, id="details"),
        Binding("l", "logs", "Logs", id="logs"),
        Binding("slash", "filter", "Filter", id="filter"),
        Binding("o", "sort", "Sort", id="sort"),
        Binding("O", "sort_reverse", "Reverse sort", show=False, id="sort_reverse"),
        Binding("r", "refresh", "Refresh", id="refresh"),
        Binding("escape", "back", "Clear filter", show=False, id="back"),
    ]

    #: The listing the status bar and title count (the table keeps its own).
    _shown_infos: tuple[SandboxInfo, ...] | None = None

    @property
    def table(self) -> SandboxTable:
        return self.query_one(SandboxTable)

    @property
    def filter_input(self) -> Input:
        return self.query_one("#filter", Input)

    def compose(self) -> ComposeResult:
        yield ViewBar("sandboxes", id="view-bar")
        yield Input(placeholder="filter by name, image or status", id="filter")
        yield SandboxTable(id="sandboxes")
        yield StatusBar(id="status-bar")
        yield Footer()

    def on_mount(self) -> None:
        app = self.msb_app
        self.table.border_title = "Sandboxes"
        self.filter_input.display = False
        status_bar = self.query_one(StatusBar)
        status_bar.set_readonly(app.readonly)
        status_bar.set_mouse(app.mouse_enabled)
        status_bar.set_counts(0, 0)
        if app.options.host_info:
            self._load_host_info()
        app.snapshot_signal.subscribe(self, self._show)
        app.mouse_signal.subscribe(self, status_bar.set_mouse)
        if app.snapshot is not None:
            self._show(app.snapshot)
        self.table.focus()

    # -- refreshing ------------------------------------------------------------------------

    def _show(self, snapshot: SandboxesSnapshot) -> None:
        app = self.msb_app
        listing_changed = snapshot.infos is not self._shown_infos
        self._shown_infos = snapshot.infos
        self.table.sync(snapshot.infos, snapshot.now, snapshot.metrics, app.history, app.busy)
        if listing_changed:
            running = sum(info.status is SandboxStatus.RUNNING for info in snapshot.infos)
            self.query_one(StatusBar).set_counts(len(snapshot.infos), running)
            self._update_title()

    def _update_title(self) -> None:
        """``Sandboxes [N]``, or ``[shown/N]`` while a filter hides some."""
        table = self.table
        snapshot = self.msb_app.snapshot
        total = len(snapshot.infos) if snapshot else 0
        shown = len(table.infos)
        table.border_title = (
            f"Sandboxes [{total}]" if shown == total else f"Sandboxes [{shown}/{total}]"
        )

    @work(group="host", exit_on_error=False)
    async def _load_host_info(self) -> None:
        try:
            host = await load_host_info()
        except Exception as error:
            self.msb_app.report_error(error, context="checking the host")
            return
        self.query_one(StatusBar).set_host(host.accelerator, host.home)
        if host.failed_checks:
            self.notify(
                "failed checks: " + ", ".join(host.failed_checks) + " (run `msb doctor`)",
                title="Host",
                severity="warning",
                markup=False,
            )

    # -- filter and sort -------------------------------------------------------------------

    def action_filter(self) -> None:
        self.filter_input.display = True
        self.filter_input.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value)
        self._update_title()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value:
            self.filter_input.display = False
        self.table.focus()

    def action_back(self) -> None:
        """``esc``: clears the filter."""
        if self.filter_input.display or self.table.filter_text:
            self.filter_input.value = ""
            self.filter_input.display = False
            self.table.set_filter("")
            self.table.focus()
            self._update_title()

    def action_sort(self) -> None:
        self.table.cycle_sort()

    def action_sort_reverse(self) -> None:
        self.table.reverse_sort()

    # -- actions ---------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self.msb_app.refresh_sandboxes()

    def target_sandbox(self) -> str | None:
        name = self.table.selected_name
        if name is None:
            self.notify("no sandbox selected", severity="warning")
        return name

    def action_create(self) -> None:
        self.msb_app.open_create_dialog()

    def action_logs(self) -> None:
        if name := self.target_sandbox():
            self.app.push_screen(LogsScreen(name))

    def action_details(self) -> None:
        if name := self.target_sandbox():
            self.msb_app.open_details(name)

    @on(DataTable.RowSelected, "#sandboxes")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.msb_app.open_details(event.row_key.value)

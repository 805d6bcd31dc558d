"""The sandboxes view: a live table of every sandbox in the runtime home."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer

from microsandbox_tui import Sandbox, SandboxInfo, SandboxStatus

from ..dialogs import ConfirmDialog, CreateSandboxDialog
from ..operations import (
    CreateRequest,
    create_sandbox,
    delete_sandbox,
    kill_sandbox,
    load_host_info,
    restart_sandbox,
    start_sandbox,
    stop_sandbox,
    toggle_pause,
)
from ..widgets import SandboxTable, StatusBar
from .logs import LogsScreen

if TYPE_CHECKING:
    from ..app import MsbApp

#: Actions that change something; hidden and refused in read-only mode.
MUTATING_ACTIONS = frozenset({"create", "stop", "delete", "start", "kill", "pause", "restart"})


class SandboxesScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "create", "Create"),
        Binding("x", "stop", "Stop"),
        Binding("u", "start", "Start"),
        Binding("p", "pause", "Pause/Resume"),
        Binding("R", "restart", "Restart", key_display="shift+r"),
        Binding("K", "kill", "Kill", key_display="shift+k"),
        Binding("ctrl+d", "delete", "Delete"),
        Binding("l", "logs", "Logs"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._refreshing = False
        self._last_refresh_error: str | None = None

    @property
    def msb_app(self) -> MsbApp:
        return cast("MsbApp", self.app)

    @property
    def table(self) -> SandboxTable:
        return self.query_one(SandboxTable)

    def compose(self) -> ComposeResult:
        yield SandboxTable(id="sandboxes")
        yield StatusBar(id="status-bar")
        yield Footer()

    def on_mount(self) -> None:
        options = self.msb_app.options
        self.table.border_title = "Sandboxes"
        status_bar = self.query_one(StatusBar)
        status_bar.set_readonly(options.readonly)
        status_bar.set_counts(0, 0)
        if options.host_info:
            self._load_host_info()
        if options.auto_refresh:
            self.refresh_sandboxes()
            self.set_interval(options.refresh_interval, self.refresh_sandboxes)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in MUTATING_ACTIONS and self.msb_app.options.readonly)

    # -- refreshing ------------------------------------------------------------------------

    def refresh_sandboxes(self) -> None:
        """Starts a listing unless one is still under way (a slow listing is not piled up)."""
        if self._refreshing:
            return
        self._refreshing = True
        self._refresh_worker()

    @work(group="refresh", exit_on_error=False)
    async def _refresh_worker(self) -> None:
        try:
            infos = await Sandbox.list()
        except Exception as error:
            # Reported once per distinct problem rather than once a second.
            if str(error) != self._last_refresh_error:
                self._last_refresh_error = str(error)
                self.msb_app.report_error(error, context="listing sandboxes")
            return
        finally:
            self._refreshing = False
        self._last_refresh_error = None
        self._show(infos)

    def _show(self, infos: list[SandboxInfo]) -> None:
        self.table.sync(infos, datetime.now(UTC))
        running = sum(info.status is SandboxStatus.RUNNING for info in infos)
        self.query_one(StatusBar).set_counts(len(infos), running)
        self.table.border_title = f"Sandboxes [{len(infos)}]"

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

    # -- actions ---------------------------------------------------------------------------

    def action_refresh(self) -> None:
        self.refresh_sandboxes()

    def _selected(self) -> str | None:
        name = self.table.selected_name
        if name is None:
            self.notify("no sandbox selected", severity="warning")
        return name

    def action_create(self) -> None:
        self.app.push_screen(CreateSandboxDialog(), callback=self._create_requested)

    def _create_requested(self, request: CreateRequest | None) -> None:
        if request is not None:
            self._create_worker(request)

    @work(group="create", exit_on_error=False)
    async def _create_worker(self, request: CreateRequest) -> None:
        self.notify(f"starting {request.name}…", title="Create", markup=False)
        self.refresh_sandboxes()  # the new row shows up as "starting" while the VM boots
        await self._run(
            lambda: create_sandbox(request),
            f"creating {request.name}",
            f"{request.name} is running",
        )

    def action_stop(self) -> None:
        name = self._selected()
        if name is None:
            return
        info = self.table.infos.get(name)
        if info is not None and info.status is not SandboxStatus.RUNNING:
            self.notify(f"{name} is {info.status}", severity="warning", markup=False)
            return
        self._stop_worker(name)

    @work(group="stop", exit_on_error=False)
    async def _stop_worker(self, name: str) -> None:
        self.notify(f"stopping {name}…", title="Stop", markup=False)
        await self._run(lambda: stop_sandbox(name), f"stopping {name}", f"{name} stopped")

    def _selected_in(self, allowed: frozenset[SandboxStatus], verb: str) -> str | None:
        """The selected sandbox if its status allows ``verb``; otherwise says why not."""
        name = self._selected()
        if name is None:
            return None
        info = self.table.infos.get(name)
        if info is not None and info.status not in allowed:
            self.notify(
                f"cannot {verb} {name}: it is {info.status}", severity="warning", markup=False
            )
            return None
        return name

    def action_start(self) -> None:
        name = self._selected_in(frozenset({SandboxStatus.STOPPED, SandboxStatus.CRASHED}), "start")
        if name is not None:
            self._lifecycle_worker(name, start_sandbox, "starting", "is running")

    def action_pause(self) -> None:
        name = self._selected_in(frozenset({SandboxStatus.RUNNING, SandboxStatus.PAUSED}), "pause")
        if name is not None:
            self._lifecycle_worker(name, toggle_pause, "pausing/resuming", "paused/resumed")

    def action_restart(self) -> None:
        name = self._selected_in(frozenset({SandboxStatus.RUNNING}), "restart")
        if name is not None:
            self._lifecycle_worker(name, restart_sandbox, "restarting", "restarted")

    def action_kill(self) -> None:
        live = frozenset(status for status in SandboxStatus if status.is_live)
        name = self._selected_in(live, "kill")
        if name is None:
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._lifecycle_worker(name, kill_sandbox, "killing", "killed")

        self.app.push_screen(
            ConfirmDialog(
                f"Kill {name}?",
                "The VM stops at once, without a clean shutdown; its disk is kept.",
                confirm_label="Kill",
            ),
            callback=confirmed,
        )

    @work(group="lifecycle", exit_on_error=False)
    async def _lifecycle_worker(
        self, name: str, operation: Callable[[str], Awaitable[object]], doing: str, done: str
    ) -> None:
        self.notify(f"{doing} {name}…", markup=False)
        await self._run(lambda: operation(name), f"{doing} {name}", f"{name} {done}")

    def action_logs(self) -> None:
        name = self._selected()
        if name is not None:
            self.app.push_screen(LogsScreen(name))

    def action_delete(self) -> None:
        name = self._selected()
        if name is None:
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._delete_worker(name)

        self.app.push_screen(
            ConfirmDialog(
                f"Delete {name}?",
                "Its disk and logs are removed. A running sandbox is killed first.",
                confirm_label="Delete",
            ),
            callback=confirmed,
        )

    @work(group="delete", exit_on_error=False)
    async def _delete_worker(self, name: str) -> None:
        await self._run(lambda: delete_sandbox(name), f"deleting {name}", f"{name} deleted")

    async def _run(self, operation: Callable[[], Awaitable[object]], doing: str, done: str) -> None:
        """Runs one SDK operation: errors become notifications; the table refreshes after."""
        try:
            await operation()
        except Exception as error:
            self.msb_app.report_error(error, context=doing)
        else:
            self.notify(done, markup=False)
        finally:
            self.refresh_sandboxes()

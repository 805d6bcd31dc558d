"""The Shells view: terminal sessions in sandboxes, one tab each, inside the dashboard.

``ctrl+]`` detaches the current tab (the shell keeps running in the guest and ``s`` re-attaches,
from this or a later dashboard), ``ctrl+pageup``/``ctrl+pagedown`` switch tabs and ``f12``
goes back to the sandboxes with the shells left open. These keys are bound with priority, so
they never reach the guest; every other key does.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Label, TabbedContent, TabPane

from microsandbox_tui import Sandbox

from ..widgets import ViewBar
from ..widgets.shell_pane import ShellPane
from .base import MsbScreen

NO_SHELLS = "No shells open: select a running sandbox and press s."


def attach_on_host_terminal(name: str, shell: str | None = None) -> int | None:
    """Runs ``Sandbox.attach`` on this process's terminal, in a thread with its own event loop
    (the caller has suspended the app). Returns the exit code, ``None`` after a detach."""
    result: list[int | None] = [None]
    errors: list[BaseException] = []

    async def run() -> None:
        sandbox = await Sandbox.connect(name)
        try:
            result[0] = await sandbox.attach(shell)
        finally:
            await sandbox.close()

    def target() -> None:
        try:
            asyncio.run(run())
        except BaseException as error:  # re-raised in the caller's thread
            errors.append(error)

    thread = threading.Thread(target=target, name=f"attach-{name}")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


class ShellsScreen(MsbScreen):
    """Open shells as tabs; the view the ``s`` key adds to."""

    HELP_TITLE = "Shells"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+right_square_bracket", "detach", "Detach", priority=True, id="detach"),
        Binding("ctrl+pagedown", "next_tab", "Next shell", priority=True, id="next_shell"),
        Binding("ctrl+pageup", "previous_tab", "Previous shell", priority=True, id="prev_shell"),
        Binding("f12", "leave", "Dashboard", priority=True, id="leave_shells"),
    ]

    _pane_ids = itertools.count(1)

    def compose(self) -> ComposeResult:
        yield ViewBar("shells", id="view-bar")
        yield Label(NO_SHELLS, id="shells-note")
        yield TabbedContent(id="shell-tabs")
        yield Footer()

    @property
    def tabs(self) -> TabbedContent:
        return self.query_one("#shell-tabs", TabbedContent)

    @property
    def current(self) -> ShellPane | None:
        active = self.tabs.active_pane
        return active.query_one(ShellPane) if active is not None else None

    def on_mount(self) -> None:
        self._show_note()

    def on_screen_resume(self) -> None:
        if (pane := self.current) is not None:
            pane.view.focus()

    def _show_note(self) -> None:
        empty = self.tabs.tab_count == 0
        self.query_one("#shells-note").display = empty
        self.tabs.display = not empty

    async def open_shell(self, sandbox_name: str, shell: str | None = None) -> ShellPane:
        """A new tab on ``sandbox_name``: its newest detached terminal session, else a new
        shell (``shell``, default the guest's login shell)."""
        number = next(self._pane_ids)
        pane = ShellPane(sandbox_name, shell=shell, id=f"shell-{number}")
        tab = TabPane(sandbox_name, pane, id=f"shell-tab-{number}")
        await self.tabs.add_pane(tab)
        self.tabs.active = tab.id or ""
        self._show_note()
        pane.view.focus()
        return pane

    async def _close_tab(self, pane: ShellPane) -> None:
        tab = pane.parent
        if isinstance(tab, TabPane) and tab.id:
            await self.tabs.remove_pane(tab.id)
        self._show_note()
        if (current := self.current) is not None:
            current.view.focus()
        else:
            await self.action_leave()

    @on(TabbedContent.TabActivated, "#shell-tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if (pane := self.current) is not None:
            pane.view.focus()

    @on(ShellPane.Opened)
    def _opened(self, event: ShellPane.Opened) -> None:
        pane = event.pane
        label = f"{pane.sandbox_name} #{pane.session}"
        tab = pane.parent
        if isinstance(tab, TabPane) and tab.id:
            self.tabs.get_tab(tab.id).label = label
        if pane.reattached:
            self.notify(f"re-attached to {label}", timeout=3, markup=False)

    @on(ShellPane.Ended)
    async def _ended(self, event: ShellPane.Ended) -> None:
        if not event.pane.is_attached:
            return
        self.notify(
            f"the shell in {event.pane.sandbox_name} ended: {event.reason}",
            timeout=4,
            markup=False,
        )
        await self._close_tab(event.pane)

    async def action_detach(self) -> None:
        if (pane := self.current) is None:
            return
        pane.detach()
        self.notify(
            f"detached from {pane.sandbox_name} #{pane.session}; `s` re-attaches",
            timeout=3,
            markup=False,
        )
        await self._close_tab(pane)

    def _step(self, step: int) -> None:
        panes = list(self.tabs.query(TabPane))
        ids = [tab.id for tab in panes if tab.id]
        if len(ids) > 1:
            index = ids.index(self.tabs.active) if self.tabs.active in ids else 0
            self.tabs.active = ids[(index + step) % len(ids)]

    def action_next_tab(self) -> None:
        self._step(1)

    def action_previous_tab(self) -> None:
        self._step(-1)

    async def action_leave(self) -> None:
        """Back to the sandboxes view; open shells stay open here."""
        if self.app.current_mode == "shells":
            await self.msb_app.action_view("sandboxes")

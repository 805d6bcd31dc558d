"""The Shells view on a real sandbox: typing, a full-screen program, resize, several shells,
detach and re-attach from a new dashboard."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from microsandbox_tui.tui.app import MsbApp
from microsandbox_tui.tui.screens.shell import ShellsScreen
from microsandbox_tui.tui.widgets import SandboxTable
from microsandbox_tui.tui.widgets.shell_pane import ShellPane

Waiter = Callable[..., Awaitable[None]]

pytestmark = [pytest.mark.vm, pytest.mark.timeout(300)]


def shows_line(pane: ShellPane, line: str) -> bool:
    return any(row.strip() == line for row in pane.text().splitlines())


async def open_shell(pilot, app: MsbApp, name: str, wait_until: Waiter) -> ShellPane:  # type: ignore[no-untyped-def]
    """Selects ``name`` in the sandboxes view, presses ``s`` and waits for the prompt."""
    if app.current_mode != "sandboxes":
        await pilot.press("f12")
    table = app.screen.query_one(SandboxTable)
    await wait_until(
        pilot, lambda: table.text_of(name, "status") == "running", timeout=30, what="row"
    )
    table.select(name)
    before = set(app.screen.query(ShellPane)) if isinstance(app.screen, ShellsScreen) else set()
    await pilot.press("s")
    await wait_until(pilot, lambda: isinstance(app.screen, ShellsScreen), timeout=5, what="view")
    screen = app.screen
    assert isinstance(screen, ShellsScreen)
    pane = screen.current
    assert pane is not None and pane not in before
    await wait_until(pilot, lambda: pane.session is not None, timeout=30, what="session")
    await wait_until(pilot, lambda: "#" in pane.text(), timeout=30, what="the prompt")
    return pane


async def test_shell_types_runs_top_resizes_and_detaches(
    running_sandbox: str, wait_until: Waiter
) -> None:
    name = running_sandbox
    app = MsbApp(refresh_interval=0.5)
    async with app.run_test(size=(100, 30)) as pilot:
        pane = await open_shell(pilot, app, name, wait_until)
        assert not pane.reattached

        await pilot.press(*"echo h''i", "enter")
        await wait_until(pilot, lambda: shows_line(pane, "hi"), timeout=20, what="echo output")

        await pilot.press(*"top", "enter")
        await wait_until(
            pilot,
            lambda: "Mem:" in pane.text() and "PID" in pane.text(),
            timeout=20,
            what="top's screen",
        )
        await pilot.press("q")
        await wait_until(pilot, lambda: "Mem:" not in pane.text(), timeout=20, what="top ends")

        await pilot.resize_terminal(90, 26)
        await pilot.pause(0.3)
        rows, cols = pane.view.terminal.size
        assert cols == pane.view.size.width == 90
        await pilot.press(*"stty size", "enter")
        await wait_until(
            pilot, lambda: shows_line(pane, f"{rows} {cols}"), timeout=20, what="stty size"
        )

        # A second shell on the same sandbox is a second tab with its own session.
        second = await open_shell(pilot, app, name, wait_until)
        assert second.session != pane.session
        await pilot.press(*"echo tw''o", "enter")
        await wait_until(pilot, lambda: shows_line(second, "two"), timeout=20, what="2nd shell")
        assert not shows_line(pane, "two")
        await pilot.press("ctrl+pageup")
        screen = app.screen
        assert isinstance(screen, ShellsScreen) and screen.current is pane

        # The detach chord never reaches the guest: the session keeps running, detached.
        await pilot.press(*"echo mark''er-42", "enter")
        await wait_until(pilot, lambda: shows_line(pane, "marker-42"), timeout=20, what="mark")
        await pilot.press("ctrl+right_square_bracket")
        assert screen.current is second
        await pilot.press("ctrl+right_square_bracket")
        await wait_until(
            pilot, lambda: app.current_mode == "sandboxes", timeout=10, what="back to the table"
        )
        assert not app.errors, app.errors


async def test_a_new_dashboard_reattaches_to_the_detached_session(
    running_sandbox: str, wait_until: Waiter
) -> None:
    name = running_sandbox
    first = MsbApp(refresh_interval=0.5)
    async with first.run_test(size=(100, 30)) as pilot:
        pane = await open_shell(pilot, first, name, wait_until)
        session = pane.session
        await pilot.press(*"cd /tmp && echo mark''er-7", "enter")
        await wait_until(pilot, lambda: shows_line(pane, "marker-7"), timeout=20, what="mark")
    # The first dashboard is gone; its shell is still running in the guest.
    again = MsbApp(refresh_interval=0.5)
    async with again.run_test(size=(100, 30)) as pilot:
        pane = await open_shell(pilot, again, name, wait_until)
        assert pane.reattached and pane.session == session
        await wait_until(pilot, lambda: "marker-7" in pane.text(), timeout=20, what="replay")
        await pilot.press(*"pwd", "enter")
        await wait_until(pilot, lambda: shows_line(pane, "/tmp"), timeout=20, what="same shell")
        await pilot.press(*"exit", "enter")
        await wait_until(
            pilot, lambda: again.current_mode == "sandboxes", timeout=20, what="tab closes"
        )
        assert not again.errors, again.errors


async def test_readonly_hides_the_shell_keys() -> None:
    app = MsbApp(readonly=True, auto_refresh=False, host_info=False)
    async with app.run_test(size=(100, 30)):
        assert app.screen.check_action("shell", ()) is False
        assert app.screen.check_action("full_screen_shell", ()) is False

"""The dashboard on real microVM sandboxes: see, stop, delete, and create through the form."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.widgets import Input

from microsandbox_tui import Sandbox, SandboxNotFoundError, SandboxStatus
from microsandbox_tui.tui.app import MsbApp
from microsandbox_tui.tui.dialogs import ConfirmDialog, CreateSandboxDialog
from microsandbox_tui.tui.widgets import SandboxTable

Waiter = Callable[..., Awaitable[None]]

pytestmark = [pytest.mark.vm, pytest.mark.timeout(300)]


async def test_stop_then_delete_a_running_sandbox(running_sandbox: str, wait_until: Waiter) -> None:
    name = running_sandbox
    app = MsbApp(refresh_interval=0.5)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one(SandboxTable)
        await wait_until(
            pilot,
            lambda: table.text_of(name, "status") == "running",
            timeout=20,
            what="the running row",
        )
        assert table.text_of(name, "image") == "msb-base"
        assert table.text_of(name, "uptime") != "-"
        table.select(name)

        await pilot.press("x")
        await wait_until(
            pilot,
            lambda: table.text_of(name, "status") == "stopped",
            timeout=60,
            what="the stopped status",
        )
        assert table.text_of(name, "uptime") == "-"
        assert (await Sandbox.get_info(name)).status is SandboxStatus.STOPPED

        await pilot.press("ctrl+d")
        await wait_until(
            pilot, lambda: isinstance(app.screen, ConfirmDialog), timeout=5, what="the dialog"
        )
        await pilot.press("escape")  # cancelling keeps the sandbox
        await pilot.pause(1.0)
        assert table.text_of(name, "status") == "stopped"

        await pilot.press("ctrl+d")
        await wait_until(
            pilot, lambda: isinstance(app.screen, ConfirmDialog), timeout=5, what="the dialog"
        )
        await pilot.click("#confirm")
        await wait_until(
            pilot, lambda: table.text_of(name, "name") is None, timeout=60, what="the row to go"
        )
    with pytest.raises(SandboxNotFoundError):
        await Sandbox.get_info(name)
    assert app.errors == []


async def test_delete_kills_a_running_sandbox_first(
    running_sandbox: str, wait_until: Waiter
) -> None:
    name = running_sandbox
    app = MsbApp(refresh_interval=0.5)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one(SandboxTable)
        await wait_until(
            pilot, lambda: table.text_of(name, "status") == "running", timeout=20, what="row"
        )
        table.select(name)
        await pilot.press("ctrl+d")
        await wait_until(
            pilot, lambda: isinstance(app.screen, ConfirmDialog), timeout=5, what="the dialog"
        )
        await pilot.press("y")
        await wait_until(
            pilot, lambda: table.text_of(name, "name") is None, timeout=60, what="the row to go"
        )
    assert name not in [info.name for info in await Sandbox.list()]
    assert app.errors == []


async def test_create_through_the_dialog(
    clean_home: Path, sandbox_name: str, wait_until: Waiter
) -> None:
    app = MsbApp(refresh_interval=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("c")
        dialog = app.screen
        assert isinstance(dialog, CreateSandboxDialog)
        dialog.query_one("#name", Input).value = sandbox_name
        dialog.query_one("#cpus", Input).value = "1"
        dialog.query_one("#memory", Input).value = "256"
        await pilot.press("enter")
        assert not isinstance(app.screen, CreateSandboxDialog)

        table = app.screen.query_one(SandboxTable)
        await wait_until(
            pilot,
            lambda: table.text_of(sandbox_name, "status") == "running",
            timeout=180,
            what="the created sandbox to run",
        )
        assert table.infos[sandbox_name].config.memory_mib == 256
        assert table.text_of(sandbox_name, "cpus") == "1"
    info = await Sandbox.get_info(sandbox_name)
    assert info.status is SandboxStatus.RUNNING
    assert info.detached, "sandboxes made in the dashboard outlive it"
    assert app.errors == []


async def test_lifecycle_keys_and_the_logs_view(running_sandbox: str, wait_until: Waiter) -> None:
    from textual.widgets import RichLog

    from microsandbox_tui.tui.screens import LogsScreen

    name = running_sandbox
    sandbox = await Sandbox.connect(name)
    await sandbox.exec("echo", ["seen-in-the-logs-view"])
    app = MsbApp(refresh_interval=0.3)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one(SandboxTable)

        def status_is(expected: str) -> Callable[[], bool]:
            return lambda: table.text_of(name, "status") == expected

        await wait_until(pilot, status_is("running"), timeout=20, what="the running row")
        table.select(name)

        await pilot.press("p")
        await wait_until(pilot, status_is("paused"), timeout=20, what="paused")
        await pilot.press("p")
        await wait_until(pilot, status_is("running"), timeout=20, what="resumed")

        await pilot.press("l")
        await wait_until(
            pilot, lambda: isinstance(app.screen, LogsScreen), timeout=5, what="the logs"
        )
        await pilot.press("e")
        log = app.screen.query_one(RichLog)
        await wait_until(
            pilot,
            lambda: any("seen-in-the-logs-view" in line.text for line in log.lines),
            timeout=10,
            what="the exec log line",
        )
        await pilot.press("slash", *"seen-in-the")
        await wait_until(
            pilot,
            lambda: bool(log.lines) and all("seen-in-the" in line.text for line in log.lines),
            timeout=5,
            what="only matching lines",
        )
        await pilot.press("escape")  # clears the search
        await pilot.press("escape")  # back to the table

        await pilot.press("K")
        await wait_until(
            pilot, lambda: isinstance(app.screen, ConfirmDialog), timeout=5, what="the dialog"
        )
        await pilot.click("#confirm")
        await wait_until(pilot, status_is("stopped"), timeout=30, what="killed")

        await pilot.press("u")
        await wait_until(pilot, status_is("running"), timeout=60, what="started again")
        before = (await Sandbox.get_info(name)).started_at
        await pilot.press("R")
        for _ in range(600):
            info = await Sandbox.get_info(name)
            if info.status is SandboxStatus.RUNNING and info.started_at != before:
                break
            await pilot.pause(0.1)
        else:
            pytest.fail("the restart never booted the sandbox again")
        await wait_until(pilot, status_is("running"), timeout=20, what="running after restart")
    assert app.errors == []


async def test_crash_shows_live(running_sandbox: str, wait_until: Waiter) -> None:
    import os
    import signal

    name = running_sandbox
    app = MsbApp(refresh_interval=0.3)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one(SandboxTable)
        await wait_until(
            pilot, lambda: table.text_of(name, "status") == "running", timeout=20, what="running"
        )
        vmm_pid = (await Sandbox.get_info(name)).vmm_pid
        assert vmm_pid is not None
        os.kill(vmm_pid, signal.SIGKILL)
        await wait_until(
            pilot, lambda: table.text_of(name, "status") == "crashed", timeout=5, what="crashed"
        )

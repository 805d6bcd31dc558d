"""The detail screen on a real microVM: made through the form (its network preset and ports
too), its CPU chart follows a busy loop in the guest, its processes show the loop, and the
sandbox is deleted with confirm."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.widgets import Input, Select, TextArea

from microsandbox_tui import Sandbox, SandboxNotFoundError, SandboxStatus
from microsandbox_tui.tui.app import MsbApp
from microsandbox_tui.tui.dialogs import ConfirmDialog, CreateSandboxDialog
from microsandbox_tui.tui.screens import SandboxDetailScreen, SandboxesScreen
from microsandbox_tui.tui.widgets import MetricChart, SandboxTable

Waiter = Callable[..., Awaitable[None]]

pytestmark = [pytest.mark.vm, pytest.mark.timeout(300)]


async def test_metrics_follow_a_busy_guest_then_delete(
    clean_home: Path, sandbox_name: str, wait_until: Waiter
) -> None:
    name = sandbox_name
    app = MsbApp(refresh_interval=0.5, host_info=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("c")
        dialog = app.screen
        assert isinstance(dialog, CreateSandboxDialog)
        dialog.query_one("#name", Input).value = name
        dialog.query_one("#memory", Input).value = "256"
        dialog.query_one("#env", TextArea).text = "GREETING=hello, SHADE=blue"
        dialog.query_one("#network", Select).value = "none"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            host_port = probe.getsockname()[1]
        dialog.query_one("#ports", Input).value = f"{host_port}:80"
        await pilot.click("#create")
        assert isinstance(app.screen, SandboxesScreen)

        table = app.screen.query_one(SandboxTable)
        await wait_until(
            pilot,
            lambda: table.text_of(name, "status") == "running",
            timeout=180,
            what="the created sandbox to run",
        )
        table.select(name)
        await pilot.press("enter")
        detail = app.screen
        assert isinstance(detail, SandboxDetailScreen)
        overview = dict(detail.overview)
        assert overview["env"] == "GREETING=hello\nSHADE=blue"
        assert overview["detached"] == "yes"
        assert overview["network"] == "none"
        assert overview["ports"] == f"127.0.0.1:{host_port} -> 80/tcp"

        await pilot.press("right_square_bracket")
        assert detail.active_tab == "metrics"
        cpu = detail.query_one("#chart-cpu", MetricChart)
        memory = detail.query_one("#chart-memory", MetricChart)
        await wait_until(pilot, lambda: cpu.latest is not None, timeout=10, what="a sample")
        assert memory.latest is not None and memory.latest > 0

        sandbox = await Sandbox.connect(name)
        busy = await sandbox.exec_stream("/bin/sh", ["-c", "while :; do :; done"])
        await wait_until(
            pilot,
            lambda: cpu.latest is not None and cpu.latest > 50,
            timeout=30,
            what="the CPU chart to rise above 50 %",
        )
        assert "%" in str(cpu.border_title)
        cell = table.text_of(name, "cpu") or ""
        assert cell.rstrip().endswith("%") and cell.strip() != "-"

        await pilot.press("right_square_bracket", "right_square_bracket")
        assert detail.active_tab == "processes"
        processes = detail.process_table
        await wait_until(
            pilot,
            lambda: any(
                "while" in (processes.text_of(pid, "args") or "") for pid in processes.row_keys
            ),
            timeout=20,
            what="the busy loop in the process list",
        )
        await busy.kill()
        await sandbox.close()

        await pilot.press("ctrl+d")
        await wait_until(
            pilot, lambda: isinstance(app.screen, ConfirmDialog), timeout=5, what="the dialog"
        )
        await pilot.click("#confirm")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, SandboxesScreen),
            timeout=5,
            what="back to the table",
        )
        await wait_until(
            pilot, lambda: table.text_of(name, "name") is None, timeout=60, what="the row to go"
        )
    with pytest.raises(SandboxNotFoundError):
        await Sandbox.get_info(name)
    assert app.errors == []


async def test_detail_logs_tab_follows_the_console(
    running_sandbox: str, wait_until: Waiter
) -> None:
    name = running_sandbox
    app = MsbApp(refresh_interval=0.5, host_info=False)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.query_one(SandboxTable)
        await wait_until(
            pilot, lambda: table.text_of(name, "status") == "running", timeout=20, what="row"
        )
        app.open_details(name)
        await pilot.pause()
        await pilot.press("l")
        detail = app.screen
        assert isinstance(detail, SandboxDetailScreen)
        assert detail.active_tab == "logs"
        log = detail.log_view
        await wait_until(pilot, lambda: len(log.lines) > 0, timeout=10, what="console lines")
        sandbox = await Sandbox.connect(name)
        await sandbox.exec("echo", ["from-the-detail-screen"])
        await sandbox.close()
        await pilot.press("e")
        await wait_until(
            pilot,
            lambda: any("from-the-detail-screen" in line.text for line in log.lines),
            timeout=10,
            what="the exec log line",
        )
        await pilot.press("x")  # stop from the detail screen
        await wait_until(
            pilot,
            lambda: dict(detail.overview).get("status") == "stopped",
            timeout=60,
            what="stopped in the overview",
        )
    assert (await Sandbox.get_info(name)).status is SandboxStatus.STOPPED
    assert app.errors == []

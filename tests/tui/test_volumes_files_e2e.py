"""The Volumes view and the Files tab on real sandboxes: create and remove a volume through
the dialogs, and move files between the host and a running guest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.widgets import Input

from microsandbox_tui import Sandbox, Volume, VolumeNotFoundError
from microsandbox_tui.tui.app import MsbApp
from microsandbox_tui.tui.dialogs import ConfirmDialog, CreateVolumeDialog, HostPathDialog
from microsandbox_tui.tui.screens import SandboxDetailScreen
from microsandbox_tui.tui.widgets import KeyedTable

Waiter = Callable[..., Awaitable[None]]

pytestmark = [pytest.mark.timeout(180)]


async def test_create_volume_dialog_then_remove_with_confirm(
    clean_home: Path, wait_until: Waiter
) -> None:
    app = MsbApp(auto_refresh=False, host_info=False)
    async with app.run_test(size=(110, 40)) as pilot:
        await pilot.press("3", "c")
        dialog = app.screen
        assert isinstance(dialog, CreateVolumeDialog)
        dialog.query_one("#volume-name", Input).value = "tui-data"
        dialog.query_one("#volume-quota", Input).value = "32"
        dialog.submit()
        await wait_until(pilot, lambda: not dialog.is_attached, timeout=30, what="the create")
        table = app.screen.query_one("#volumes", KeyedTable)
        await wait_until(pilot, lambda: "tui-data" in table.row_keys, timeout=10, what="the row")
        assert table.text_of("tui-data", "quota") == "32.0 MiB"
        assert table.text_of("tui-data", "in_use_by") == "-"

        await pilot.press("c")
        again = app.screen
        assert isinstance(again, CreateVolumeDialog)
        again.query_one("#volume-name", Input).value = "tui-data"
        again.submit()
        await wait_until(
            pilot, lambda: "VolumeAlreadyExistsError" in again.status, timeout=10, what="error"
        )
        await pilot.press("escape")

        table.select("tui-data")
        await pilot.press("ctrl+d")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await wait_until(
            pilot, lambda: "tui-data" not in table.row_keys, timeout=10, what="the row to go"
        )
        with pytest.raises(VolumeNotFoundError):
            await Volume.get("tui-data")
        assert not app.errors, app.errors


async def test_files_tab_uploads_browses_and_downloads(
    running_sandbox: str, tmp_path: Path, wait_until: Waiter
) -> None:
    upload = tmp_path / "report.txt"
    upload.write_text("from the host\n")
    app = MsbApp(auto_refresh=False, host_info=False)
    async with app.run_test(size=(110, 40)) as pilot:
        app.open_details(running_sandbox)
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, SandboxDetailScreen)
        await pilot.press("f")
        browser = detail.file_browser
        await wait_until(pilot, lambda: "etc" in browser.table.row_keys, timeout=30, what="/")
        browser.table.select("tmp")
        await pilot.press("enter")
        await wait_until(pilot, lambda: browser.path == "/tmp", timeout=10, what="/tmp")

        await pilot.press("u")
        dialog = app.screen
        assert isinstance(dialog, HostPathDialog)
        dialog.query_one("#host-path", Input).value = str(upload)
        dialog.submit()
        await wait_until(
            pilot, lambda: "report.txt" in browser.table.row_keys, timeout=30, what="the upload"
        )
        sandbox = await Sandbox.connect(running_sandbox)
        try:
            assert await sandbox.fs.read_text("/tmp/report.txt") == "from the host\n"
        finally:
            await sandbox.close()

        browser.table.select("report.txt")
        await pilot.press("d")
        dialog = app.screen
        assert isinstance(dialog, HostPathDialog)
        target = tmp_path / "downloaded.txt"
        dialog.query_one("#host-path", Input).value = str(target)
        dialog.submit()
        await wait_until(pilot, target.exists, timeout=30, what="the download")
        assert target.read_text() == "from the host\n"
        assert not app.errors, app.errors

"""The Images view against a real registry on 127.0.0.1: pull with per-layer progress,
errors kept in the dialog, remove with confirm."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from registry.server import RegistryServer
from textual.widgets import Input, Switch

from microsandbox_tui import list_images
from microsandbox_tui.tui.app import MsbApp
from microsandbox_tui.tui.dialogs import ConfirmDialog, PullImageDialog
from microsandbox_tui.tui.widgets import KeyedTable

Waiter = Callable[..., Awaitable[None]]

pytestmark = [pytest.mark.timeout(120)]


async def test_pull_dialog_shows_layer_progress_then_the_image_and_remove_deletes_it(
    registry: RegistryServer, wait_until: Waiter
) -> None:
    reference = registry.refs["multilayer"]
    app = MsbApp(auto_refresh=False, host_info=False)
    async with app.run_test(size=(110, 40)) as pilot:
        await pilot.press("2", "P")
        dialog = app.screen
        assert isinstance(dialog, PullImageDialog)
        dialog.query_one("#reference", Input).value = reference
        dialog.query_one("#insecure", Switch).value = True
        dialog.submit()
        await wait_until(
            pilot, lambda: not dialog.is_attached, timeout=60, what="the pull to finish"
        )
        # One line and bar per layer, each taken to the end.
        assert [bar.step for bar in dialog.layer_bars.values()] == ["ready", "ready"]
        table = app.screen.query_one("#images", KeyedTable)
        await wait_until(pilot, lambda: reference in table.row_keys, timeout=10, what="the row")
        assert table.text_of(reference, "layers") == "2"
        assert table.text_of(reference, "kind") == "oci"

        table.select(reference)
        await pilot.press("ctrl+d")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("y")
        await wait_until(
            pilot, lambda: reference not in table.row_keys, timeout=10, what="the row to go"
        )
        assert reference not in {image.name for image in await list_images()}
        assert not app.errors, app.errors


async def test_pull_errors_stay_in_the_dialog(
    auth_registry: RegistryServer, wait_until: Waiter
) -> None:
    app = MsbApp(auto_refresh=False, host_info=False)
    async with app.run_test(size=(110, 40)) as pilot:
        await pilot.press("2", "P")
        dialog = app.screen
        assert isinstance(dialog, PullImageDialog)
        dialog.query_one("#reference", Input).value = "Not A Reference"
        dialog.submit()
        await wait_until(
            pilot, lambda: "InvalidConfigError" in dialog.status, timeout=10, what="the error"
        )
        dialog.query_one("#reference", Input).value = auth_registry.refs["multilayer"]
        dialog.query_one("#insecure", Switch).value = True
        dialog.submit()
        await wait_until(
            pilot, lambda: "RegistryAuthError" in dialog.status, timeout=30, what="the error"
        )
        assert app.screen is dialog
        await pilot.press("escape")
        assert not isinstance(app.screen, PullImageDialog)


async def test_readonly_hides_pull_and_remove() -> None:
    app = MsbApp(readonly=True, auto_refresh=False, host_info=False)
    async with app.run_test(size=(110, 40)) as pilot:
        await pilot.press("2")
        assert app.screen.check_action("pull", ()) is False
        assert app.screen.check_action("remove_image", ()) is False

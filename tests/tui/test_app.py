"""Dashboard behaviour that needs no virtual machine: help, read-only mode, the create form's
validation, and what happens when listing fails. The listing itself is the real SDK call
against an empty, throw-away runtime home."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from textual.widgets import Input, Label
from textual.widgets._footer import FooterKey

from microsandbox_tui import Sandbox
from microsandbox_tui.tui import LOG_FILE, log_to_file
from microsandbox_tui.tui.app import MsbApp
from microsandbox_tui.tui.dialogs import CreateSandboxDialog
from microsandbox_tui.tui.screens import HelpScreen, SandboxesScreen
from microsandbox_tui.tui.widgets import SandboxTable

Waiter = Callable[..., Awaitable[None]]
MUTATING_KEYS = {"c", "x", "ctrl+d"}


def quiet_app(**options: bool) -> MsbApp:
    """An app that makes no runtime calls by itself."""
    return MsbApp(auto_refresh=False, host_info=False, **options)


async def test_help_opens_and_closes() -> None:
    app = quiet_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, SandboxesScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        assert isinstance(app.screen, SandboxesScreen)


async def test_mutating_keys_are_offered_normally() -> None:
    app = quiet_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert set(app.screen.active_bindings) >= MUTATING_KEYS
        footer_keys = {key.key for key in app.screen.query(FooterKey)}
        assert footer_keys >= MUTATING_KEYS


async def test_readonly_hides_and_disables_every_mutating_action() -> None:
    app = quiet_app(readonly=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert not MUTATING_KEYS & set(app.screen.active_bindings)
        footer_keys = {key.key for key in app.screen.query(FooterKey)}
        assert not MUTATING_KEYS & footer_keys
        assert {"r", "q", "question_mark"} <= footer_keys
        assert app.screen.query_one("#status-readonly").display

        await pilot.press("c")
        assert isinstance(app.screen, SandboxesScreen)

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        help_keys = {str(label.content) for label in app.screen.query(".help-key").results(Label)}
        assert "c" not in help_keys
        assert "^d" not in help_keys
        assert "r" in help_keys


async def test_create_dialog_shows_a_validation_error_and_creates_nothing(
    msb_home: Path,
) -> None:
    app = quiet_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("c")
        dialog = app.screen
        assert isinstance(dialog, CreateSandboxDialog)
        dialog.query_one("#name", Input).value = "a/b"
        await pilot.press("enter")
        assert dialog.is_current, "the dialog stays open on a validation error"
        assert dialog.error_text.startswith("name:")

        dialog.query_one("#name", Input).value = "fine-name"
        dialog.query_one("#memory", Input).value = "1"
        await pilot.press("enter")
        assert dialog.is_current
        assert dialog.error_text.startswith("memory_mib:")

        await pilot.press("escape")
        assert isinstance(app.screen, SandboxesScreen)
    assert await Sandbox.list() == []
    assert app.errors == []


async def test_create_dialog_refuses_a_missing_host_directory(
    msb_home: Path, tmp_path: Path
) -> None:
    app = quiet_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("c")
        dialog = app.screen
        assert isinstance(dialog, CreateSandboxDialog)
        dialog.query_one("#name", Input).value = "ok"
        dialog.query_one("#image", Input).value = str(tmp_path / "missing")
        await pilot.click("#create")
        assert dialog.is_current
        assert "not a directory" in dialog.error_text
    assert await Sandbox.list() == []


async def test_an_empty_home_lists_no_sandboxes(msb_home: Path, wait_until: Waiter) -> None:
    app = MsbApp(refresh_interval=0.2)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(
            pilot,
            lambda: "0 sandboxes" in str(app.screen.query_one("#status-counts", Label).content),
            timeout=10,
            what="the first listing",
        )
        await wait_until(
            pilot,
            lambda: "?" not in str(app.screen.query_one("#status-accelerator", Label).content),
            timeout=30,
            what="the host checks",
        )
        assert app.screen.query_one(SandboxTable).row_count == 0
        assert str(msb_home) in str(app.screen.query_one("#status-home", Label).content)
    assert app.errors == []


async def test_a_failing_listing_is_reported_once_and_the_app_keeps_going(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wait_until: Waiter
) -> None:
    # A home that is a file cannot be opened: a real runtime error, not a mock.
    home = tmp_path / "home-file"
    home.write_text("")
    monkeypatch.setenv("MSB_HOME", str(home))
    app = MsbApp(refresh_interval=0.1, host_info=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: bool(app.errors), timeout=10, what="an error")
        await pilot.pause(0.5)  # several more failing refreshes
        assert len(app.errors) == 1
        assert "listing sandboxes" in app.errors[0]
        assert app.is_running

        home.unlink()  # the runtime creates the home on its next call
        await wait_until(
            pilot,
            lambda: "0 sandboxes" in str(app.screen.query_one("#status-counts", Label).content),
            timeout=10,
            what="a successful listing",
        )
        assert app.is_running
        assert len(app.errors) == 1


LOGGING_DASHBOARD = """
import asyncio
from microsandbox_tui import Sandbox
from microsandbox_tui.tui import log_to_file

print(log_to_file(None))
asyncio.run(Sandbox.list())
"""


def test_msb_log_goes_to_a_file_in_the_home_never_to_the_terminal(msb_home: Path) -> None:
    environment = {**os.environ, "MSB_HOME": str(msb_home), "MSB_LOG": "trace"}
    done = subprocess.run(
        [sys.executable, "-c", LOGGING_DASHBOARD],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    log_file = msb_home / LOG_FILE
    assert done.stdout == f"{log_file}\n"
    assert done.stderr == ""
    assert log_file.is_file()


def test_no_log_level_means_no_log_file(msb_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MSB_LOG", raising=False)
    assert log_to_file(None) is None
    assert not (msb_home / LOG_FILE).exists()

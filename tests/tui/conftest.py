"""Fixtures of the dashboard tests: a throw-away runtime home and configuration directory per
test, real sandboxes, and recorded data for pictures that do not change between runs."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot

from microsandbox_tui import Sandbox, SandboxNotFoundError
from microsandbox_tui.tui.app import MsbApp
from microsandbox_tui.tui.operations import delete_sandbox


@pytest.fixture(autouse=True)
def config_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ``MSB_TUI_CONFIG_DIR``: no user keys, settings or themes leak into tests."""
    directory = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("MSB_TUI_CONFIG_DIR", str(directory))
    return directory


@pytest.fixture
def msb_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty ``MSB_HOME`` (short path: it holds the sandboxes' Unix sockets)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("MSB_HOME", str(home))
    return home


@pytest.fixture
async def clean_home(msb_home: Path) -> AsyncIterator[Path]:
    """``msb_home``, and every sandbox left in it is killed and removed after the test."""
    yield msb_home
    for info in await Sandbox.list():
        with contextlib.suppress(SandboxNotFoundError):
            await delete_sandbox(info.name)


@pytest.fixture
def sandbox_name() -> str:
    return f"tui-e2e-{secrets.token_hex(3)}"


@pytest.fixture
async def running_sandbox(clean_home: Path, sandbox_name: str) -> AsyncIterator[str]:
    """A running sandbox made with the SDK, as another process would have made it."""
    await Sandbox.create(sandbox_name, detached=True)
    yield sandbox_name


Waiter = Callable[..., Awaitable[None]]


async def _wait_until(
    pilot: Pilot[None], condition: Callable[[], bool], *, timeout: float, what: str
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            app = pilot.app
            errors = app.errors if isinstance(app, MsbApp) else []
            pytest.fail(f"timed out after {timeout} s waiting for {what}; app errors: {errors}")
        await pilot.pause(0.1)


@pytest.fixture
def wait_until() -> Waiter:
    """``await wait_until(pilot, condition, timeout=..., what=...)`` lets the app run until
    ``condition()`` holds, and fails with the errors the app reported if it does not."""
    return _wait_until

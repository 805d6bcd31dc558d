"""Fixtures of the ``msb`` tests: a throw-away runtime home per test, and a way to run the
real ``msb`` program in a child process (its exit status and its two output streams are
what scripts see)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import microsandbox_tui

#: The directory holding the package under test, so children import this very copy.
SOURCE_ROOT = Path(microsandbox_tui.__file__).resolve().parent.parent


@pytest.fixture
def msb_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty ``MSB_HOME`` (short path: it holds the sandboxes' Unix sockets)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("MSB_HOME", str(home))
    return home


MsbRunner = Callable[..., subprocess.CompletedProcess[str]]


def _run_msb(
    *args: str, timeout: float = 180.0, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``msb ARGS...`` as a child process with the current environment."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(SOURCE_ROOT), env.get("PYTHONPATH", "")) if part
    )
    return subprocess.run(
        [sys.executable, "-m", "microsandbox_tui.cli", *args],
        # An empty input is an immediate end of file, never the test runner's own stdin.
        input=input or "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.fixture
def msb() -> MsbRunner:
    """``msb(*args, timeout=...)`` runs the real ``msb`` program in a child process."""
    return _run_msb


@pytest.fixture
def clean_home(msb_home: Path) -> Iterator[Path]:
    """``msb_home``, and every sandbox left in it is killed and removed after the test."""
    yield msb_home
    listing = _run_msb("ls", "--json")
    names = [entry["name"] for entry in json.loads(listing.stdout or "[]")]
    if names:
        _run_msb("rm", "--force", *names)


@pytest.fixture
def sandbox_name() -> str:
    return f"cli-e2e-{secrets.token_hex(3)}"

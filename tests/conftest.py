"""Test-suite wide set-up: a throw-away runtime home, and the installed runtime.

Every test runs against a temporary ``MSB_HOME`` (database, sandboxes, logs) while the cache
of kernels and images (``MSB_CACHE_DIR``, default ``~/.cache/microsandbox-tui/runtime``) is
shared, as ``./dev setup`` filled it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator

import pytest

# Set before the SDK is imported anywhere, and inherited by every process tests start.
_HOME = tempfile.mkdtemp(prefix="msb-test-home-")
os.environ["MSB_HOME"] = _HOME

from microsandbox_tui import Sandbox, is_installed  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: the test boots real microVM sandboxes")
    if not is_installed():
        pytest.exit(
            "the runtime is not installed (kernel, agent or default image missing); "
            "run `./dev setup` first",
            returncode=1,
        )


@pytest.fixture(scope="session")
async def shared_sandbox() -> AsyncIterator[Sandbox]:
    """One running sandbox for the tests that do not need isolation."""
    sandbox = await Sandbox.create("shared", replace=True)
    yield sandbox
    await sandbox.kill()
    await Sandbox.remove("shared")


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> str:
    """A sandbox name derived from the test's name."""
    name = request.node.name.replace("[", "-").replace("]", "").replace("_", "-")
    return name[:50].strip("-.")

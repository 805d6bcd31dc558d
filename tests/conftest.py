"""Test-suite wide set-up: a throw-away runtime home, and the installed runtime.

Every test runs against a temporary ``MSB_HOME`` (database, sandboxes, logs) while the cache
of kernels and images (``MSB_CACHE_DIR``, default ``~/.cache/microsandbox-tui/runtime``) is
shared, as ``./dev setup`` filled it.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator

import pytest

# Set before the SDK is imported anywhere, and inherited by every process tests start.
_HOME = tempfile.mkdtemp(prefix="msb-test-home-")
os.environ["MSB_HOME"] = _HOME

from registry.builder import push  # noqa: E402
from registry.images import debian_tools_image, publish_all  # noqa: E402
from registry.server import RegistryServer  # noqa: E402

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


# --- OCI registry on 127.0.0.1 (tests/registry) ---------------------------------------------


@pytest.fixture(scope="session")
def registry() -> Iterator[RegistryServer]:
    """A plain-HTTP registry on 127.0.0.1 with the fast test images pushed.

    ``registry.refs`` maps ``multilayer`` and ``multi-arch`` to ``127.0.0.1:PORT/NAME:1``;
    ``debian-tools`` is added by :func:`debian_tools_ref`, only when a test asks for it.
    """
    with RegistryServer() as server:
        server.refs.update(publish_all(server, debian_tools=False))
        yield server


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[RegistryServer]:
    """Like :func:`registry`, but requiring basic auth with ``auth_registry.credentials``."""
    with RegistryServer(credentials=("msb-test", secrets.token_urlsafe(12))) as server:
        server.refs.update(publish_all(server, debian_tools=False))
        yield server


@pytest.fixture(scope="session")
def debian_tools_ref(registry: RegistryServer) -> str:
    """``127.0.0.1:PORT/debian-tools:1`` (curl, python3, CA certificates) in :func:`registry`.

    Built from Debian packages once per machine (cached under
    ``~/.cache/microsandbox-tui/test-images``), so only suites that use it pay for it.
    """
    if "debian-tools" not in registry.refs:
        push(registry.url, "debian-tools", "1", debian_tools_image())
        registry.refs["debian-tools"] = f"{registry.host}/debian-tools:1"
    return registry.refs["debian-tools"]

"""Runtime-wide functions: installation, health checks, version."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version

from . import _native
from ._blocking import run_blocking


def version() -> str:
    """The SDK's version string."""
    try:
        return package_version("microsandbox-tui")
    except PackageNotFoundError:
        return _native.version()


def home_dir() -> str:
    """The runtime home: database, sandboxes, logs (``MSB_HOME``)."""
    return _native.home_dir()


def is_installed() -> bool:
    """Whether QEMU, the guest kernel, the guest agent and the default image are ready."""
    return _native.is_installed()


async def install(progress: Callable[[str], None] | None = None) -> None:
    """Fetches the guest kernel from Debian's package archive and prepares the initramfs and
    the default image under the runtime cache. Idempotent and safe to call on every start."""
    await run_blocking(_native.install, progress)


@dataclass(frozen=True, slots=True)
class DoctorCheck:
    name: str
    ok: bool
    detail: str


def doctor() -> list[DoctorCheck]:
    """Checks of this host: accelerator and why, QEMU, kernel cache, home, agent build."""
    return [DoctorCheck(name, ok, detail) for name, ok, detail in _native.doctor()]

"""Runtime-wide functions: installation, health checks, logging, version."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from . import _native
from ._blocking import run_blocking
from ._wire import decode, record
from .types import LogLevel


def version() -> str:
    """The version of microsandbox-tui. The native runtime is built from the same version
    (the project's one version number, in its Cargo workspace), so it says it."""
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


def set_log_level(level: LogLevel | str | None, path: str | os.PathLike[str] | None = None) -> None:
    """Sets how much the runtime logs in this process: a :class:`LogLevel` (or its name), or
    ``None`` for nothing. The log goes to stderr, or is appended to the file ``path``.

    At import the runtime takes its level from ``MSB_LOG``. Sandboxes started afterwards log
    at this level too, unless their own ``log_level`` says otherwise.
    """
    name = None if level is None else LogLevel.parse(level).value
    _native.configure_logging(name, None if path is None else os.fspath(path))


@record
@dataclass(frozen=True, slots=True)
class DoctorCheck:
    """One check of the host: what was checked, whether it passed, and what was found."""

    name: str
    ok: bool
    detail: str


def doctor() -> list[DoctorCheck]:
    """Checks of this host: accelerator and why, QEMU, kernel cache, home, agent build."""
    return decode(list[DoctorCheck], _native.doctor())

"""Reading a sandbox's logs: the guest console, the log of commands run in it, the
network's flow log, and its runtime's (supervisor's) log."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from enum import StrEnum
from pathlib import Path

from . import _native
from ._blocking import run_blocking
from .errors import InvalidConfigError
from .network_log import FlowLogEntry
from .sandbox_info import sandbox_info

#: How often a followed log is checked for new lines.
FOLLOW_POLL_S = 0.2


class LogSource(StrEnum):
    CONSOLE = "console"
    EXEC = "exec"
    #: The flow log; :func:`read_logs` gives its records as lines for people.
    NETWORK = "network"
    #: The sandbox's supervisor: how its VM started (from a template or cold, and why) and
    #: what went wrong.
    RUNTIME = "runtime"


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []


def _tail(current: Path, tail: int | None) -> tuple[list[str], int]:
    """The last ``tail`` lines across the rotated and the current file, and the current
    file's size (where following continues)."""
    previous = Path(f"{current}.1")
    lines: deque[str] = deque(maxlen=tail) if tail is not None else deque()
    lines.extend(_read_lines(previous))
    size = current.stat().st_size if current.exists() else 0
    lines.extend(_read_lines(current))
    return list(lines), size


async def read_logs(
    name: str,
    source: LogSource | str = LogSource.CONSOLE,
    *,
    tail: int | None = None,
    follow: bool = False,
) -> AsyncIterator[str]:
    """Lines of a sandbox's log. With ``follow``, keeps yielding new lines until the sandbox
    is no longer running (and across rotations). The ``network`` log's records are given as
    :class:`FlowLogEntry` lines (``str(entry)``); lines that are no record are left out."""
    try:
        source = LogSource(source)
    except ValueError:
        choices = ", ".join(LogSource)
        raise InvalidConfigError(f"unknown log {source!r}: expected one of {choices}") from None
    if source is LogSource.NETWORK:
        async for entry in read_network_log(name, tail=tail, follow=follow):
            yield str(entry)
        return
    async for line in _log_lines(name, source, tail, follow):
        yield line


async def read_network_log(
    name: str, *, tail: int | None = None, follow: bool = False
) -> AsyncIterator[FlowLogEntry]:
    """The records of a sandbox's flow log, from the last ``tail`` lines (all by default);
    with ``follow``, then the new ones until the sandbox is no longer running. A line that
    is no record (one a crash cut short) is skipped."""
    async for line in _log_lines(name, LogSource.NETWORK, tail, follow):
        entry = FlowLogEntry.parse(line)
        if entry is not None:
            yield entry


async def _log_lines(
    name: str, source: LogSource, tail: int | None, follow: bool
) -> AsyncIterator[str]:
    path = Path(_native.log_path(name, str(source)))
    lines, offset = await run_blocking(_tail, path, tail)
    for line in lines:
        yield line
    if not follow:
        return
    identity = _identity(path)
    pending = ""
    while True:
        if _identity(path) != identity:
            # Rotated: what remained of the old file is in NAME.1; start the new one at 0.
            offset, identity = 0, _identity(path)
        chunk, offset = await run_blocking(_read_from, path, offset)
        pending += chunk
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line
        if not chunk:
            if not (await sandbox_info(name)).status.is_live:
                if pending:
                    yield pending
                return
            await asyncio.sleep(FOLLOW_POLL_S)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_dev, stat.st_ino)


def _read_from(path: Path, offset: int) -> tuple[str, int]:
    try:
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read()
    except FileNotFoundError:
        return "", offset
    return data.decode(errors="replace"), offset + len(data)

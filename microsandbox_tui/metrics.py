"""Metrics of running sandboxes: CPU, memory, disk and network I/O, uptime.

Each sandbox's supervisor samples its VM once a second; reading metrics reads that sample,
so polling every sandbox at 1 Hz costs a database read and a small file per sandbox.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Self

from . import _native
from ._blocking import run_blocking
from ._wire import Timestamp, decode, record
from .errors import InvalidConfigError, SandboxNotRunningError

#: How often supervisors sample (the runtime's own interval, mirrored for waiting).
SAMPLE_INTERVAL_S = 1.0


@record
@dataclass(frozen=True, slots=True)
class SandboxMetrics:
    """One sample of a running sandbox, as its supervisor took it."""

    #: Host CPU time of the VM over the last sample interval; 100 = one core busy.
    cpu_percent: float
    #: Guest memory in use (MemTotal - MemAvailable), as the guest sees it.
    memory_bytes: int
    memory_limit_bytes: int
    #: QEMU's resident memory on the host.
    host_rss_bytes: int
    #: Cumulative since boot.
    disk_read_bytes: int
    disk_write_bytes: int
    #: Cumulative since boot (0 until the sandbox has networking).
    net_rx_bytes: int
    net_tx_bytes: int
    uptime_ms: int
    sampled_at: Timestamp


async def sandbox_metrics(name: str) -> SandboxMetrics:
    """The latest sample of a running sandbox, waiting for the first one after a boot.

    Raises :class:`SandboxNotRunningError` when the sandbox does not run.
    """
    for _ in range(int(3 * SAMPLE_INTERVAL_S / 0.1)):
        sample = await run_blocking(_native.sandbox_metrics, name)
        if sample is not None:
            return decode(SandboxMetrics, sample)
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the supervisor of {name!r} has written no metrics")


async def all_sandbox_metrics() -> dict[str, SandboxMetrics]:
    """Latest samples of every running sandbox, by name."""
    return decode(dict[str, SandboxMetrics], await run_blocking(_native.all_metrics))


class MetricsStream:
    """A sandbox's metrics as they come: ``async for sample in sandbox.metrics_stream()``
    yields a :class:`SandboxMetrics` every ``interval`` seconds, and ends when the sandbox
    stops (at once if it is not running)."""

    def __init__(self, name: str, interval: float = SAMPLE_INTERVAL_S) -> None:
        if not interval > 0:
            raise InvalidConfigError(f"interval: must be greater than 0, got {interval!r}")
        self.name = name
        self.interval = interval
        self._sampled = False
        self._ended = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> SandboxMetrics:
        if self._ended:
            raise StopAsyncIteration
        if self._sampled:
            await asyncio.sleep(self.interval)
        try:
            sample = await sandbox_metrics(self.name)
        except SandboxNotRunningError:
            self._ended = True
            raise StopAsyncIteration from None
        self._sampled = True
        return sample

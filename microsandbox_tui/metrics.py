"""Metrics of running sandboxes: CPU, memory, disk and network I/O, uptime.

Each sandbox's supervisor samples its VM once a second; reading metrics reads that sample,
so polling every sandbox at 1 Hz costs a database read and a small file per sandbox.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from . import _native
from ._blocking import run_blocking

#: How often supervisors sample (the runtime's own interval, mirrored for waiting).
SAMPLE_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class SandboxMetrics:
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
    sampled_at: datetime

    @staticmethod
    def from_native(sample: _native.Metrics) -> SandboxMetrics:
        return SandboxMetrics(
            cpu_percent=sample.cpu_percent,
            memory_bytes=sample.memory_bytes,
            memory_limit_bytes=sample.memory_limit_bytes,
            host_rss_bytes=sample.host_rss_bytes,
            disk_read_bytes=sample.disk_read_bytes,
            disk_write_bytes=sample.disk_write_bytes,
            net_rx_bytes=sample.net_rx_bytes,
            net_tx_bytes=sample.net_tx_bytes,
            uptime_ms=sample.uptime_ms,
            sampled_at=datetime.fromtimestamp(sample.sampled_at_ms / 1000, tz=UTC),
        )


async def sandbox_metrics(name: str) -> SandboxMetrics:
    """The latest sample of a running sandbox, waiting for the first one after a boot.

    Raises :class:`SandboxNotRunningError` when the sandbox does not run.
    """
    for _ in range(int(3 * SAMPLE_INTERVAL_S / 0.1)):
        sample = await run_blocking(_native.sandbox_metrics, name)
        if sample is not None:
            return SandboxMetrics.from_native(sample)
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the supervisor of {name!r} has written no metrics")


async def all_sandbox_metrics() -> dict[str, SandboxMetrics]:
    """Latest samples of every running sandbox, by name."""
    rows = await run_blocking(_native.all_metrics)
    return {name: SandboxMetrics.from_native(sample) for name, sample in rows}

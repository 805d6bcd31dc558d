"""Metrics of real sandboxes: CPU, memory, disk."""

from __future__ import annotations

import asyncio

import pytest

from microsandbox_tui import (
    MetricsStream,
    MiB,
    Sandbox,
    SandboxNotRunningError,
    all_sandbox_metrics,
)

pytestmark = pytest.mark.vm

THIRTY_TWO_MIB = 32 * MiB


async def test_busy_guest_shows_high_cpu(unique_name: str) -> None:
    async with await Sandbox.create(unique_name) as sandbox:
        idle = await sandbox.metrics()
        busy_loop = await sandbox.shell_stream("while :; do :; done")
        peak = 0.0
        async for sample in sandbox.metrics_stream(interval=0.5):
            peak = max(peak, sample.cpu_percent)
            if peak > 70 or sample.uptime_ms > idle.uptime_ms + 8000:
                break
        await busy_loop.kill()
        assert peak > 70, f"a busy vCPU showed only {peak:.0f} % (idle {idle.cpu_percent:.0f} %)"


async def test_writing_32_mib_shows_in_disk_write_bytes(shared_sandbox: Sandbox) -> None:
    before = await shared_sandbox.metrics()
    await shared_sandbox.shell("dd if=/dev/zero of=/root/big bs=1M count=32 && sync")
    for _ in range(50):
        after = await shared_sandbox.metrics()
        if after.disk_write_bytes - before.disk_write_bytes >= THIRTY_TWO_MIB:
            break
        await asyncio.sleep(0.2)
    assert after.disk_write_bytes - before.disk_write_bytes >= THIRTY_TWO_MIB
    await shared_sandbox.exec("rm", ["/root/big"])


async def test_memory_is_the_guest_view_and_rss_the_host_view(shared_sandbox: Sandbox) -> None:
    sample = await shared_sandbox.metrics()
    assert 256 * MiB < sample.memory_limit_bytes <= 512 * MiB
    assert 0 < sample.memory_bytes < sample.memory_limit_bytes
    assert sample.host_rss_bytes > 16 * MiB
    assert sample.uptime_ms > 0


async def test_all_sandbox_metrics_lists_running_sandboxes(shared_sandbox: Sandbox) -> None:
    everything = await all_sandbox_metrics()
    assert shared_sandbox.name in everything


async def test_stopped_sandbox_has_no_metrics(unique_name: str) -> None:
    sandbox = await Sandbox.create(unique_name)
    await sandbox.stop_and_wait()
    with pytest.raises(SandboxNotRunningError):
        await sandbox.metrics()
    assert unique_name not in await all_sandbox_metrics()
    await Sandbox.remove(unique_name)


async def test_the_metrics_stream_of_a_stopped_sandbox_ends(unique_name: str) -> None:
    sandbox = await Sandbox.create(unique_name)
    stream = sandbox.metrics_stream(interval=0.2)
    assert isinstance(stream, MetricsStream)
    first = await anext(stream)
    assert first.uptime_ms > 0
    await sandbox.stop_and_wait()
    assert [sample async for sample in stream] == []
    await Sandbox.remove(unique_name)

"""Dashboard load: ``msb-tui`` with 200 sandboxes whose metrics change every second, against
the same dashboard with no sandboxes, in the same run.

    ./dev bench tui [--sandboxes N] [--seconds S] [--presses P]

Reports the process's CPU use while it refreshes at 1 Hz and the key-press -> repaint latency
(cursor moves in the table, p50/p99), each with its ratio to the empty dashboard. The data
comes from a generated source (no VMs), so the numbers measure the dashboard alone.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from microsandbox_tui import (
    ImageInfo,
    MiB,
    SandboxConfig,
    SandboxInfo,
    SandboxMetrics,
    SandboxNotFoundError,
    SandboxStatus,
)
from microsandbox_tui.tui.app import MsbApp
from microsandbox_tui.tui.operations import ProcessTable

SIZE = (160, 50)


class ChangingSource:
    """``count`` running sandboxes whose CPU, memory and disk counters move on every call."""

    def __init__(self, count: int) -> None:
        started = datetime.now(UTC) - timedelta(minutes=5)
        self._infos = [
            SandboxInfo(
                name=f"bench-{index:03d}",
                status=SandboxStatus.RUNNING,
                config=SandboxConfig(name=f"bench-{index:03d}", cpus=1 + index % 4),
                detached=True,
                created_at=started,
                started_at=started,
                stopped_at=None,
                accelerator="tcg",
                boot_ms=2000,
                exit_reason=None,
            )
            for index in range(count)
        ]
        self._tick = 0

    async def list_sandboxes(self) -> list[SandboxInfo]:
        return list(self._infos)

    async def all_metrics(self) -> dict[str, SandboxMetrics]:
        self._tick += 1
        now = datetime.now(UTC)
        return {
            info.name: SandboxMetrics(
                cpu_percent=50 + 50 * math.sin(self._tick / 3 + index),
                memory_bytes=(100 + (self._tick * 7 + index) % 300) * MiB,
                memory_limit_bytes=512 * MiB,
                host_rss_bytes=600 * MiB,
                disk_read_bytes=self._tick * 40_000 * (index + 1),
                disk_write_bytes=self._tick * 10_000 * (index + 1),
                net_rx_bytes=0,
                net_tx_bytes=0,
                uptime_ms=self._tick * 1000,
                sampled_at=now,
            )
            for index, info in enumerate(self._infos)
        }

    async def list_images(self) -> list[ImageInfo]:
        return []

    async def processes(self, name: str) -> ProcessTable:
        raise SandboxNotFoundError(name)

    def now(self) -> datetime:
        return datetime.now(UTC)


async def measure(count: int, seconds: float, presses: int) -> tuple[float, list[float]]:
    """(CPU % of this process while refreshing, key-press -> repaint latencies)."""
    with tempfile.TemporaryDirectory(prefix="msb-bench-tui-") as config:
        app = MsbApp(source=ChangingSource(count), host_info=False, config_directory=Path(config))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(2.0)  # first listing and layout
            cpu_before, wall_before = time.process_time(), time.perf_counter()
            await asyncio.sleep(seconds)
            cpu = (time.process_time() - cpu_before) / (time.perf_counter() - wall_before) * 100
            latencies = []
            for index in range(presses):
                started = time.perf_counter()
                await pilot.press("j" if index % 2 == 0 else "k")
                await pilot.pause()  # until the press is handled and the screen refreshed
                latencies.append(time.perf_counter() - started)
    return cpu, latencies


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sandboxes", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--presses", type=int, default=100)
    args = parser.parse_args()
    base_cpu, base_latency = await measure(0, args.seconds, args.presses)
    cpu, latency = await measure(args.sandboxes, args.seconds, args.presses)
    for label, (c, lat) in (
        ("empty", (base_cpu, base_latency)),
        (str(args.sandboxes), (cpu, latency)),
    ):
        print(
            f"{label:>6} sandboxes: CPU {c:5.1f} %   key->repaint p50 "
            f"{percentile(lat, 0.5) * 1000:6.1f} ms  p99 {percentile(lat, 0.99) * 1000:6.1f} ms"
        )
    print(
        f"ratios {args.sandboxes}/empty: CPU {cpu / max(base_cpu, 0.1):.1f}x, "
        f"latency p50 {statistics.median(latency) / statistics.median(base_latency):.1f}x"
    )


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""Dashboard load: ``msb-tui`` on a terminal with many sandboxes whose metrics change every
second, against a dashboard with next to nothing in it, in the same run.

    ./dev bench tui [--running N] [--stopped M] [--seconds S] [--presses P]

Each case runs the real app in its own process on a pseudo-terminal (Textual's Linux
driver, as for a user). Reported per case: the process's CPU use while it refreshes at 1 Hz
(from /proc, every thread included) and the key -> repaint latency of cursor moves in the
table (p50/p99), with ratios to the baseline. The latency is taken inside the app: from the
key event leaving the driver's input thread to the first frame handed to the driver's
writer after the table's cursor moved, so none of the harness's own waiting counts. The
cases: a baseline (two stopped sandboxes: the least a cursor can move in), N running, and N
running + M stopped (which must cost what N running cost). The data comes from a generated
source (no VMs), so the numbers measure the dashboard alone.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import random
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stats import percentile
from textual import events
from textual.coordinate import Coordinate
from textual.drivers.linux_driver import LinuxDriver
from textual.widgets import DataTable

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
from microsandbox_tui.tui.data import SandboxesSnapshot
from microsandbox_tui.tui.operations import ProcessTable
from microsandbox_tui.tui.widgets import SandboxTable

COLUMNS, ROWS = 160, 50
#: What the dashboard has drawn before measuring starts, after its first listing.
SETTLE_S = 2.0


class ChangingSource:
    """``running`` sandboxes whose CPU, memory and disk counters move on every call, and
    ``stopped`` ones that never change (the listing itself never changes)."""

    def __init__(self, running: int, stopped: int) -> None:
        started = datetime.now(UTC) - timedelta(minutes=5)
        self._running = [
            self._info(f"run-{i:04d}", SandboxStatus.RUNNING, i, started) for i in range(running)
        ]
        stopped_infos = [
            self._info(f"stopped-{i:04d}", SandboxStatus.STOPPED, i, started)
            for i in range(stopped)
        ]
        self._infos = self._running + stopped_infos
        self._tick = 0

    @staticmethod
    def _info(name: str, status: SandboxStatus, index: int, started: datetime) -> SandboxInfo:
        running = status is SandboxStatus.RUNNING
        return SandboxInfo(
            name=name,
            status=status,
            config=SandboxConfig(name=name, cpus=1 + index % 4),
            detached=True,
            created_at=started,
            started_at=started,
            stopped_at=None if running else started,
            accelerator="tcg",
            boot_ms=2000,
            exit_reason=None,
        )

    async def list_sandboxes(self) -> list[SandboxInfo]:
        return list(self._infos)

    async def list_version(self) -> int:
        return 0

    async def all_metrics(self) -> dict[str, SandboxMetrics]:
        """The running sandboxes' samples, as the SDK gives them (stopped ones have none)."""
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
            for index, info in enumerate(self._running)
        }

    async def list_images(self) -> list[ImageInfo]:
        return []

    async def processes(self, name: str) -> ProcessTable:
        raise SandboxNotFoundError(name)

    def now(self) -> datetime:
        return datetime.now(UTC)


# -- inside the measured process ------------------------------------------------------------


@dataclass
class KeyTimings:
    """Key -> frame latencies, from the input thread's key events and the app's writes."""

    arrived: list[float] = field(default_factory=list)
    handled: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def key_arrived(self) -> None:
        with self.lock:
            self.arrived.append(time.perf_counter())

    def cursor_moved(self) -> None:
        with self.lock:
            if self.arrived:
                self.handled.append(self.arrived.pop(0))

    def frame_written(self) -> None:
        now = time.perf_counter()
        with self.lock:
            self.latencies.extend(now - arrived for arrived in self.handled)
            self.handled.clear()


TIMINGS = KeyTimings()


class TimedDriver(LinuxDriver):
    """Textual's terminal driver, noting when keys enter the app and frames leave it."""

    def process_message(self, message: events.Message) -> None:
        if isinstance(message, events.Key):
            TIMINGS.key_arrived()
        super().process_message(message)

    def write(self, data: str) -> None:
        super().write(data)
        TIMINGS.frame_written()


def _timed_cursor_watch(
    table: SandboxTable, old_coordinate: Coordinate, new_coordinate: Coordinate
) -> None:
    DataTable.watch_cursor_coordinate(table, old_coordinate, new_coordinate)
    if old_coordinate != new_coordinate:
        TIMINGS.cursor_moved()


def run_child(running: int, stopped: int, ready_fd: int, out: Path) -> None:
    """Runs the dashboard on this process's terminal; says "ready" on ``ready_fd`` once the
    first listing is drawn and settled, and writes the latencies to ``out`` on quitting."""
    SandboxTable.watch_cursor_coordinate = _timed_cursor_watch  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory(prefix="msb-bench-tui-") as config:
        app = MsbApp(
            source=ChangingSource(running, stopped), host_info=False, config_directory=Path(config)
        )
        app.driver_class = TimedDriver

        def first_snapshot(_: SandboxesSnapshot) -> None:
            app.snapshot_signal.unsubscribe(app)
            app.set_timer(SETTLE_S, lambda: os.write(ready_fd, b"ready\n"))

        app.call_later(lambda: app.snapshot_signal.subscribe(app, first_snapshot))
        app.run()
    out.write_text(json.dumps(TIMINGS.latencies))


# -- the harness ----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain(fd: int) -> None:
    """Reads the terminal's output away (a full pty would block the app's writes)."""
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass


@dataclass(frozen=True)
class Result:
    cpu_percent: float
    latencies: list[float]


def measure(running: int, stopped: int, seconds: float, presses: int) -> Result:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    ready_read, ready_write = os.pipe()
    with tempfile.TemporaryDirectory(prefix="msb-bench-tui-") as work:
        out = Path(work) / "latencies.json"
        command = [sys.executable, __file__, "--child", str(running), str(stopped),
                   str(ready_write), str(out)]  # fmt: skip
        child = subprocess.Popen(
            command,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            pass_fds=(ready_write,),
            env={**os.environ, "TERM": "xterm-256color"},
            start_new_session=True,
        )
        os.close(slave)
        os.close(ready_write)
        threading.Thread(target=drain, args=(master,), daemon=True).start()
        with os.fdopen(ready_read) as ready:
            if ready.readline() != "ready\n":
                raise RuntimeError(f"the dashboard ended before drawing (exit {child.wait()})")
        cpu_before, wall_before = cpu_seconds(child.pid), time.perf_counter()
        time.sleep(seconds)
        cpu = (cpu_seconds(child.pid) - cpu_before) / (time.perf_counter() - wall_before) * 100
        jitter = random.Random(0)
        for index in range(presses):
            os.write(master, b"j" if index % 2 == 0 else b"k")
            # Spread over the refresh period, so presses meet refreshes at every phase.
            time.sleep(jitter.uniform(0.1, 0.25))
        os.write(master, b"q")
        child.wait(timeout=30)
        os.close(master)
        latencies = json.loads(out.read_text())
    if len(latencies) != presses:
        raise RuntimeError(f"{len(latencies)} repaints timed for {presses} presses")
    return Result(cpu, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--running", type=int, default=1000)
    parser.add_argument("--stopped", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--presses", type=int, default=100)
    args = parser.parse_args()
    cases = {
        "baseline (2 stopped)": (0, 2),
        f"{args.running} running": (args.running, 0),
        f"{args.running} running + {args.stopped} stopped": (args.running, args.stopped),
    }
    results = {
        label: measure(running, stopped, args.seconds, args.presses)
        for label, (running, stopped) in cases.items()
    }
    base = results["baseline (2 stopped)"]
    width = max(map(len, results))
    for label, result in results.items():
        p50, p99 = percentile(result.latencies, 0.5), percentile(result.latencies, 0.99)
        print(
            f"{label:>{width}}: CPU {result.cpu_percent:5.1f} % "
            f"({result.cpu_percent / max(base.cpu_percent, 0.1):4.1f}x)   key->repaint "
            f"p50 {p50 * 1000:6.1f} ms  p99 {p99 * 1000:6.1f} ms "
            f"({p99 / percentile(base.latencies, 0.99):4.1f}x p99)"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        running, stopped, ready_fd, out = sys.argv[2:6]
        run_child(int(running), int(stopped), int(ready_fd), Path(out))
    else:
        main()

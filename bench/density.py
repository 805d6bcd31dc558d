"""Density benchmark: host memory per idle sandbox, and ``Sandbox.create`` to the first
``exec`` output when many sandboxes are created at once.

    ./dev bench density [--idle-s S] [--single-runs N]

(a) Memory per idle sandbox, with 1 and with 10 sandboxes running: each is created, answers
one ``exec``, then idles for ``--idle-s`` seconds; then the RSS and PSS of its QEMU and of its
supervisor are read from ``/proc/PID/smaps_rollup``. PSS divides every shared page among
the processes mapping it (the kernel image, QEMU's and the supervisor's own code), so it is
what one more sandbox costs the host. The last row is one sandbox after a command filled
200 MiB of guest memory (a file in a tmpfs) and freed it again, idle as long: what a guest
gives back to the host once it is done with memory.
(b) Concurrency: batches of 1, 4 and 16 sandboxes created at once (``asyncio.gather``), each
timed from its ``Sandbox.create`` to its first ``exec`` output; median and max per batch,
and both as a ratio to a single create's median measured in the same run.

Only the SDK is timed; the benchmark assumes nothing about how a sandbox boots. It uses a
throw-away ``MSB_HOME`` and removes every sandbox it created, also when a step fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# A throw-away home, always: the benchmark never touches the user's sandboxes, and removes it
# when done.
os.environ["MSB_HOME"] = tempfile.mkdtemp(prefix="msb-bench-home-")

from microsandbox_tui import Sandbox, SandboxNotFoundError, doctor

MEMORY_COUNTS = (1, 10)
BATCH_SIZES = (4, 16)
TOUCHED_MIB = 200
# A tmpfs of its own, so the guest's page cache frees the pages when it is unmounted.
TOUCH_AND_FREE = (
    f"mount -t tmpfs -o size={TOUCHED_MIB + 50}m touched /mnt"
    f" && dd if=/dev/zero of=/mnt/fill bs=1M count={TOUCHED_MIB} 2>/dev/null"
    " && umount /mnt"
)
MIB = 1024 * 1024
MEMORY_COLUMNS = "".join(
    f"{name:>12}" for name in ("QEMU RSS", "QEMU PSS", "superv RSS", "superv PSS")
)
BATCH_COLUMNS = "".join(f"{name:>10}" for name in ("median", "max", "median/1", "max/1"))


@dataclass(frozen=True, slots=True)
class ProcessMemory:
    """Resident and proportional set size of one process, in bytes."""

    rss: int
    pss: int

    @classmethod
    def of(cls, pid: int) -> ProcessMemory:
        fields: dict[str, int] = {}
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
            key, value, *_ = line.split()
            fields[key.rstrip(":")] = int(value) * 1024
        return cls(rss=fields["Rss"], pss=fields["Pss"])


@dataclass(frozen=True, slots=True)
class SandboxMemory:
    qemu: ProcessMemory
    supervisor: ProcessMemory


class Fleet:
    """Sandboxes created by this benchmark; leaving the ``async with`` removes all of them,
    whether their create succeeded, failed or is still recorded half-way."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.sandboxes: list[Sandbox] = []

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *_: object) -> None:
        for name in self.names:
            with contextlib.suppress(SandboxNotFoundError):
                await Sandbox.remove(name, force=True)

    async def timed_create(self, name: str) -> float:
        """Seconds from ``Sandbox.create`` to the output of its first command."""
        self.names.append(name)
        started = time.perf_counter()
        sandbox = await Sandbox.create(name, replace=True)
        output = await sandbox.exec("echo", ["ready"])
        elapsed = time.perf_counter() - started
        self.sandboxes.append(sandbox)
        if output.stdout_text != "ready\n":
            raise RuntimeError(f"{name}: unexpected first output {output.stdout_text!r}")
        return elapsed

    async def create_at_once(self, prefix: str, count: int) -> list[float]:
        """Creates ``count`` sandboxes concurrently. Every create runs to its end before a
        failure is raised, so none finishes after the fleet has been cleaned up."""
        results = await asyncio.gather(
            *(self.timed_create(f"{prefix}-{index}") for index in range(count)),
            return_exceptions=True,
        )
        failures = [result for result in results if isinstance(result, BaseException)]
        if failures:
            raise failures[0]
        return [result for result in results if isinstance(result, float)]

    async def memory(self) -> list[SandboxMemory]:
        samples = []
        for sandbox in self.sandboxes:
            info = await sandbox.info()
            if info.vmm_pid is None or info.supervisor_pid is None:
                raise RuntimeError(f"{sandbox.name} has no running processes")
            samples.append(
                SandboxMemory(ProcessMemory.of(info.vmm_pid), ProcessMemory.of(info.supervisor_pid))
            )
        return samples


def memory_row(label: str, samples: Sequence[SandboxMemory]) -> str:
    def mean_mib(values: list[int]) -> str:
        return f"{statistics.fmean(values) / MIB:12.1f}"

    return (
        f"{label:<32}"
        + mean_mib([sample.qemu.rss for sample in samples])
        + mean_mib([sample.qemu.pss for sample in samples])
        + mean_mib([sample.supervisor.rss for sample in samples])
        + mean_mib([sample.supervisor.pss for sample in samples])
    )


async def idle_memory(count: int, idle_s: float) -> list[SandboxMemory]:
    async with Fleet() as fleet:
        await fleet.create_at_once(f"idle{count}", count)
        await asyncio.sleep(idle_s)
        return await fleet.memory()


async def memory_after_freeing(idle_s: float) -> list[SandboxMemory]:
    async with Fleet() as fleet:
        await fleet.timed_create("touched")
        output = await fleet.sandboxes[0].shell(TOUCH_AND_FREE)
        if not output.success:
            raise RuntimeError(f"filling guest memory failed: {output.stderr_text}")
        await asyncio.sleep(idle_s)
        return await fleet.memory()


async def single_creates(runs: int) -> list[float]:
    times = []
    for run in range(runs):
        async with Fleet() as fleet:
            times.extend(await fleet.create_at_once(f"single{run}", 1))
    return times


async def batch_creates(size: int) -> list[float]:
    async with Fleet() as fleet:
        return await fleet.create_at_once(f"batch{size}", size)


def batch_row(label: str, times: list[float], single_median: float) -> str:
    median, longest = statistics.median(times), max(times)
    return (
        f"{label:<35}{median * 1000:10.0f}{longest * 1000:10.0f}"
        f"{median / single_median:10.2f}{longest / single_median:10.2f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-s", type=float, default=5.0, help="idle time before sampling")
    parser.add_argument("--single-runs", type=int, default=3, help="single creates (baseline)")
    args = parser.parse_args()
    accelerator = next(check.detail for check in doctor() if check.name == "accelerator")
    print(f"accelerator: {accelerator}\n")

    print(f"(a) memory per idle sandbox, MiB{MEMORY_COLUMNS}")
    for count in MEMORY_COUNTS:
        label = f"{count} sandbox{'es' if count > 1 else ''}, idle {args.idle_s:g} s"
        print(memory_row(label, await idle_memory(count, args.idle_s)), flush=True)
    touched = await memory_after_freeing(args.idle_s)
    print(memory_row(f"1, {TOUCHED_MIB} MiB filled then freed", touched), flush=True)

    print(f"\n(b) create -> first exec output, ms{BATCH_COLUMNS}")
    singles = await single_creates(args.single_runs)
    single_median = statistics.median(singles)
    print(batch_row(f"1 (x{args.single_runs})", singles, single_median), flush=True)
    for size in BATCH_SIZES:
        print(batch_row(f"{size} at once", await batch_creates(size), single_median), flush=True)


def run() -> None:
    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(os.environ["MSB_HOME"], ignore_errors=True)


if __name__ == "__main__":
    run()

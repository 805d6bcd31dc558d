"""Exec round trip and exec output throughput, each against its floor measured in the same
run on the same sandbox.

    ./dev bench exec [--runs N] [--mib M] [--transfers K]

Round trip: ``exec("true")`` against the agent-channel ping (client -> supervisor ->
virtio-serial -> agent and back) plus what the guest itself needs to start, run and reap the
same ``/bin/true``: ``msb-spawn-baseline`` (built static with the agent, copied into the
sandbox) starts it the way the agent does, N times, and reports each time from the guest's
clock. Target: p50 at most 1.5 times that baseline.

Throughput: a streamed exec's stdout (and, separately, its stderr) carrying ``cat`` of an
M MiB file, against ``fs.read`` of the same file over the same channel. Target: at least
half of ``fs.read``'s MiB/s. ``cat`` moves the file in large pieces; a command writing small
ones is slower in the guest itself, pipe or not (busybox ``head -c`` writes 4 KiB at a time and
manages about 10 MiB/s into /dev/null under TCG).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MSB_HOME", tempfile.mkdtemp(prefix="msb-bench-home-"))

from stats import describe_tail as describe
from stats import percentile

from microsandbox_tui import Sandbox, _native
from microsandbox_tui.exec import StderrEvent, StdoutEvent

NAME = "bench-exec"
MiB = 1024 * 1024
PROGRAM = "/bin/true"
BLOB = "/root/bench-exec-blob"
HELPER_IN_GUEST = "/run/msb-spawn-baseline"
ROUND_TRIP_TARGET = 1.5
THROUGHPUT_TARGET = 0.5


def helper_on_host() -> Path:
    """``msb-spawn-baseline`` as ``./dev setup`` built it (beside the agent)."""
    target = os.environ.get("CARGO_TARGET_DIR") or str(
        Path.home() / ".cache" / "microsandbox-tui" / "target"
    )
    helper = Path(target) / "x86_64-unknown-linux-gnu" / "release" / "msb-spawn-baseline"
    if not helper.is_file():
        sys.exit(f"{helper} is missing: run ./dev setup (it builds the agent and this helper)")
    return helper


async def in_guest_spawns(sandbox: Sandbox, runs: int) -> list[float]:
    """Seconds per start-to-reap of ``PROGRAM`` in the guest, from the guest's clock."""
    output = await sandbox.exec(HELPER_IN_GUEST, [str(runs), PROGRAM])
    if not output.success:
        sys.exit(f"msb-spawn-baseline failed: {output.stderr_text}")
    return [int(line) / 1e6 for line in output.stdout_text.split()]


async def round_trip(sandbox: Sandbox, runs: int) -> None:
    connection = _native.Connection.open(NAME)
    try:
        for _ in range(20):  # warm-up: page cache, the guest's dentry cache
            await sandbox.exec("true")
            connection.ping()
        await in_guest_spawns(sandbox, 20)
        pings: list[float] = []
        execs: list[float] = []
        spawns: list[float] = []
        # In rounds, so load changes on the machine affect every side alike.
        rounds = 10
        for _ in range(rounds):
            spawns += await in_guest_spawns(sandbox, max(1, runs // rounds))
            for _ in range(max(1, runs // rounds)):
                pings.append(connection.ping())
                started = time.perf_counter()
                output = await sandbox.exec("true")
                execs.append(time.perf_counter() - started)
                assert output.success
    finally:
        connection.close()
    baseline = percentile(pings, 0.5) + percentile(spawns, 0.5)
    ratio = percentile(execs, 0.5) / baseline
    print(f"runs: {len(execs)}")
    print(f"(a) agent-channel ping round trip : {describe(pings)}")
    print(f"(b) in-guest start+reap of {PROGRAM}: {describe(spawns)}")
    print(f"(c) exec('true') round trip       : {describe(execs)}")
    verdict = "meets" if ratio <= ROUND_TRIP_TARGET else "MISSES"
    print(
        f"c/(a+b) at p50: {ratio:.2f} (baseline {baseline * 1000:.2f} ms; "
        f"target <= {ROUND_TRIP_TARGET}: {verdict})"
    )


async def streamed_output(
    sandbox: Sandbox, script: str, stream: type[StdoutEvent | StderrEvent], size: int
) -> float:
    """Seconds until the streamed exec of ``script`` has delivered ``size`` bytes as
    ``stream`` events and exited."""
    started = time.perf_counter()
    handle = await sandbox.shell_stream(script)
    received = 0
    async for event in handle:
        if isinstance(event, stream):
            received += len(event.data)
    elapsed = time.perf_counter() - started
    assert received == size, (stream, received, size)
    return elapsed


async def throughput(sandbox: Sandbox, mib: int, transfers: int) -> None:
    size = mib * MiB
    await sandbox.fs.write(BLOB, os.urandom(size))
    rates: dict[str, list[float]] = {"read": [], "stdout": [], "stderr": []}
    for _ in range(transfers):
        started = time.perf_counter()
        data = await sandbox.fs.read(BLOB)
        rates["read"].append(size / MiB / (time.perf_counter() - started))
        assert len(data) == size
        del data
        for key, stream, script in (
            ("stdout", StdoutEvent, f"cat {BLOB}"),
            ("stderr", StderrEvent, f"cat {BLOB} >&2"),
        ):
            seconds = await streamed_output(sandbox, script, stream, size)
            rates[key].append(size / MiB / seconds)
    read, stdout, stderr = (statistics.median(rates[key]) for key in ("read", "stdout", "stderr"))
    print(f"{mib} MiB, {transfers} interleaved transfers, medians")
    print(f"(d) fs.read                    : {read:7.1f} MiB/s")
    for label, rate in (
        ("(e) streamed exec stdout (cat)", stdout),
        ("(f) streamed exec stderr (cat)", stderr),
    ):
        verdict = "meets" if rate / read >= THROUGHPUT_TARGET else "MISSES"
        print(
            f"{label}: {rate:7.1f} MiB/s   /d {rate / read:.2f} "
            f"(target >= {THROUGHPUT_TARGET}: {verdict})"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--transfers", type=int, default=3)
    args = parser.parse_args()
    helper = helper_on_host().read_bytes()
    sandbox = await Sandbox.create(NAME, replace=True, memory=1024)
    try:
        await sandbox.fs.write(HELPER_IN_GUEST, helper, mode=0o755)
        await round_trip(sandbox, args.runs)
        await throughput(sandbox, args.mib, args.transfers)
    finally:
        await sandbox.kill()
        await Sandbox.remove(NAME)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

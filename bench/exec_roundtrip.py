"""Exec round trip: ``exec("true")`` against the raw agent-channel ping, in the same run on
the same sandbox.

    ./dev bench exec [--runs N]

The ping is the floor (client -> supervisor -> virtio-serial -> agent and back); the exec adds
fork/exec in the guest, the exit status and the supervisor's session bookkeeping.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("MSB_HOME", tempfile.mkdtemp(prefix="msb-bench-home-"))

from microsandbox_tui import Sandbox, _native


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def describe(samples: list[float]) -> str:
    p50, p99 = percentile(samples, 0.5) * 1000, percentile(samples, 0.99) * 1000
    return f"p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  mean {statistics.fmean(samples) * 1000:7.2f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    sandbox = await Sandbox.create("bench-exec", replace=True)
    connection = _native.Connection.open("bench-exec")
    try:
        for _ in range(20):  # warm-up: page cache, the guest's dentry cache
            await sandbox.exec("true")
            connection.ping()
        pings: list[float] = []
        execs: list[float] = []
        # Interleaved, so load changes on the machine affect both sides alike.
        for _ in range(args.runs):
            pings.append(connection.ping())
            started = time.perf_counter()
            output = await sandbox.exec("true")
            execs.append(time.perf_counter() - started)
            assert output.success
    finally:
        connection.close()
        await sandbox.kill()
        await Sandbox.remove("bench-exec")
    print(f"runs: {args.runs}")
    print(f"(a) agent-channel ping round trip: {describe(pings)}")
    print(f"(b) exec('true') round trip      : {describe(execs)}")
    print(f"ratio b/a (p50): {percentile(execs, 0.5) / percentile(pings, 0.5):.2f}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

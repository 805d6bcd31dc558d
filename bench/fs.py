"""Guest file transfer: ``fs.write`` / ``fs.read`` of 64 MiB against the raw agent channel,
and reads from a bind mount against the guest's own disk, in the same run on one sandbox.

    ./dev bench fs [--runs N] [--mib M]

The raw channel is an exec's stdin (host -> guest, into /dev/null) and stdout (guest -> host,
from /dev/zero): the same client -> supervisor -> virtio-serial -> agent path without a
file. A ratio near 1 means the file operations cost little beyond moving the bytes.
The bind mount (virtio-fs through virtiofsd) is read in the guest with ``dd`` after dropping
the guest's page cache, beside the same read from the sandbox's own virtio-blk disk.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time

os.environ.setdefault("MSB_HOME", tempfile.mkdtemp(prefix="msb-bench-home-"))

from microsandbox_tui import Sandbox, Volume

MiB = 1024 * 1024
NAME = "bench-fs"
BIND_TARGET = "/mnt/host"


def rate(n_bytes: int, seconds: float) -> float:
    return n_bytes / MiB / seconds


async def timed(coroutine) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    await coroutine
    return time.perf_counter() - started


async def channel_in(sandbox: Sandbox, payload: bytes) -> float:
    """Host -> guest through an exec's stdin, discarded in the guest."""
    started = time.perf_counter()
    handle = await sandbox.exec_stream("sh", ["-c", "cat > /dev/null"])
    sink = handle.take_stdin()
    await sink.write(payload)
    await sink.close()
    async for _ in handle:
        pass
    return time.perf_counter() - started


async def channel_out(sandbox: Sandbox, size: int) -> float:
    """Guest -> host through an exec's stdout."""
    started = time.perf_counter()
    output = await sandbox.exec("head", ["-c", str(size), "/dev/zero"])
    elapsed = time.perf_counter() - started
    assert len(output.stdout) == size, len(output.stdout)
    return elapsed


async def guest_read_rate(sandbox: Sandbox, path: str) -> float:
    """MiB/s of ``dd`` reading ``path`` in the guest with a cold page cache."""
    await sandbox.shell("sync; echo 3 > /proc/sys/vm/drop_caches")
    output = await sandbox.exec("dd", [f"if={path}", "of=/dev/null", "bs=1M"])
    # busybox dd: "67108864 bytes (64.0MB) copied, 1.234 seconds, 51.8MB/s"
    match = re.search(r"(\d+) bytes .* copied, ([\d.]+) seconds", output.stderr_text)
    assert match, output.stderr_text
    return rate(int(match.group(1)), float(match.group(2)))


def median(values: list[float]) -> float:
    return statistics.median(values)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    size = args.mib * MiB
    payload = os.urandom(size)
    with tempfile.TemporaryDirectory(prefix="msb-bench-bind-") as shared:
        with open(os.path.join(shared, "blob"), "wb") as file:
            file.write(payload)
        sandbox = await Sandbox.create(
            NAME, replace=True, memory=1024, volumes={BIND_TARGET: Volume.bind(shared)}
        )
        try:
            await sandbox.fs.write("/root/blob", payload)  # the disk baseline's file
            results: dict[str, list[float]] = {key: [] for key in "abcdef"}
            # Interleaved, so load changes on the machine affect every side alike.
            for _ in range(args.runs):
                results["a"].append(rate(size, await channel_in(sandbox, payload)))
                results["b"].append(rate(size, await timed(sandbox.fs.write("/root/w", payload))))
                results["c"].append(rate(size, await channel_out(sandbox, size)))
                started = time.perf_counter()
                data = await sandbox.fs.read("/root/w")
                results["d"].append(rate(size, time.perf_counter() - started))
                assert data == payload
                results["e"].append(await guest_read_rate(sandbox, "/root/blob"))
                results["f"].append(await guest_read_rate(sandbox, f"{BIND_TARGET}/blob"))
        finally:
            await sandbox.kill()
            await Sandbox.remove(NAME)
    a, b, c, d, e, f = (median(results[key]) for key in "abcdef")
    print(f"{args.mib} MiB, {args.runs} interleaved runs, medians")
    print(f"(a) raw channel in  (exec stdin)  : {a:7.1f} MiB/s")
    print(f"(b) fs.write                      : {b:7.1f} MiB/s   b/a {b / a:.2f}")
    print(f"(c) raw channel out (exec stdout) : {c:7.1f} MiB/s")
    print(f"(d) fs.read                       : {d:7.1f} MiB/s   d/c {d / c:.2f}")
    print(f"(e) guest disk read (virtio-blk)  : {e:7.1f} MiB/s")
    print(f"(f) bind-mount read (virtio-fs)   : {f:7.1f} MiB/s   f/e {f / e:.2f}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""Guest file transfer: ``fs.write`` / ``fs.read`` of 64 MiB against the raw agent channel,
and reads from a bind mount against the guest's own disk, in the same run on one sandbox.

    ./dev bench fs [--runs N] [--mib M]

The raw channel is the same client -> supervisor -> virtio-serial -> agent path with no file
system behind it: a write stream into the guest's /dev/null and a read stream from its
/dev/zero. A ratio near 1 means the file operations cost little beyond moving the bytes.
An exec's stdin and stdout moving the same bytes are shown beside them.
The bind mount (virtio-fs through virtiofsd) is read in the guest with ``dd`` after dropping
the guest's page cache, beside the same read from the sandbox's own virtio-blk disk.
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


async def raw_in(sandbox: Sandbox, payload: bytes) -> float:
    """Host -> guest through the agent channel into /dev/null."""
    started = time.perf_counter()
    async with await sandbox.fs.write_stream("/dev/null") as sink:
        await sink.write(payload)
    return time.perf_counter() - started


async def raw_out(sandbox: Sandbox, size: int) -> float:
    """Guest -> host through the agent channel from /dev/zero."""
    started = time.perf_counter()
    received = 0
    async for chunk in await sandbox.fs.read_stream("/dev/zero"):
        received += len(chunk)
        if received >= size:
            break
    return time.perf_counter() - started


async def exec_in(sandbox: Sandbox, payload: bytes) -> float:
    """Host -> guest through an exec's stdin, discarded in the guest."""
    started = time.perf_counter()
    handle = await sandbox.exec_stream("sh", ["-c", "cat > /dev/null"])
    sink = handle.take_stdin()
    await sink.write(payload)
    await sink.close()
    async for _ in handle:
        pass
    return time.perf_counter() - started


async def exec_out(sandbox: Sandbox, size: int) -> float:
    """Guest -> host through an exec's stdout."""
    started = time.perf_counter()
    output = await sandbox.exec("head", ["-c", str(size), "/dev/zero"])
    elapsed = time.perf_counter() - started
    assert len(output.stdout) == size, len(output.stdout)
    return elapsed


#: Reads ``$1`` with dd and prints the seconds it took, from the guest's own clock (busybox
#: dd reports no timing).
TIMED_READ = (
    "sync; echo 3 > /proc/sys/vm/drop_caches; "
    "start=$(cut -d' ' -f1 /proc/uptime); dd if=\"$1\" of=/dev/null bs=1M 2>/dev/null; "
    "end=$(cut -d' ' -f1 /proc/uptime); echo \"$start $end\""
)


async def guest_read_rate(sandbox: Sandbox, path: str, size: int) -> float:
    """MiB/s of ``dd`` reading ``path`` in the guest with a cold page cache."""
    output = await sandbox.exec("sh", ["-c", TIMED_READ, "timed-read", path])
    start, end = (float(value) for value in output.stdout_text.split())
    return rate(size, end - start)


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
            results: dict[str, list[float]] = {key: [] for key in "abcdefgh"}
            # Interleaved, so load changes on the machine affect every side alike.
            for _ in range(args.runs):
                results["a"].append(rate(size, await raw_in(sandbox, payload)))
                results["b"].append(rate(size, await timed(sandbox.fs.write("/root/w", payload))))
                results["c"].append(rate(size, await raw_out(sandbox, size)))
                started = time.perf_counter()
                data = await sandbox.fs.read("/root/w")
                results["d"].append(rate(size, time.perf_counter() - started))
                assert data == payload
                results["e"].append(rate(size, await exec_in(sandbox, payload)))
                results["f"].append(rate(size, await exec_out(sandbox, size)))
                results["g"].append(await guest_read_rate(sandbox, "/root/blob", size))
                results["h"].append(await guest_read_rate(sandbox, f"{BIND_TARGET}/blob", size))
        finally:
            await sandbox.kill()
            await Sandbox.remove(NAME)
    a, b, c, d, e, f, g, h = (median(results[key]) for key in "abcdefgh")
    print(f"{args.mib} MiB, {args.runs} interleaved runs, medians")
    print(f"(a) raw channel in  (to /dev/null)  : {a:7.1f} MiB/s")
    print(f"(b) fs.write                        : {b:7.1f} MiB/s   b/a {b / a:.2f}")
    print(f"(c) raw channel out (from /dev/zero): {c:7.1f} MiB/s")
    print(f"(d) fs.read                         : {d:7.1f} MiB/s   d/c {d / c:.2f}")
    print(f"(e) exec stdin                      : {e:7.1f} MiB/s   b/e {b / e:.2f}")
    print(f"(f) exec stdout                     : {f:7.1f} MiB/s   d/f {d / f:.2f}")
    print(f"(g) guest disk read (virtio-blk)    : {g:7.1f} MiB/s")
    print(f"(h) bind-mount read (virtio-fs)     : {h:7.1f} MiB/s   h/g {h / g:.2f}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

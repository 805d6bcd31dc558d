"""Boot benchmark: bare QEMU boot to the agent's first byte vs. ``Sandbox.create`` to the first
``exec`` output, measured in the same run on the same kernel and initramfs.

    ./dev bench boot [--runs N]

Prints the median and spread of both, and the ratio b/a: the cost the runtime adds on top of
the VM boot itself (supervisor start, database, disk preparation, handshake, exec round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# A throw-away home, so the benchmark never touches the user's sandboxes.
os.environ.setdefault("MSB_HOME", tempfile.mkdtemp(prefix="msb-bench-home-"))

from microsandbox_tui import Sandbox, doctor
from microsandbox_tui._native import bench

BOOT_TIMEOUT_S = 120.0


def bare_boot_argv(work: Path) -> tuple[list[str], Path]:
    """The QEMU command line the runtime would use for the default image, from the runtime's
    own builder, with the sandbox-specific files placed in ``work``."""
    argv = bench.boot_command(str(work))
    return argv, work / "agent.sock"


def drain(listener: socket.socket) -> None:
    """Plays the supervisor's console reader: QEMU needs someone to take the console."""
    connection, _ = listener.accept()
    while connection.recv(65536):
        pass


def time_bare_boot() -> float:
    """Seconds from starting QEMU to the first byte the guest agent sends."""
    with tempfile.TemporaryDirectory(prefix="msb-bench-") as scratch:
        work = Path(scratch)
        argv, agent_socket = bare_boot_argv(work)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(agent_socket))
        listener.listen(1)
        console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        console.bind(str(work / "console.sock"))
        console.listen(1)
        threading.Thread(target=drain, args=(console,), daemon=True).start()
        started = time.perf_counter()
        qemu = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        try:
            listener.settimeout(BOOT_TIMEOUT_S)
            connection, _ = listener.accept()
            connection.settimeout(BOOT_TIMEOUT_S)
            connection.sendall(bench.hello_frame())
            if not connection.recv(1):
                raise RuntimeError("the agent closed the channel without answering")
            return time.perf_counter() - started
        finally:
            qemu.kill()
            qemu.wait()
            listener.close()


async def time_create_to_exec(index: int) -> float:
    """Seconds from ``Sandbox.create`` to the first command's output."""
    name = f"bench-{index}"
    started = time.perf_counter()
    sandbox = await Sandbox.create(name, replace=True)
    output = await sandbox.exec("echo", ["ready"])
    elapsed = time.perf_counter() - started
    assert output.stdout_text == "ready\n"
    await sandbox.kill()
    await Sandbox.remove(name)
    return elapsed


def describe(samples: list[float]) -> str:
    return (
        f"median {statistics.median(samples) * 1000:8.0f} ms"
        f"  min {min(samples) * 1000:8.0f} ms  max {max(samples) * 1000:8.0f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    bare: list[float] = []
    full: list[float] = []
    # Interleaved, so that load changes on the machine affect both sides alike.
    for index in range(args.runs):
        bare.append(time_bare_boot())
        full.append(await time_create_to_exec(index))
        print(f"run {index + 1}/{args.runs}: bare {bare[-1]:.2f} s, sdk {full[-1]:.2f} s")
    accelerator = next(check.detail for check in doctor() if check.name == "accelerator")
    print(f"\naccelerator: {accelerator}")
    print(f"(a) bare QEMU boot -> agent first byte : {describe(bare)}")
    print(f"(b) Sandbox.create -> first exec output: {describe(full)}")
    print(f"ratio b/a (medians): {statistics.median(full) / statistics.median(bare):.2f}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

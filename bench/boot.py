"""Boot benchmark: a sandbox restored from its shape's template against one booted cold and
against a bare QEMU boot, interleaved in one run on the same kernel and initramfs.

    ./dev bench boot [--runs N]

(a) bare QEMU boot to the agent's first byte (the guest up to where templates are saved);
(b) ``Sandbox.create`` -> first ``exec`` output, booted cold (``MSB_SNAPSHOTS=0``);
(c) the same, restored from the template. Prints the median and spread of each and the
ratios; targets: (c) at most 0.6 s median and at least 3x faster than (b).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
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

from stats import describe_range as describe

from microsandbox_tui import Sandbox, doctor
from microsandbox_tui._native import bench

BOOT_TIMEOUT_S = 120.0
TEMPLATE_TIMEOUT_S = 180.0
SNAPSHOTS_ENV = "MSB_SNAPSHOTS"


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
            # The agent speaks first: it says it waits for the hello.
            if not connection.recv(1):
                raise RuntimeError("the agent closed the channel without answering")
            return time.perf_counter() - started
        finally:
            qemu.kill()
            qemu.wait()
            listener.close()


async def time_create_to_exec(index: int, *, snapshots: bool) -> float:
    """Seconds from ``Sandbox.create`` to the first command's output, with templates on or
    off (the supervisor reads ``MSB_SNAPSHOTS`` from the environment it inherits)."""
    os.environ[SNAPSHOTS_ENV] = "1" if snapshots else "0"
    name = f"bench-{'restore' if snapshots else 'cold'}-{index}"
    started = time.perf_counter()
    sandbox = await Sandbox.create(name, replace=True)
    output = await sandbox.exec("echo", ["ready"])
    elapsed = time.perf_counter() - started
    assert output.stdout_text == "ready\n"
    restored = await started_from_template(sandbox)
    await sandbox.kill()
    await Sandbox.remove(name)
    if restored != snapshots:
        raise RuntimeError(f"{name} was {'' if restored else 'not '}restored from a template")
    return elapsed


async def started_from_template(sandbox: Sandbox) -> bool:
    return any(["restored from template" in line async for line in sandbox.logs("runtime")])


async def build_template() -> None:
    """Boots one sandbox, which has the template built in the background if there is none,
    and waits until the template is saved."""
    os.environ[SNAPSHOTS_ENV] = "1"
    sandbox = await Sandbox.create("bench-template", replace=True)
    try:
        log = "\n".join([line async for line in sandbox.logs("runtime")])
    finally:
        await sandbox.kill()
        await Sandbox.remove("bench-template")
    if "restored from template" in log:
        return
    building = re.search(r"building template \w+ in the background into (\S+)", log)
    if building is None:
        raise RuntimeError(f"the sandbox neither restored nor built a template:\n{log}")
    saved = Path(building.group(1)) / "meta.json"
    deadline = time.monotonic() + TEMPLATE_TIMEOUT_S
    while not saved.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no template after {TEMPLATE_TIMEOUT_S:.0f} s ({saved})")
        await asyncio.sleep(0.5)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    await build_template()
    bare: list[float] = []
    cold: list[float] = []
    restored: list[float] = []
    # Interleaved, so that load changes on the machine affect all three alike.
    for index in range(args.runs):
        bare.append(time_bare_boot())
        cold.append(await time_create_to_exec(index, snapshots=False))
        restored.append(await time_create_to_exec(index, snapshots=True))
        print(
            f"run {index + 1}/{args.runs}: bare {bare[-1]:.2f} s, cold {cold[-1]:.2f} s,"
            f" restored {restored[-1]:.2f} s"
        )
    accelerator = next(check.detail for check in doctor() if check.name == "accelerator")
    median = statistics.median
    print(f"\naccelerator: {accelerator}")
    print(f"(a) bare QEMU boot -> agent first byte         : {describe(bare)}")
    print(f"(b) Sandbox.create -> first exec output, cold   : {describe(cold)}")
    print(f"(c) Sandbox.create -> first exec output, restore: {describe(restored)}")
    print(f"ratio b/c (cold / restore, target >= 3): {median(cold) / median(restored):.2f}")
    print(f"(c) median {median(restored):.2f} s (target <= 0.60 s)")
    print(f"ratio c/a (restore / bare boot): {median(restored) / median(bare):.2f}")


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

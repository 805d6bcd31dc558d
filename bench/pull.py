"""Image pulls against skopeo, and sandbox start on a cached OCI image against ``msb-base``.

    ./dev bench pull [--runs N] [--big-mib 32]

A local registry (Debian's ``docker-registry`` on 127.0.0.1, as the tests use) serves two
images built here: ``multilayer`` (the tests' two-layer busybox image, ~1 MiB) and ``big``
(busybox plus a layer of N MiB of random bytes, which gzip cannot shrink).

(a) For each image, interleaved over the runs: our ``pull`` into an empty store (a fresh
``MSB_HOME`` per run, in its own process; timed inside that process around ``pull`` alone,
after the store's database is opened, so interpreter start and imports are not counted)
vs. ``skopeo copy`` of the same reference into a fresh ``oci:`` directory (timed around the
``skopeo`` process, whose start costs ~15 ms). skopeo only downloads, verifies and writes
the blobs; our pull also extracts each layer and builds its read-only ext4 image
(``mkfs.ext4 -d``), the work a sandbox start would otherwise have to do.
(b) ``Sandbox.create`` to the first ``exec`` output on the cached ``multilayer`` image
(pulled once before the timed runs) vs. the same on the built-in default image ``msb-base``,
interleaved; each sandbox is removed after its run, outside the timing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# A throw-away home for part (b), always: the benchmark never touches the user's sandboxes
# or images, and removes it when done.
os.environ["MSB_HOME"] = tempfile.mkdtemp(prefix="msb-bench-home-")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from registry.builder import FileSpec, push
from registry.images import busybox_image, multilayer_image
from registry.server import RegistryServer
from stats import describe_range as describe

from microsandbox_tui import DEFAULT_IMAGE, Image, LocalImage, OciImage, Sandbox, pull

SKOPEO = "skopeo"

# Runs in a fresh process whose MSB_HOME is an empty directory: the store starts empty.
PULL_WORKER = """
import asyncio, sys, time
from microsandbox_tui import list_images, pull

async def main():
    await list_images()  # creates the home's database, which is not part of the pull
    started = time.perf_counter()
    await pull(sys.argv[1], insecure=True)
    print(time.perf_counter() - started)

asyncio.run(main())
"""


def time_our_pull(reference: str) -> float:
    """Seconds our ``pull`` takes into an empty store, measured inside a fresh process."""
    home = tempfile.mkdtemp(prefix="msb-bench-pull-home-")
    try:
        result = subprocess.run(
            [sys.executable, "-c", PULL_WORKER, reference],
            env={**os.environ, "MSB_HOME": home},
            check=True,
            capture_output=True,
            text=True,
        )
        return float(result.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(home, ignore_errors=True)


def time_skopeo_copy(reference: str) -> float:
    """Seconds ``skopeo copy`` takes to copy ``reference`` into a fresh OCI layout."""
    scratch = tempfile.mkdtemp(prefix="msb-bench-skopeo-")
    tag = reference.rsplit(":", 1)[1]
    try:
        argv = [
            SKOPEO,
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            f"docker://{reference}",
            f"oci:{scratch}/layout:{tag}",
        ]
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)
        return time.perf_counter() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def time_create_to_exec(name: str, image: LocalImage | OciImage) -> float:
    """Seconds from ``Sandbox.create`` to the first command's output."""
    started = time.perf_counter()
    sandbox = await Sandbox.create(name, image=image, replace=True)
    try:
        output = await sandbox.exec("echo", ["ready"])
        elapsed = time.perf_counter() - started
        assert output.stdout_text == "ready\n", output
    finally:
        await sandbox.close()
        await Sandbox.remove(name, force=True)
    return elapsed


def ratio(ours: list[float], theirs: list[float]) -> float:
    return statistics.median(ours) / statistics.median(theirs)


def publish(server: RegistryServer, big_mib: int) -> dict[str, str]:
    """Pushes the benchmark's images; ``{name: "127.0.0.1:PORT/name:1"}``."""
    noise = random.Random(5).randbytes(big_mib * 1024 * 1024)
    images = {
        "multilayer": multilayer_image(),
        "big": busybox_image({"opt/noise.bin": FileSpec(data=noise)}),
    }
    refs: dict[str, str] = {}
    for name, image in images.items():
        push(server.url, name, "1", image)
        size = sum(len(layer.blob) for layer in image.layers)
        refs[name] = f"{server.host}/{name}:1"
        print(f"image {name}: {len(image.layers)} layers, {size / 2**20:.1f} MiB compressed")
    return refs


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--big-mib", type=int, default=32, help="random layer of the big image")
    args = parser.parse_args()
    if shutil.which(SKOPEO) is None:
        sys.exit("skopeo is missing: install the Debian package skopeo (./dev bench does)")

    with RegistryServer() as server:
        refs = publish(server, args.big_mib)

        ours: dict[str, list[float]] = {name: [] for name in refs}
        skopeo: dict[str, list[float]] = {name: [] for name in refs}
        # Interleaved, and the order swapped every run, so that load changes and warm caches
        # (the registry's files in the page cache) favour neither side.
        for index in range(args.runs):
            for name, reference in refs.items():
                if index % 2 == 0:
                    ours[name].append(time_our_pull(reference))
                    skopeo[name].append(time_skopeo_copy(reference))
                else:
                    skopeo[name].append(time_skopeo_copy(reference))
                    ours[name].append(time_our_pull(reference))
                print(
                    f"pull run {index + 1}/{args.runs} {name}: "
                    f"ours {ours[name][-1]:.3f} s, skopeo {skopeo[name][-1]:.3f} s"
                )

        # (b): the OCI image is pulled into this process's home once, before the timing.
        cached = Image.oci(refs["multilayer"], insecure=True)
        await pull(refs["multilayer"], insecure=True)
        oci_start: list[float] = []
        base_start: list[float] = []
        for index in range(args.runs):
            runs = [
                (oci_start, f"bench-oci-{index}", cached),
                (base_start, f"bench-base-{index}", Image.local(DEFAULT_IMAGE)),
            ]
            if index % 2:
                runs.reverse()
            for samples, name, image in runs:
                samples.append(await time_create_to_exec(name, image))
            print(
                f"start run {index + 1}/{args.runs}: "
                f"oci {oci_start[-1]:.2f} s, msb-base {base_start[-1]:.2f} s"
            )

    print(
        "\n(a) pull into an empty store (ours: download, verify, extract, build ext4 layers;"
        "\n    skopeo copy: download, verify, write blobs only)"
    )
    for name in refs:
        print(f"  {name:<10} ours  : {describe(ours[name])}")
        print(f"  {name:<10} skopeo: {describe(skopeo[name])}")
        print(f"  {name:<10} ratio ours/skopeo (medians): {ratio(ours[name], skopeo[name]):.2f}")
    print("(b) Sandbox.create -> first exec output")
    print(f"  cached OCI image (multilayer): {describe(oci_start)}")
    print(f"  built-in {DEFAULT_IMAGE:<20}: {describe(base_start)}")
    print(f"  ratio oci/msb-base (medians): {ratio(oci_start, base_start):.2f}")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(os.environ["MSB_HOME"], ignore_errors=True)

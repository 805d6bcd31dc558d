"""Disk image files for the tests, made and read on the host with the tools a user has:
``mkfs.ext4 -d`` for an ext4 file system holding a tree, ``qemu-img convert`` between raw
and qcow2, ``debugfs`` to read or mark a file system without mounting it."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
from pathlib import Path

from registry.builder import Layer
from registry.images import busybox_base_files

from microsandbox_tui import MiB


def ext4_image(path: Path, content: Path, size_mib: int = 16) -> None:
    """An ext4 file system holding the tree at ``content``, as a raw image."""
    with path.open("wb") as image:
        image.truncate(size_mib * MiB)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(content), str(path)], check=True)


def convert(source: Path, target: Path, source_format: str, target_format: str) -> None:
    subprocess.run(
        ["qemu-img", "convert", "-f", source_format, "-O", target_format, str(source), str(target)],
        check=True,
    )


def ext4_cat(image: Path, path: str) -> str:
    """A file's content in a raw ext4 image, read on the host with debugfs."""
    result = subprocess.run(
        ["debugfs", "-R", f"cat {path}", str(image)], capture_output=True, text=True, check=True
    )
    return result.stdout


def mark_journal_for_recovery(image: Path) -> None:
    """Leaves a raw ext4 image as a writer that crashed does: its journal needs recovery, which
    the kernel replays before it mounts the file system, even read-only."""
    subprocess.run(
        ["debugfs", "-w", "-R", "feature needs_recovery", str(image)],
        capture_output=True,
        check=True,
    )


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def busybox_tree(root: Path) -> None:
    """The default image's busybox root file system, written out as a directory at ``root``
    with its owners and modes (as root, which the VM tests run as)."""
    layer = Layer.from_files(busybox_base_files())
    with tarfile.open(fileobj=io.BytesIO(layer.tar)) as tar:
        # Our own archive, so trusted: the stricter filters would refuse the applets'
        # absolute links or clear the sticky bit of /tmp.
        tar.extractall(root, filter="fully_trusted")

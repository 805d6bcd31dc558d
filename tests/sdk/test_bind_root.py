"""A host directory as the live root file system (virtio-fs)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from microsandbox_tui import Image, Sandbox

pytestmark = pytest.mark.vm

HOST_BUSYBOX = "/bin/busybox"


def make_rootfs(root: Path) -> None:
    """A minimal busybox tree: enough for /bin/sh and the usual tools."""
    (root / "bin").mkdir(parents=True)
    shutil.copy2(HOST_BUSYBOX, root / "bin" / "busybox")
    for applet in ("sh", "cat", "echo", "ls", "mount"):
        (root / "bin" / applet).symlink_to("busybox")
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "root").mkdir()


async def test_bind_root_is_live_in_both_directions(unique_name: str, tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    make_rootfs(root)
    (root / "from-host.txt").write_text("written on the host before boot\n")
    async with await Sandbox.create(unique_name, image=Image.bind(root)) as sandbox:
        output = await sandbox.exec("cat", ["/from-host.txt"])
        assert output.stdout_text == "written on the host before boot\n"
        (root / "later.txt").write_text("written while running\n")
        assert (await sandbox.exec("cat", ["/later.txt"])).stdout_text == "written while running\n"
        await sandbox.shell("echo from the guest > /from-guest.txt")
        assert (root / "from-guest.txt").read_text() == "from the guest\n"
        mounts = (await sandbox.exec("cat", ["/proc/mounts"])).stdout_text
        assert any(
            line.split()[1] == "/" and line.split()[2] == "virtiofs" for line in mounts.splitlines()
        )


async def test_plain_path_string_means_bind(unique_name: str, tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    make_rootfs(root)
    async with await Sandbox.create(unique_name, image=str(root)) as sandbox:
        info = await sandbox.info()
        assert info.image == os.fspath(root)
        assert (await sandbox.exec("echo", ["ok"])).stdout_text == "ok\n"

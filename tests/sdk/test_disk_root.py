"""A host disk image file as the root file system (``Image.disk``): raw or qcow2, its file
system detected or named. The sandbox writes to its own upper disk; the image file is never
written, and a file system whose journal needs recovery still mounts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from disk_images import busybox_tree, convert, ext4_image, mark_journal_for_recovery, sha256_of

from microsandbox_tui import (
    Image,
    ImageNotFoundError,
    InvalidConfigError,
    Sandbox,
    SandboxStartError,
)

pytestmark = pytest.mark.vm

MARKER = "written on the host into the image\n"
ROOT_SIZE_MIB = 64
#: The guest's device of the root's lower, found as the agent finds it: by its serial.
LOWER_DEVICE = "/dev/$(grep -lx layer0 /sys/block/vd*/serial | cut -d/ -f4)"


async def names() -> list[str]:
    return [info.name for info in await Sandbox.list()]


@pytest.fixture(scope="module")
def root_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A busybox root with ``/marker.txt``, as a raw ext4 image and converted to qcow2."""
    work = tmp_path_factory.mktemp("disk-root")
    tree = work / "tree"
    busybox_tree(tree)
    (tree / "marker.txt").write_text(MARKER)
    raw, qcow2 = work / "root.raw", work / "root.qcow2"
    ext4_image(raw, tree, size_mib=ROOT_SIZE_MIB)
    convert(raw, qcow2, "raw", "qcow2")
    return {"raw": raw, "qcow2": qcow2}


@pytest.mark.parametrize("image_format", ["raw", "qcow2"])
async def test_a_disk_root_keeps_the_sandbox_writes_and_never_writes_the_file(
    unique_name: str, root_images: dict[str, Path], image_format: str
) -> None:
    disk = root_images[image_format]
    before = sha256_of(disk)
    name = f"{unique_name[:40]}-{image_format}"
    sandbox = await Sandbox.create(name, image=Image.disk(disk, format=image_format))
    assert (await sandbox.shell("cat /marker.txt")).stdout_text == MARKER
    root = (await sandbox.shell("grep -m1 ' / ' /proc/mounts")).stdout_text.split()
    assert root[2] == "overlay", root
    wrote = await sandbox.shell("echo from the guest > /marker.txt && mkdir -p /srv && sync")
    assert wrote.success, wrote.stderr_text
    # The guest is untrusted and root: even its writes to the device itself (here to the
    # free blocks at its end) go to a throwaway overlay that QEMU drops, not to the file.
    last_blocks = f"bs=64k seek={ROOT_SIZE_MIB * 16 - 8} count=8"
    scribbled = await sandbox.shell(
        f"dd if=/dev/urandom of={LOWER_DEVICE} {last_blocks} conv=fsync"
    )
    assert scribbled.success, scribbled.stderr_text
    await sandbox.stop_and_wait()

    # The writes are the sandbox's own (its upper disk), kept across a restart.
    async with await (await Sandbox.get(name)).start() as restarted:
        kept = await restarted.shell("cat /marker.txt && test -d /srv")
        assert kept.stdout_text == "from the guest\n", kept.stderr_text
    assert name not in await names()
    assert sha256_of(disk) == before, "the image file is never written"


async def test_a_named_fstype_mounts_a_disk_whose_journal_needs_recovery(
    unique_name: str, root_images: dict[str, Path], tmp_path: Path
) -> None:
    # Replaying the journal writes to the device; a read-only device would refuse the mount.
    disk = tmp_path / "crashed.raw"
    shutil.copyfile(root_images["raw"], disk)
    mark_journal_for_recovery(disk)
    before = sha256_of(disk)
    image = Image.disk(disk, format="raw", fstype="ext4")
    async with await Sandbox.create(unique_name, image=image) as sandbox:
        assert (await sandbox.shell("cat /marker.txt")).stdout_text == MARKER
    assert sha256_of(disk) == before, "the replay went to a throwaway overlay, not the file"


async def test_a_wrong_fstype_fails_the_start_naming_the_disk_and_the_fstype(
    unique_name: str, root_images: dict[str, Path]
) -> None:
    image = Image.disk(root_images["raw"], format="raw", fstype="erofs")
    with pytest.raises(SandboxStartError, match=r"mounting disk layer0 \(/dev/vd\w+, erofs\)"):
        await Sandbox.create(unique_name, image=image)
    assert unique_name not in await names()


async def test_bad_disk_roots_are_refused_before_anything_is_created(
    unique_name: str, root_images: dict[str, Path], tmp_path: Path
) -> None:
    before = await names()
    for not_a_disk in (tmp_path / "missing.raw", tmp_path):
        # Either error is the contract's; both are raised before anything is recorded.
        with pytest.raises((ImageNotFoundError, InvalidConfigError)):
            await Sandbox.create(unique_name, image=Image.disk(not_a_disk, format="raw"))
    with pytest.raises(InvalidConfigError, match="xfs"):
        image = Image.disk(root_images["raw"], format="raw", fstype="xfs")
        await Sandbox.create(unique_name, image=image)
    assert await names() == before

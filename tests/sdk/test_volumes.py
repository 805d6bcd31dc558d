"""Volumes on real sandboxes: named volumes with quotas, shared by one writer or many readers;
bind, tmpfs and disk image mounts; typed errors that leave nothing behind."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from disk_images import convert, ext4_cat, ext4_image, sha256_of

from microsandbox_tui import (
    DiskImageFormat,
    InvalidConfigError,
    MiB,
    MountConfig,
    Sandbox,
    SandboxStartError,
    Size,
    Volume,
    VolumeBusyError,
    VolumeInUseError,
    VolumeNotFoundError,
)

pytestmark = pytest.mark.vm


async def names() -> list[str]:
    return [info.name for info in await Sandbox.list()]


@pytest.fixture
async def volume(unique_name: str) -> AsyncIterator[str]:
    """A fresh 16 MiB named volume, removed after the test with whatever used it."""
    name = f"{unique_name[:40]}-vol"
    await Volume.create(name, quota_mib=16)
    yield name
    for sandbox in (await Volume.get(name)).in_use_by:
        await Sandbox.remove(sandbox, force=True)
    await Volume.remove(name)


async def test_bad_volumes_are_refused_and_nothing_is_recorded(
    unique_name: str, volume: str, tmp_path: Path
) -> None:
    before = await names()
    refused: list[tuple[type[Exception], dict[str, MountConfig]]] = [
        (VolumeNotFoundError, {"/data": Volume.named("no-such-volume")}),
        (InvalidConfigError, {"/data": Volume.bind(tmp_path / "missing")}),
        (InvalidConfigError, {"/data": Volume.disk(tmp_path / "missing.qcow2")}),
        (InvalidConfigError, {"data": Volume.tmpfs()}),
        (InvalidConfigError, {"/": Volume.tmpfs()}),
        (InvalidConfigError, {"/data": Volume.tmpfs(), "/data/": Volume.tmpfs()}),
        (InvalidConfigError, {"/a": Volume.named(volume), "/b": Volume.named(volume)}),
        (InvalidConfigError, {f"/b{i}": Volume.bind(tmp_path) for i in range(20)}),
    ]
    for error, volumes in refused:
        with pytest.raises(error):
            await Sandbox.create(unique_name, volumes=volumes)
    assert await names() == before
    assert (await Volume.get(volume)).in_use_by == ()
    with pytest.raises(InvalidConfigError):
        Volume.named("../escape")
    with pytest.raises(InvalidConfigError):
        Volume.tmpfs(size_mib=0)


async def test_named_volume_quota_sharing_and_persistence(unique_name: str, volume: str) -> None:
    fresh = await Volume.get(volume)
    assert fresh.quota_mib == 16
    assert fresh.used_bytes < 64 * 1024, "an empty volume reads about 0"
    writer_name = f"{unique_name[:40]}-w"
    writer = await Sandbox.create(writer_name, volumes={"/data": Volume.named(volume)})
    assert (await Volume.get(volume)).in_use_by == (writer_name,)

    # The quota is the guest file system's size: writing past it fails in the guest, the
    # host file stays as it is, and the volume is usable again once space is freed.
    full = await writer.shell("dd if=/dev/zero of=/data/big bs=1M count=20")
    assert not full.success
    assert "No space left on device" in full.stderr_text
    assert os.stat(fresh.path).st_size == 16 * MiB
    await writer.shell("rm /data/big")
    kept = await writer.shell(
        "echo hello > /data/message.txt && dd if=/dev/urandom of=/data/kept bs=1M count=2"
    )
    assert kept.success, kept.stderr_text

    # One writer at a time; the volume cannot go while a sandbox uses it.
    with pytest.raises(VolumeBusyError, match=writer_name):
        await Sandbox.create(f"{unique_name[:40]}-w2", volumes={"/data": Volume.named(volume)})
    with pytest.raises(VolumeInUseError, match=writer_name):
        await Volume.remove(volume)
    assert (await writer.shell("cat /data/message.txt")).stdout_text == "hello\n"

    await writer.stop_and_wait()
    assert (await Volume.get(volume)).used_bytes >= 2 * MiB
    await Sandbox.remove(writer_name)
    assert (await Volume.get(volume)).in_use_by == ()

    # The seed's reader: a new sandbox mounts it read-only and finds the data.
    reader_name = f"{unique_name[:40]}-r"
    async with await Sandbox.create(
        reader_name, volumes={"/data": Volume.named(volume, readonly=True)}
    ) as reader:
        assert (await reader.shell("cat /data/message.txt")).stdout_text == "hello\n"
        refused = await reader.shell("echo again > /data/message.txt")
        assert not refused.success
        assert "Read-only file system" in refused.stderr_text
        with pytest.raises(VolumeBusyError, match=reader_name):
            await Sandbox.create(f"{unique_name[:40]}-w3", volumes={"/data": Volume.named(volume)})
    assert reader_name not in await names()


async def test_bind_tmpfs_and_disk_volumes(unique_name: str, tmp_path: Path) -> None:
    shared, read_only = tmp_path / "shared", tmp_path / "read-only"
    for directory in (shared, read_only):
        directory.mkdir()
    (read_only / "kept.txt").write_text("host data\n")
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "seed.txt").write_text("from the image\n")
    raw, qcow2 = tmp_path / "data.raw", tmp_path / "data.qcow2"
    ext4_image(raw, seed)
    ext4_image(tmp_path / "plain.raw", seed)
    convert(tmp_path / "plain.raw", qcow2, "raw", "qcow2")
    volumes = {
        "/work": Volume.tmpfs(),
        # Inside another volume: mounted after its parent.
        "/work/exchange": Volume.bind(shared),
        "/ro": Volume.bind(read_only, readonly=True),
        "/small": Volume.tmpfs(size_mib=Size.mib(8)),
        "/frozen": Volume.tmpfs(readonly=True),
        "/raw": Volume.disk(raw),
        "/qcow": Volume.disk(qcow2, format=DiskImageFormat.QCOW2, fstype="ext4"),
    }
    async with await Sandbox.create(unique_name, volumes=volumes) as sandbox:
        (shared / "from-host.txt").write_text("written on the host after boot\n")
        seen = await sandbox.shell("cat /work/exchange/from-host.txt")
        assert seen.stdout_text == "written on the host after boot\n"
        await sandbox.shell("echo from the guest > /work/exchange/from-guest.txt")
        assert (shared / "from-guest.txt").read_text() == "from the guest\n"

        # Read-only is the host's decision: remounting read-write in the guest changes nothing.
        assert (await sandbox.shell("cat /ro/kept.txt")).stdout_text == "host data\n"
        remounted = await sandbox.shell("mount -o remount,rw /ro && grep ' /ro ' /proc/mounts")
        assert remounted.success, remounted.stderr_text
        assert remounted.stdout_text.split()[3].startswith("rw"), remounted.stdout_text
        for write in ("echo x > /ro/new.txt", "echo x > /ro/kept.txt"):
            refused = await sandbox.shell(write)
            assert "Read-only file system" in refused.stderr_text, write
        assert not (read_only / "new.txt").exists()
        assert (read_only / "kept.txt").read_text() == "host data\n"

        small = await sandbox.shell("dd if=/dev/zero of=/small/big bs=1M count=10")
        assert "No space left on device" in small.stderr_text
        size = await sandbox.shell("df -m /small | tail -n 1")
        assert size.stdout_text.split()[1] == "8"
        frozen = await sandbox.shell("touch /frozen/x")
        assert "Read-only file system" in frozen.stderr_text

        for target in ("/raw", "/qcow"):
            assert (await sandbox.shell(f"cat {target}/seed.txt")).stdout_text == "from the image\n"
            wrote = await sandbox.shell(f"echo {target} > {target}/from-guest.txt")
            assert wrote.success, wrote.stderr_text
        await sandbox.stop_and_wait()
    assert ext4_cat(raw, "/from-guest.txt") == "/raw\n"
    back = tmp_path / "back.raw"
    convert(qcow2, back, "qcow2", "raw")
    assert ext4_cat(back, "/from-guest.txt") == "/qcow\n"


async def test_a_volume_the_guest_cannot_mount_fails_the_start(
    unique_name: str, tmp_path: Path
) -> None:
    blank = tmp_path / "blank.raw"
    with blank.open("wb") as image:
        image.truncate(8 * MiB)
    with pytest.raises(SandboxStartError, match="/blank"):
        await Sandbox.create(unique_name, volumes={"/blank": Volume.disk(blank)})
    assert unique_name not in await names()


async def test_a_volume_whose_file_is_being_removed_is_not_listed(unique_name: str) -> None:
    # A removal deletes the image file before its transaction commits; a listing made in
    # that moment still sees the record and must skip the volume rather than fail.
    name = f"{unique_name[:40]}-gone"
    volume = await Volume.create(name, quota_mib="8M")
    os.remove(volume.path)
    try:
        assert name not in [listed.name for listed in await Volume.list()]
        with pytest.raises(VolumeNotFoundError):
            await Volume.get(name)
    finally:
        await Volume.remove(name)


async def test_a_reader_mounts_a_volume_whose_writer_was_killed(volume: str) -> None:
    # A killed writer leaves the ext4 journal to replay; a read-only disk could not take the
    # replay and the reader's mount was refused. The replay now goes to a throwaway overlay.
    writer = await Sandbox.create(f"{volume}-w", volumes={"/data": Volume.named(volume)})
    await writer.shell("echo kept > /data/note && sync")
    await writer.kill()
    image = Path((await Volume.get(volume)).path)
    before = sha256_of(image)
    reader = await Sandbox.create(
        f"{volume}-r", volumes={"/data": Volume.named(volume, readonly=True)}
    )
    assert (await reader.shell("cat /data/note")).stdout_text == "kept\n"
    assert not (await reader.shell("touch /data/new")).success
    await reader.stop_and_wait()
    assert sha256_of(image) == before, "the file is never written"

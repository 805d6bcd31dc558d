"""``sandbox.fs`` on a real sandbox: every operation, typed errors, streams, a 100 MiB round
trip, and copies to the host that a hostile guest tree cannot lead outside their target."""

from __future__ import annotations

import errno
import hashlib
import os
import posixpath
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from microsandbox_tui import (
    FilesystemError,
    FsEntryKind,
    InvalidConfigError,
    PathNotFoundError,
    Sandbox,
)

pytestmark = pytest.mark.vm

MIB = 1024 * 1024


@pytest.fixture(scope="module")
async def sandbox() -> AsyncIterator[Sandbox]:
    """One sandbox for the module: each test works in its own guest directory."""
    sandbox = await Sandbox.create("fs-tests", replace=True)
    yield sandbox
    await sandbox.kill()
    await Sandbox.remove("fs-tests")


@pytest.fixture
async def guest_dir(sandbox: Sandbox, request: pytest.FixtureRequest) -> str:
    path = f"/srv/{request.node.name}"
    await sandbox.fs.mkdir(path)
    return path


async def guest_sha256(sandbox: Sandbox, path: str) -> str:
    return (await sandbox.exec("sha256sum", [path])).stdout_text.split()[0]


async def test_write_and_read_bytes_and_text(sandbox: Sandbox, guest_dir: str) -> None:
    fs = sandbox.fs
    await fs.write(f"{guest_dir}/data.bin", bytes(range(256)))
    assert await fs.read(f"{guest_dir}/data.bin") == bytes(range(256))
    await fs.write(f"{guest_dir}/deep/er/note.txt", "grüße\n")
    assert await fs.read_text(f"{guest_dir}/deep/er/note.txt") == "grüße\n"
    shell = await sandbox.shell(f"cat {guest_dir}/deep/er/note.txt")
    assert shell.stdout_text == "grüße\n"
    await fs.write(f"{guest_dir}/empty", b"")
    assert await fs.read(f"{guest_dir}/empty") == b""


async def test_write_modes_and_append(sandbox: Sandbox, guest_dir: str) -> None:
    fs = sandbox.fs
    await fs.write(f"{guest_dir}/secret", "x", mode=0o600)
    assert (await fs.stat(f"{guest_dir}/secret")).mode == 0o600
    await fs.write(f"{guest_dir}/plain", "x")
    assert (await fs.stat(f"{guest_dir}/plain")).mode == 0o644
    await fs.write(f"{guest_dir}/secret", "y")
    assert (await fs.stat(f"{guest_dir}/secret")).mode == 0o600, "an existing file keeps it"
    await fs.append(f"{guest_dir}/log", "one\n")
    await fs.append(f"{guest_dir}/log", b"two\n")
    assert await fs.read_text(f"{guest_dir}/log") == "one\ntwo\n"
    with pytest.raises(InvalidConfigError):
        await fs.write(f"{guest_dir}/bad", "x", mode=0o10000)


async def test_stat_exists_and_symlinks(sandbox: Sandbox, guest_dir: str) -> None:
    fs = sandbox.fs
    await fs.write(f"{guest_dir}/file", "12345")
    meta = await fs.stat(f"{guest_dir}/file")
    assert (meta.path, meta.kind, meta.size, meta.uid, meta.gid) == (
        f"{guest_dir}/file",
        FsEntryKind.FILE,
        5,
        0,
        0,
    )
    assert meta.modified.tzinfo is not None
    assert abs(meta.modified - datetime.now(UTC)) < timedelta(minutes=5)
    assert meta.link_target is None

    await fs.symlink("file", f"{guest_dir}/link")
    link = await fs.stat(f"{guest_dir}/link")
    assert (link.kind, link.link_target) == (FsEntryKind.SYMLINK, "file")
    followed = await fs.stat(f"{guest_dir}/link", follow_symlinks=True)
    assert (followed.kind, followed.size) == (FsEntryKind.FILE, 5)
    assert await fs.read_text(f"{guest_dir}/link") == "12345"

    await fs.symlink("/nowhere", f"{guest_dir}/dangling")
    assert await fs.exists(f"{guest_dir}/file")
    assert await fs.exists(f"{guest_dir}/dangling")
    assert not await fs.exists(f"{guest_dir}/missing")
    assert not await fs.exists(f"{guest_dir}/file/below")
    assert (await fs.stat("/dev/null")).kind == FsEntryKind.OTHER


async def test_list_is_sorted_with_kinds(sandbox: Sandbox, guest_dir: str) -> None:
    fs = sandbox.fs
    for name in ("b", "a", "c"):
        await fs.write(f"{guest_dir}/{name}", name)
    await fs.mkdir(f"{guest_dir}/dir")
    await fs.symlink("a", f"{guest_dir}/link")
    entries = await fs.list(guest_dir)
    assert [(entry.name, entry.kind) for entry in entries] == [
        ("a", FsEntryKind.FILE),
        ("b", FsEntryKind.FILE),
        ("c", FsEntryKind.FILE),
        ("dir", FsEntryKind.DIRECTORY),
        ("link", FsEntryKind.SYMLINK),
    ]
    assert entries[0].path == f"{guest_dir}/a"
    assert await fs.list(f"{guest_dir}/dir") == []


async def test_mkdir_modes_and_chmod(sandbox: Sandbox, guest_dir: str) -> None:
    fs = sandbox.fs
    await fs.mkdir(f"{guest_dir}/private", mode=0o700)
    assert (await fs.stat(f"{guest_dir}/private")).mode == 0o700
    await fs.mkdir(f"{guest_dir}/a/b/c")
    assert (await fs.stat(f"{guest_dir}/a/b/c")).kind == FsEntryKind.DIRECTORY
    await fs.mkdir(f"{guest_dir}/a/b/c")  # with parents, an existing directory is fine
    with pytest.raises(FilesystemError) as exists:
        await fs.mkdir(f"{guest_dir}/a", parents=False)
    assert exists.value.errno == errno.EEXIST
    await fs.write(f"{guest_dir}/tool", "#!/bin/sh\necho ran\n")
    await fs.chmod(f"{guest_dir}/tool", 0o4751)
    assert (await fs.stat(f"{guest_dir}/tool")).mode == 0o4751
    assert (await sandbox.exec(f"{guest_dir}/tool")).stdout_text == "ran\n"


async def test_rename_copy_and_remove(sandbox: Sandbox, guest_dir: str) -> None:
    fs = sandbox.fs
    await fs.write(f"{guest_dir}/tree/top", "top", mode=0o640)
    await fs.write(f"{guest_dir}/tree/sub/inner", "inner")
    await fs.symlink("sub/inner", f"{guest_dir}/tree/link")
    await fs.chmod(f"{guest_dir}/tree/sub", 0o750)

    await fs.copy(f"{guest_dir}/tree", f"{guest_dir}/copy")
    assert await fs.read_text(f"{guest_dir}/copy/sub/inner") == "inner"
    assert (await fs.stat(f"{guest_dir}/copy/top")).mode == 0o640
    assert (await fs.stat(f"{guest_dir}/copy/sub")).mode == 0o750
    assert (await fs.stat(f"{guest_dir}/copy/link")).link_target == "sub/inner"
    await fs.copy(f"{guest_dir}/tree/top", f"{guest_dir}/top-copy")
    assert await fs.read_text(f"{guest_dir}/top-copy") == "top"

    await fs.rename(f"{guest_dir}/copy", f"{guest_dir}/moved")
    assert not await fs.exists(f"{guest_dir}/copy")
    assert await fs.read_text(f"{guest_dir}/moved/top") == "top"

    with pytest.raises(FilesystemError) as not_empty:
        await fs.remove(f"{guest_dir}/moved")
    assert not_empty.value.errno == errno.ENOTEMPTY
    await fs.remove(f"{guest_dir}/moved", recursive=True)
    assert not await fs.exists(f"{guest_dir}/moved")
    await fs.remove(f"{guest_dir}/tree/link")
    assert await fs.exists(f"{guest_dir}/tree/sub/inner"), "the link's target stays"


async def test_usage(sandbox: Sandbox) -> None:
    usage = await sandbox.fs.usage("/")
    assert usage.total_bytes > 0
    assert 0 <= usage.available_bytes <= usage.free_bytes <= usage.total_bytes
    assert usage.used_bytes == usage.total_bytes - usage.free_bytes


async def test_errors_are_typed_and_carry_the_guest_errno(sandbox: Sandbox, guest_dir: str) -> None:
    fs = sandbox.fs
    with pytest.raises(PathNotFoundError) as missing:
        await fs.read(f"{guest_dir}/missing")
    assert isinstance(missing.value, FileNotFoundError)
    assert missing.value.errno == errno.ENOENT
    with pytest.raises(FileNotFoundError):
        await fs.stat(f"{guest_dir}/missing")
    with pytest.raises(PathNotFoundError):
        await fs.write(f"{guest_dir}/no/parent", "x", create_parents=False)

    await fs.write(f"{guest_dir}/file", "x")
    await fs.mkdir(f"{guest_dir}/dir/sub")
    cases = [
        (fs.read(f"{guest_dir}/dir"), errno.EISDIR),
        (fs.write(f"{guest_dir}/dir", "x"), errno.EISDIR),
        (fs.list(f"{guest_dir}/file"), errno.ENOTDIR),
        (fs.remove(f"{guest_dir}/dir"), errno.ENOTEMPTY),
    ]
    for call, expected in cases:
        with pytest.raises(FilesystemError) as failed:
            await call
        assert failed.value.errno == expected, failed.value
        assert not isinstance(failed.value, PathNotFoundError)


async def test_one_hundred_mib_round_trip_host_guest_host(
    sandbox: Sandbox, guest_dir: str, tmp_path: Path
) -> None:
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with source.open("wb") as out:
        for _ in range(100):
            block = os.urandom(MIB)
            digest.update(block)
            out.write(block)
    source.chmod(0o640)

    await sandbox.fs.copy_from_host(source, f"{guest_dir}/big.bin")
    meta = await sandbox.fs.stat(f"{guest_dir}/big.bin")
    assert (meta.size, meta.mode) == (100 * MIB, 0o640)
    assert await guest_sha256(sandbox, f"{guest_dir}/big.bin") == digest.hexdigest()

    back = tmp_path / "back.bin"
    await sandbox.fs.copy_to_host(f"{guest_dir}/big.bin", back)
    with back.open("rb") as copied:
        assert hashlib.file_digest(copied, "sha256").hexdigest() == digest.hexdigest()
    assert stat.S_IMODE(back.stat().st_mode) == 0o640


async def test_read_stream_chunks_reassemble(sandbox: Sandbox, guest_dir: str) -> None:
    payload = os.urandom(3 * MIB + 17)
    await sandbox.fs.write(f"{guest_dir}/payload", payload)

    stream = await sandbox.fs.read_stream(f"{guest_dir}/payload", chunk_size=MIB)
    chunks = [chunk async for chunk in stream]
    assert [len(chunk) for chunk in chunks] == [MIB, MIB, MIB, 17]
    assert b"".join(chunks) == payload
    assert stream.finished

    chunks = [chunk async for chunk in await sandbox.fs.read_stream(f"{guest_dir}/payload")]
    assert b"".join(chunks) == payload
    assert len(chunks) > 1

    stream = await sandbox.fs.read_stream(f"{guest_dir}/payload")
    first = await stream.next_chunk(timeout=30)
    assert first is not None and payload.startswith(first)

    with pytest.raises(PathNotFoundError):
        await sandbox.fs.read_stream(f"{guest_dir}/missing")
    with pytest.raises(InvalidConfigError):
        await sandbox.fs.read_stream(f"{guest_dir}/payload", chunk_size=0)


async def test_write_stream_writes_and_finishes_on_leaving(
    sandbox: Sandbox, guest_dir: str
) -> None:
    parts = [os.urandom(700 * 1024), b"middle", os.urandom(MIB)]
    async with await sandbox.fs.write_stream(f"{guest_dir}/streamed", mode=0o600) as sink:
        for part in parts:
            await sink.write(part)
    assert sink.bytes_written == sum(len(part) for part in parts)
    assert await sandbox.fs.read(f"{guest_dir}/streamed") == b"".join(parts)
    assert (await sandbox.fs.stat(f"{guest_dir}/streamed")).mode == 0o600


async def test_an_exception_inside_write_stream_aborts_the_write(
    sandbox: Sandbox, guest_dir: str
) -> None:
    path = f"{guest_dir}/aborted"
    with pytest.raises(RuntimeError, match="boom"):
        async with await sandbox.fs.write_stream(path) as sink:
            await sink.write(b"first")
            raise RuntimeError("boom")
    assert sink.bytes_written is None
    # The agent stopped at the cancel: never beyond what was sent, and the file is free.
    assert await sandbox.fs.read(path) in (b"", b"first")
    with pytest.raises(InvalidConfigError):
        await sink.write(b"second")
    await sandbox.fs.write(path, "again")
    assert await sandbox.fs.read_text(path) == "again"


async def test_a_tree_copies_to_the_guest_and_back_with_modes_and_symlinks(
    sandbox: Sandbox, guest_dir: str, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    (source / "bin").mkdir(parents=True)
    (source / "bin" / "run").write_text("#!/bin/sh\necho from the host\n")
    (source / "bin" / "run").chmod(0o755)
    (source / "notes.txt").write_text("notes")
    (source / "notes.txt").chmod(0o600)
    (source / "bin").chmod(0o750)
    (source / "empty").mkdir()
    (source / "link").symlink_to("bin/run")

    await sandbox.fs.copy_from_host(source, f"{guest_dir}/app")
    ran = await sandbox.exec(f"{guest_dir}/app/link")
    assert ran.stdout_text == "from the host\n"
    assert (await sandbox.fs.stat(f"{guest_dir}/app/notes.txt")).mode == 0o600
    assert (await sandbox.fs.stat(f"{guest_dir}/app/bin")).mode == 0o750
    assert (await sandbox.fs.stat(f"{guest_dir}/app/link")).link_target == "bin/run"

    back = tmp_path / "back"
    await sandbox.fs.copy_to_host(f"{guest_dir}/app", back)
    assert sorted(os.listdir(back)) == ["bin", "empty", "link", "notes.txt"]
    assert (back / "bin" / "run").read_text() == "#!/bin/sh\necho from the host\n"
    assert stat.S_IMODE((back / "bin" / "run").stat().st_mode) == 0o755
    assert stat.S_IMODE((back / "bin").stat().st_mode) == 0o750
    assert stat.S_IMODE((back / "notes.txt").stat().st_mode) == 0o600
    assert os.readlink(back / "link") == "bin/run"
    # Again onto the same destination: files are replaced, the directory merged into.
    await sandbox.fs.write(f"{guest_dir}/app/notes.txt", "newer")
    await sandbox.fs.copy_to_host(f"{guest_dir}/app", back)
    assert (back / "notes.txt").read_text() == "newer"


async def test_guest_symlinks_never_lead_a_copy_to_host_outside_its_target(
    sandbox: Sandbox, guest_dir: str, tmp_path: Path
) -> None:
    """The guest tree has symlinks to ``/etc`` and ``../../outside``, and files written
    through them; copied to the host, the links are links and nothing outside changes."""
    outer = tmp_path / "outer"
    outer.mkdir()
    (outer / "canary").write_text("original")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "canary").write_text("original")
    host_etc = sorted(os.listdir("/etc"))

    evil = f"{guest_dir}/evil"
    await sandbox.fs.mkdir(evil)
    await sandbox.fs.symlink("/etc", f"{evil}/etc")
    await sandbox.fs.symlink("../../outside", f"{evil}/up")
    await sandbox.fs.mkdir(posixpath.join(posixpath.dirname(guest_dir), "outside"))
    await sandbox.fs.write(f"{evil}/etc/planted-by-guest", "pwned")
    await sandbox.fs.write(f"{evil}/up/canary", "pwned")
    await sandbox.fs.write(f"{evil}/plain", "plain")

    destination = outer / "dest"
    for _ in range(2):  # the second time the links exist already, and are still not followed
        await sandbox.fs.copy_to_host(evil, destination)
        assert sorted(os.listdir(destination)) == ["etc", "plain", "up"]
        assert os.readlink(destination / "etc") == "/etc"
        assert os.readlink(destination / "up") == "../../outside"
        assert (destination / "plain").read_text() == "plain"

    with pytest.raises(FilesystemError):
        await sandbox.fs.copy_to_host(f"{evil}/plain", destination / "up")
    assert sorted(os.listdir(tmp_path)) == ["outer", "outside"]
    assert sorted(os.listdir(outer)) == ["canary", "dest"]
    assert (outer / "canary").read_text() == "original"
    assert os.listdir(outside) == ["canary"]
    assert (outside / "canary").read_text() == "original"
    assert sorted(os.listdir("/etc")) == host_etc
    assert not Path("/etc/planted-by-guest").exists()

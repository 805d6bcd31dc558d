"""``copy_to_host`` against a hostile guest, played by a fake native layer: whatever names
and kinds it answers, nothing is written outside the destination."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from microsandbox_tui import FilesystemError, SandboxFs, _native


@dataclass(frozen=True)
class FakeEntry:
    """An entry as the guest answers it; ``json()`` is the runtime's record of it."""

    path: str
    kind: str
    size: int = 0
    mode: int = 0o644
    modified: int = 0
    uid: int = 0
    gid: int = 0
    link_target: str | None = None

    def json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


class FakeReader:
    def __init__(self, data: bytes) -> None:
        self._chunks = [data]

    def next_chunk(self, timeout_s: float | None = None) -> bytes | None:
        return self._chunks.pop() if self._chunks else None


class HostileGuest:
    """A guest whose directory ``/tree`` lists ``entries``; every file reads ``pwned``, and
    every directory other than ``/tree`` lists one file, ``x``."""

    def __init__(self, *entries: FakeEntry) -> None:
        self.entries = list(entries)

    def stat(self, path: str, follow: bool) -> str:
        return json.dumps(FakeEntry(path, "directory", mode=0o755).json())

    def list(self, path: str) -> str:
        entries = self.entries if path == "/tree" else [FakeEntry(f"{path}/x", "file")]
        return json.dumps([entry.json() for entry in entries])

    def open_read(self, path: str, chunk_size: int | None) -> FakeReader:
        return FakeReader(b"pwned")


def fs_of(guest: HostileGuest) -> SandboxFs:
    return SandboxFs(cast(_native.Fs, guest))


@pytest.fixture
def outer(tmp_path: Path) -> Path:
    """``tmp_path/outer`` holding a canary; copies go to ``outer/dest``."""
    outer = tmp_path / "outer"
    outer.mkdir()
    (outer / "canary").write_text("original")
    return outer


def assert_nothing_outside(tmp_path: Path, outer: Path) -> None:
    assert sorted(os.listdir(tmp_path)) == ["outer"]
    assert sorted(os.listdir(outer)) == ["canary", "dest"]
    assert (outer / "canary").read_text() == "original"
    assert not any(
        path.name == "x" for path in tmp_path.rglob("*") if outer / "dest" not in path.parents
    )


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/tree/..", "directory"),
        ("/tree/..", "file"),
        ("/tree/.", "directory"),
        ("/tree/", "file"),
        ("/tree/a/b", "file"),
        ("/tree/a/../../canary", "file"),
        ("/outer/canary", "file"),
        ("/canary", "file"),
        ("/tree/nul\0name", "file"),
    ],
)
async def test_hostile_names_are_refused(tmp_path: Path, outer: Path, path: str, kind: str) -> None:
    guest = HostileGuest(FakeEntry("/tree/fine", "file"), FakeEntry(path, kind))
    with pytest.raises(FilesystemError, match="refusing the guest's entry"):
        await fs_of(guest).copy_to_host("/tree", outer / "dest")
    assert (outer / "dest" / "fine").read_bytes() == b"pwned"
    assert sorted(os.listdir(outer / "dest")) == ["fine"]
    assert_nothing_outside(tmp_path, outer)


async def test_a_directory_named_like_an_earlier_symlink_is_not_followed(
    tmp_path: Path, outer: Path
) -> None:
    guest = HostileGuest(
        FakeEntry("/tree/link", "symlink", link_target=str(tmp_path)),
        FakeEntry("/tree/link", "directory"),
    )
    with pytest.raises(FilesystemError, match="refusing to write through 'link'"):
        await fs_of(guest).copy_to_host("/tree", outer / "dest")
    assert os.readlink(outer / "dest" / "link") == str(tmp_path)
    assert_nothing_outside(tmp_path, outer)


async def test_a_file_named_like_an_earlier_symlink_is_not_followed(
    tmp_path: Path, outer: Path
) -> None:
    guest = HostileGuest(
        FakeEntry("/tree/link", "symlink", link_target="../canary"),
        FakeEntry("/tree/link", "file"),
    )
    with pytest.raises(FilesystemError, match="refusing to write through 'link'"):
        await fs_of(guest).copy_to_host("/tree", outer / "dest")
    assert_nothing_outside(tmp_path, outer)


async def test_a_destination_that_is_a_symlink_is_not_followed(tmp_path: Path, outer: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (outer / "dest").symlink_to(elsewhere)
    with pytest.raises(FilesystemError, match="refusing to write through 'dest'"):
        await fs_of(HostileGuest(FakeEntry("/tree/f", "file"))).copy_to_host(
            "/tree", outer / "dest"
        )
    assert os.listdir(elsewhere) == []


async def test_set_id_bits_are_dropped(tmp_path: Path) -> None:
    guest = HostileGuest(FakeEntry("/tree/suid", "file", mode=0o4755))
    await fs_of(guest).copy_to_host("/tree", tmp_path / "dest")
    assert (tmp_path / "dest" / "suid").stat().st_mode & 0o7777 == 0o755


@pytest.mark.parametrize("source", ["/tree", "/tree/", "//tree", "/./tree", "/x/../tree"])
async def test_the_source_is_spelled_as_the_agent_spells_its_entries(
    tmp_path: Path, source: str
) -> None:
    guest = HostileGuest(FakeEntry("/tree/fine", "file"))
    await fs_of(guest).copy_to_host(source, tmp_path / "dest")
    assert (tmp_path / "dest" / "fine").read_bytes() == b"pwned"

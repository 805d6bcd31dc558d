"""Sandbox configuration that is refused or recorded before anything boots: disk images as the
root, the supervisor's log level, and options checked before a pull. No virtual machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from microsandbox_tui import (
    DiskImage,
    DiskImageFormat,
    Image,
    InvalidConfigError,
    LogLevel,
    Sandbox,
    Volume,
    sandbox_config,
)


@pytest.fixture
def disk_file(tmp_path: Path) -> Path:
    path = tmp_path / "root.img"
    path.write_bytes(b"\0" * 4096)
    return path


def test_a_disk_image_is_an_absolute_existing_file_with_its_format_from_the_name(
    disk_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    image = Image.disk("root.img")
    assert image == DiskImage(path=str(disk_file), format=DiskImageFormat.RAW, fstype=None)
    qcow2 = tmp_path / "root.qcow2"
    qcow2.write_bytes(b"")
    assert Image.disk(qcow2).format is DiskImageFormat.QCOW2
    assert Image.disk(qcow2, format="raw", fstype="ext4").format is DiskImageFormat.RAW


def test_a_disk_image_and_a_disk_volume_read_the_format_the_same_way(tmp_path: Path) -> None:
    qcow2 = tmp_path / "data.qcow2"
    qcow2.write_bytes(b"")
    assert Image.disk(qcow2).format is Volume.disk(qcow2).format is DiskImageFormat.QCOW2


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"path": "missing.img"}, "path"),
        ({"path": "."}, "path"),
        ({"path": "/dev/null"}, "path"),
        ({"format": "vmdk"}, "format"),
        ({"fstype": "Not A FS"}, "fstype"),
    ],
)
def test_bad_disk_images_name_the_field(
    disk_file: Path, arguments: dict[str, str], field: str
) -> None:
    values = {"path": str(disk_file), **arguments}
    with pytest.raises(InvalidConfigError, match=rf"^{field}: "):
        Image.disk(values["path"], values.get("format"), values.get("fstype"))


def test_a_disk_image_goes_to_the_runtime_as_its_kind(disk_file: Path) -> None:
    config = sandbox_config(name="on-disk", image=Image.disk(disk_file, fstype="ext4"))
    assert json.loads(config.model_dump_json())["image"] == {
        "kind": "disk",
        "path": str(disk_file),
        "format": "raw",
        "fstype": "ext4",
    }


def test_the_log_level_is_stored_in_the_config() -> None:
    assert sandbox_config(name="quiet").log_level is None
    config = sandbox_config(name="chatty", log_level="debug")
    assert config.log_level is LogLevel.DEBUG
    assert json.loads(config.model_dump_json())["log_level"] == "debug"
    with pytest.raises(InvalidConfigError, match=r"^log_level: "):
        sandbox_config(name="loud", log_level="loud")


async def test_create_refuses_bad_options_before_anything_runs() -> None:
    with pytest.raises(InvalidConfigError, match=r"^log_level: "):
        await Sandbox.create("bad", log_level="loud")
    with pytest.raises(InvalidConfigError, match=r"^cpus: "):
        await Sandbox.create("bad", image="alpine", cpus=0)


def test_create_with_progress_refuses_bad_options_before_pulling() -> None:
    with pytest.raises(InvalidConfigError, match=r"^memory_mib: "):
        Sandbox.create_with_progress("bad", image="alpine", memory=1)

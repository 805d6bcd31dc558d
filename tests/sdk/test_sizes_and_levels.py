"""``Size`` (parsing, units, whole MiB where MiB are needed) and ``LogLevel``: pure values, no
virtual machine."""

from __future__ import annotations

import pytest

from microsandbox_tui import GiB, InvalidConfigError, KiB, LogLevel, MiB, Sandbox, Size, Volume
from microsandbox_tui.types import mib_of


@pytest.mark.parametrize(
    ("text", "size_bytes"),
    [
        ("512M", 512 * MiB),
        ("512m", 512 * MiB),
        ("512MB", 512 * MiB),
        ("512MiB", 512 * MiB),
        ("1GiB", GiB),
        ("1.5G", 3 * GiB // 2),
        (" 1.5 gb ", 3 * GiB // 2),
        ("64", 64 * MiB),
        ("4096B", 4096),
        ("8k", 8 * KiB),
        ("2T", 2048 * GiB),
        ("0", 0),
    ],
)
def test_sizes_parse_with_binary_units_and_a_number_alone_is_mib(
    text: str, size_bytes: int
) -> None:
    assert Size.parse(text) == Size(size_bytes)
    assert int(Size.parse(text)) == size_bytes


@pytest.mark.parametrize("text", ["", "M", "lots", "-1M", "1e3M", "1,5G", "1.5B", "0.1M", "1X"])
def test_malformed_or_fractional_byte_sizes_are_refused(text: str) -> None:
    with pytest.raises(InvalidConfigError):
        Size.parse(text)


def test_constructors_and_text() -> None:
    assert Size.mib(512) == Size(512 * MiB)
    assert Size.gib(1.5) == Size.mib(1536)
    assert Size.kib(4) == Size(4096)
    assert Size.gib(1) > Size.mib(1000)
    assert [str(Size.gib(2)), str(Size.gib(1.5)), str(Size(1000))] == [
        "2 GiB",
        "1536 MiB",
        "1000 B",
    ]
    with pytest.raises(InvalidConfigError, match="whole number of bytes"):
        Size.mib(0.1)
    with pytest.raises(InvalidConfigError):
        Size(-1)


def test_where_mib_are_needed_an_int_is_mib_and_a_size_must_be_whole_mib() -> None:
    assert mib_of(256, "memory") == 256
    assert mib_of(Size.gib(1), "memory") == 1024
    assert mib_of("1.5G", "memory") == 1536
    with pytest.raises(InvalidConfigError, match=r"^memory: 1536 KiB is not a whole number of MiB"):
        mib_of(Size.kib(1536), "memory")
    with pytest.raises(InvalidConfigError, match=r"^quota: size 'big'"):
        mib_of("big", "quota")
    with pytest.raises(InvalidConfigError, match=r"^memory: expected a Size"):
        mib_of(True, "memory")


async def test_sandbox_memory_takes_a_size_and_names_the_field_when_it_is_not_whole_mib() -> None:
    with pytest.raises(InvalidConfigError, match=r"^memory: "):
        await Sandbox.create("sized", memory=Size(MiB + 1))


def test_a_tmpfs_size_is_a_size_or_mib() -> None:
    assert Volume.tmpfs(Size.mib(64)).size_mib == 64
    assert Volume.tmpfs(64).size_mib == 64
    assert Volume.tmpfs("1G").size_mib == 1024
    with pytest.raises(InvalidConfigError, match=r"^size_mib: "):
        Volume.tmpfs(Size.kib(512))


async def test_a_volume_quota_that_is_not_whole_mib_is_refused_before_the_runtime() -> None:
    with pytest.raises(InvalidConfigError, match=r"^quota_mib: "):
        await Volume.create("odd", Size(3 * MiB // 2))


def test_log_levels_are_the_runtime_names() -> None:
    assert [level.value for level in LogLevel] == ["trace", "debug", "info", "warn", "error"]
    assert LogLevel.parse("warn") is LogLevel.WARN
    with pytest.raises(InvalidConfigError, match="expected one of trace, debug, info, warn, error"):
        LogLevel.parse("loud")

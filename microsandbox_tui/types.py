"""Value types of the SDK: enums and frozen dataclasses, named as in the microsandbox SDK."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from typing import Self

from .errors import InvalidConfigError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
TiB = 1024 * GiB

#: Unit suffixes of :meth:`Size.parse`, lower-case. Decimal-looking ones are binary too, as
#: QEMU and Docker read ``512M`` or ``1GB``.
_SIZE_UNITS = {
    "b": 1,
    **dict.fromkeys(("k", "kb", "kib"), KiB),
    **dict.fromkeys(("m", "mb", "mib"), MiB),
    **dict.fromkeys(("g", "gb", "gib"), GiB),
    **dict.fromkeys(("t", "tb", "tib"), TiB),
}
_SIZE_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
#: Units :class:`Size` is written in, largest first.
_SIZE_NAMES = (("TiB", TiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB), ("B", 1))


class SandboxStatus(StrEnum):
    """The seed's five states, plus ``STARTING`` while the VM boots."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"
    CRASHED = "crashed"
    DRAINING = "draining"
    PAUSED = "paused"

    @property
    def is_live(self) -> bool:
        """Whether a VM (and its supervisor) exists in this state."""
        return self in (
            SandboxStatus.STARTING,
            SandboxStatus.RUNNING,
            SandboxStatus.PAUSED,
            SandboxStatus.DRAINING,
        )


class DiskImageFormat(StrEnum):
    """Format of a disk image volume (:meth:`Volume.disk`)."""

    RAW = "raw"
    QCOW2 = "qcow2"


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How a guest process ended: an exit code, or the signal that killed it."""

    code: int | None
    signal: int | None = None

    @property
    def success(self) -> bool:
        return self.code == 0

    @property
    def exit_code(self) -> int:
        """The exit code; for a process killed by signal N, ``128 + N`` as a shell reports it."""
        return self.code if self.code is not None else 128 + (self.signal or 0)


@dataclass(frozen=True, slots=True)
class ExecOutput:
    """Collected result of a command run in a sandbox."""

    stdout: bytes
    stderr: bytes
    status: ExitStatus

    @property
    def stdout_text(self) -> str:
        return self.stdout.decode("utf-8", errors="replace")

    @property
    def stderr_text(self) -> str:
        return self.stderr.decode("utf-8", errors="replace")

    @property
    def exit_code(self) -> int:
        return self.status.exit_code

    @property
    def success(self) -> bool:
        return self.status.success


class LogLevel(StrEnum):
    """How much the runtime logs, least to most severe (``MSB_LOG`` takes the same values)."""

    TRACE = "trace"
    DEBUG = "debug"
    INFO = "info"
    WARN = "warn"
    ERROR = "error"

    @classmethod
    def parse(cls, value: str) -> LogLevel:
        """``value`` as a level; :class:`InvalidConfigError` for anything else."""
        try:
            return cls(value)
        except ValueError:
            levels = ", ".join(level.value for level in cls)
            raise InvalidConfigError(f"log level {value!r}: expected one of {levels}") from None


@dataclass(frozen=True, slots=True, order=True)
class Size:
    """A memory or storage size, held in bytes: ``Size.mib(512)``, ``Size.gib(1.5)``,
    ``Size.parse("512M")``. ``int(size)`` is the byte count.

    Where the SDK takes a size (``memory=``, a volume's quota, a tmpfs size), a plain ``int``
    means MiB, as it always has, and a ``str`` is parsed with :meth:`parse`.
    """

    bytes: int

    def __post_init__(self) -> None:
        if isinstance(self.bytes, bool) or not isinstance(self.bytes, int) or self.bytes < 0:
            raise InvalidConfigError(f"a size is a whole number of bytes >= 0, not {self.bytes!r}")

    @classmethod
    def _of(cls, amount: float | str, unit: str) -> Self:
        # Fraction of a float or a decimal text is exact: Size.gib(1.5) is 1610612736 bytes.
        total = Fraction(amount) * _SIZE_UNITS[unit.lower()]
        if total.denominator != 1:
            raise InvalidConfigError(f"{amount} {unit} is not a whole number of bytes")
        return cls(int(total))

    @classmethod
    def kib(cls, amount: float) -> Self:
        return cls._of(amount, "KiB")

    @classmethod
    def mib(cls, amount: float) -> Self:
        return cls._of(amount, "MiB")

    @classmethod
    def gib(cls, amount: float) -> Self:
        return cls._of(amount, "GiB")

    @classmethod
    def parse(cls, text: str) -> Self:
        """A number, optionally with a fraction, then a unit: ``B``, ``K``/``KB``/``KiB``,
        ``M``/``MB``/``MiB``, ``G``/``GB``/``GiB`` or ``T``/``TB``/``TiB`` (any case; all of
        them powers of 1024); a number alone means MiB. Spaces may surround the unit:
        ``"512M"``, ``"1GiB"``, ``"1.5 g"``, ``"64"``. The result must be whole bytes."""
        match = _SIZE_PATTERN.match(text)
        if match is None or (match.group(2) or "MiB").lower() not in _SIZE_UNITS:
            raise InvalidConfigError(
                f"size {text!r}: expected a number and a unit such as 512M, 1GiB or 1.5G"
            )
        return cls._of(match.group(1), match.group(2) or "MiB")

    def to_mib(self) -> int:
        """The size in MiB; :class:`InvalidConfigError` unless it is a whole number of them."""
        mib, rest = divmod(self.bytes, MiB)
        if rest:
            raise InvalidConfigError(f"{self} is not a whole number of MiB")
        return mib

    def __int__(self) -> int:
        return self.bytes

    def __str__(self) -> str:
        """In the largest unit that holds it exactly: ``1536 MiB``, ``2 GiB``, ``1000 B``."""
        name, unit = next((name, unit) for name, unit in _SIZE_NAMES if self.bytes % unit == 0)
        return f"{self.bytes // unit} {name}"


#: What the SDK takes where it needs a size: a :class:`Size`, whole MiB as an ``int``, or a
#: text for :meth:`Size.parse`.
SizeLike = Size | int | str


def mib_of(value: SizeLike, field: str) -> int:
    """``value`` in whole MiB; :class:`InvalidConfigError` naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, Size | int | str):
        raise InvalidConfigError(f"{field}: expected a Size, an int (MiB) or a text, not {value!r}")
    if isinstance(value, int):
        return value
    try:
        return (Size.parse(value) if isinstance(value, str) else value).to_mib()
    except InvalidConfigError as error:
        raise InvalidConfigError(f"{field}: {error}") from None

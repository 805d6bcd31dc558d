"""Value types of the SDK: enums and frozen dataclasses, named as in the microsandbox SDK."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


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

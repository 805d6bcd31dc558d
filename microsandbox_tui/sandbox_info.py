"""A sandbox's record in the runtime's database (:class:`SandboxInfo`), and reading it.

Apart from :mod:`.sandbox` because more than the lifecycle API reads it: following a log
ends when the sandbox's record says it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _native
from ._blocking import run_blocking
from ._wire import Timestamp, decode, record
from .config import BindImage, DiskImage, OciImage, SandboxConfig
from .types import SandboxStatus
from .validation import STORED_CONFIG


@record
@dataclass(frozen=True, slots=True)
class NetworkInfo:
    """A sandbox's addresses on its own link: the guest's, and the gateway's (which also
    answers DNS and is what ``host_alias`` names in the guest)."""

    guest_address: str
    gateway: str
    prefix_len: int
    host_alias: str


@record
@dataclass(frozen=True, slots=True)
class SandboxInfo:
    """A sandbox as the runtime's database records it (its ``config`` is decoded as a stored
    one: host files it named may be gone since)."""

    name: str
    status: SandboxStatus
    config: SandboxConfig
    detached: bool
    created_at: Timestamp
    started_at: Timestamp | None
    stopped_at: Timestamp | None
    accelerator: str | None
    boot_ms: int | None
    exit_reason: str | None
    #: Processes of a live sandbox: its supervisor and its VM (QEMU).
    supervisor_pid: int | None = None
    vmm_pid: int | None = None
    #: ``None`` for a sandbox that has no network interface (or none assigned yet).
    network: NetworkInfo | None = None

    @property
    def image(self) -> str:
        source = self.config.image
        if isinstance(source, BindImage | DiskImage):
            return source.path
        return source.reference if isinstance(source, OciImage) else source.name


def decode_sandbox_info(text: str) -> SandboxInfo:
    """A SandboxInfo record of the runtime (the sandbox's config decoded as a stored one)."""
    return decode(SandboxInfo, text, context=STORED_CONFIG)


async def sandbox_info(name: str) -> SandboxInfo:
    """Raises :class:`SandboxNotFoundError` for an unknown sandbox."""
    return decode_sandbox_info(await run_blocking(_native.get_sandbox, name))


async def sandbox_infos() -> list[SandboxInfo]:
    text = await run_blocking(_native.list_sandboxes)
    return decode(list[SandboxInfo], text, context=STORED_CONFIG)


async def sandboxes_version() -> int:
    """A number that changes whenever any sandbox is created, removed or changed (status,
    config); reading it costs one database read however many sandboxes there are."""
    return await run_blocking(_native.sandboxes_version)

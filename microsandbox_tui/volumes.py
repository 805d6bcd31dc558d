"""Volumes: what a sandbox mounts (``Volume.named``, ``.bind``, ``.tmpfs``, ``.disk``), and
named volumes with quotas (``Volume.create``, ``.get``, ``.list``, ``.remove``).

A named volume is an ext4 image file of exactly its quota's size in the runtime home; the
guest's file system enforces the quota (writing past it fails with "No space left on device"
in the guest, and the host file never grows).
"""

from __future__ import annotations

import builtins
import os
from dataclasses import dataclass

from . import _native
from ._blocking import run_blocking
from ._wire import Timestamp, decode, record
from .config import BindMount, DiskMount, NamedMount, TmpfsMount
from .types import DiskImageFormat, SizeLike, mib_of
from .validation import validated

__all__ = ["DiskImageFormat", "Volume", "VolumeHandle"]


@record
@dataclass(frozen=True, slots=True)
class VolumeHandle:
    """A named volume as the runtime records it."""

    name: str
    quota_mib: int
    #: Bytes the guest stored in it. Read from the file system on the host: as of the guest's
    #: last sync or unmount of the volume (always current once its sandboxes stopped).
    used_bytes: int
    created_at: Timestamp
    #: Sandboxes, in any state, whose config mounts the volume.
    in_use_by: tuple[str, ...]
    #: The volume's image file on the host.
    path: str


class Volume:
    """Factories of volume mounts for ``Sandbox.create(volumes={guest_path: ...})``, and the
    named volumes of the runtime."""

    @staticmethod
    def named(name: str, readonly: bool = False) -> NamedMount:
        """A named volume: read-write by one running sandbox at a time, or read-only by any
        number while none has it read-write."""
        return validated(NamedMount, name=name, readonly=readonly)

    @staticmethod
    def bind(host_path: str | os.PathLike[str], readonly: bool = False) -> BindMount:
        """A live host directory; changes show on both sides. Read-only is enforced on the
        host, so the guest cannot write even if it remounts."""
        return validated(BindMount, path=os.fspath(host_path), readonly=readonly)

    @staticmethod
    def tmpfs(size_mib: SizeLike | None = None, readonly: bool = False) -> TmpfsMount:
        """A fresh tmpfs in guest memory, of at most ``size_mib`` (MiB, or a :class:`Size`);
        without it, the guest kernel's default (half the guest's memory)."""
        size = None if size_mib is None else mib_of(size_mib, "size_mib")
        return validated(TmpfsMount, size_mib=size, readonly=readonly)

    @staticmethod
    def disk(
        path: str | os.PathLike[str],
        format: DiskImageFormat | str | None = None,
        fstype: str | None = None,
        readonly: bool = False,
    ) -> DiskMount:
        """A host disk image file. ``format`` defaults to the extension's (``.qcow2``, else
        raw); ``fstype`` is the file system the guest mounts, detected when omitted."""
        return validated(
            DiskMount, path=os.fspath(path), format=format, fstype=fstype, readonly=readonly
        )

    @staticmethod
    async def create(name: str, quota_mib: SizeLike) -> VolumeHandle:
        """Creates an empty named volume of ``quota_mib`` (MiB, or a :class:`Size` of whole
        MiB). Raises :class:`VolumeAlreadyExistsError`, or :class:`InvalidConfigError` for a
        bad name or quota."""
        quota = mib_of(quota_mib, "quota_mib")
        created = await run_blocking(_native.create_volume, name, quota)
        return decode(VolumeHandle, created)

    @staticmethod
    async def get(name: str) -> VolumeHandle:
        """Raises :class:`VolumeNotFoundError` for an unknown volume."""
        return decode(VolumeHandle, await run_blocking(_native.get_volume, name))

    @staticmethod
    async def list() -> builtins.list[VolumeHandle]:
        return decode(builtins.list[VolumeHandle], await run_blocking(_native.list_volumes))

    @staticmethod
    async def remove(name: str) -> None:
        """Deletes the volume and its data. Raises :class:`VolumeInUseError` while any
        sandbox's config mounts it, :class:`VolumeNotFoundError` for an unknown one."""
        await run_blocking(_native.remove_volume, name)

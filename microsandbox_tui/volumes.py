"""Volumes: what a sandbox mounts (``Volume.named``, ``.bind``, ``.tmpfs``, ``.disk``), and
named volumes with quotas (``Volume.create``, ``.get``, ``.list``, ``.remove``).

A named volume is an ext4 image file of exactly its quota's size in the runtime home; the
guest's file system enforces the quota (writing past it fails with "No space left on device"
in the guest, and the host file never grows).
"""

from __future__ import annotations

import builtins
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import _native
from ._blocking import run_blocking
from .config import BindMount, DiskMount, NamedMount, TmpfsMount, validated
from .types import DiskImageFormat

__all__ = ["DiskImageFormat", "Volume", "VolumeHandle"]


@dataclass(frozen=True, slots=True)
class VolumeHandle:
    """A named volume as the runtime records it."""

    name: str
    quota_mib: int
    #: Bytes the guest stored in it. Read from the file system on the host: as of the guest's
    #: last sync or unmount of the volume (always current once its sandboxes stopped).
    used_bytes: int
    created_at: datetime
    #: Sandboxes, in any state, whose config mounts the volume.
    in_use_by: tuple[str, ...]
    #: The volume's image file on the host.
    path: str

    @staticmethod
    def _from_record(record: dict[str, Any]) -> VolumeHandle:
        return VolumeHandle(
            name=record["name"],
            quota_mib=record["quota_mib"],
            used_bytes=record["used_bytes"],
            created_at=datetime.fromtimestamp(record["created_at_ms"] / 1000, tz=UTC),
            in_use_by=tuple(record["in_use_by"]),
            path=record["path"],
        )


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
    def tmpfs(size_mib: int | None = None, readonly: bool = False) -> TmpfsMount:
        """A fresh tmpfs in guest memory, of at most ``size_mib``."""
        return validated(TmpfsMount, size_mib=size_mib, readonly=readonly)

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
    async def create(name: str, quota_mib: int) -> VolumeHandle:
        """Creates an empty named volume of ``quota_mib`` MiB. Raises
        :class:`VolumeAlreadyExistsError`, or :class:`InvalidConfigError` for a bad name or
        quota."""
        record = await run_blocking(_native.create_volume, name, quota_mib)
        return VolumeHandle._from_record(json.loads(record))

    @staticmethod
    async def get(name: str) -> VolumeHandle:
        """Raises :class:`VolumeNotFoundError` for an unknown volume."""
        return VolumeHandle._from_record(json.loads(await run_blocking(_native.get_volume, name)))

    @staticmethod
    async def list() -> builtins.list[VolumeHandle]:
        records = json.loads(await run_blocking(_native.list_volumes))
        return [VolumeHandle._from_record(record) for record in records]

    @staticmethod
    async def remove(name: str) -> None:
        """Deletes the volume and its data. Raises :class:`VolumeInUseError` while any
        sandbox's config mounts it, :class:`VolumeNotFoundError` for an unknown one."""
        await run_blocking(_native.remove_volume, name)

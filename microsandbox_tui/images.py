"""Local images the runtime can boot."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from . import _native
from ._blocking import run_blocking


@dataclass(frozen=True, slots=True)
class ImageInfo:
    name: str
    kind: str
    size_bytes: int
    created_at: datetime


async def list_images() -> list[ImageInfo]:
    infos = await run_blocking(_native.list_images)
    return [
        ImageInfo(
            name=info.name,
            kind=info.kind,
            size_bytes=info.size_bytes,
            created_at=datetime.fromtimestamp(info.created_at_ms / 1000, tz=UTC),
        )
        for info in infos
    ]

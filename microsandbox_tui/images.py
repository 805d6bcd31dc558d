"""The local image store: the built-in default image and pulled OCI images.

Pulled layers are cached by digest and shared between images; removing an image drops the
layers no other image uses, and ``prune_images()`` clears whatever the cache holds that no
image refers to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import _native
from ._blocking import run_blocking
from .config import ImageDefaults, OciImage
from .errors import ImageNotFoundError
from .pull import PullPolicy, RegistryAuth, pull_stream


def _from_ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class ImageLayer:
    digest: str
    diff_id: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class ImageInfo:
    name: str
    #: ``ext4`` (the built-in image) or ``oci``.
    kind: str
    size_bytes: int
    created_at: datetime
    digest: str = ""
    layer_count: int = 1
    last_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ImageDetail:
    """Everything the store knows about one image."""

    info: ImageInfo
    layers: tuple[ImageLayer, ...]
    defaults: ImageDefaults


def _info(record: dict[str, Any]) -> ImageInfo:
    return ImageInfo(
        name=record["name"],
        kind=record["kind"],
        size_bytes=record["size_bytes"],
        created_at=_from_ms(record["created_at_ms"]) or datetime.now(UTC),
        digest=record["digest"],
        layer_count=max(len(record["layers"]), 1),
        last_used_at=_from_ms(record["last_used_at_ms"]),
    )


def _detail(record: dict[str, Any]) -> ImageDetail:
    config = record.get("config") or {}
    defaults = ImageDefaults(
        env=dict(item.split("=", 1) for item in config.get("env", []) if "=" in item),
        entrypoint=config.get("entrypoint", []),
        cmd=config.get("cmd", []),
        workdir=config.get("working_dir") or None,
        user=config.get("user") or None,
    )
    layers = tuple(
        ImageLayer(layer["digest"], layer["diff_id"], layer["size_bytes"])
        for layer in record["layers"]
    )
    return ImageDetail(_info(record), layers, defaults)


async def list_images() -> list[ImageInfo]:
    records = json.loads(await run_blocking(_native.list_images))
    return [_info(record) for record in records]


async def inspect_image(name: str) -> ImageDetail:
    """Raises :class:`ImageNotFoundError` for an image that is not in the store."""
    return _detail(json.loads(await run_blocking(_native.inspect_image, name)))


async def remove_image(name: str) -> None:
    """Removes the image and the cached layers only it used. Raises
    :class:`ImageInUseError` while a sandbox (running or not) uses it."""
    await run_blocking(_native.remove_image, name)


async def prune_images() -> int:
    """Removes cached blobs and layers no image refers to; returns the bytes freed."""
    return await run_blocking(_native.prune_images)


async def _local_image(name: str) -> ImageDetail | None:
    try:
        return await inspect_image(name)
    except ImageNotFoundError:
        return None


async def pull_plan(image: OciImage) -> tuple[str, ImageDetail | None]:
    """The store name of ``image``, and the local image unless its policy wants a pull now.
    Raises :class:`ImageNotFoundError` for a missing image whose policy is ``NEVER``."""
    name = await run_blocking(_native.canonical_reference, image.reference)
    local = None if image.pull_policy is PullPolicy.ALWAYS else await _local_image(name)
    if local is None and image.pull_policy is PullPolicy.NEVER:
        raise ImageNotFoundError(
            f"no image named {name!r} in the local store, and the pull policy is never"
        )
    return name, local


async def resolve_oci_image(image: OciImage, auth: RegistryAuth | None = None) -> ImageDetail:
    """``image`` in the local store, pulled first if its policy says so."""
    name, local = await pull_plan(image)
    if local is not None:
        return local
    pulled = await pull_stream(name, insecure=image.insecure, auth=auth).result()
    return await inspect_image(pulled)

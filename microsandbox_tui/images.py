"""The local image store: the built-in default image and pulled OCI images.

Pulled layers are cached by digest and shared between images; removing an image drops the
layers no other image uses, and ``prune_images()`` clears whatever the cache holds that no
image refers to.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from . import _native
from ._blocking import run_blocking
from ._wire import Timestamp, decode, record
from .config import ImageDefaults, OciImage
from .errors import ImageNotFoundError
from .pull import PullPolicy, RegistryAuth, pull_stream


@record
@dataclass(frozen=True, slots=True)
class ImageLayer:
    digest: str
    diff_id: str
    size_bytes: int


def _layer_count(layers: Any) -> Any:
    """How many layers an image record lists; a non-OCI image is one layer of its own."""
    return max(len(layers), 1) if isinstance(layers, list) else layers


def _no_config_as_defaults(config: Any) -> Any:
    """A non-OCI image has no config (``null``): nothing to apply to execs."""
    return {} if config is None else config


@record
@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An image of the local store, as :func:`list_images` lists it."""

    name: str
    #: ``ext4`` (the built-in image) or ``oci``.
    kind: str
    size_bytes: int
    created_at: Timestamp
    digest: str = ""
    layer_count: Annotated[int, Field(validation_alias="layers"), BeforeValidator(_layer_count)] = 1
    last_used_at: Timestamp | None = None


@dataclass(frozen=True, slots=True)
class ImageDetail(ImageInfo):
    """Everything the store knows about one image: its summary, its layers (bottom first)
    and what its config says about running it."""

    layers: tuple[ImageLayer, ...] = field(default=(), kw_only=True)
    defaults: Annotated[
        ImageDefaults, Field(validation_alias="config"), BeforeValidator(_no_config_as_defaults)
    ] = field(default_factory=ImageDefaults, kw_only=True)

    @property
    def info(self) -> ImageInfo:
        """The summary alone, as :func:`list_images` has it."""
        summary = {item.name: getattr(self, item.name) for item in dataclasses.fields(ImageInfo)}
        return ImageInfo(**summary)


async def list_images() -> list[ImageInfo]:
    # Each record of the listing is a whole image: decoded as such, returned as summaries.
    images = decode(list[ImageDetail], await run_blocking(_native.list_images))
    return [image.info for image in images]


async def inspect_image(name: str) -> ImageDetail:
    """Raises :class:`ImageNotFoundError` for an image that is not in the store."""
    return decode(ImageDetail, await run_blocking(_native.inspect_image, name))


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

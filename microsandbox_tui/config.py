"""Validated, user-facing sandbox configuration.

Validation happens here, once, before anything touches the disk or the database; the native
runtime receives the validated model as JSON.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from .fs import MAX_MODE
from .network import Network
from .pull import PullPolicy
from .secrets import SecretConfig, check_unique
from .types import DiskImageFormat, LogLevel
from .validation import Frozen, HostDirectory, HostFile, absolute_host_path, validated

#: The image a sandbox gets when none is given; built locally by ``install()``.
DEFAULT_IMAGE = "msb-base"
DEFAULT_CPUS = 1
DEFAULT_MEMORY_MIB = 512
MAX_NAME_LENGTH = 63
MIN_MEMORY_MIB = 64
MAX_MEMORY_MIB = 64 * 1024
MAX_CPUS = 64

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _DiskFile(Frozen):
    """A host disk image file: its format and the file system in it."""

    format: DiskImageFormat
    fstype: str | None = Field(default=None, max_length=32, pattern=r"^[a-z0-9][a-z0-9._-]*$")

    @model_validator(mode="before")
    @classmethod
    def _format_from_name(cls, values: Any) -> Any:
        """No format given: ``.qcow2`` files are qcow2, anything else raw."""
        if isinstance(values, dict) and values.get("format") is None and "path" in values:
            qcow2 = str(values["path"]).endswith(".qcow2")
            values = {**values, "format": DiskImageFormat.QCOW2 if qcow2 else DiskImageFormat.RAW}
        return values


class DiskImage(_DiskFile):
    """A host disk image file as the read-only lower layer of the root file system; the
    sandbox writes to its own upper, so the file itself is never written."""

    kind: Literal["disk"] = "disk"
    path: HostFile


class BindImage(Frozen):
    """A host directory used, live, as the guest's root filesystem (shared via virtio-fs)."""

    kind: Literal["bind"] = "bind"
    path: str

    @field_validator("path")
    @classmethod
    def _absolute_existing_directory(cls, value: str) -> str:
        path = Path(value).expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"{value!r} is not a directory")
        return str(path)


class LocalImage(Frozen):
    """An image in the runtime's local image store, by name."""

    kind: Literal["local"] = "local"
    name: str = Field(min_length=1, max_length=255)


class OciImage(Frozen):
    """An OCI image from a registry, by reference (``alpine``, ``python:3.12``,
    ``ghcr.io/org/app@sha256:...``), pulled into the local store as the policy says."""

    kind: Literal["oci"] = "oci"
    reference: str = Field(min_length=1, max_length=1024)
    pull_policy: PullPolicy = PullPolicy.IF_MISSING
    #: Plain HTTP to the registry (a local test registry); never implied.
    insecure: bool = False


def _env_from_list(value: Any) -> Any:
    """An image config's ``["K=V", ...]`` as a mapping (a stored config has one already)."""
    if isinstance(value, list):
        return dict(item.split("=", 1) for item in value if isinstance(item, str) and "=" in item)
    return value


class ImageDefaults(Frozen):
    """What an OCI image's config says about running it, applied to every exec unless the
    sandbox or the exec says otherwise.

    Read from the image's config as the runtime reports it (``env`` as ``K=V`` texts,
    ``working_dir``) and stored with the sandbox in this model's own spelling.
    """

    model_config = ConfigDict(validate_by_name=True)

    env: Annotated[dict[str, str], BeforeValidator(_env_from_list)] = Field(default_factory=dict)
    entrypoint: list[str] = Field(default_factory=list)
    cmd: list[str] = Field(default_factory=list)
    workdir: str | None = Field(default=None, validation_alias="working_dir")
    user: str | None = None

    @property
    def command(self) -> list[str]:
        """The image's default command: entrypoint followed by cmd."""
        return [*self.entrypoint, *self.cmd]


ImageSource = Annotated[BindImage | LocalImage | OciImage | DiskImage, Field(discriminator="kind")]


class Image:
    """Factories for explicit root filesystem sources."""

    @staticmethod
    def bind(path: str | os.PathLike[str]) -> BindImage:
        """Use a host directory as the root filesystem. Changes on either side are live."""
        return validated(BindImage, path=os.fspath(path))

    @staticmethod
    def local(name: str) -> LocalImage:
        """Use an image from the local image store by name."""
        return validated(LocalImage, name=name)

    @staticmethod
    def oci(
        reference: str,
        *,
        pull_policy: PullPolicy = PullPolicy.IF_MISSING,
        insecure: bool = False,
    ) -> OciImage:
        """Use an OCI image from a registry; ``insecure`` allows plain HTTP."""
        return validated(OciImage, reference=reference, pull_policy=pull_policy, insecure=insecure)

    @staticmethod
    def disk(
        path: str | os.PathLike[str],
        format: DiskImageFormat | str | None = None,
        fstype: str | None = None,
    ) -> DiskImage:
        """Use a host disk image file (an existing regular file) as the read-only base of the
        root file system; the sandbox's writes go to its own upper layer. ``format`` defaults
        to the extension's (``.qcow2``, else raw); ``fstype`` is the file system in it,
        detected by the guest when omitted."""
        return validated(DiskImage, path=os.fspath(path), format=format, fstype=fstype)


UserImage = str | os.PathLike[str] | BindImage | LocalImage | OciImage | DiskImage


def image_from_user(image: UserImage | None) -> ImageSource:
    """Interprets the ``image=`` argument: a path string (absolute or ``./``) is a bind root,
    ``msb-base`` the built-in default image, any other string an OCI reference."""
    if image is None:
        return LocalImage(name=DEFAULT_IMAGE)
    if isinstance(image, BindImage | LocalImage | OciImage | DiskImage):
        return image
    text = os.fspath(image)
    if text.startswith(("/", "./", "../", "~")) or isinstance(image, os.PathLike):
        return Image.bind(text)
    if text == DEFAULT_IMAGE:
        return Image.local(text)
    return Image.oci(text)


def _absolute_guest_path(value: str) -> str:
    if not value.startswith("/") or "\0" in value:
        raise ValueError(f"must be an absolute guest path, got {value!r}")
    return value


class NamedMount(Frozen):
    """A named volume (:meth:`Volume.create`), mounted read-write by one running sandbox at a
    time or read-only by any number."""

    kind: Literal["named"] = "named"
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=_NAME_PATTERN.pattern)
    readonly: bool = False


class BindMount(Frozen):
    """A live host directory (virtio-fs). Read-only is enforced on the host."""

    kind: Literal["bind"] = "bind"
    #: Made absolute here; whether it is a directory is checked when the sandbox starts.
    path: str
    readonly: bool = False

    _absolute = field_validator("path")(absolute_host_path)


class TmpfsMount(Frozen):
    """A fresh, empty tmpfs in guest memory of at most ``size_mib`` (default: the guest
    kernel's, half its RAM)."""

    kind: Literal["tmpfs"] = "tmpfs"
    size_mib: int | None = Field(default=None, ge=1)
    readonly: bool = False


class DiskMount(_DiskFile):
    """A host disk image file attached as a virtio-blk disk. ``format`` defaults to what the
    file name says (``.qcow2``, else raw); ``fstype`` ``None`` lets the guest detect it."""

    kind: Literal["disk"] = "disk"
    #: Made absolute here; whether it exists is checked when the sandbox starts.
    path: str
    readonly: bool = False

    _absolute = field_validator("path")(absolute_host_path)


MountConfig = Annotated[
    NamedMount | BindMount | TmpfsMount | DiskMount, Field(discriminator="kind")
]


def _guest_path(path: str) -> str:
    """``path`` normalized; it must be absolute and not ``/``."""
    normalized = "/" + posixpath.normpath(_absolute_guest_path(path)).lstrip("/")
    if normalized == "/":
        raise ValueError("a volume cannot be mounted at /")
    return normalized


# -- rootfs patches (applied by microsandbox_tui.patches) ------------------------------------

GuestPath = Annotated[str, AfterValidator(_absolute_guest_path)]
Mode = Annotated[int, Field(ge=0, le=MAX_MODE)]


class TextPatch(Frozen):
    """Writes a guest file with ``content``, replacing what was there."""

    kind: Literal["text"] = "text"
    path: GuestPath
    content: str
    mode: Mode | None = None


class MkdirPatch(Frozen):
    """Creates a guest directory and its missing parents."""

    kind: Literal["mkdir"] = "mkdir"
    path: GuestPath
    mode: Mode | None = None


class CopyFilePatch(Frozen):
    """Copies a host file into the guest (with its mode, unless ``mode`` is given)."""

    kind: Literal["copy_file"] = "copy_file"
    src: HostFile
    dst: GuestPath
    mode: Mode | None = None


class CopyDirPatch(Frozen):
    """Copies a host directory tree into the guest, keeping modes and symlinks."""

    kind: Literal["copy_dir"] = "copy_dir"
    src: HostDirectory
    dst: GuestPath


class AppendPatch(Frozen):
    """Appends ``content`` to a guest file (an image's file too), creating it if missing."""

    kind: Literal["append"] = "append"
    path: GuestPath
    content: str


class SymlinkPatch(Frozen):
    """Creates the guest symlink ``link`` pointing to ``target``."""

    kind: Literal["symlink"] = "symlink"
    target: str = Field(min_length=1, pattern=r"^[^\x00]*$")
    link: GuestPath


class RemovePatch(Frozen):
    """Removes a guest path (a whole tree for a directory), an image's file too."""

    kind: Literal["remove"] = "remove"
    path: GuestPath


PatchConfig = Annotated[
    TextPatch
    | MkdirPatch
    | CopyFilePatch
    | CopyDirPatch
    | AppendPatch
    | SymlinkPatch
    | RemovePatch,
    Field(discriminator="kind"),
]


class SandboxConfig(Frozen):
    """Everything needed to (re)start a sandbox. Stored with the sandbox in the database."""

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)
    image: ImageSource = Field(default_factory=lambda: LocalImage(name=DEFAULT_IMAGE))
    cpus: int = Field(default=DEFAULT_CPUS, ge=1, le=MAX_CPUS)
    memory_mib: int = Field(default=DEFAULT_MEMORY_MIB, ge=MIN_MEMORY_MIB, le=MAX_MEMORY_MIB)
    env: dict[str, str] = Field(default_factory=dict)
    workdir: str | None = None
    #: Filled in from the image's config when the sandbox is created from an OCI image.
    image_defaults: ImageDefaults = Field(default_factory=ImageDefaults)
    #: Guest path → what is mounted there.
    volumes: dict[str, MountConfig] = Field(default_factory=dict)
    #: Applied in order when the sandbox is created (see :mod:`microsandbox_tui.patches`).
    patches: list[PatchConfig] = Field(default_factory=list)
    #: How much the sandbox's supervisor logs (to its ``supervisor.log``); ``None``: as much
    #: as the process that starts it.
    log_level: LogLevel | None = None
    #: Its policy, DNS settings and published ports (default: public internet only).
    network: Network = Field(default_factory=Network)
    #: Secrets whose placeholders the guest's environment holds (values are never stored).
    secrets: tuple[SecretConfig, ...] = ()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _NAME_PATTERN.match(value):
            raise ValueError(
                "must start with a letter or digit and contain only letters, digits, '_', '.', '-'"
            )
        return value

    @field_validator("network", mode="before")
    @classmethod
    def _default_network(cls, value: object) -> object:
        """``null``, like an absent network, is the default one."""
        return Network() if value is None else value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"invalid environment variable name {key!r}")
        return value

    @field_validator("secrets")
    @classmethod
    def _distinct_secrets(cls, value: tuple[SecretConfig, ...]) -> tuple[SecretConfig, ...]:
        check_unique(value)
        return value

    @field_validator("volumes")
    @classmethod
    def _normalized_guest_paths(cls, value: dict[str, MountConfig]) -> dict[str, MountConfig]:
        volumes: dict[str, MountConfig] = {}
        for path, mount in value.items():
            guest = _guest_path(path)
            if guest in volumes:
                raise ValueError(f"two volumes are mounted at {guest}")
            volumes[guest] = mount
        return volumes


def sandbox_config(**values: object) -> SandboxConfig:
    """Builds a :class:`SandboxConfig`, raising :class:`InvalidConfigError` on bad input."""
    return validated(SandboxConfig, **values)

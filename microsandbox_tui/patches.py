"""Rootfs patches: files, directories and links put into a new sandbox's root filesystem
before any command runs in it.

``Sandbox.create(..., patches=[...])`` applies them in order right after the VM booted and
before ``create`` returns, so no command ever sees the unpatched root. They are applied once,
at creation; the sandbox's writable upper layer keeps them across restarts.

They go through the guest agent rather than being written into the upper image on the host:
that way there is one implementation of file semantics (an append or a remove sees the merged
image, and the overlay's whiteouts come for free), and it works for every kind of root (an
image with its upper disk, a bind-mounted host directory, ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .config import (
    AppendPatch,
    CopyDirPatch,
    CopyFilePatch,
    MkdirPatch,
    PatchConfig,
    RemovePatch,
    SymlinkPatch,
    TextPatch,
)
from .errors import MicrosandboxError, PatchFailedError
from .fs import SandboxFs
from .validation import validated

__all__ = ["Patch", "PatchConfig", "apply_patches"]


class Patch:
    """Factories of :data:`PatchConfig` values. Guest paths must be absolute; host sources
    must exist (both raise :class:`InvalidConfigError`)."""

    @staticmethod
    def text(path: str, content: str, mode: int | None = None) -> TextPatch:
        """Writes ``content`` to the guest file ``path``, replacing it."""
        return validated(TextPatch, path=path, content=content, mode=mode)

    @staticmethod
    def mkdir(path: str, mode: int | None = None) -> MkdirPatch:
        """Creates the directory ``path`` and its missing parents."""
        return validated(MkdirPatch, path=path, mode=mode)

    @staticmethod
    def copy_file(
        host_src: str | os.PathLike[str], guest_dst: str, mode: int | None = None
    ) -> CopyFilePatch:
        """Copies a host file to ``guest_dst``, with its mode unless ``mode`` is given."""
        return validated(CopyFilePatch, src=os.fspath(host_src), dst=guest_dst, mode=mode)

    @staticmethod
    def copy_dir(host_src: str | os.PathLike[str], guest_dst: str) -> CopyDirPatch:
        """Copies a host directory tree to ``guest_dst``, keeping modes and symlinks."""
        return validated(CopyDirPatch, src=os.fspath(host_src), dst=guest_dst)

    @staticmethod
    def append(path: str, content: str) -> AppendPatch:
        """Appends ``content`` to the guest file ``path`` (an image's file too)."""
        return validated(AppendPatch, path=path, content=content)

    @staticmethod
    def symlink(target: str, link: str) -> SymlinkPatch:
        """Creates the symlink ``link`` pointing to ``target``."""
        return validated(SymlinkPatch, target=target, link=link)

    @staticmethod
    def remove(path: str) -> RemovePatch:
        """Removes ``path`` (a whole tree for a directory)."""
        return validated(RemovePatch, path=path)


async def apply_patches(fs: SandboxFs, patches: Sequence[PatchConfig]) -> None:
    """Applies ``patches`` in order; the first failure raises :class:`PatchFailedError`."""
    for index, patch in enumerate(patches):
        try:
            await _apply(fs, patch)
        except (MicrosandboxError, OSError) as error:
            raise PatchFailedError(
                f"patch {index} ({patch.kind} {_guest_path(patch)}) failed: {error}"
            ) from error


async def _apply(fs: SandboxFs, patch: PatchConfig) -> None:
    match patch:
        case TextPatch():
            await fs.write(patch.path, patch.content, mode=patch.mode)
        case MkdirPatch():
            await fs.mkdir(patch.path)
            await _set_mode(fs, patch.path, patch.mode)
        case CopyFilePatch():
            await fs.copy_from_host(patch.src, patch.dst)
            await _set_mode(fs, patch.dst, patch.mode)
        case CopyDirPatch():
            await fs.copy_from_host(patch.src, patch.dst)
        case AppendPatch():
            await fs.append(patch.path, patch.content)
        case SymlinkPatch():
            await fs.symlink(patch.target, patch.link)
        case RemovePatch():
            await fs.remove(patch.path, recursive=True)


async def _set_mode(fs: SandboxFs, path: str, mode: int | None) -> None:
    # Also when the directory or file existed before: it would keep its old mode otherwise.
    if mode is not None:
        await fs.chmod(path, mode)


def _guest_path(patch: PatchConfig) -> str:
    match patch:
        case CopyFilePatch() | CopyDirPatch():
            return patch.dst
        case SymlinkPatch():
            return patch.link
        case TextPatch() | MkdirPatch() | AppendPatch() | RemovePatch():
            return patch.path

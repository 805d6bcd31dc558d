"""The guest's files: ``sandbox.fs``.

Every operation is a request to the guest agent over the sandbox's connection; paths are
absolute guest paths. Failures raise :class:`PathNotFoundError` (also a
``FileNotFoundError``) or :class:`FilesystemError` carrying the guest's ``errno``.

Copies to the host treat the guest as hostile: its names and symlinks may try to lead outside
the destination, so nothing is written except below the given host path (see
:meth:`SandboxFs.copy_to_host`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import stat
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Self, overload

from . import _native
from ._blocking import run_blocking
from ._wire import Timestamp, decode, record
from .errors import FilesystemError, InvalidConfigError, PathNotFoundError

#: Largest permission value: the permission bits with the set-id and sticky bits.
MAX_MODE = 0o7777
#: Bytes read from a host file per write to the guest (the runtime splits them into frames).
HOST_CHUNK = 1 << 20
#: Flags of a file written on the host: a symlink in its place is refused, never followed.
_HOST_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_HOST_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class FsEntryKind(StrEnum):
    FILE = "file"
    DIRECTORY = "directory"
    SYMLINK = "symlink"
    #: Devices, FIFOs and sockets.
    OTHER = "other"


@record
@dataclass(frozen=True, slots=True)
class FsEntry:
    """A guest path's metadata, as :meth:`SandboxFs.list` and :meth:`SandboxFs.stat` report
    it."""

    path: str
    kind: FsEntryKind
    size: int
    #: Permission bits with the set-id and sticky bits (``st_mode & 0o7777``).
    mode: int
    modified: Timestamp
    uid: int
    gid: int
    #: Where a symlink points; ``None`` for anything else.
    link_target: str | None

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)


#: What :meth:`SandboxFs.stat` returns: the same facts as a directory entry.
FsMetadata = FsEntry


@dataclass(frozen=True, slots=True)
class FsUsage:
    """Space of the guest file system holding a path."""

    total_bytes: int
    free_bytes: int
    #: Free bytes an unprivileged process may use.
    available_bytes: int

    @property
    def used_bytes(self) -> int:
        return self.total_bytes - self.free_bytes


class FsReadStream:
    """A guest file's bytes: an async iterator of chunks. Dropping it before the end stops
    the guest from reading further."""

    def __init__(self, reader: _native.FsReader) -> None:
        self._reader = reader

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        chunk = await run_blocking(self._reader.next_chunk)
        if chunk is None:
            raise StopAsyncIteration
        return chunk

    async def next_chunk(self, timeout: float) -> bytes | None:
        """The next chunk, or ``None`` if none arrives within ``timeout`` seconds or the file
        has ended (:attr:`finished` tells which)."""
        return await run_blocking(self._reader.next_chunk, timeout)

    @property
    def finished(self) -> bool:
        return self._reader.finished


class FsWriteSink:
    """A guest file being written, as an async context manager: leaving the block finishes
    the file, an exception inside it aborts the write. A failure in the guest (a full disk)
    is raised by the next :meth:`write` or by the finish."""

    def __init__(self, writer: _native.FsWriter) -> None:
        self._writer = writer
        self._bytes_written: int | None = None

    async def write(self, data: bytes | str) -> None:
        await run_blocking(self._writer.write, _as_bytes(data))

    async def finish(self) -> int:
        """Ends the data; returns the bytes written."""
        self._bytes_written = await run_blocking(self._writer.finish)
        return self._bytes_written

    async def abort(self) -> None:
        """Cancels the write (nothing happens once it ended)."""
        await run_blocking(self._writer.abort)

    @property
    def bytes_written(self) -> int | None:
        """The bytes written, once finished."""
        return self._bytes_written

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is not None:
            await self.abort()
        elif self._bytes_written is None:
            await self.finish()


class SandboxFs:
    """Files in a sandbox's guest (``sandbox.fs``)."""

    def __init__(self, native: _native.Fs) -> None:
        self._native = native

    async def read(self, path: str) -> bytes:
        return await run_blocking(self._native.read, path)

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return (await self.read(path)).decode(encoding)

    async def write(
        self,
        path: str,
        data: bytes | str,
        *,
        mode: int | None = None,
        create_parents: bool = True,
    ) -> None:
        """Replaces the file's content (a ``str`` is written as UTF-8). The file gets
        ``mode`` when given; otherwise a new file gets 0o644 and an existing one keeps its
        mode. Missing parent directories are created unless ``create_parents`` is false."""
        await run_blocking(
            self._native.write, path, _as_bytes(data), _checked_mode(mode), False, create_parents
        )

    async def append(self, path: str, data: bytes | str) -> None:
        """Appends to the file, creating it (and its parents) when missing."""
        await run_blocking(self._native.write, path, _as_bytes(data), None, True, True)

    async def list(self, path: str) -> list[FsEntry]:
        """The directory's entries, sorted by name, without ``.`` and ``..``."""
        return decode(list[FsEntry], await run_blocking(self._native.list, path))

    async def stat(self, path: str, *, follow_symlinks: bool = False) -> FsMetadata:
        """The path's metadata; a symlink's own (kind ``symlink``, with its target) unless
        ``follow_symlinks``."""
        return decode(FsEntry, await run_blocking(self._native.stat, path, follow_symlinks))

    async def exists(self, path: str) -> bool:
        """Whether anything, a dangling symlink too, is at ``path``."""
        try:
            await self.stat(path)
        except PathNotFoundError:
            return False
        except FilesystemError as error:
            # A file where the path expects a directory: nothing can be there either.
            if error.errno == errno.ENOTDIR:
                return False
            raise
        return True

    async def mkdir(self, path: str, *, mode: int | None = None, parents: bool = True) -> None:
        """Creates a directory (default mode 0o755), and its missing parents with ``parents``
        (an existing directory is then no error)."""
        await run_blocking(self._native.mkdir, path, _checked_mode(mode), parents)

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        """Removes a file, a symlink or an empty directory; a whole tree with ``recursive``."""
        await run_blocking(self._native.remove, path, recursive)

    async def rename(self, src: str, dst: str) -> None:
        await run_blocking(self._native.rename, src, dst)

    async def copy(self, src: str, dst: str) -> None:
        """Copies a file or a directory tree inside the guest, keeping modes."""
        await run_blocking(self._native.copy, src, dst)

    async def symlink(self, target: str, link: str) -> None:
        """Creates the symlink ``link`` pointing to ``target``."""
        await run_blocking(self._native.symlink, target, link)

    async def chmod(self, path: str, mode: int) -> None:
        await run_blocking(self._native.chmod, path, _checked_mode(mode))

    async def usage(self, path: str = "/") -> FsUsage:
        """Space of the guest file system holding ``path``."""
        total, free, available = await run_blocking(self._native.usage, path)
        return FsUsage(total, free, available)

    async def read_stream(self, path: str, *, chunk_size: int | None = None) -> FsReadStream:
        """Streams the file: ``async for chunk in await fs.read_stream(path)``. Chunks are
        ``chunk_size`` bytes (the last may be shorter), or as they arrive without it. A missing
        file raises here."""
        if chunk_size is not None and chunk_size <= 0:
            raise InvalidConfigError("chunk_size: must be greater than 0")
        return FsReadStream(await run_blocking(self._native.open_read, path, chunk_size))

    async def write_stream(self, path: str, *, mode: int | None = None) -> FsWriteSink:
        """Opens the file for a streamed write (replacing its content, creating parents):
        ``async with await fs.write_stream(path) as sink: await sink.write(data)``."""
        writer = await run_blocking(self._native.open_write, path, _checked_mode(mode), False, True)
        return FsWriteSink(writer)

    async def copy_from_host(self, host_path: str | os.PathLike[str], guest_path: str) -> None:
        """Copies a host file, or a directory tree, to exactly ``guest_path``, streamed.
        Modes are kept; symlinks inside a tree are recreated as symlinks (a symlink given as
        ``host_path`` is followed). Only files, directories and symlinks can be copied."""
        await run_blocking(_upload, self._native, os.fspath(host_path), guest_path)

    async def copy_to_host(self, guest_path: str, host_path: str | os.PathLike[str]) -> None:
        """Copies a guest file, or a directory tree, to exactly ``host_path``, streamed.

        Nothing is ever written outside ``host_path``. Every name from the guest is checked
        (one path component, never ``.`` or ``..``); files and directories are created
        relative to directory descriptors and never through a symlink, so a guest symlink
        (``link -> /etc``) is recreated as a symlink but never followed, and neither is a
        symlink already at the destination. An existing file is replaced and an existing
        directory merged into. Set-id and sticky bits are dropped, so a guest cannot plant a
        set-uid program on the host.
        """
        await run_blocking(_download, self._native, guest_path, os.fspath(host_path))


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else bytes(data)


@overload
def _checked_mode(mode: int) -> int: ...


@overload
def _checked_mode(mode: None) -> None: ...


def _checked_mode(mode: int | None) -> int | None:
    if mode is not None and not 0 <= mode <= MAX_MODE:
        raise InvalidConfigError(f"mode: must be between 0 and 0o7777, got {mode:#o}")
    return mode


def _cannot_copy(path: str) -> FilesystemError:
    return FilesystemError(f"{path}: only files, directories and symlinks can be copied")


# -- host to guest (runs in a worker thread) ------------------------------------------------


def _upload(fs: _native.Fs, source: str, target: str) -> None:
    if os.path.isdir(source):
        _upload_tree(fs, source, target)
    else:
        _upload_file(fs, source, target)


def _upload_file(fs: _native.Fs, source: str, target: str) -> None:
    with open(source, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _cannot_copy(source)
        writer = fs.open_write(target, stat.S_IMODE(info.st_mode), False, True)
        try:
            while chunk := file.read(HOST_CHUNK):
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        writer.finish()


def _upload_tree(fs: _native.Fs, source: str, target: str) -> None:
    fs.mkdir(target, stat.S_IMODE(os.stat(source).st_mode), True)
    with os.scandir(source) as scan:
        entries = sorted(scan, key=lambda entry: entry.name)
    for entry in entries:
        child = posixpath.join(target, entry.name)
        if entry.is_symlink():
            fs.symlink(os.readlink(entry.path), child)
        elif entry.is_dir(follow_symlinks=False):
            _upload_tree(fs, entry.path, child)
        else:
            _upload_file(fs, entry.path, child)


# -- guest to host (runs in a worker thread) ------------------------------------------------


def _download(fs: _native.Fs, source: str, target: str) -> None:
    # As the agent spells it, so that its entries' paths start with it (POSIX normpath
    # keeps a leading "//").
    source = "/" + posixpath.normpath(source).lstrip("/") if source.startswith("/") else source
    entry = decode(FsEntry, fs.stat(source, True))
    # The user's own path is trusted up to its last component; from there on nothing is.
    parent, name = os.path.split(os.path.abspath(target))
    if not name:
        raise InvalidConfigError(f"cannot copy onto {target!r}")
    parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _download_entry(fs, source, entry, parent_fd, name)
    finally:
        os.close(parent_fd)


def _download_entry(fs: _native.Fs, path: str, entry: FsEntry, dir_fd: int, name: str) -> None:
    """Writes the guest's ``path`` (described by ``entry``) as ``name`` in ``dir_fd``."""
    match entry.kind:
        case FsEntryKind.DIRECTORY:
            _download_tree(fs, path, entry, dir_fd, name)
        case FsEntryKind.FILE:
            _download_file(fs, path, entry, dir_fd, name)
        case FsEntryKind.SYMLINK:
            _download_symlink(entry, dir_fd, name)
        case _:
            raise _cannot_copy(path)


def _download_tree(fs: _native.Fs, path: str, entry: FsEntry, dir_fd: int, name: str) -> None:
    # An existing directory is merged into; anything else there is refused on opening.
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    fd = _open_on_host(name, _HOST_DIRECTORY_FLAGS, dir_fd)
    try:
        for child in decode(list[FsEntry], fs.list(path)):
            child_name = _guest_child_name(path, child.path)
            child_path = posixpath.join(path, child_name)
            _download_entry(fs, child_path, child, fd, child_name)
        # Only now: a read-only directory could not have been filled.
        os.fchmod(fd, _host_mode(entry.mode))
    finally:
        os.close(fd)


def _download_file(fs: _native.Fs, path: str, entry: FsEntry, dir_fd: int, name: str) -> None:
    reader = fs.open_read(path, None)
    fd = _open_on_host(name, _HOST_FILE_FLAGS, dir_fd, 0o600)
    with open(fd, "wb") as out:
        # An existing file keeps its mode through O_CREAT, and the umask trims a new one.
        os.fchmod(fd, _host_mode(entry.mode))
        while (chunk := reader.next_chunk()) is not None:
            out.write(chunk)


def _download_symlink(entry: FsEntry, dir_fd: int, name: str) -> None:
    target = entry.link_target
    if not target or "\0" in target:
        raise FilesystemError(f"refusing the guest's symlink {entry.path!r} -> {target!r}")
    try:
        os.symlink(target, name, dir_fd=dir_fd)
    except FileExistsError:
        # unlink never follows a symlink, and refuses a directory.
        os.unlink(name, dir_fd=dir_fd)
        os.symlink(target, name, dir_fd=dir_fd)


def _guest_child_name(directory: str, path: str) -> str:
    """The name under which the guest listed ``path`` in ``directory``, if it is one plain
    name there; anything that could lead elsewhere raises :class:`FilesystemError`."""
    prefix = directory.rstrip("/") + "/"
    name = path.removeprefix(prefix) if path.startswith(prefix) else ""
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise FilesystemError(f"refusing the guest's entry {path!r} in {directory!r}")
    return name


def _open_on_host(name: str, flags: int, dir_fd: int, mode: int = 0o777) -> int:
    try:
        return os.open(name, flags, mode, dir_fd=dir_fd)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise FilesystemError(
                f"refusing to write through {name!r}: it exists and is not what the guest's "
                "entry is (a symlink is never followed)",
                error.errno,
            ) from error
        raise


def _host_mode(mode: int) -> int:
    """Permission bits only: a guest must not plant set-id programs on the host."""
    return mode & 0o777

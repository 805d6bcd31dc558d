"""Pulling OCI images: policies, credentials, progress events and the pull stream.

The native runtime does the work on a worker thread and reports progress through a callback;
:class:`PullStream` turns those calls into an async iterator of :data:`PullProgress` events
on the caller's loop. Cancelling a pull (``cancel()``, or leaving the ``async with`` early)
stops it between chunks and leaves nothing partial in the cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from types import TracebackType
from typing import Annotated, Literal, Self

from pydantic import Field

from . import _native
from ._blocking import run_blocking
from ._wire import decode, record


class PullPolicy(StrEnum):
    """When creating a sandbox pulls its image."""

    #: Always ask the registry (a changed tag is pulled; unchanged layers are not).
    ALWAYS = "always"
    #: Pull only when the image is not in the local store (the default).
    IF_MISSING = "if_missing"
    #: Never pull: the image must already be local (:class:`ImageNotFoundError` otherwise).
    NEVER = "never"


@dataclass(frozen=True, slots=True)
class RegistryAuth:
    """Registry credentials: a user name and password (or access token used as the password),
    or a ready bearer token. Without them, ``~/.docker/config.json`` is consulted."""

    username: str | None = None
    password: str | None = None
    token: str | None = None

    @staticmethod
    def basic(username: str, password: str) -> RegistryAuth:
        return RegistryAuth(username=username, password=password)

    @staticmethod
    def bearer(token: str) -> RegistryAuth:
        return RegistryAuth(token=token)


# The events of a pull, tagged by ``event`` in the runtime's reports. Where the runtime's
# names are terse (``downloaded``, ``bytes``), the field says what it holds and names the
# runtime's spelling as its alias.


@record
@dataclass(frozen=True, slots=True)
class LayerSummary:
    digest: str
    size_bytes: int


@record
@dataclass(frozen=True, slots=True)
class Resolving:
    reference: str
    event: Literal["resolving"] = field(default="resolving", repr=False, kw_only=True)


@record
@dataclass(frozen=True, slots=True)
class Resolved:
    reference: str
    digest: Annotated[str, Field(validation_alias="manifest_digest")]
    layers: tuple[LayerSummary, ...]
    event: Literal["resolved"] = field(default="resolved", repr=False, kw_only=True)

    @property
    def total_bytes(self) -> int:
        return sum(layer.size_bytes for layer in self.layers)


@record
@dataclass(frozen=True, slots=True)
class LayerDownloadProgress:
    digest: str
    downloaded_bytes: Annotated[int, Field(validation_alias="downloaded")]
    total_bytes: Annotated[int, Field(validation_alias="total")]
    event: Literal["layer_download_progress"] = field(
        default="layer_download_progress", repr=False, kw_only=True
    )


@record
@dataclass(frozen=True, slots=True)
class LayerDownloadComplete:
    """Also reported at once for a layer that is already stored."""

    digest: str
    event: Literal["layer_download_complete"] = field(
        default="layer_download_complete", repr=False, kw_only=True
    )


@record
@dataclass(frozen=True, slots=True)
class LayerExtractStarted:
    digest: str
    event: Literal["layer_extract_started"] = field(
        default="layer_extract_started", repr=False, kw_only=True
    )


@record
@dataclass(frozen=True, slots=True)
class LayerExtractProgress:
    digest: str
    #: Compressed bytes of the layer consumed so far.
    extracted_bytes: Annotated[int, Field(validation_alias="bytes")]
    event: Literal["layer_extract_progress"] = field(
        default="layer_extract_progress", repr=False, kw_only=True
    )


@record
@dataclass(frozen=True, slots=True)
class LayerExtractComplete:
    digest: str
    event: Literal["layer_extract_complete"] = field(
        default="layer_extract_complete", repr=False, kw_only=True
    )


@record
@dataclass(frozen=True, slots=True)
class LayerIndexStarted:
    """The layer's block image (what the guest mounts) is being built."""

    digest: str
    event: Literal["layer_index_started"] = field(
        default="layer_index_started", repr=False, kw_only=True
    )


@record
@dataclass(frozen=True, slots=True)
class LayerIndexComplete:
    digest: str
    event: Literal["layer_index_complete"] = field(
        default="layer_index_complete", repr=False, kw_only=True
    )


@record
@dataclass(frozen=True, slots=True)
class PullComplete:
    reference: str
    digest: Annotated[str, Field(validation_alias="manifest_digest")]
    event: Literal["pull_complete"] = field(default="pull_complete", repr=False, kw_only=True)


#: One event of a pull.
PullProgress = (
    Resolving
    | Resolved
    | LayerDownloadProgress
    | LayerDownloadComplete
    | LayerExtractStarted
    | LayerExtractProgress
    | LayerExtractComplete
    | LayerIndexStarted
    | LayerIndexComplete
    | PullComplete
)
#: A report of the runtime: its ``event`` tells which of them it is.
_REPORTED_PROGRESS = Annotated[PullProgress, Field(discriminator="event")]


_DONE = object()


class PullStream:
    """A pull under way: ``async for event in stream`` yields its progress; ``await
    stream.result()`` gives the pulled image's name (its canonical reference)."""

    def __init__(self, reference: str, *, insecure: bool, auth: RegistryAuth | None) -> None:
        self.reference = reference
        self._insecure = insecure
        self._auth = auth or RegistryAuth()
        self._cancel = _native.PullCancel()
        self._events: asyncio.Queue[object] = asyncio.Queue()
        self._task: asyncio.Task[str] | None = None

    def start(self) -> Self:
        loop = asyncio.get_running_loop()

        def report(report_json: str) -> None:
            event: PullProgress = decode(_REPORTED_PROGRESS, report_json)
            loop.call_soon_threadsafe(self._events.put_nowait, event)

        async def run() -> str:
            try:
                return await run_blocking(
                    _native.pull_image,
                    self.reference,
                    self._insecure,
                    self._auth.username,
                    self._auth.password,
                    self._auth.token,
                    report,
                    self._cancel,
                )
            finally:
                # After every report the worker queued (call_soon_threadsafe keeps order).
                loop.call_soon(self._events.put_nowait, _DONE)

        self._task = asyncio.ensure_future(run())
        return self

    def cancel(self) -> None:
        """Stops the pull at its next chunk; :meth:`result` then raises
        :class:`PullCancelledError`."""
        self._cancel.cancel()

    def __aiter__(self) -> AsyncIterator[PullProgress]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[PullProgress]:
        while (event := await self._events.get()) is not _DONE:
            yield event  # type: ignore[misc]

    async def result(self) -> str:
        if self._task is None:
            self.start()
        assert self._task is not None
        return await self._task

    async def __aenter__(self) -> Self:
        return self.start() if self._task is None else self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._task is not None and not self._task.done():
            self.cancel()
            # Wait for the worker: its cleanup must finish before the caller goes on.
            await asyncio.gather(self._task, return_exceptions=True)


def pull_stream(
    reference: str, *, insecure: bool = False, auth: RegistryAuth | None = None
) -> PullStream:
    """Starts pulling ``reference`` (``alpine``, ``python:3.12``, ``host:5000/app@sha256:..``)
    as an async iterator of progress events; see :class:`PullStream`."""
    return PullStream(reference, insecure=insecure, auth=auth)


async def pull(reference: str, *, insecure: bool = False, auth: RegistryAuth | None = None) -> str:
    """Pulls ``reference`` into the local store; returns its canonical name. Raises
    :class:`ImagePullFailedError` (:class:`RegistryAuthError` for refused credentials)."""
    return await pull_stream(reference, insecure=insecure, auth=auth).result()

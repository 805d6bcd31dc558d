"""Where the dashboard's data comes from, and the metrics history it keeps (no Textual here).

The views read through a :class:`DataSource`: :class:`LiveSource` asks the SDK;
:class:`RecordedSource` answers with fixed values, so that a view can be shown (and
snapshot-tested) exactly as recorded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from microsandbox_tui import (
    FsEntry,
    ImageInfo,
    PathNotFoundError,
    Sandbox,
    SandboxInfo,
    SandboxMetrics,
    SandboxNotFoundError,
    SecretConfig,
    SecretEntry,
    Volume,
    VolumeHandle,
    all_sandbox_metrics,
    list_images,
)

from .operations import (
    PolicyChoice,
    ProcessTable,
    list_directory,
    list_processes,
    network_log,
    remove_secret,
    set_network_policy,
    set_secret,
)

if TYPE_CHECKING:
    from microsandbox_tui.network_log import FlowLogEntry

#: Samples kept per sandbox (at one a second, two minutes).
HISTORY_LENGTH = 120


class DataSource(Protocol):
    """What the views read. Every method may raise the SDK's typed errors."""

    async def list_sandboxes(self) -> list[SandboxInfo]: ...

    async def list_version(self) -> int:
        """Changes whenever :meth:`list_sandboxes` would answer differently."""
        ...

    async def all_metrics(self) -> dict[str, SandboxMetrics]: ...

    async def list_images(self) -> list[ImageInfo]: ...

    async def processes(self, name: str) -> ProcessTable: ...

    async def list_volumes(self) -> list[VolumeHandle]: ...

    async def list_directory(self, name: str, path: str) -> list[FsEntry]: ...

    async def set_network_policy(self, name: str, policy: PolicyChoice) -> None: ...

    async def set_secret(self, name: str, entry: SecretEntry) -> None: ...

    async def remove_secret(self, name: str, env_var: str) -> None: ...

    def network_log(
        self, name: str, *, tail: int | None = None, follow: bool = False
    ) -> AsyncIterator[FlowLogEntry]: ...

    def now(self) -> datetime: ...


class LiveSource:
    """The runtime on this machine, through the public SDK."""

    async def list_sandboxes(self) -> list[SandboxInfo]:
        return await Sandbox.list()

    async def list_version(self) -> int:
        return await Sandbox.list_version()

    async def all_metrics(self) -> dict[str, SandboxMetrics]:
        return await all_sandbox_metrics()

    async def list_images(self) -> list[ImageInfo]:
        return await list_images()

    async def processes(self, name: str) -> ProcessTable:
        return await list_processes(name)

    async def list_volumes(self) -> list[VolumeHandle]:
        return await Volume.list()

    async def list_directory(self, name: str, path: str) -> list[FsEntry]:
        return await list_directory(name, path)

    async def set_network_policy(self, name: str, policy: PolicyChoice) -> None:
        await set_network_policy(name, policy)

    async def set_secret(self, name: str, entry: SecretEntry) -> None:
        await set_secret(name, entry)

    async def remove_secret(self, name: str, env_var: str) -> None:
        await remove_secret(name, env_var)

    def network_log(
        self, name: str, *, tail: int | None = None, follow: bool = False
    ) -> AsyncIterator[FlowLogEntry]:
        return network_log(name, tail=tail, follow=follow)

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class RecordedSource:
    """Fixed answers, for demos and for pictures that must not change between runs."""

    sandboxes: Sequence[SandboxInfo] = ()
    metrics: Mapping[str, SandboxMetrics] = field(default_factory=dict)
    images: Sequence[ImageInfo] = ()
    process_tables: Mapping[str, ProcessTable] = field(default_factory=dict)
    volumes: Sequence[VolumeHandle] = ()
    #: (sandbox, guest directory) → its entries.
    directories: Mapping[tuple[str, str], Sequence[FsEntry]] = field(default_factory=dict)
    #: Each sandbox's flow log, oldest first.
    flow_logs: Mapping[str, Sequence[FlowLogEntry]] = field(default_factory=dict)
    clock: datetime = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    #: Every policy set through this source, as (sandbox, policy), oldest first.
    applied_policies: list[tuple[str, PolicyChoice]] = field(default_factory=list)
    #: Every secret set through this source, as (sandbox, entry), oldest first; the
    #: recorded sandbox's stored secrets follow.
    applied_secrets: list[tuple[str, SecretEntry]] = field(default_factory=list)
    #: Every secret removed through this source, as (sandbox, env var), oldest first.
    removed_secrets: list[tuple[str, str]] = field(default_factory=list)
    #: Moves whenever ``sandboxes`` is changed through this source.
    version: int = 0

    async def list_sandboxes(self) -> list[SandboxInfo]:
        return list(self.sandboxes)

    async def list_version(self) -> int:
        return self.version

    async def all_metrics(self) -> dict[str, SandboxMetrics]:
        return dict(self.metrics)

    async def list_images(self) -> list[ImageInfo]:
        return list(self.images)

    async def processes(self, name: str) -> ProcessTable:
        try:
            return self.process_tables[name]
        except KeyError:
            raise SandboxNotFoundError(f"no recorded processes for {name!r}") from None

    async def list_volumes(self) -> list[VolumeHandle]:
        return list(self.volumes)

    async def list_directory(self, name: str, path: str) -> list[FsEntry]:
        try:
            return list(self.directories[name, path])
        except KeyError:
            raise PathNotFoundError(f"no recorded directory {path!r} in {name!r}") from None

    async def set_network_policy(self, name: str, policy: PolicyChoice) -> None:
        if not any(info.name == name for info in self.sandboxes):
            raise SandboxNotFoundError(f"no recorded sandbox {name!r}")
        self.applied_policies.append((name, policy))

    async def set_secret(self, name: str, entry: SecretEntry) -> None:
        """Stores ``entry``'s config in place of the secret of its env var, or last."""
        info = self._recorded(name)
        stored, config = info.config.secrets, entry.config()
        if any(secret.env_var == config.env_var for secret in stored):
            secrets = tuple(config if s.env_var == config.env_var else s for s in stored)
        else:
            secrets = (*stored, config)
        self._store_secrets(info, secrets)
        self.applied_secrets.append((name, entry))

    async def remove_secret(self, name: str, env_var: str) -> None:
        info = self._recorded(name)
        kept = tuple(secret for secret in info.config.secrets if secret.env_var != env_var)
        self._store_secrets(info, kept)
        self.removed_secrets.append((name, env_var))

    def _recorded(self, name: str) -> SandboxInfo:
        info = next((info for info in self.sandboxes if info.name == name), None)
        if info is None:
            raise SandboxNotFoundError(f"no recorded sandbox {name!r}")
        return info

    def _store_secrets(self, info: SandboxInfo, secrets: tuple[SecretConfig, ...]) -> None:
        """The next listing shows ``info`` with ``secrets`` as its stored ones."""
        config = info.config.model_copy(update={"secrets": secrets})
        changed = replace(info, config=config)
        self.sandboxes = tuple(changed if other is info else other for other in self.sandboxes)
        self.version += 1

    async def network_log(
        self, name: str, *, tail: int | None = None, follow: bool = False
    ) -> AsyncIterator[FlowLogEntry]:
        """The recorded entries (the last ``tail``); a recording has nothing to follow."""
        entries = list(self.flow_logs.get(name, ()))
        for entry in entries[-tail:] if tail else entries:
            yield entry

    def now(self) -> datetime:
        return self.clock


@dataclass(frozen=True, slots=True)
class MetricsPoint:
    """One sample of a sandbox, with the cumulative counters turned into rates."""

    sampled_at: datetime
    cpu_percent: float
    memory_bytes: int
    memory_limit_bytes: int
    host_rss_bytes: int
    disk_read_rate: float
    disk_write_rate: float
    net_rx_rate: float
    net_tx_rate: float


def _point(sample: SandboxMetrics, previous: SandboxMetrics | None) -> MetricsPoint:
    seconds = (sample.sampled_at - previous.sampled_at).total_seconds() if previous else 0.0

    def rate(attribute: str) -> float:
        if previous is None or seconds <= 0:
            return 0.0
        current, before = getattr(sample, attribute), getattr(previous, attribute)
        # A counter that went down belongs to a new boot: no rate for that interval.
        return (current - before) / seconds if current >= before else 0.0

    return MetricsPoint(
        sampled_at=sample.sampled_at,
        cpu_percent=sample.cpu_percent,
        memory_bytes=sample.memory_bytes,
        memory_limit_bytes=sample.memory_limit_bytes,
        host_rss_bytes=sample.host_rss_bytes,
        disk_read_rate=rate("disk_read_bytes"),
        disk_write_rate=rate("disk_write_bytes"),
        net_rx_rate=rate("net_rx_bytes"),
        net_tx_rate=rate("net_tx_bytes"),
    )


class MetricsHistory:
    """The last :data:`HISTORY_LENGTH` samples of each sandbox, shared by every view.

    Recording keeps the samples as they came (plus the one before the oldest, for its
    rates); points are made only when a view asks for them. Making a point per sample on
    every tick cost 10-18 ms for 1,000 running sandboxes on the event loop, where the
    dashboard shows the points of one sandbox (its charts) and one series of the rows on
    screen (their sparklines)."""

    def __init__(self, length: int = HISTORY_LENGTH) -> None:
        self._length = length
        self._samples: dict[str, deque[SandboxMetrics]] = {}

    def record(self, samples: Mapping[str, SandboxMetrics]) -> None:
        """Adds each sandbox's sample; a sample already seen (same time) is skipped."""
        kept = self._samples
        for name, sample in samples.items():
            recorded = kept.get(name)
            if recorded is None:
                kept[name] = deque((sample,), maxlen=self._length + 1)
            elif sample.sampled_at > recorded[-1].sampled_at:
                recorded.append(sample)

    def forget_all_but(self, names: Collection[str]) -> None:
        """Drops the history of sandboxes that no longer exist."""
        for name in [name for name in self._samples if name not in names]:
            del self._samples[name]

    def points(self, name: str) -> list[MetricsPoint]:
        samples = list(self._samples.get(name, ()))
        # A full history holds one sample more than it shows: the previous of the oldest.
        first = max(len(samples) - self._length, 0)
        return [
            _point(samples[index], samples[index - 1] if index else None)
            for index in range(first, len(samples))
        ]

    def series(self, name: str, attribute: str) -> list[float]:
        """One attribute of :class:`MetricsPoint` over time, oldest first."""
        if attribute in _SAMPLED:
            samples = self._samples.get(name, ())
            shown = list(samples)[-self._length :]
            return [float(getattr(sample, attribute)) for sample in shown]
        return [float(getattr(point, attribute)) for point in self.points(name)]

    def latest(self, name: str) -> MetricsPoint | None:
        samples = self._samples.get(name)
        if not samples:
            return None
        return _point(samples[-1], samples[-2] if len(samples) > 1 else None)


#: Attributes of :class:`MetricsPoint` that are a sample's own (no rate to work out).
_SAMPLED = frozenset({"cpu_percent", "memory_bytes", "memory_limit_bytes", "host_rss_bytes"})


@dataclass(frozen=True, slots=True)
class SandboxesSnapshot:
    """One refresh: every sandbox, the metrics of the running ones, and when."""

    #: The same tuple as the previous snapshot's while the listing did not change.
    infos: tuple[SandboxInfo, ...]
    metrics: Mapping[str, SandboxMetrics]
    now: datetime

    def info(self, name: str) -> SandboxInfo | None:
        return next((info for info in self.infos if info.name == name), None)

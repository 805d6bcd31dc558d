"""The :class:`Sandbox` API: create, run commands in, stop and remove microVM sandboxes."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypedDict

from . import _native
from ._blocking import run_blocking
from .config import BindImage, LocalImage, SandboxConfig, image_from_user, sandbox_config
from .errors import ExecTimeoutError, InvalidConfigError
from .types import ExecOutput, ExitStatus, SandboxStatus

#: How long ``create`` waits for the guest agent to answer. Software emulation (TCG) on a
#: loaded 2-core machine boots in seconds; this bound only catches a VM that will never boot.
DEFAULT_START_TIMEOUT_S = 120.0
DEFAULT_STOP_TIMEOUT_S = 10.0


class ExecOptions(TypedDict, total=False):
    """Full execution options, as the dict form of ``exec``'s second argument."""

    args: Sequence[str]
    cwd: str
    env: Mapping[str, str]
    timeout: float


@dataclass(frozen=True, slots=True)
class SandboxInfo:
    """A sandbox as the runtime's database records it."""

    name: str
    status: SandboxStatus
    config: SandboxConfig
    detached: bool
    created_at: datetime
    started_at: datetime | None
    stopped_at: datetime | None
    accelerator: str | None
    boot_ms: int | None
    exit_reason: str | None

    @property
    def image(self) -> str:
        source = self.config.image
        return source.path if isinstance(source, BindImage) else source.name

    @staticmethod
    def from_native(info: _native.SandboxInfo) -> SandboxInfo:
        return SandboxInfo(
            name=info.name,
            status=SandboxStatus(info.status),
            config=SandboxConfig.model_validate_json(info.config_json),
            detached=info.detached,
            created_at=_from_ms(info.created_at_ms),
            started_at=_from_ms(info.started_at_ms) if info.started_at_ms else None,
            stopped_at=_from_ms(info.stopped_at_ms) if info.stopped_at_ms else None,
            accelerator=info.accelerator,
            boot_ms=info.boot_ms,
            exit_reason=info.exit_reason,
        )


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class Sandbox:
    """A live handle to a running sandbox."""

    def __init__(self, name: str, connection: _native.Connection, config: SandboxConfig) -> None:
        self._name = name
        self._connection = connection
        self._config = config

    @property
    def name(self) -> str:
        return self._name

    @property
    def config(self) -> SandboxConfig:
        return self._config

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def create(
        cls,
        name: str,
        *,
        image: str | os.PathLike[str] | BindImage | LocalImage | None = None,
        cpus: int | None = None,
        memory: int | None = None,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        replace: bool = False,
        detached: bool = False,
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
    ) -> Sandbox:
        """Creates and boots a sandbox. ``memory`` is in MiB.

        Raises :class:`SandboxAlreadyExistsError` when the name is taken (unless ``replace``),
        :class:`ImageNotFoundError` for an unknown image, :class:`InvalidConfigError` for bad
        values, :class:`SandboxStartError` when the VM does not come up.
        """
        values: dict[str, Any] = {"name": name, "image": image_from_user(image)}
        if cpus is not None:
            values["cpus"] = cpus
        if memory is not None:
            values["memory_mib"] = memory
        if env is not None:
            values["env"] = dict(env)
        if workdir is not None:
            values["workdir"] = workdir
        config = sandbox_config(**values)
        await run_blocking(
            _native.create_sandbox,
            config.model_dump_json(),
            replace,
            detached,
            sys.executable,
            start_timeout,
        )
        connection = await run_blocking(_native.Connection.open, name)
        return cls(name, connection, config)

    @classmethod
    async def connect(cls, name: str) -> Sandbox:
        """Attaches to a running sandbox created by any process.

        Raises :class:`SandboxNotFoundError` or :class:`SandboxNotRunningError`.
        """
        info = await Sandbox.get_info(name)
        connection = await run_blocking(_native.Connection.open, name)
        return cls(name, connection, info.config)

    async def stop_and_wait(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Shuts the guest down cleanly and waits until the VM is gone."""
        await run_blocking(self._connection.stop, int(timeout * 1000))

    async def kill(self) -> None:
        """Stops the VM at once, without a guest shutdown."""
        await run_blocking(self._connection.kill)

    async def info(self) -> SandboxInfo:
        return await Sandbox.get_info(self._name)

    async def status(self) -> SandboxStatus:
        return (await self.info()).status

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.kill()
        await Sandbox.remove(self._name)

    # -- commands --------------------------------------------------------------------------

    async def exec(self, cmd: str, args: Sequence[str] | ExecOptions | None = None) -> ExecOutput:
        """Runs ``cmd`` in the guest and collects its output.

        ``args`` is either the argument list or an :class:`ExecOptions` dict.
        """
        options: ExecOptions = (
            dict(args) if isinstance(args, Mapping) else {"args": list(args or [])}  # type: ignore[assignment]
        )
        env = {**self._config.env, **dict(options.get("env", {}))}
        timeout = options.get("timeout")
        if timeout is not None and timeout <= 0:
            raise InvalidConfigError("timeout: must be greater than 0")
        result = await run_blocking(
            self._connection.exec,
            cmd,
            [str(arg) for arg in options.get("args", [])],
            list(env.items()),
            options.get("cwd", self._config.workdir),
            int(timeout * 1000) if timeout is not None else None,
        )
        if result.timed_out:
            raise ExecTimeoutError(f"{cmd!r} did not finish within {timeout} s and was killed")
        return ExecOutput(
            stdout=result.stdout,
            stderr=result.stderr,
            status=ExitStatus(code=result.exit_code, signal=result.signal),
        )

    async def shell(self, script: str, options: ExecOptions | None = None) -> ExecOutput:
        """Runs ``script`` with ``/bin/sh -c`` (pipes, redirects, ...)."""
        merged: ExecOptions = {**(options or {}), "args": ["-c", script]}
        return await self.exec("/bin/sh", merged)

    # -- the sandbox collection ------------------------------------------------------------

    @staticmethod
    async def list() -> list[SandboxInfo]:
        infos = await run_blocking(_native.list_sandboxes)
        return [SandboxInfo.from_native(info) for info in infos]

    @staticmethod
    async def get_info(name: str) -> SandboxInfo:
        return SandboxInfo.from_native(await run_blocking(_native.get_sandbox, name))

    @staticmethod
    async def remove(name: str) -> None:
        """Deletes a stopped sandbox (:class:`SandboxStillRunningError` if it runs)."""
        await run_blocking(_native.remove_sandbox, name)

    def __repr__(self) -> str:
        return f"Sandbox(name={self._name!r})"

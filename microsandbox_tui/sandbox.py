"""The :class:`Sandbox` API: create, run commands in, stop and remove microVM sandboxes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Self, TypedDict, Unpack

from pydantic import SecretStr

from . import _native
from ._blocking import run_blocking
from ._wire import Timestamp, decode, record
from .config import (
    MountConfig,
    OciImage,
    PatchConfig,
    SandboxConfig,
    UserImage,
    image_from_user,
    sandbox_config,
)
from .errors import ExecTimeoutError
from .exec import AttachOptions, ExecHandle, ExecOptions, NativeExecArgs, native_exec_args
from .fs import SandboxFs
from .images import ImageDetail, inspect_image, pull_plan, resolve_oci_image
from .logs import LogSource, read_logs, read_network_log
from .metrics import MetricsStream, SandboxMetrics, sandbox_metrics
from .network import Network, NetworkPolicy
from .network_log import FlowLogEntry
from .patches import apply_patches
from .pull import PullProgress, PullStream, RegistryAuth, pull_stream
from .sandbox_info import (
    SandboxInfo,
    decode_sandbox_info,
    sandbox_info,
    sandbox_infos,
    sandboxes_version,
)
from .secrets import (
    SecretConfig,
    SecretEntry,
    creation_values,
    exposed,
    placeholders,
    start_values,
    update_json,
    update_value,
    with_secret,
    without_secret,
)
from .terminal import DEFAULT_DETACH_KEYS, bridge, raw_terminal, terminal_size
from .types import ExecOutput, ExitStatus, LogLevel, SandboxStatus, SizeLike, mib_of

#: How long ``create`` waits for the guest agent to answer. Software emulation (TCG) on a
#: loaded 2-core machine boots in seconds; this bound only catches a VM that will never boot.
DEFAULT_START_TIMEOUT_S = 120.0
DEFAULT_STOP_TIMEOUT_S = 10.0
#: How often ``wait_until_stopped`` looks at the sandbox's status.
STATUS_POLL_S = 0.1


class SandboxOptions(TypedDict, total=False):
    """What :meth:`Sandbox.create` takes besides the name, the image and registry
    credentials; every key may be left out (or ``None``) for the default."""

    #: Virtual CPUs (default 1).
    cpus: int | None
    #: Guest memory: a :class:`Size` of whole MiB, or MiB (default 512).
    memory: SizeLike | None
    #: Environment of every command, over the image's.
    env: Mapping[str, str] | None
    #: Working directory of every command, over the image's.
    workdir: str | None
    #: Guest path -> :class:`Volume` mount.
    volumes: Mapping[str, MountConfig] | None
    #: Applied to the root file system before ``create`` returns (see :class:`Patch`).
    patches: Sequence[PatchConfig] | None
    #: How much the sandbox's supervisor logs (default: as much as this process).
    log_level: LogLevel | str | None
    #: Its network: policy, DNS settings, published ports (default: :meth:`Network.public_only`).
    network: Network | None
    #: Host port -> guest port, TCP on 127.0.0.1, published besides the network's own ports.
    ports: Mapping[int, int] | None
    #: Secrets (``Secret.env(...)``): the guest's environment holds their placeholders, and
    #: the gateway puts the values into requests to the hosts each allows.
    secrets: Sequence[SecretEntry] | None
    #: Replace a sandbox of the same name instead of failing.
    replace: bool
    #: Let the sandbox outlive the process that created it.
    detached: bool
    #: Seconds to wait for the guest agent to answer.
    start_timeout: float


@dataclass(frozen=True, slots=True)
class _Creation:
    """A sandbox to create: its validated configuration, and how to boot it."""

    config: SandboxConfig
    replace: bool
    detached: bool
    start_timeout: float
    #: The secrets' values, for the runtime only: never shown, never stored.
    secret_values: Mapping[str, SecretStr] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, name: str, image: UserImage | None, options: SandboxOptions) -> _Creation:
        """Validates everything, before any pull. Raises :class:`InvalidConfigError`."""
        memory, env = options.get("memory"), options.get("env")
        volumes, patches = options.get("volumes"), options.get("patches")
        network, ports = options.get("network"), options.get("ports")
        if ports is not None:
            network = (network or Network()).with_ports(ports)
        entries = tuple(options.get("secrets") or ())
        secrets = tuple(entry.config() for entry in entries)
        if secrets:
            # The placeholders are the exec default; a variable given in env too is the secret.
            env = {**(env or {}), **placeholders(secrets)}
        given: dict[str, object] = {
            "cpus": options.get("cpus"),
            "memory_mib": None if memory is None else mib_of(memory, "memory"),
            "env": None if env is None else dict(env),
            "secrets": secrets or None,
            "workdir": options.get("workdir"),
            "volumes": None if volumes is None else dict(volumes),
            "patches": None if patches is None else list(patches),
            "log_level": options.get("log_level"),
            "network": network,
        }
        values = {key: value for key, value in given.items() if value is not None}
        return cls(
            config=sandbox_config(name=name, image=image_from_user(image), **values),
            replace=options.get("replace", False),
            detached=options.get("detached", False),
            start_timeout=options.get("start_timeout", DEFAULT_START_TIMEOUT_S),
            secret_values=creation_values(entries),
        )

    def on_image(self, source: OciImage, image: ImageDetail) -> _Creation:
        """Created on ``image``, the store's copy of ``source``: under the store's name for
        it, with its config's exec defaults."""
        stored = source.model_copy(update={"reference": image.name})
        config = self.config.model_copy(update={"image": stored, "image_defaults": image.defaults})
        return dataclasses.replace(self, config=config)


class PullSession:
    """Creation with pull progress: an async context manager yielding the pull's events,
    then the sandbox (``await session.sandbox()``). Leaving the block early cancels the pull
    and leaves nothing partial in the cache."""

    def __init__(self, creation: _Creation, auth: RegistryAuth | None) -> None:
        self.name = creation.config.name
        self._creation = creation
        self._auth = auth
        self._planned = False
        #: The OCI image found in the store, or its pull under way; ``None`` for other images.
        self._image: ImageDetail | PullStream | None = None

    async def _plan(self) -> None:
        """Looks the image up in the store once, and starts pulling it if it is needed."""
        source = self._creation.config.image
        if self._planned or not isinstance(source, OciImage):
            return
        self._planned = True
        reference, self._image = await pull_plan(source)
        if self._image is None:
            self._image = pull_stream(reference, insecure=source.insecure, auth=self._auth)
            self._image.start()

    async def __aenter__(self) -> Self:
        await self._plan()
        return self

    def __aiter__(self) -> AsyncIterator[PullProgress]:
        return self._events()

    async def _events(self) -> AsyncIterator[PullProgress]:
        if isinstance(self._image, PullStream):
            async for event in self._image:
                yield event

    async def sandbox(self) -> Sandbox:
        """Waits for the pull (if one was needed) and creates the sandbox."""
        await self._plan()
        creation, source = self._creation, self._creation.config.image
        if isinstance(self._image, PullStream):
            self._image = await inspect_image(await self._image.result())
        if isinstance(source, OciImage) and self._image is not None:
            creation = creation.on_image(source, self._image)
        return await Sandbox._boot(creation)

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(self._image, PullStream):
            await self._image.__aexit__(kind, error, traceback)


@record
@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A command running in a sandbox, as its supervisor tracks it."""

    session: int
    program: str
    args: tuple[str, ...]
    tty: bool
    started_at: Timestamp
    attached: bool


class Sandbox:
    """A live handle to a running sandbox."""

    def __init__(
        self, name: str, connection: _native.Connection, config: SandboxConfig, owned: bool
    ) -> None:
        self._name = name
        self._connection = connection
        self._config = config
        self._owned = owned

    @property
    def name(self) -> str:
        return self._name

    @property
    def config(self) -> SandboxConfig:
        return self._config

    @property
    def fs(self) -> SandboxFs:
        """The guest's files, over this handle's connection."""
        return SandboxFs(self._connection.fs())

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    async def create(
        cls,
        name: str,
        *,
        image: UserImage | None = None,
        registry_auth: RegistryAuth | None = None,
        **options: Unpack[SandboxOptions],
    ) -> Sandbox:
        """Creates and boots a sandbox (options: :class:`SandboxOptions`; ``memory`` is a
        :class:`Size` or MiB). An OCI image (``"alpine"``, :meth:`Image.oci`) is pulled first
        as its pull policy says; its env, working directory and user become the defaults of
        every exec. ``volumes`` maps guest paths to :class:`Volume` mounts; ``patches`` (see
        :class:`Patch`) are applied to the root filesystem before this returns. ``network``
        (a :class:`Network`) sets what the sandbox may reach, its DNS and its published
        ports; ``ports`` (``{8080: 80}``) publishes more, TCP on 127.0.0.1. ``secrets``
        (``Secret.env("OPENAI_API_KEY", value=..., allow_hosts=["api.openai.com"])``) puts
        each secret's placeholder into the exec environment and its value into requests to
        the hosts it allows; values are kept in the supervisor's memory only (a secret with
        a source, ``from_env`` / ``from_file``, is read again at each start).

        A sandbox dies with the process that created it unless ``detached``. Raises
        :class:`SandboxAlreadyExistsError` when the name is taken (unless ``replace``),
        :class:`ImageNotFoundError` for an unknown image, :class:`ImagePullFailedError` when
        pulling fails, :class:`InvalidConfigError` for bad values (a secret without a value,
        a volume's host directory
        or image that does not exist, too many volume devices), :class:`VolumeNotFoundError`
        for an unknown named volume, :class:`VolumeBusyError` when another running sandbox
        holds a named volume, :class:`SandboxStartError` when the VM does not come up or a
        volume cannot be mounted in it, :class:`PortInUseError` when another process holds
        one of its host ports (``network``'s or ``ports``), :class:`PatchFailedError` when a
        patch fails (the sandbox is then removed).
        """
        creation = _Creation.of(name, image, options)
        source = creation.config.image
        if isinstance(source, OciImage):
            creation = creation.on_image(source, await resolve_oci_image(source, registry_auth))
        return await cls._boot(creation)

    @classmethod
    async def _boot(cls, creation: _Creation) -> Sandbox:
        """Records and boots the sandbox, its image resolved, and applies its patches."""
        config = creation.config
        await run_blocking(
            _native.create_sandbox,
            config.model_dump_json(),
            creation.replace,
            creation.detached,
            creation.start_timeout,
            exposed(creation.secret_values),
        )
        connection = await run_blocking(_native.Connection.open, config.name)
        sandbox = cls(config.name, connection, config, owned=True)
        try:
            await apply_patches(sandbox.fs, config.patches)
        except BaseException:
            # A half-patched root is of use to nobody: nothing of the sandbox stays behind.
            await Sandbox.remove(config.name, force=True)
            raise
        return sandbox

    @staticmethod
    def create_with_progress(
        name: str,
        *,
        image: UserImage,
        registry_auth: RegistryAuth | None = None,
        **options: Unpack[SandboxOptions],
    ) -> PullSession:
        """Like :meth:`create`, with the image pull's progress: ``async with`` it, iterate
        the :data:`PullProgress` events, then ``await session.sandbox()``. Bad options raise
        :class:`InvalidConfigError` here, before anything is pulled."""
        return PullSession(_Creation.of(name, image, options), registry_auth)

    @classmethod
    async def connect(cls, name: str) -> Sandbox:
        """Attaches to a running sandbox created by any process. The handle does not own the
        sandbox: leaving its ``async with`` block leaves the sandbox running.

        Raises :class:`SandboxNotFoundError` or :class:`SandboxNotRunningError`.
        """
        info = await Sandbox.get_info(name)
        connection = await run_blocking(_native.Connection.open, name)
        return cls(name, connection, info.config, owned=False)

    @staticmethod
    async def get(name: str) -> SandboxHandle:
        """A handle on a sandbox's record, whatever its state."""
        return SandboxHandle(await Sandbox.get_info(name))

    async def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Asks the guest to shut down and returns at once; the VM is killed if it is still
        running after ``timeout`` seconds."""
        await run_blocking(self._connection.stop, int(timeout * 1000), False)

    async def stop_and_wait(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Shuts the guest down cleanly and waits until the VM is gone."""
        await run_blocking(self._connection.stop, int(timeout * 1000), True)

    async def kill(self) -> None:
        """Stops the VM at once, without a guest shutdown."""
        await run_blocking(self._connection.kill)

    async def pause(self) -> None:
        """Freezes the VM's CPUs; memory and processes stay as they are."""
        await run_blocking(self._connection.pause)

    async def resume(self) -> None:
        await run_blocking(self._connection.resume)

    async def detach(self) -> None:
        """Lets the sandbox outlive this process (and this handle's ``async with``)."""
        await run_blocking(self._connection.detach)
        self._owned = False

    async def wait_until_stopped(self, timeout: float | None = None) -> SandboxInfo:
        return await wait_until_stopped(self._name, timeout)

    async def info(self) -> SandboxInfo:
        return await Sandbox.get_info(self._name)

    async def metrics(self) -> SandboxMetrics:
        """The latest metrics sample (the supervisor samples once a second)."""
        return await sandbox_metrics(self._name)

    def metrics_stream(self, interval: float = 1.0) -> MetricsStream:
        """A sample every ``interval`` seconds until the sandbox stops: ``async for``."""
        return MetricsStream(self._name, interval)

    def logs(
        self,
        source: LogSource | str = LogSource.CONSOLE,
        *,
        tail: int | None = None,
        follow: bool = False,
    ) -> AsyncIterator[str]:
        """Lines of the guest console (``console``), of the commands run (``exec``) or of
        the network's flow log (``network``, a :class:`FlowLogEntry` a line)."""
        return read_logs(self._name, source, tail=tail, follow=follow)

    def network_log(
        self, *, tail: int | None = None, follow: bool = False
    ) -> AsyncIterator[FlowLogEntry]:
        """The flow log's records: every flow decision, flow close and DNS query, with the
        rule that decided it (see :class:`FlowLogEntry`)."""
        return read_network_log(self._name, tail=tail, follow=follow)

    async def set_network_policy(self, policy: NetworkPolicy | str) -> None:
        """Replaces the network policy (a :class:`NetworkPolicy` or a preset's name) while
        the sandbox runs: new flows and DNS queries are decided by it at once, and open flows
        it denies are closed. It is stored too, so the next start uses it.

        Raises :class:`InvalidConfigError` for a bad policy and :class:`NetworkChangeError`
        when this sandbox's network cannot change its policy (the stored one is then kept).
        """
        network = await set_network_policy(self._name, policy)
        self._config = self._config.model_copy(update={"network": network})

    async def set_secret(self, entry: SecretEntry) -> None:
        """Adds ``entry``'s secret, or replaces the one of the same environment variable:
        with a value (or a source, read now) the gateway uses the new value from the next
        request on; with neither, the running value is kept (hosts, action or placeholder
        change only). The stored config and the exec environment's placeholder change too.

        Raises :class:`SecretValueMissingError` when a new secret of a running sandbox has
        no value, or its source has nothing; :class:`InvalidConfigError` for a bad set."""
        self._config = await set_secret(self._name, entry)

    async def remove_secret(self, env_var: str) -> None:
        """Removes the secret of ``env_var`` (running and stored) and its variable from the
        exec environment. Raises :class:`SecretNotFoundError` when there is none."""
        self._config = await remove_secret(self._name, env_var)

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
        """Kills and removes the sandbox if this handle created it (and did not detach)."""
        if self._owned:
            await self.kill()
            await Sandbox.remove(self._name)

    # -- commands --------------------------------------------------------------------------

    def _exec_args(self, cmd: str, args: Sequence[str] | ExecOptions | None) -> NativeExecArgs:
        """The exec's options over the sandbox's, over the image's."""
        config, image = self._config, self._config.image_defaults
        return native_exec_args(
            cmd, args, {**image.env, **config.env}, config.workdir or image.workdir, image.user
        )

    async def exec(self, cmd: str, args: Sequence[str] | ExecOptions | None = None) -> ExecOutput:
        """Runs ``cmd`` in the guest and collects its output.

        ``args`` is either the argument list or an :class:`ExecOptions` dict. Raises
        :class:`ExecTimeoutError` when a ``timeout`` expires (the process group is killed).
        """
        options = self._exec_args(cmd, args)
        result = await run_blocking(
            self._connection.exec,
            options.program,
            options.args,
            options.env,
            options.cwd,
            options.timeout_ms,
            options.user,
            options.rlimits,
        )
        if result.timed_out:
            raise ExecTimeoutError(
                f"{cmd!r} did not finish within {options.timeout_ms} ms and was killed"
            )
        return ExecOutput(
            stdout=result.stdout,
            stderr=result.stderr,
            status=ExitStatus(code=result.exit_code, signal=result.signal),
        )

    async def shell(self, script: str, options: ExecOptions | None = None) -> ExecOutput:
        """Runs ``script`` with ``/bin/sh -c`` (pipes, redirects, ...)."""
        return await self.exec("/bin/sh", {**(options or {}), "args": ["-c", script]})

    async def exec_stream(
        self, cmd: str, args: Sequence[str] | ExecOptions | None = None
    ) -> ExecHandle:
        """Starts ``cmd`` and returns a handle streaming its events as they happen."""
        options = self._exec_args(cmd, args)
        stream = await run_blocking(
            self._connection.exec_stream,
            options.program,
            options.args,
            options.env,
            options.cwd,
            options.timeout_ms,
            options.tty,
            options.user,
            options.rlimits,
        )
        return ExecHandle(stream)

    async def shell_stream(self, script: str, options: ExecOptions | None = None) -> ExecHandle:
        return await self.exec_stream("/bin/sh", {**(options or {}), "args": ["-c", script]})

    async def attach(
        self,
        cmd: str | None = None,
        args: Sequence[str] | AttachOptions | None = None,
        *,
        session: int | None = None,
    ) -> int | None:
        """Runs ``cmd`` (default: the guest's login shell) on a terminal bridged to this
        process's terminal, or re-attaches to ``session``. Returns the exit code, or ``None``
        when the user typed the detach keys (the session keeps running)."""
        options: AttachOptions = (
            AttachOptions(**args) if isinstance(args, Mapping) else {"args": list(args or [])}
        )
        detach_keys = options.pop("detach_keys", DEFAULT_DETACH_KEYS)
        stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
        if session is not None:
            handle = await self.attach_session(session)
            await handle.resize(*terminal_size(stdout))
        else:
            program = cmd or await self.login_shell()
            exec_options = ExecOptions(
                args=options.get("args", ()),
                env=options.get("env", {}),
                tty=terminal_size(stdout),
            )
            if "cwd" in options:
                exec_options["cwd"] = options["cwd"]
            handle = await self.exec_stream(program, exec_options)
        with raw_terminal(stdin):
            return await bridge(handle, input_fd=stdin, output_fd=stdout, detach_keys=detach_keys)

    async def login_shell(self) -> str:
        """The best interactive shell the guest has: bash, else ash, else sh."""
        probe = "command -v bash || command -v ash || echo /bin/sh"
        found = (await self.exec("/bin/sh", ["-c", probe])).stdout_text.split()
        return found[0] if found else "/bin/sh"

    async def sessions(self) -> list[SessionInfo]:
        """Commands still running, including terminal sessions whose client went away."""
        return decode(list[SessionInfo], await run_blocking(self._connection.sessions))

    async def attach_session(self, session: int) -> ExecHandle:
        """Takes over a running session: its recent output is replayed, then live output
        follows, and input, resizes and signals reach it."""
        return ExecHandle(await run_blocking(self._connection.attach, session))

    # -- the sandbox collection ------------------------------------------------------------

    @staticmethod
    async def list() -> list[SandboxInfo]:
        return await sandbox_infos()

    @staticmethod
    async def list_version() -> int:
        """Changes whenever :meth:`list` would answer differently (a sandbox created, removed,
        started, stopped, crashed or reconfigured), so a poller can list only then."""
        return await sandboxes_version()

    @staticmethod
    async def get_info(name: str) -> SandboxInfo:
        return await sandbox_info(name)

    @staticmethod
    async def remove(name: str, *, force: bool = False) -> None:
        """Deletes a sandbox's record and files. A running sandbox raises
        :class:`SandboxStillRunningError` unless ``force``, which kills it first."""
        await run_blocking(_native.remove_sandbox, name, force)

    async def close(self) -> None:
        """Lets go of this handle; the sandbox itself is not affected."""
        await run_blocking(self._connection.close)

    def __repr__(self) -> str:
        return f"Sandbox(name={self._name!r})"


async def set_network_policy(name: str, policy: NetworkPolicy | str) -> Network:
    """Sets the policy of sandbox ``name`` (running or not); returns its network with it."""
    checked = Network(policy=policy).policy
    info = await Sandbox.get_info(name)
    network = info.config.network.model_copy(update={"policy": checked})
    policy_json = json.dumps(network.model_dump(mode="json")["policy"])
    await run_blocking(_native.set_network_policy, name, policy_json)
    return network


async def set_secret(name: str, entry: SecretEntry) -> SandboxConfig:
    """Adds or replaces a secret of sandbox ``name`` (running or not); returns its config."""
    info = await Sandbox.get_info(name)
    secrets = with_secret(info.config.secrets, entry)
    value = update_value(entry)
    values = {} if value is None else {entry.env_var: value}
    return await _replace_secrets(name, secrets, values)


async def remove_secret(name: str, env_var: str) -> SandboxConfig:
    """Removes a secret of sandbox ``name`` (running or not); returns its config."""
    info = await Sandbox.get_info(name)
    return await _replace_secrets(name, without_secret(info.config.secrets, env_var), {})


async def _replace_secrets(
    name: str, secrets: tuple[SecretConfig, ...], values: Mapping[str, SecretStr]
) -> SandboxConfig:
    await run_blocking(_native.set_secrets, name, update_json(secrets, values))
    return (await Sandbox.get_info(name)).config


async def wait_until_stopped(name: str, timeout: float | None = None) -> SandboxInfo:
    """Waits until the sandbox is no longer starting, running or paused."""

    async def poll() -> SandboxInfo:
        while (info := await Sandbox.get_info(name)).status.is_live:
            await asyncio.sleep(STATUS_POLL_S)
        return info

    return await asyncio.wait_for(poll(), timeout)


class SandboxHandle:
    """A sandbox's database record, usable from any process and in any state."""

    def __init__(self, info: SandboxInfo) -> None:
        self._info = info

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def status(self) -> SandboxStatus:
        return self._info.status

    @property
    def config(self) -> SandboxConfig:
        return self._info.config

    @property
    def created_at(self) -> datetime:
        return self._info.created_at

    @property
    def info(self) -> SandboxInfo:
        return self._info

    async def refresh(self) -> SandboxStatus:
        self._info = await Sandbox.get_info(self.name)
        return self._info.status

    async def connect(self) -> Sandbox:
        return await Sandbox.connect(self.name)

    async def start(
        self,
        *,
        detached: bool = False,
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
        secrets: Sequence[SecretEntry] | None = None,
    ) -> Sandbox:
        """Boots the stopped sandbox again with its configuration and its disk. Its secrets'
        values come from ``secrets`` (matched by environment variable) or from their stored
        sources; one with neither raises :class:`SecretValueMissingError`, and nothing is
        started."""
        self._info = await Sandbox.get_info(self.name)
        values = start_values(self._info.config.secrets, secrets)
        started = await run_blocking(
            _native.start_sandbox, self.name, detached, start_timeout, exposed(values)
        )
        self._info = decode_sandbox_info(started)
        connection = await run_blocking(_native.Connection.open, self.name)
        return Sandbox(self.name, connection, self._info.config, owned=not detached)

    async def stop(self, timeout: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        await (await self.connect()).stop_and_wait(timeout)
        await self.refresh()

    async def kill(self) -> None:
        await (await self.connect()).kill()
        await self.refresh()

    async def remove(self) -> None:
        await Sandbox.remove(self.name)

    def logs(
        self,
        source: LogSource | str = LogSource.CONSOLE,
        *,
        tail: int | None = None,
        follow: bool = False,
    ) -> AsyncIterator[str]:
        return read_logs(self.name, source, tail=tail, follow=follow)

    def network_log(
        self, *, tail: int | None = None, follow: bool = False
    ) -> AsyncIterator[FlowLogEntry]:
        """The flow log's records (see :meth:`Sandbox.network_log`)."""
        return read_network_log(self.name, tail=tail, follow=follow)

    async def set_network_policy(self, policy: NetworkPolicy | str) -> None:
        """Replaces the network policy, live if the sandbox runs, and for its next start
        (see :meth:`Sandbox.set_network_policy`)."""
        await set_network_policy(self.name, policy)
        await self.refresh()

    async def set_secret(self, entry: SecretEntry) -> None:
        """Adds or replaces a secret, live if the sandbox runs, and for its next start (see
        :meth:`Sandbox.set_secret`)."""
        await set_secret(self.name, entry)
        await self.refresh()

    async def remove_secret(self, env_var: str) -> None:
        """Removes a secret (see :meth:`Sandbox.remove_secret`)."""
        await remove_secret(self.name, env_var)
        await self.refresh()

    def __repr__(self) -> str:
        return f"SandboxHandle(name={self.name!r}, status={self.status!s})"

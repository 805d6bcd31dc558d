"""Running commands: options, resource limits, and streaming handles with sealed events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Self, TypedDict

from . import _native
from ._blocking import run_blocking
from .errors import InvalidConfigError
from .types import ExecOutput, ExitStatus

#: Terminal size of a PTY command when none is given.
DEFAULT_TERMINAL_SIZE = (24, 80)


class RlimitResource(StrEnum):
    """The 16 POSIX resource limits of Linux (``RLIMIT_*``)."""

    CPU = "cpu"
    FSIZE = "fsize"
    DATA = "data"
    STACK = "stack"
    CORE = "core"
    RSS = "rss"
    NPROC = "nproc"
    NOFILE = "nofile"
    MEMLOCK = "memlock"
    AS = "as"
    LOCKS = "locks"
    SIGPENDING = "sigpending"
    MSGQUEUE = "msgqueue"
    NICE = "nice"
    RTPRIO = "rtprio"
    RTTIME = "rttime"


#: ``RLIM_INFINITY`` on Linux.
UNLIMITED = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Rlimit:
    """A resource limit applied to a command before it starts."""

    resource: RlimitResource
    soft: int
    hard: int

    def __post_init__(self) -> None:
        if not 0 <= self.soft <= self.hard <= UNLIMITED:
            raise InvalidConfigError(f"rlimit {self.resource}: need 0 <= soft <= hard")

    @classmethod
    def of(cls, resource: RlimitResource, soft: int, hard: int | None = None) -> Self:
        return cls(resource, soft, soft if hard is None else hard)

    @classmethod
    def cpu(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.CPU, soft, hard)

    @classmethod
    def fsize(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.FSIZE, soft, hard)

    @classmethod
    def data(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.DATA, soft, hard)

    @classmethod
    def stack(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.STACK, soft, hard)

    @classmethod
    def core(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.CORE, soft, hard)

    @classmethod
    def rss(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.RSS, soft, hard)

    @classmethod
    def nproc(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.NPROC, soft, hard)

    @classmethod
    def nofile(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.NOFILE, soft, hard)

    @classmethod
    def memlock(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.MEMLOCK, soft, hard)

    @classmethod
    def as_(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.AS, soft, hard)

    @classmethod
    def locks(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.LOCKS, soft, hard)

    @classmethod
    def sigpending(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.SIGPENDING, soft, hard)

    @classmethod
    def msgqueue(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.MSGQUEUE, soft, hard)

    @classmethod
    def nice(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.NICE, soft, hard)

    @classmethod
    def rtprio(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.RTPRIO, soft, hard)

    @classmethod
    def rttime(cls, soft: int, hard: int | None = None) -> Self:
        return cls.of(RlimitResource.RTTIME, soft, hard)


class ExecOptions(TypedDict, total=False):
    """Full execution options, as the dict form of ``exec``'s second argument."""

    args: Sequence[str]
    cwd: str
    env: Mapping[str, str]
    timeout: float
    tty: bool | tuple[int, int]
    rlimits: Sequence[Rlimit]
    user: str


class AttachOptions(TypedDict, total=False):
    """Options of ``attach``: the command's, plus the keys that detach from it."""

    args: Sequence[str]
    cwd: str
    env: Mapping[str, str]
    detach_keys: str


@dataclass(frozen=True, slots=True)
class NativeExecArgs:
    """Validated options in the form the native runtime takes."""

    program: str
    args: list[str]
    env: list[tuple[str, str]]
    cwd: str | None
    timeout_ms: int | None
    tty: tuple[int, int] | None
    user: str | None
    rlimits: list[tuple[str, int, int]]


def native_exec_args(
    cmd: str,
    args: Sequence[str] | ExecOptions | None,
    default_env: Mapping[str, str],
    default_cwd: str | None,
    default_user: str | None = None,
) -> NativeExecArgs:
    options: ExecOptions = (
        ExecOptions(**args) if isinstance(args, Mapping) else {"args": list(args or [])}
    )
    unknown = set(options) - set(ExecOptions.__annotations__)
    if unknown:
        raise InvalidConfigError(f"unknown exec options: {', '.join(sorted(unknown))}")
    timeout = options.get("timeout")
    if timeout is not None and timeout <= 0:
        raise InvalidConfigError("timeout: must be greater than 0")
    tty = options.get("tty", False)
    size = tty if isinstance(tty, tuple) else (DEFAULT_TERMINAL_SIZE if tty else None)
    if size is not None and not all(0 < n < 2**16 for n in size):
        raise InvalidConfigError(f"tty: rows and cols must be 1..65535, got {size}")
    return NativeExecArgs(
        program=cmd,
        args=[str(arg) for arg in options.get("args", [])],
        env=list({**default_env, **dict(options.get("env", {}))}.items()),
        cwd=options.get("cwd", default_cwd),
        timeout_ms=int(timeout * 1000) if timeout is not None else None,
        tty=size,
        user=options.get("user", default_user),
        rlimits=[(str(r.resource), r.soft, r.hard) for r in options.get("rlimits", [])],
    )


# -- events --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartedEvent:
    pid: int
    event_type: Literal["started"] = "started"


@dataclass(frozen=True, slots=True)
class StdoutEvent:
    data: bytes
    event_type: Literal["stdout"] = "stdout"


@dataclass(frozen=True, slots=True)
class StderrEvent:
    data: bytes
    event_type: Literal["stderr"] = "stderr"


@dataclass(frozen=True, slots=True)
class ExitedEvent:
    status: ExitStatus
    timed_out: bool = False
    event_type: Literal["exited"] = "exited"

    @property
    def exit_code(self) -> int:
        return self.status.exit_code


ExecEvent = StartedEvent | StdoutEvent | StderrEvent | ExitedEvent


def _event(raw: tuple[object, ...]) -> ExecEvent:
    match raw:
        case ("started", int(pid)):
            return StartedEvent(pid)
        case ("stdout", bytes(data)):
            return StdoutEvent(data)
        case ("stderr", bytes(data)):
            return StderrEvent(data)
        case ("exited", code, signal, bool(timed_out)):
            return ExitedEvent(ExitStatus(code=code, signal=signal), timed_out)  # type: ignore[arg-type]
    raise AssertionError(f"unknown event {raw!r}")


class ExecSink:
    """The writable stdin of a streaming command."""

    def __init__(self, stream: _native.ExecStream) -> None:
        self._stream = stream

    async def write(self, data: bytes) -> None:
        await run_blocking(self._stream.write_stdin, bytes(data))

    async def close(self) -> None:
        """End of input: EOF for a pipe, the terminal's end-of-file key for a PTY."""
        await run_blocking(self._stream.close_stdin)


class ExecHandle:
    """A running command: an async iterator of events, plus its input and signals.

    Its stdin stays open until ``take_stdin().close()``; a PTY command's session outlives
    this handle's process and can be re-attached by :attr:`session`.
    """

    def __init__(self, stream: _native.ExecStream) -> None:
        self._stream = stream
        self._stdin_taken = False

    @property
    def session(self) -> int:
        """The supervisor's id of this session, for :meth:`Sandbox.attach_session`."""
        return self._stream.session

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ExecEvent:
        raw = await run_blocking(self._stream.next_event)
        if raw is None:
            raise StopAsyncIteration
        return _event(raw)

    async def next_event(self, timeout: float) -> ExecEvent | None:
        """The next event, or ``None`` if none arrives within ``timeout`` seconds or the
        command has finished."""
        raw = await run_blocking(self._stream.next_event, timeout)
        return None if raw is None else _event(raw)

    @property
    def finished(self) -> bool:
        return self._stream.finished

    def take_stdin(self) -> ExecSink:
        if self._stdin_taken:
            raise InvalidConfigError("stdin was already taken from this handle")
        self._stdin_taken = True
        return ExecSink(self._stream)

    async def signal(self, signal: int) -> None:
        """Sends ``signal`` to the command's process group."""
        await run_blocking(self._stream.signal, signal)

    async def kill(self) -> None:
        await self.signal(9)

    async def resize(self, rows: int, cols: int) -> None:
        """New terminal size for a PTY command (the guest program gets SIGWINCH)."""
        await run_blocking(self._stream.resize, rows, cols)

    async def wait(self) -> ExitedEvent:
        """Discards output until the command exits."""
        async for event in self:
            if isinstance(event, ExitedEvent):
                return event
        raise AssertionError("the stream ended without an exit event")

    async def collect(self) -> ExecOutput:
        """Gathers the remaining output until the command exits."""
        stdout, stderr = bytearray(), bytearray()
        async for event in self:
            match event:
                case StdoutEvent(data=data):
                    stdout += data
                case StderrEvent(data=data):
                    stderr += data
                case ExitedEvent(status=status):
                    return ExecOutput(bytes(stdout), bytes(stderr), status)
        raise AssertionError("the stream ended without an exit event")

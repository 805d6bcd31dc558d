"""Terminals of guest commands: the host terminal bridged to a guest pseudo-terminal
(``attach``), and :class:`TerminalEmulator` for a program that draws a guest's terminal
itself (the dashboard's shells).

Keys go to the guest as typed (the host terminal is in raw mode), output comes back as is,
and size changes follow the host window. A detach sequence (``ctrl-p,ctrl-q`` by default)
leaves the session running in the sandbox, to be attached again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import termios
import tty
from collections.abc import Iterator

from ._native import Terminal as TerminalEmulator
from .errors import InvalidConfigError
from .exec import ExecHandle, ExitedEvent, StderrEvent, StdoutEvent

__all__ = [
    "DEFAULT_DETACH_KEYS",
    "DetachDetector",
    "TerminalEmulator",
    "bridge",
    "parse_detach_keys",
    "raw_terminal",
    "terminal_size",
]

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
_READ_SIZE = 64 * 1024


def parse_detach_keys(spec: str) -> bytes:
    """``ctrl-p,ctrl-q`` → ``b"\\x10\\x11"``; single characters stand for themselves."""
    sequence = bytearray()
    for key in (part.strip() for part in spec.split(",")):
        if key.startswith("ctrl-") and len(key) == 6 and key[5].isalpha():
            sequence.append(ord(key[5].lower()) - ord("a") + 1)
        elif len(key) == 1:
            sequence.append(ord(key))
        else:
            raise InvalidConfigError(f"detach key {key!r}: use ctrl-<letter> or one character")
    if not sequence:
        raise InvalidConfigError("detach keys must not be empty")
    return bytes(sequence)


class DetachDetector:
    """Finds the detach sequence in keyboard input that may arrive split across reads. Bytes
    that turn out not to start the sequence are passed on unchanged."""

    def __init__(self, sequence: bytes) -> None:
        self._sequence = sequence
        self._matched = 0

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """Returns the bytes to forward, and whether the sequence is complete."""
        forward = bytearray()
        for byte in data:
            if byte == self._sequence[self._matched]:
                self._matched += 1
                if self._matched == len(self._sequence):
                    self._matched = 0
                    return bytes(forward), True
                continue
            forward += self._sequence[: self._matched]
            self._matched = 1 if byte == self._sequence[0] else 0
            if not self._matched:
                forward.append(byte)
        return bytes(forward), False


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """Puts a terminal in raw mode for the duration; does nothing for a pipe."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def terminal_size(fd: int) -> tuple[int, int]:
    try:
        size = os.get_terminal_size(fd)
        return size.lines, size.columns
    except OSError:
        return 24, 80


async def bridge(
    handle: ExecHandle,
    *,
    input_fd: int,
    output_fd: int,
    detach_keys: str = DEFAULT_DETACH_KEYS,
) -> int | None:
    """Connects a terminal to ``handle`` until the command exits (its exit code) or the user
    types the detach sequence (``None``; the session keeps running)."""
    loop = asyncio.get_running_loop()
    detector = DetachDetector(parse_detach_keys(detach_keys))
    keys: asyncio.Queue[bytes | None] = asyncio.Queue()
    detached = asyncio.Event()

    def on_input() -> None:
        try:
            data = os.read(input_fd, _READ_SIZE)
        except BlockingIOError:
            return
        if not data:
            loop.remove_reader(input_fd)
            keys.put_nowait(None)
            return
        forward, done = detector.feed(data)
        if forward:
            keys.put_nowait(forward)
        if done:
            detached.set()

    async def send_keys() -> None:
        stdin = handle.take_stdin()
        while (data := await keys.get()) is not None:
            await stdin.write(data)
        await stdin.close()

    async def show_output() -> int:
        async for event in handle:
            if isinstance(event, StdoutEvent | StderrEvent):
                os.write(output_fd, event.data)
            elif isinstance(event, ExitedEvent):
                return event.exit_code
        return 0

    resizes: set[asyncio.Task[None]] = set()

    def on_resize() -> None:
        task = loop.create_task(handle.resize(*terminal_size(output_fd)))
        resizes.add(task)
        task.add_done_callback(resizes.discard)

    loop.add_reader(input_fd, on_input)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGWINCH, on_resize)
    sender = loop.create_task(send_keys())
    output = loop.create_task(show_output())
    detach = loop.create_task(detached.wait())
    try:
        done, _ = await asyncio.wait({output, detach}, return_when=asyncio.FIRST_COMPLETED)
        return output.result() if output in done else None
    finally:
        loop.remove_reader(input_fd)
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGWINCH)
        for task in (sender, output, detach):
            task.cancel()

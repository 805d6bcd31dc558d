"""Streaming commands: events, stdin, signals, resource limits, terminals."""

from __future__ import annotations

import hashlib
import os

import pytest

from microsandbox_tui import (
    ExitedEvent,
    Rlimit,
    Sandbox,
    StartedEvent,
    StderrEvent,
    StdoutEvent,
)

pytestmark = pytest.mark.vm

FIVE_MIB = 5 * 1024 * 1024


async def test_events_arrive_in_order(shared_sandbox: Sandbox) -> None:
    handle = await shared_sandbox.shell_stream("echo one; echo two >&2; echo three")
    events = [event async for event in handle]
    assert isinstance(events[0], StartedEvent) and events[0].pid > 1
    assert isinstance(events[-1], ExitedEvent) and events[-1].exit_code == 0
    middle = events[1:-1]
    assert all(isinstance(event, StdoutEvent | StderrEvent) for event in middle)
    assert b"".join(e.data for e in middle if isinstance(e, StdoutEvent)) == b"one\nthree\n"
    assert b"".join(e.data for e in middle if isinstance(e, StderrEvent)) == b"two\n"
    assert events[0].event_type == "started"


async def test_five_mib_of_stdin_round_trips_through_cat(shared_sandbox: Sandbox) -> None:
    payload = os.urandom(FIVE_MIB)
    handle = await shared_sandbox.exec_stream("cat")
    stdin = handle.take_stdin()
    for offset in range(0, len(payload), 1 << 20):
        await stdin.write(payload[offset : offset + (1 << 20)])
    await stdin.close()
    output = await handle.collect()
    assert output.success
    assert hashlib.sha256(output.stdout).hexdigest() == hashlib.sha256(payload).hexdigest()


async def test_exit_by_signal_is_reported_as_a_signal(shared_sandbox: Sandbox) -> None:
    output = await shared_sandbox.shell("kill -TERM $$")
    assert output.status.signal == 15
    assert output.status.code is None
    assert output.exit_code == 128 + 15
    assert not output.success


async def test_signal_reaches_a_streaming_command(shared_sandbox: Sandbox) -> None:
    handle = await shared_sandbox.exec_stream("sleep", ["100"])
    assert isinstance(await handle.__anext__(), StartedEvent)
    await handle.signal(9)
    exited = await handle.wait()
    assert exited.status.signal == 9


async def test_rlimit_nofile_is_visible_to_the_command(shared_sandbox: Sandbox) -> None:
    output = await shared_sandbox.exec(
        "/bin/sh", {"args": ["-c", "ulimit -n"], "rlimits": [Rlimit.nofile(64)]}
    )
    assert output.stdout_text.strip() == "64"


async def test_command_runs_as_another_user(shared_sandbox: Sandbox) -> None:
    output = await shared_sandbox.exec("id", {"args": ["-u"], "user": "nobody"})
    assert output.stdout_text.strip() == "65534"


async def read_until(handle, marker: bytes, limit: int = 200) -> bytes:  # type: ignore[no-untyped-def]
    seen = b""
    for _ in range(limit):
        event = await handle.next_event(timeout=10)
        assert event is not None, f"no output containing {marker!r}; got {seen!r}"
        if isinstance(event, StdoutEvent):
            seen += event.data
            if marker in seen:
                return seen
    raise AssertionError(f"{marker!r} never arrived; got {seen!r}")


async def test_terminal_size_follows_resize(shared_sandbox: Sandbox) -> None:
    handle = await shared_sandbox.exec_stream("/bin/sh", {"tty": (24, 80)})
    stdin = handle.take_stdin()
    await stdin.write(b"stty size\n")
    await read_until(handle, b"24 80")
    await handle.resize(30, 100)
    await stdin.write(b"stty size\n")
    await read_until(handle, b"30 100")
    await stdin.write(b"exit 0\n")
    assert (await handle.wait()).exit_code == 0

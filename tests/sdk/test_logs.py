"""Console and exec logs of a sandbox."""

from __future__ import annotations

import asyncio

import pytest

from microsandbox_tui import InvalidConfigError, LogSource, Sandbox

pytestmark = pytest.mark.vm


async def test_guest_console_output_reaches_the_console_log(shared_sandbox: Sandbox) -> None:
    await shared_sandbox.shell("echo console-marker-$((1 + 1)) > /dev/console")

    async def find() -> str:
        async for line in shared_sandbox.logs(LogSource.CONSOLE, follow=True):
            if "console-marker-2" in line:
                return line
        raise AssertionError("the log ended without the marker")

    assert "console-marker-2" in await asyncio.wait_for(find(), timeout=10)


async def test_exec_log_records_commands_and_their_ends(shared_sandbox: Sandbox) -> None:
    await shared_sandbox.exec("echo", ["exec-log-marker"])
    await shared_sandbox.shell("exit 7")
    lines = [line async for line in shared_sandbox.logs("exec", tail=200)]
    started = [i for i, line in enumerate(lines) if "started: echo exec-log-marker" in line]
    assert started, lines[-5:]
    assert any("exited with code 7" in line for line in lines[started[-1] :])


async def test_logs_of_a_stopped_sandbox_stay_readable(unique_name: str) -> None:
    sandbox = await Sandbox.create(unique_name)
    await sandbox.exec("true")
    await sandbox.stop_and_wait()
    handle = await Sandbox.get(unique_name)
    lines = [line async for line in handle.logs("exec", tail=1, follow=True)]
    assert len(lines) == 1 and "exited with code 0" in lines[0]
    await handle.remove()


async def test_unknown_log_is_a_typed_error(shared_sandbox: Sandbox) -> None:
    with pytest.raises(InvalidConfigError, match="console, exec"):
        [line async for line in shared_sandbox.logs("nope")]

"""Sessions and sandboxes that outlive the process that made them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap

import pytest

from microsandbox_tui import Sandbox, SandboxStatus, StdoutEvent

pytestmark = pytest.mark.vm


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE, text=True
    )


SHELL_CLIENT = """
import asyncio, sys
from microsandbox_tui import Sandbox, StdoutEvent

async def main():
    sandbox = await Sandbox.connect(sys.argv[1])
    handle = await sandbox.exec_stream("/bin/sh", {"tty": True})
    await handle.take_stdin().write(b"echo before-$((40 + 2))\\n")
    seen = b""
    while b"before-42" not in seen:
        event = await handle.next_event(timeout=10)
        if isinstance(event, StdoutEvent):
            seen += event.data
    print(handle.session, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_terminal_session_survives_its_client_and_is_reattached(
    shared_sandbox: Sandbox,
) -> None:
    client = run_python(SHELL_CLIENT, shared_sandbox.name)
    try:
        session = int(client.stdout.readline() if client.stdout else "")
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait()
    listed = {info.session: info for info in await shared_sandbox.sessions()}
    assert session in listed and listed[session].tty
    for _ in range(50):
        if not listed[session].attached:
            break
        await asyncio.sleep(0.05)
        listed = {info.session: info for info in await shared_sandbox.sessions()}
    assert not listed[session].attached

    handle = await shared_sandbox.attach_session(session)
    replay = b""
    while b"before-42" not in replay:
        event = await handle.next_event(timeout=10)
        assert event is not None, f"replay lacks the earlier output: {replay!r}"
        if isinstance(event, StdoutEvent):
            replay += event.data
    stdin = handle.take_stdin()
    await stdin.write(b"echo after-$((6 * 7))\n")
    live = b""
    while b"after-42" not in live:
        event = await handle.next_event(timeout=10)
        assert event is not None
        if isinstance(event, StdoutEvent):
            live += event.data
    await stdin.write(b"exit 0\n")
    assert (await handle.wait()).exit_code == 0
    assert session not in {info.session for info in await shared_sandbox.sessions()}


DETACHED_CREATOR = """
import asyncio, sys
from microsandbox_tui import Sandbox

async def main():
    sandbox = await Sandbox.create(sys.argv[1], detached=True)
    await sandbox.shell("echo made-by-creator > /root/marker")
    print("ready", flush=True)

asyncio.run(main())
"""


async def test_detached_sandbox_is_used_and_stopped_from_another_process(
    unique_name: str,
) -> None:
    creator = run_python(DETACHED_CREATOR, unique_name)
    assert creator.stdout and creator.stdout.readline().strip() == "ready"
    assert creator.wait() == 0
    handle = await Sandbox.get(unique_name)
    assert handle.status is SandboxStatus.RUNNING
    assert handle.info.detached
    async with await handle.connect() as sandbox:
        output = await sandbox.exec("cat", ["/root/marker"])
        assert output.stdout_text == "made-by-creator\n"
    # Leaving a connected handle's block leaves the sandbox running.
    assert await handle.refresh() is SandboxStatus.RUNNING
    await handle.stop()
    assert handle.status is SandboxStatus.STOPPED
    await handle.remove()


DETACHING_CREATOR = """
import asyncio, sys
from microsandbox_tui import Sandbox

async def main():
    sandbox = await Sandbox.create(sys.argv[1])
    await sandbox.detach()
    print("detached", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_detach_lets_an_attached_sandbox_outlive_its_killed_creator(
    unique_name: str,
) -> None:
    creator = run_python(DETACHING_CREATOR, unique_name)
    try:
        assert creator.stdout and creator.stdout.readline().strip() == "detached"
    finally:
        creator.send_signal(signal.SIGKILL)
        creator.wait()
    await asyncio.sleep(1.0)
    info = await Sandbox.get_info(unique_name)
    assert info.status is SandboxStatus.RUNNING and info.detached
    sandbox = await Sandbox.connect(unique_name)
    assert (await sandbox.exec("true")).success
    await sandbox.kill()
    await Sandbox.remove(unique_name)


async def test_pause_freezes_and_resume_thaws(unique_name: str) -> None:
    async with await Sandbox.create(unique_name) as sandbox:
        await sandbox.pause()
        assert await sandbox.status() is SandboxStatus.PAUSED
        frozen = await sandbox.exec_stream("echo", ["thawed"])
        assert await frozen.next_event(timeout=1.0) is None, "a paused guest must not run"
        await sandbox.resume()
        assert await sandbox.status() is SandboxStatus.RUNNING
        assert (await frozen.collect()).stdout_text == "thawed\n"


async def test_stopped_sandbox_restarts_with_its_disk(unique_name: str) -> None:
    sandbox = await Sandbox.create(unique_name)
    await sandbox.shell("echo kept > /root/state")
    await sandbox.stop_and_wait()
    handle = await Sandbox.get(unique_name)
    assert handle.status is SandboxStatus.STOPPED
    async with await handle.start() as restarted:
        assert (await restarted.exec("cat", ["/root/state"])).stdout_text == "kept\n"
        assert await restarted.status() is SandboxStatus.RUNNING
    assert unique_name not in [info.name for info in await Sandbox.list()]


async def test_stop_returns_at_once_and_wait_until_stopped_sees_the_end(unique_name: str) -> None:
    sandbox = await Sandbox.create(unique_name)
    await sandbox.stop()
    assert await sandbox.status() in (SandboxStatus.DRAINING, SandboxStatus.STOPPED)
    info = await sandbox.wait_until_stopped(timeout=20)
    assert info.status is SandboxStatus.STOPPED
    await Sandbox.remove(unique_name)

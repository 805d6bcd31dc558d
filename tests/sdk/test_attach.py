"""Bridging a terminal to a guest terminal session, and detaching from it."""

from __future__ import annotations

import asyncio
import os

import pytest

from microsandbox_tui import Sandbox
from microsandbox_tui.terminal import DetachDetector, bridge, parse_detach_keys

pytestmark = pytest.mark.vm


def test_detach_keys_parse() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a, x") == b"\x01x"


def test_detach_sequence_is_found_across_reads_and_false_starts_pass_through() -> None:
    detector = DetachDetector(b"\x10\x11")
    assert detector.feed(b"ab\x10") == (b"ab", False)
    assert detector.feed(b"\x10") == (b"\x10", False)
    assert detector.feed(b"\x11rest") == (b"", True)
    assert detector.feed(b"\x10z") == (b"\x10z", False)


async def run_bridge(sandbox: Sandbox, typed: bytes) -> tuple[int | None, bytes, int]:
    keyboard_read, keyboard_write = os.pipe()
    screen_read, screen_write = os.pipe()
    os.set_blocking(screen_read, False)
    handle = await sandbox.exec_stream("/bin/sh", {"tty": (24, 80)})
    os.write(keyboard_write, typed)
    try:
        result = await asyncio.wait_for(
            bridge(handle, input_fd=keyboard_read, output_fd=screen_write), timeout=20
        )
        await asyncio.sleep(0.1)
        screen = b""
        while True:
            try:
                chunk = os.read(screen_read, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            screen += chunk
        return result, screen, handle.session
    finally:
        for fd in (keyboard_read, keyboard_write, screen_read, screen_write):
            os.close(fd)


async def test_bridge_returns_the_exit_code(shared_sandbox: Sandbox) -> None:
    code, screen, _ = await run_bridge(shared_sandbox, b"echo bridged-$((2 * 21))\nexit 3\n")
    assert code == 3
    assert b"bridged-42" in screen


async def test_detach_leaves_the_session_running(shared_sandbox: Sandbox) -> None:
    code, _, session = await run_bridge(shared_sandbox, b"echo still-here\n\x10\x11")
    assert code is None
    assert session in {info.session for info in await shared_sandbox.sessions()}
    handle = await shared_sandbox.attach_session(session)
    await handle.take_stdin().write(b"exit 0\n")
    assert (await handle.wait()).exit_code == 0

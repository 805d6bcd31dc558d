"""The native terminal emulator, on recorded bytes and on a real guest PTY."""

from __future__ import annotations

import pytest

from microsandbox_tui import Sandbox, StdoutEvent
from microsandbox_tui.terminal import TerminalEmulator


def test_recorded_stream_gives_styled_rows_and_dirty_tracking() -> None:
    terminal = TerminalEmulator(3, 20)
    terminal.feed(b"plain \x1b[1;32mgreen\x1b[0m\r\n\x1b]2;a title\x07")
    assert terminal.dirty_rows() == [0, 1, 2]
    first = terminal.row_segments(0)
    assert first[0][0] == "plain "
    green = next(segment for segment in first if segment[0] == "green")
    assert green[1:4] == ("color(2)", "default", True)
    assert terminal.title == "a title"
    assert terminal.cursor == (1, 0, True)
    terminal.feed(b"second")
    assert terminal.dirty_rows() == [1]


@pytest.mark.vm
async def test_guest_pty_output_renders(shared_sandbox: Sandbox) -> None:
    handle = await shared_sandbox.exec_stream(
        "/bin/sh", {"tty": (5, 30), "args": ["-c", r"printf '\033[31mred\033[0m ok'"]}
    )
    terminal = TerminalEmulator(5, 30)
    async for event in handle:
        if isinstance(event, StdoutEvent):
            terminal.feed(event.data)
    segments = terminal.row_segments(0)
    assert segments[0][:2] == ("red", "color(1)")
    assert "".join(segment[0] for segment in segments).rstrip() == "red ok"

"""Textual keys as the bytes an xterm sends."""

from __future__ import annotations

import pytest

from microsandbox_tui.tui.keys_vt import encode_key


@pytest.mark.parametrize(
    ("key", "character", "expected"),
    [
        ("a", "a", b"a"),
        ("A", "A", b"A"),
        ("é", "é", "é".encode()),
        ("space", " ", b" "),
        ("enter", "\r", b"\r"),
        ("backspace", "\x08", b"\x7f"),
        ("tab", "\t", b"\t"),
        ("shift+tab", None, b"\x1b[Z"),
        ("escape", "\x1b", b"\x1b"),
        ("up", None, b"\x1b[A"),
        ("down", None, b"\x1b[B"),
        ("right", None, b"\x1b[C"),
        ("left", None, b"\x1b[D"),
        ("home", None, b"\x1b[H"),
        ("end", None, b"\x1b[F"),
        ("pageup", None, b"\x1b[5~"),
        ("pagedown", None, b"\x1b[6~"),
        ("insert", None, b"\x1b[2~"),
        ("delete", None, b"\x1b[3~"),
        ("f1", None, b"\x1bOP"),
        ("f4", None, b"\x1bOS"),
        ("f5", None, b"\x1b[15~"),
        ("f12", None, b"\x1b[24~"),
        ("ctrl+a", "\x01", b"\x01"),
        ("ctrl+c", "\x03", b"\x03"),
        ("ctrl+z", "\x1a", b"\x1a"),
        ("ctrl+backslash", None, b"\x1c"),
        ("alt+x", "x", b"\x1bx"),
        ("alt+ctrl+a", None, b"\x1b\x01"),
        ("shift+up", None, b"\x1b[1;2A"),
        ("shift+left", None, b"\x1b[1;2D"),
        ("ctrl+right", None, b"\x1b[1;5C"),
        ("shift+delete", None, b"\x1b[3;2~"),
        ("shift+f5", None, b"\x1b[15;2~"),
        ("ctrl+f1", None, b"\x1b[1;5P"),
        ("exclamation_mark", "!", b"!"),
    ],
)
def test_encode_key(key: str, character: str | None, expected: bytes) -> None:
    assert encode_key(key, character, application_cursor=False) == expected


def test_application_cursor_keys_use_ss3() -> None:
    assert encode_key("up", None, application_cursor=True) == b"\x1bOA"
    assert encode_key("left", None, application_cursor=True) == b"\x1bOD"
    assert encode_key("home", None, application_cursor=True) == b"\x1bOH"
    assert encode_key("shift+up", None, application_cursor=True) == b"\x1b[1;2A"
    assert encode_key("pageup", None, application_cursor=True) == b"\x1b[5~"


def test_keys_the_terminal_does_not_send() -> None:
    assert encode_key("super+a", None) is None
    assert encode_key("ctrl+f13", None) is None

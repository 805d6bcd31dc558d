"""How the help screen and the create dialog look (fixed size, no runtime data)."""

from __future__ import annotations

from typing import Any

from microsandbox_tui.tui.app import MsbApp

SIZE = (100, 34)


def quiet_app() -> MsbApp:
    return MsbApp(auto_refresh=False, host_info=False)


def test_help_screen(snap_compare: Any) -> None:
    assert snap_compare(quiet_app(), terminal_size=SIZE, press=["question_mark"])


def test_create_dialog(snap_compare: Any) -> None:
    assert snap_compare(quiet_app(), terminal_size=SIZE, press=["c"])

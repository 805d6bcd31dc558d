"""How the views look, on recorded data (fixed size, no runtime calls, no clock)."""

from __future__ import annotations

from typing import Any

from recorded import recorded_app, wait_for_listing
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from microsandbox_tui.tui.widgets.terminal_view import TerminalView

SIZE = (110, 32)
TALL = (100, 40)

#: A shell session as a guest PTY sends it: a coloured prompt, an `ls` listing in colours,
#: bold/underline/inverse text, a truecolor bar, wide characters, and the cursor after a prompt.
RECORDED_SHELL = (
    b"\x1b]0;root@web: /srv\x07"
    b"\x1b[1;32mroot@web\x1b[0m:\x1b[1;34m/srv\x1b[0m# ls --color\r\n"
    b"\x1b[1;34mbin\x1b[0m  \x1b[1;32mrun.sh\x1b[0m  \x1b[1;36mlink\x1b[0m  notes.txt\r\n"
    b"\x1b[1mbold\x1b[0m \x1b[4munderline\x1b[0m \x1b[7minverse\x1b[0m "
    b"\x1b[38;5;208m256-orange\x1b[0m\r\n"
    b"\x1b[48;2;40;90;200m  truecolor bar  \x1b[0m \xe6\xbc\xa2\xe5\xad\x97 wide\r\n"
    b"\x1b[1;32mroot@web\x1b[0m:\x1b[1;34m/srv\x1b[0m# "
)


class TerminalApp(App[None]):
    """Just a focused terminal view fed a recorded stream."""

    def __init__(self, stream: bytes) -> None:
        super().__init__()
        self.stream = stream

    def compose(self) -> ComposeResult:
        yield TerminalView()

    def on_mount(self) -> None:
        view = self.query_one(TerminalView)
        view.focus()
        view.feed(self.stream)


async def _select_web(pilot: Pilot[None]) -> None:
    await wait_for_listing(pilot)
    pilot.app.screen.query_one("#sandboxes").select("web")  # type: ignore[attr-defined]
    await pilot.pause()


def test_sandboxes_view(snap_compare: Any) -> None:
    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=wait_for_listing)


def test_sandboxes_view_filtered_and_sorted(snap_compare: Any) -> None:
    keys = ["o", "o", "o", "o", "O", "slash", "r", "enter"]
    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=wait_for_listing, press=keys)


def test_images_view(snap_compare: Any) -> None:
    assert snap_compare(
        recorded_app(), terminal_size=SIZE, run_before=wait_for_listing, press=["2"]
    )


def test_volumes_view(snap_compare: Any) -> None:
    assert snap_compare(
        recorded_app(), terminal_size=SIZE, run_before=wait_for_listing, press=["3"]
    )


def test_create_volume_dialog(snap_compare: Any) -> None:
    keys = ["3", "c", *"pg-data"]
    assert snap_compare(recorded_app(), terminal_size=TALL, run_before=wait_for_listing, press=keys)


def test_detail_files(snap_compare: Any) -> None:
    async def open_srv(pilot: Pilot[None]) -> None:
        await _select_web(pilot)
        await pilot.press("enter", "f")
        await pilot.pause(0.2)
        pilot.app.screen.query_one("#files-table").select("srv")  # type: ignore[attr-defined]
        await pilot.press("enter")
        await pilot.pause(0.2)

    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=open_srv)


def test_detail_overview(snap_compare: Any) -> None:
    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=_select_web, press=["enter"])


def test_detail_metrics(snap_compare: Any) -> None:
    keys = ["enter", "right_square_bracket"]
    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=_select_web, press=keys)


async def _select_worker(pilot: Pilot[None]) -> None:
    await wait_for_listing(pilot)
    pilot.app.screen.query_one("#sandboxes").select("worker")  # type: ignore[attr-defined]
    await pilot.pause()


def test_detail_network(snap_compare: Any) -> None:
    async def open_network(pilot: Pilot[None]) -> None:
        await _select_worker(pilot)
        await pilot.press("enter", "n")
        await pilot.pause(0.3)

    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=open_network)


def test_rule_form_with_a_bad_cidr(snap_compare: Any) -> None:
    async def bad_cidr(pilot: Pilot[None]) -> None:
        await _select_worker(pilot)
        await pilot.press("enter", "n")
        await pilot.pause(0.3)
        await pilot.press("a", *"10.0.0.0/33", "tab", *"8000-9000", "enter")
        await pilot.pause(0.2)

    assert snap_compare(recorded_app(), terminal_size=TALL, run_before=bad_cidr)


def test_create_dialog(snap_compare: Any) -> None:
    assert snap_compare(
        recorded_app(), terminal_size=TALL, run_before=wait_for_listing, press=["c"]
    )


def test_help_screen(snap_compare: Any) -> None:
    keys = ["question_mark"]
    assert snap_compare(recorded_app(), terminal_size=TALL, run_before=wait_for_listing, press=keys)


def test_delete_confirm_dialog(snap_compare: Any) -> None:
    assert snap_compare(
        recorded_app(), terminal_size=SIZE, run_before=_select_web, press=["ctrl+d"]
    )


def test_shells_view_without_shells(snap_compare: Any) -> None:
    assert snap_compare(
        recorded_app(), terminal_size=SIZE, run_before=wait_for_listing, press=["4"]
    )


def test_terminal_view_draws_a_recorded_stream(snap_compare: Any) -> None:
    assert snap_compare(TerminalApp(RECORDED_SHELL), terminal_size=(60, 12))


def test_pull_dialog(snap_compare: Any) -> None:
    assert snap_compare(
        recorded_app(), terminal_size=TALL, run_before=wait_for_listing, press=["2", "P"]
    )


async def _open_web_secrets(pilot: Pilot[None]) -> None:
    await _select_web(pilot)
    await pilot.press("enter", "dollar_sign")
    await pilot.pause(0.3)


def test_detail_secrets(snap_compare: Any) -> None:
    assert snap_compare(recorded_app(), terminal_size=SIZE, run_before=_open_web_secrets)


def test_secret_form_with_a_bad_host(snap_compare: Any) -> None:
    async def bad_host(pilot: Pilot[None]) -> None:
        await _open_web_secrets(pilot)
        await pilot.press("a", *"API_KEY", "tab", *"sk-typed-value", "tab")
        await pilot.press(*"api.example.com, bad host!", "enter")
        await pilot.pause(0.2)

    assert snap_compare(recorded_app(), terminal_size=TALL, run_before=bad_host)

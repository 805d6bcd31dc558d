"""How the terminal widget turns keys, pastes, the mouse and resizes into bytes and messages
(no sandbox: the guest's side is recorded bytes fed to the emulator)."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.events import Paste

from microsandbox_tui.tui.widgets.terminal_view import TerminalView


class Harness(App[None]):
    """A terminal view that records what it asks the guest to receive."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.resizes: list[tuple[int, int]] = []
        self.titles: list[str] = []

    def compose(self) -> ComposeResult:
        yield TerminalView()

    def on_mount(self) -> None:
        self.view.focus()

    @property
    def view(self) -> TerminalView:
        return self.query_one(TerminalView)

    def on_terminal_view_input(self, message: TerminalView.Input) -> None:
        self.sent.append(message.data)

    def on_terminal_view_resized(self, message: TerminalView.Resized) -> None:
        self.resizes.append((message.rows, message.cols))

    def on_terminal_view_title_changed(self, message: TerminalView.TitleChanged) -> None:
        self.titles.append(message.title)

    def received(self) -> bytes:
        return b"".join(self.sent)


async def test_keys_reach_the_guest_as_terminal_bytes() -> None:
    app = Harness()
    async with app.run_test(size=(40, 10)) as pilot:
        await pilot.press("l", "s", "enter", "ctrl+c", "up", "tab", "escape", "f5")
        assert app.received() == b"ls\r\x03\x1b[A\t\x1b\x1b[15~"


async def test_cursor_keys_follow_the_application_cursor_mode() -> None:
    app = Harness()
    async with app.run_test(size=(40, 10)) as pilot:
        app.view.feed(b"\x1b[?1h")
        await pilot.press("up", "left")
        assert app.received() == b"\x1bOA\x1bOD"


async def test_paste_is_bracketed_only_when_the_program_asked() -> None:
    app = Harness()
    async with app.run_test(size=(40, 10)) as pilot:
        app.view.post_message(Paste("a\nb"))
        await pilot.pause()
        app.view.feed(b"\x1b[?2004h")
        app.view.post_message(Paste("c"))
        await pilot.pause()
        assert app.sent == [b"a\rb", b"\x1b[200~c\x1b[201~"]


async def test_mouse_goes_to_the_guest_only_in_a_mouse_mode() -> None:
    app = Harness()
    async with app.run_test(size=(40, 10)) as pilot:
        await pilot.click(TerminalView, offset=(3, 2))
        assert app.sent == []
        app.view.feed(b"\x1b[?1000h\x1b[?1006h")
        await pilot.click(TerminalView, offset=(3, 2))
        assert app.received() == b"\x1b[<0;4;3M\x1b[<0;4;3m"


async def test_query_answers_go_back_to_the_guest() -> None:
    app = Harness()
    async with app.run_test(size=(40, 10)) as pilot:
        app.view.feed(b"ab\x1b[6n")
        await pilot.pause()
        assert app.received() == b"\x1b[1;3R"


async def test_resize_resizes_the_emulator_and_asks_for_the_pty() -> None:
    app = Harness()
    async with app.run_test(size=(40, 10)) as pilot:
        await pilot.pause()
        assert tuple(app.view.terminal.size) == (10, 40)
        await pilot.resize_terminal(70, 15)
        await pilot.pause()
        assert tuple(app.view.terminal.size) == (15, 70)
        assert app.resizes[-1] == (15, 70)


async def test_shift_pageup_scrolls_back_and_typing_returns_to_live() -> None:
    app = Harness()
    async with app.run_test(size=(40, 5)) as pilot:
        app.view.feed(b"".join(b"line %d\r\n" % n for n in range(30)))
        await pilot.press("shift+pageup")
        assert app.view.terminal.scrollback > 0
        assert "line 29" not in app.view.text() and "line 24" in app.view.text()
        await pilot.press("x")
        assert app.view.terminal.scrollback == 0
        assert "line 29" in app.view.text()
        assert app.sent == [b"x"]


async def test_title_changes_are_reported() -> None:
    app = Harness()
    async with app.run_test(size=(40, 5)) as pilot:
        app.view.feed(b"\x1b]0;vim notes.txt\x07")
        await pilot.pause(0.1)
        assert app.titles == ["vim notes.txt"]

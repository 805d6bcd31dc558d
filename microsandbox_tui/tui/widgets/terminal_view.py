"""A terminal in a widget: the SDK's VT emulator fed by a guest PTY, drawn with the Line API."""

from __future__ import annotations

from functools import lru_cache

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from microsandbox_tui.terminal import TerminalEmulator

from ..keys_vt import encode_key

#: Redraws are coalesced to at most one per this many seconds (~60 Hz).
FRAME_S = 1 / 60
#: The key that leaves an embedded shell; the owner binds it, the guest never sees it.
DETACH_KEY = "ctrl+right_square_bracket"
_SCROLL_KEYS = {"shift+pageup": 1, "shift+pagedown": -1}
_PASTE_START, _PASTE_END = b"\x1b[200~", b"\x1b[201~"


@lru_cache(maxsize=4096)
def _style(
    fg: str, bg: str, bold: bool, dim: bool, italic: bool, underline: bool, inverse: bool
) -> Style:
    return Style(
        color=None if fg == "default" else fg,
        bgcolor=None if bg == "default" else bg,
        bold=bold or None,
        dim=dim or None,
        italic=italic or None,
        underline=underline or None,
        reverse=inverse or None,
    )


class TerminalView(Widget, can_focus=True):
    """Shows a :class:`TerminalEmulator` and turns keys, pastes and the mouse into its input
    bytes."""

    DEFAULT_CSS = """
    TerminalView {
        width: 1fr;
        height: 1fr;
    }
    """

    class Input(Message):
        """Bytes for the guest program (keys, a paste, the mouse)."""

        def __init__(self, view: TerminalView, data: bytes) -> None:
            super().__init__()
            self.view = view
            self.data = data

    class Resized(Message):
        """The emulator has a new size; the owner resizes the guest PTY to match."""

        def __init__(self, view: TerminalView, rows: int, cols: int) -> None:
            super().__init__()
            self.view = view
            self.rows = rows
            self.cols = cols

    class TitleChanged(Message):
        def __init__(self, view: TerminalView, title: str) -> None:
            super().__init__()
            self.view = view
            self.title = title

    def __init__(
        self,
        rows: int = 24,
        cols: int = 80,
        *,
        scrollback: int = 10_000,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.terminal = TerminalEmulator(rows, cols, scrollback)
        self._strips: dict[int, Strip] = {}
        self._flush_pending = False
        self._cursor = self.terminal.cursor
        self._title = ""

    # -- output ----------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Parses guest output now; the screen is redrawn at the next frame. Answers to the
        program's queries (cursor position, device status) go back to it as input."""
        self.terminal.feed(data)
        if replies := self.terminal.take_replies():
            self.post_message(self.Input(self, replies))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            self.set_timer(FRAME_S, self.flush)

    def flush(self) -> None:
        """Redraws the rows that changed (and the cursor's old and new rows)."""
        self._flush_pending = False
        terminal = self.terminal
        rows = set(terminal.dirty_rows())
        cursor = terminal.cursor
        if cursor != self._cursor:
            rows.update((self._cursor[0], cursor[0]))
            self._cursor = cursor
        width = self.size.width
        for row in rows:
            self._strips.pop(row, None)
            self.refresh(Region(0, row, width, 1))
        title = terminal.title
        if title != self._title:
            self._title = title
            self.post_message(self.TitleChanged(self, title))

    def text(self) -> str:
        """What the emulator shows, as plain text (for tests)."""
        return self.terminal.contents()

    # -- drawing ---------------------------------------------------------------------------

    def get_content_height(self, container, viewport, width: int) -> int:  # type: ignore[no-untyped-def]
        return self.terminal.size[0]

    def render_line(self, y: int) -> Strip:
        rows, cols = self.terminal.size
        if y >= rows:
            return Strip.blank(self.size.width, self.rich_style)
        strip = self._strips.get(y)
        if strip is None:
            segments = [
                Segment(text, _style(fg, bg, bold, dim, italic, underline, inverse))
                for text, fg, bg, bold, dim, italic, underline, inverse in (
                    self.terminal.row_segments(y)
                )
            ]
            strip = Strip(segments).adjust_cell_length(cols)
            self._strips[y] = strip
        row, col, visible = self.terminal.cursor
        if visible and self.has_focus and row == y and self.terminal.scrollback == 0:
            strip = self._with_cursor(strip, col)
        return strip.apply_style(self.rich_style)

    @staticmethod
    def _with_cursor(strip: Strip, col: int) -> Strip:
        col = min(col, max(strip.cell_length - 1, 0))
        parts = strip.divide([col, col + 1, strip.cell_length])
        if len(parts) < 2:
            return strip
        cell = Strip(Segment(s.text, (s.style or Style()) + Style(reverse=True)) for s in parts[1])
        return Strip.join([parts[0], cell, *parts[2:]])

    def _refresh_all(self) -> None:
        self._strips.clear()
        self.refresh()

    def on_focus(self) -> None:
        self._refresh_all()

    def on_blur(self) -> None:
        self._refresh_all()

    def on_resize(self, event: events.Resize) -> None:
        rows, cols = max(event.size.height, 1), max(event.size.width, 1)
        if (rows, cols) == tuple(self.terminal.size):
            return
        self.terminal.resize(rows, cols)
        self.terminal.dirty_rows()
        self._refresh_all()
        self.post_message(self.Resized(self, rows, cols))

    # -- input -----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.terminal.scrollback:
            self.terminal.scrollback = 0
            self._refresh_all()
        self.post_message(self.Input(self, data))

    def on_key(self, event: events.Key) -> None:
        if event.key == DETACH_KEY:
            return  # the owner's binding
        if event.key in _SCROLL_KEYS:
            event.stop()
            event.prevent_default()
            step = max(self.terminal.size[0] // 2, 1) * _SCROLL_KEYS[event.key]
            self.terminal.scrollback = max(self.terminal.scrollback + step, 0)
            self._refresh_all()
            return
        data = encode_key(event.key, event.character, self.terminal.application_cursor)
        if data is None:
            return
        event.stop()
        event.prevent_default()
        self.send(data)

    def on_paste(self, event: events.Paste) -> None:
        event.stop()
        data = event.text.replace("\r\n", "\r").replace("\n", "\r").encode()
        if self.terminal.bracketed_paste:
            data = _PASTE_START + data + _PASTE_END
        self.send(data)

    # -- mouse (only when the guest program asked for it) ----------------------------------

    def _mouse(self, event: events.MouseEvent, button: int, release: bool = False) -> None:
        mode = self.terminal.mouse_mode
        if mode == "none":
            return
        if isinstance(event, events.MouseMove) and mode not in ("button_motion", "any_motion"):
            return
        if isinstance(event, events.MouseMove) and mode == "button_motion" and not event.button:
            return
        event.stop()
        code = button | (4 if event.shift else 0) | (8 if event.meta else 0)
        code |= 16 if event.ctrl else 0
        final = "m" if release else "M"
        self.send(f"\x1b[<{code};{event.x + 1};{event.y + 1}{final}".encode())

    @staticmethod
    def _button(event: events.MouseEvent) -> int:
        return {1: 0, 2: 1, 3: 2}.get(event.button, 0)

    def on_mouse_down(self, event: events.MouseDown) -> None:
        self._mouse(event, self._button(event))

    def on_mouse_up(self, event: events.MouseUp) -> None:
        self._mouse(event, self._button(event), release=True)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        button = self._button(event) if event.button else 3
        self._mouse(event, 32 + button)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        if self.terminal.mouse_mode == "none":
            event.stop()
            self.terminal.scrollback = self.terminal.scrollback + 3
            self._refresh_all()
        else:
            self._mouse(event, 64)

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        if self.terminal.mouse_mode == "none":
            event.stop()
            self.terminal.scrollback = max(self.terminal.scrollback - 3, 0)
            self._refresh_all()
        else:
            self._mouse(event, 65)

"""A table whose rows are keyed (by sandbox name, image name, PID) and updated cell by cell.

Rows that change all the time (a running sandbox's metrics) are redrawn only while they are
on screen, as k9s does: rows off screen keep how to get their text and are drawn when
scrolled to.

Changed cells are written in one batch (:meth:`KeyedTable.write_cells`) that forgets the
drawings of those cells only. Textual's own ``update_cell`` bumps the table's update count,
which every render cache is keyed by: after any change the next frame draws every cell on
screen again through Rich and rebuilds the row order and offsets over all rows, 117 ms (median,
headless, 1,000 running sandboxes on a 50-line screen) where the changed cells alone take a
fraction of that. This leans on DataTable's private caches, as of Textual 8.2 (pinned in
``pyproject.toml``); ``tests/tui/test_table.py`` fails if they change shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.coordinate import Coordinate
from textual.events import Resize
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

#: How a row's texts (column → text) are got when the row is drawn.
RowTexts = Callable[[], Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    #: Fixed width, or ``None`` for a column that grows with its content.
    width: int | None = None


class KeyedTable(DataTable[str | Text]):
    """Rows keyed by a string; :meth:`apply_rows` makes the table show exactly the rows
    given, adding, removing and rewriting only what changed. The first column shows the key."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False, id="down"),
        Binding("k", "cursor_up", "Up", show=False, id="up"),
    ]

    def __init__(
        self,
        columns: Iterable[Column],
        *,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self.column_specs: tuple[Column, ...] = tuple(columns)
        self._growing = frozenset(c.key for c in self.column_specs if c.width is None)
        self._values: dict[str, dict[str, str]] = {}
        #: Rows whose texts changed while off screen: key → how to get their texts.
        self._pending: dict[str, RowTexts] = {}

    def on_mount(self) -> None:
        # Every column gets a width of ours: growing columns are fitted in apply_rows.
        for column in self.column_specs:
            width = column.width or cell_len(column.label)
            self.add_column(column.label, width=width, key=column.key)

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor, if there is one."""
        if self.row_count == 0:
            return None
        return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value

    @property
    def row_keys(self) -> list[str]:
        """Row keys in display order."""
        return [str(row.key.value) for row in self.ordered_rows]

    def select(self, key: str) -> None:
        """Moves the cursor to a row."""
        self.move_cursor(row=self.get_row_index(key))

    def text_of(self, key: str, column: str) -> str | None:
        """The text of a cell (drawn now if it was waiting off screen), or ``None`` when
        there is no such row."""
        self._draw_pending([key])
        values = self._values.get(key)
        return None if values is None else values[column]

    def apply_rows(self, rows: Mapping[str, Mapping[str, str]]) -> None:
        """Shows exactly ``rows`` (key → column → text); new rows go at the end."""
        resized = self._fit_columns(rows)
        for key, values in rows.items():
            self._pending.pop(key, None)
            if key not in self._values:
                self.add_row(*(self.cell(column, text) for column, text in values.items()), key=key)
                self._values[key] = dict(values)
        self._update_rows({key: rows[key] for key in self._values.keys() & rows.keys()})
        for key in [key for key in self._values if key not in rows]:
            self.remove_row(key)
            del self._values[key]
            self._pending.pop(key, None)
        if resized:
            self.rerender()

    def update_rows(self, rows: Mapping[str, RowTexts]) -> None:
        """New texts for existing rows (key → how to get them), in the same columns' widths:
        rows on screen are redrawn now, the others when they come into view."""
        visible = self.visible_keys()
        drawn: dict[str, Mapping[str, str]] = {}
        for key, texts in rows.items():
            if key not in self._values:
                continue
            if key in visible:
                self._pending.pop(key, None)
                drawn[key] = texts()
            else:
                self._pending[key] = texts
        self._update_rows(drawn)

    def visible_keys(self) -> set[str]:
        """Keys of the rows on screen (every row is one line high)."""
        first = round(self.scroll_y)
        last = min(self.row_count, first + self.size.height)
        return {
            str(self.coordinate_to_cell_key(Coordinate(index, 0)).row_key.value)
            for index in range(first, last)
        }

    def _update_rows(self, rows: Mapping[str, Mapping[str, str]]) -> None:
        """Writes the cells whose text changed, all in one batch."""
        changes: dict[str, dict[str, str | Text]] = {}
        for key, values in rows.items():
            previous = self._values[key]
            changed = {
                column: self.cell(column, text)
                for column, text in values.items()
                if previous.get(column) != text
            }
            if changed:
                changes[key] = changed
            self._values[key] = dict(values)
        self.write_cells(changes)

    def write_cells(self, changes: Mapping[str, Mapping[str, str | Text]]) -> None:
        """New values for existing cells (row key → column key → value), in the columns'
        widths: forgets the drawings of these cells only, and repaints once.

        Textual 8.2 internals (why: see the module doc). ``update_cell`` would write
        ``_data`` and bump ``_update_count``; instead the cache entries of the changed cells
        are dropped: cell drawings are keyed by (row key, column key, ...), row drawings by
        (row key, ...), row renderables by (update count, row index), and screen lines by
        y, which is cheap to redo from the row drawings and is dropped whole."""
        if not changes:
            return
        cells: set[tuple[RowKey, ColumnKey]] = set()
        for key, values in changes.items():
            row_key = RowKey(key)
            row = self._data[row_key]
            for column, value in values.items():
                row[ColumnKey(column)] = value
                cells.add((row_key, ColumnKey(column)))
        rows = {row_key for row_key, _ in cells}
        indexes = {self._row_locations.get(row_key) for row_key in rows}
        _discard(self._cell_render_cache, lambda cache_key: cache_key[:2] in cells)
        _discard(self._row_render_cache, lambda cache_key: cache_key[0] in rows)
        _discard(self._row_renderable_cache, lambda cache_key: cache_key[1] in indexes)
        self._line_cache.clear()
        self.refresh()

    def _render_cell(
        self,
        row_index: int,
        column_index: int,
        base_style: Style,
        width: int,
        cursor: bool = False,
        hover: bool = False,
    ) -> list[list[Segment]]:
        """A cell's line, made directly when its value is plain text that fits; anything
        else (titles, styled text, markup, what does not fit) through Textual.

        Why: Textual draws every cell through Rich (markup parsing, padding, cropping,
        protocol checks), about 400 µs a cell on a loaded machine, and a tick changes some
        hundred cells on screen. The line made here is the one Rich makes (same segments,
        same styles; ``tests/tui/test_table.py`` compares them), cached under Textual's own
        key (Textual 8.2 internals, see the module doc)."""
        plain = self._plain_cell(row_index, column_index, width)
        if plain is None:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key, column_key, text = plain
        cache_key = (
            row_key,
            column_key,
            base_style,
            cursor,
            hover,
            self._show_hover_cursor,
            self._update_count,
            self._pseudo_class_state,
        )
        cached: list[list[Segment]] | None = self._cell_render_cache.get(cache_key)
        if cached is not None:
            return cached
        component_style, post_style = self._get_styles_to_render_cell(
            False,
            False,
            False,
            hover,
            cursor,
            self.show_cursor,
            self._show_hover_cursor,
            self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css",
        )
        meta = Style.from_meta({"row": row_index, "column": column_index})
        style = base_style + meta + component_style + post_style
        padding = " " * self.cell_padding
        fill = width - 2 * self.cell_padding - cell_len(text)
        line = [Segment(padding, style), Segment(text, style)]
        if fill:
            line.append(Segment(" " * fill, style))
        line.append(Segment(padding, style))
        lines = [line]
        self._cell_render_cache[cache_key] = lines
        return lines

    def _plain_cell(
        self, row_index: int, column_index: int, width: int
    ) -> tuple[RowKey, ColumnKey, str] | None:
        """The cell's keys and text when it can be drawn without Rich: a data cell, one
        line high, holding printable text without markup that fits in ``width`` (not empty)."""
        if row_index < max(self.fixed_rows, 0) or column_index < max(self.fixed_columns, 0):
            return None
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        if row_key is None or column_key is None or self.rows[row_key].height != 1:
            return None
        value = self._data[row_key].get(column_key)
        # An empty cell is drawn by Rich in segments of its own: left to Textual.
        if not isinstance(value, str) or not value or "[" in value or not value.isprintable():
            return None
        if cell_len(value) > width - 2 * self.cell_padding:
            return None
        return row_key, column_key, value

    def _draw_pending(self, keys: Iterable[str]) -> None:
        self._update_rows(
            {key: texts() for key in keys if (texts := self._pending.pop(key, None)) is not None}
        )

    def draw_visible(self) -> None:
        """Draws the rows that came into view with texts that changed while they were not."""
        if self._pending:
            self._draw_pending(self.visible_keys() & self._pending.keys())

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.draw_visible()

    def on_resize(self, _: Resize) -> None:
        self.draw_visible()

    def _fit_columns(self, rows: Mapping[str, Mapping[str, str]]) -> bool:
        """Sizes growing columns to their widest text; returns whether any width changed."""
        changed = False
        for key in self._growing:
            column = self.columns.get(ColumnKey(key))
            if column is None:
                continue
            texts = (cell_len(values.get(key, "")) for values in rows.values())
            width = max([cell_len(column.label.plain), *texts])
            if width != column.width:
                column.width = width
                changed = True
        return changed

    def set_label(self, key: str, label: str) -> bool:
        """Changes a column's title; returns whether it changed (then :meth:`rerender`)."""
        column = self.columns.get(ColumnKey(key))
        if column is None or column.label.plain == label:
            return False
        column.label = Text(label)
        if key in self._growing:
            column.width = max(column.width, cell_len(label))
        return True

    def rerender(self) -> None:
        """Draws every cell again, after a width or title change. (The table caches drawn
        cells until its contents change; re-sorting into the same order counts as a change.)"""
        self.reorder(self.row_keys)

    def reorder(self, keys: list[str]) -> None:
        """Puts the rows in the order of ``keys`` (every row key, once)."""
        position = {key: index for index, key in enumerate(keys)}
        self.sort(self.column_specs[0].key, key=lambda cell: position[str(cell)])
        self.draw_visible()

    def cell(self, column: str, text: str) -> str | Text:
        """What a cell holds for its text; subclasses style some columns."""
        return text


def _discard(cache: LRUCache[Any, Any], stale: Callable[[Any], bool]) -> None:
    """Drops the entries of a Textual cache whose key is ``stale``."""
    # LRUCache has keys() but no __iter__.
    for key in [key for key in cache.keys() if stale(key)]:  # noqa: SIM118
        cache.discard(key)

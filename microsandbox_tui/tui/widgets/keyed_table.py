"""A table whose rows are keyed (by sandbox name, image name, PID) and updated cell by cell.

Rows that change all the time (a running sandbox's metrics) are redrawn only while they are
on screen, as k9s does: each ``update_cell`` costs Textual about 60 µs (a widget refresh per
call, measured with pyinstrument), so 1,000 running sandboxes would spend 180 ms a second on
rows nobody sees. Rows off screen keep how to get their text and are drawn when scrolled to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.events import Resize
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

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
            if key in self._values:
                self._update_row(key, values)
            else:
                self.add_row(*(self.cell(column, text) for column, text in values.items()), key=key)
                self._values[key] = dict(values)
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
        for key, texts in rows.items():
            if key not in self._values:
                continue
            if key in visible:
                self._pending.pop(key, None)
                self._update_row(key, texts())
            else:
                self._pending[key] = texts

    def visible_keys(self) -> set[str]:
        """Keys of the rows on screen (every row is one line high)."""
        first = round(self.scroll_y)
        last = min(self.row_count, first + self.size.height)
        return {
            str(self.coordinate_to_cell_key(Coordinate(index, 0)).row_key.value)
            for index in range(first, last)
        }

    def _update_row(self, key: str, values: Mapping[str, str]) -> None:
        previous = self._values[key]
        for column, text in values.items():
            if previous.get(column) != text:
                self.update_cell(key, column, self.cell(column, text))
        self._values[key] = dict(values)

    def _draw_pending(self, keys: Iterable[str]) -> None:
        for key in keys:
            texts = self._pending.pop(key, None)
            if texts is not None:
                self._update_row(key, texts())

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

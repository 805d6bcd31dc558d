"""A table whose rows are keyed (by sandbox name, image name, PID) and updated cell by cell."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey


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
        """The text shown in a cell, or ``None`` when there is no such row."""
        values = self._values.get(key)
        return None if values is None else values[column]

    def apply_rows(self, rows: Mapping[str, Mapping[str, str]]) -> None:
        """Shows exactly ``rows`` (key → column → text); new rows go at the end."""
        resized = self._fit_columns(rows)
        for key, values in rows.items():
            previous = self._values.get(key)
            if previous is None:
                self.add_row(*(self.cell(column, text) for column, text in values.items()), key=key)
            else:
                for column, text in values.items():
                    if previous.get(column) != text:
                        self.update_cell(key, column, self.cell(column, text))
            self._values[key] = dict(values)
        for key in [key for key in self._values if key not in rows]:
            self.remove_row(key)
            del self._values[key]
        if resized:
            self.rerender()

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

    def cell(self, column: str, text: str) -> str | Text:
        """What a cell holds for its text; subclasses style some columns."""
        return text

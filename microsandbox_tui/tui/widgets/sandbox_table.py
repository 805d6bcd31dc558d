"""The sandboxes table: keyed by sandbox name, updated cell by cell."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from microsandbox_tui import SandboxInfo, SandboxStatus

from ..formatting import row_values

#: (key, label, fixed width or ``None`` for a column that grows with its content)
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("name", "NAME", None),
    ("status", "STATUS", 9),
    ("image", "IMAGE", None),
    ("cpus", "vCPUs", 5),
    ("memory", "MEMORY (MiB)", 12),
    ("uptime", "UPTIME", 8),
)
_GROWING = frozenset(key for key, _, width in COLUMNS if width is None)


class SandboxTable(DataTable[str | Text]):
    """One row per sandbox. :meth:`sync` applies a fresh listing with the fewest changes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {f"sandbox-table--{status}" for status in SandboxStatus}

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._values: dict[str, dict[str, str]] = {}
        self._infos: dict[str, SandboxInfo] = {}

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, width=width, key=key)

    @property
    def infos(self) -> dict[str, SandboxInfo]:
        """The sandboxes shown, by name, as of the last :meth:`sync`."""
        return dict(self._infos)

    @property
    def selected_name(self) -> str | None:
        """The name of the sandbox under the cursor, if there is one."""
        if self.row_count == 0:
            return None
        row_key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key
        return row_key.value

    def select(self, name: str) -> None:
        """Moves the cursor to a sandbox's row."""
        self.move_cursor(row=self.get_row_index(name))

    def text_of(self, name: str, column: str) -> str | None:
        """The text shown in a cell, or ``None`` when the sandbox has no row."""
        values = self._values.get(name)
        return None if values is None else values[column]

    def sync(self, infos: Sequence[SandboxInfo], now: datetime) -> None:
        """Shows exactly ``infos``: adds and removes rows, and updates changed cells only."""
        seen: set[str] = set()
        for info in infos:
            seen.add(info.name)
            values = row_values(info, now)
            previous = self._values.get(info.name)
            if previous is None:
                self.add_row(
                    *(self._cell(key, text) for key, text in values.items()), key=info.name
                )
            else:
                for key, text in values.items():
                    if previous[key] != text:
                        self.update_cell(
                            info.name, key, self._cell(key, text), update_width=key in _GROWING
                        )
            self._values[info.name] = values
            self._infos[info.name] = info
        for name in [name for name in self._values if name not in seen]:
            self.remove_row(name)
            del self._values[name]
            del self._infos[name]

    def _cell(self, column: str, text: str) -> str | Text:
        if column != "status":
            return text
        style = self.get_component_rich_style(f"sandbox-table--{text}", partial=True)
        return Text(text, style=style)

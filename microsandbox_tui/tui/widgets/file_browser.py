"""A guest directory, browsed from the sandbox detail's Files tab: ``enter`` opens a
directory, ``backspace`` goes to the parent. The screen adds download and upload."""

from __future__ import annotations

import posixpath
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual.worker import Worker

from microsandbox_tui import FsEntry, FsEntryKind
from microsandbox_tui.formatting import format_mode, format_size, format_timestamp

from .keyed_table import Column, KeyedTable

if TYPE_CHECKING:
    from ..app import MsbApp

#: The first column shows the row key, the entry's name (KeyedTable sorts by it).
COLUMNS = (
    Column("name", "NAME"),
    Column("size", "SIZE", 10),
    Column("mode", "MODE", 10),
    Column("modified", "MODIFIED", 20),
    Column("target", "LINK TARGET"),
)
#: The row that leads to the parent directory.
PARENT = ".."


class FileBrowser(Vertical):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("backspace", "parent", "Parent dir", id="parent"),
    ]

    def __init__(self, sandbox: str, *, path: str = "/", id: str | None = None) -> None:
        super().__init__(id=id)
        self.sandbox = sandbox
        #: The directory shown.
        self.path = path
        #: Its entries, by row key (the entry's name).
        self.entries: dict[str, FsEntry] = {}

    @property
    def table(self) -> KeyedTable:
        return self.query_one(KeyedTable)

    @property
    def msb_app(self) -> MsbApp:
        return cast("MsbApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static(self.path, id="files-path", markup=False)
        yield KeyedTable(COLUMNS, id="files-table")

    @property
    def selected(self) -> FsEntry | None:
        """The entry under the cursor (``None`` on the parent row or in an empty listing)."""
        key = self.table.selected_key
        return None if key is None else self.entries.get(key)

    def open(self, path: str) -> None:
        """Shows another directory."""
        self.path = posixpath.normpath(path) if path != "/" else "/"
        self.load()

    def load(self) -> None:
        self._load(self.path)

    @work(exclusive=True, group="files", exit_on_error=False)
    async def _load(self, path: str) -> None:
        app = self.msb_app
        try:
            entries = await app.source.list_directory(self.sandbox, path)
        except Exception as error:
            app.report_error(error, context=f"listing {path} in {self.sandbox}")
            return
        now = app.source.now()
        ordered = sorted(entries, key=lambda e: (e.kind is not FsEntryKind.DIRECTORY, e.name))
        self.entries = {entry.name: entry for entry in ordered}
        rows: dict[str, dict[str, str]] = {}
        if path != "/":
            rows[PARENT] = {"name": PARENT, "size": "", "mode": "", "modified": "", "target": ""}
        for key, entry in self.entries.items():
            rows[key] = {
                "name": key,
                "size": "" if entry.kind is FsEntryKind.DIRECTORY else format_size(entry.size),
                "mode": format_mode(entry),
                "modified": format_timestamp(entry.modified, now),
                "target": entry.link_target or "",
            }
        # A new directory's rows replace the old ones, in its own order.
        self.table.apply_rows({})
        self.table.apply_rows(rows)
        self.query_one("#files-path", Static).update(f"{self.sandbox}:{path}")
        self.table.border_title = f"{path} [{len(self.entries)}]"

    @on(DataTable.RowSelected, "#files-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        key = event.row_key.value
        if key == PARENT:
            self.action_parent()
            return
        entry = self.entries.get(str(key))
        if entry is not None and entry.kind is FsEntryKind.DIRECTORY:
            self.open(entry.path)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.msb_app.report_worker_failure(event)

    def action_parent(self) -> None:
        if self.path != "/":
            self.open(posixpath.dirname(self.path))

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

from microsandbox_tui import FsEntry, FsEntryKind
from microsandbox_tui.formatting import format_size, format_timestamp

from .keyed_table import Column, KeyedTable

if TYPE_CHECKING:
    from ..app import MsbApp

COLUMNS = (
    Column("name", "NAME"),
    Column("size", "SIZE", 10),
    Column("mode", "MODE", 10),
    Column("modified", "MODIFIED", 20),
)
#: The row that leads to the parent directory.
PARENT = ".."
_KIND_LETTER = {
    FsEntryKind.DIRECTORY: "d",
    FsEntryKind.SYMLINK: "l",
    FsEntryKind.FILE: "-",
    FsEntryKind.OTHER: "?",
}


def mode_string(entry: FsEntry) -> str:
    """``drwxr-xr-x``-style kind and permission bits."""
    bits = "".join(
        letter if entry.mode & (1 << (8 - index)) else "-"
        for index, letter in enumerate("rwxrwxrwx")
    )
    return _KIND_LETTER[entry.kind] + bits


def display_name(entry: FsEntry) -> str:
    name = posixpath.basename(entry.path)
    if entry.kind is FsEntryKind.DIRECTORY:
        return name + "/"
    if entry.kind is FsEntryKind.SYMLINK and entry.link_target is not None:
        return f"{name} -> {entry.link_target}"
    return name


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
            self.table.loading = False
            app.report_error(error, context=f"listing {path} in {self.sandbox}")
            return
        now = app.source.now()
        ordered = sorted(
            entries, key=lambda e: (e.kind is not FsEntryKind.DIRECTORY, posixpath.basename(e.path))
        )
        self.entries = {posixpath.basename(entry.path): entry for entry in ordered}
        rows: dict[str, dict[str, str]] = {}
        if path != "/":
            rows[PARENT] = {"name": "../", "size": "", "mode": "", "modified": ""}
        for key, entry in self.entries.items():
            rows[key] = {
                "name": display_name(entry),
                "size": "" if entry.kind is FsEntryKind.DIRECTORY else format_size(entry.size),
                "mode": mode_string(entry),
                "modified": format_timestamp(entry.modified, now),
            }
        # A new directory's rows replace the old ones, in its own order.
        self.table.apply_rows({})
        self.table.apply_rows(rows)
        self.table.loading = False
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

    def action_parent(self) -> None:
        if self.path != "/":
            self.open(posixpath.dirname(self.path))

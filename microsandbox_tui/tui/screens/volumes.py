"""The volumes view. The runtime has no named volumes yet: an empty table that says so."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Footer, Label

from ..widgets import Column, KeyedTable, ViewBar
from .base import MsbScreen

COLUMNS = (
    Column("name", "NAME", 24),
    Column("size", "SIZE", 11),
    Column("used_by", "USED BY", 24),
    Column("created", "CREATED", 12),
)
NO_VOLUMES = "Named volumes arrive with a later release."


class VolumesScreen(MsbScreen):
    HELP_TITLE = "Volumes"

    def compose(self) -> ComposeResult:
        yield ViewBar("volumes", id="view-bar")
        yield Label(NO_VOLUMES, id="volumes-note")
        yield KeyedTable(COLUMNS, id="volumes")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(KeyedTable)
        table.border_title = "Volumes [0]"
        table.focus()

"""The volumes view: named volumes with their quota, the space used and who mounts them."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer

from microsandbox_tui import Volume, VolumeHandle
from microsandbox_tui.formatting import format_age, format_size

from ..dialogs import CreateVolumeDialog
from ..widgets import Column, KeyedTable, ViewBar
from .base import MsbScreen

COLUMNS = (
    Column("name", "NAME"),
    Column("quota", "QUOTA", 10),
    Column("used", "USED", 16),
    Column("in_use_by", "IN USE BY"),
    Column("created", "CREATED", 12),
)
#: Used space is read from the volume's file system, which changes while sandboxes write.
REFRESH_INTERVAL_S = 5.0


def volume_row(volume: VolumeHandle, now_age: str) -> dict[str, str]:
    quota_bytes = volume.quota_mib * 1024 * 1024
    percent = 100 * volume.used_bytes / quota_bytes if quota_bytes else 0.0
    return {
        "name": volume.name,
        "quota": format_size(quota_bytes),
        "used": f"{format_size(volume.used_bytes)} {percent:3.0f}%",
        "in_use_by": ", ".join(volume.in_use_by) or "-",
        "created": now_age,
    }


class VolumesScreen(MsbScreen):
    HELP_TITLE = "Volumes"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "create_volume", "Create", id="create_volume"),
        Binding("ctrl+d", "remove_volume", "Remove", id="remove_volume"),
        Binding("r", "refresh", "Refresh", id="refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.volumes: list[VolumeHandle] = []

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#volumes", KeyedTable)

    def compose(self) -> ComposeResult:
        yield ViewBar("volumes", id="view-bar")
        yield KeyedTable(COLUMNS, id="volumes")
        yield Footer()

    def on_mount(self) -> None:
        self.table.border_title = "Volumes"
        self.table.focus()
        self.action_refresh()
        self.set_interval(REFRESH_INTERVAL_S, self._poll)

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.action_refresh()

    def _poll(self) -> None:
        if self.is_current:
            self.action_refresh()

    def action_refresh(self) -> None:
        self._load()

    @work(exclusive=True, group="volumes", exit_on_error=False)
    async def _load(self) -> None:
        app = self.msb_app
        try:
            volumes = await app.source.list_volumes()
        except Exception as error:
            app.report_error(error, context="listing volumes")
            return
        now = app.source.now()
        self.volumes = sorted(volumes, key=lambda volume: volume.name)
        self.table.apply_rows(
            {
                volume.name: volume_row(volume, format_age(volume.created_at, now))
                for volume in self.volumes
            }
        )
        self.table.border_title = f"Volumes [{len(volumes)}]"

    def action_create_volume(self) -> None:
        def created(name: str | None) -> None:
            if name:
                self.notify(f"created volume {name}", markup=False)
                self.action_refresh()

        self.app.push_screen(CreateVolumeDialog(), callback=created)

    def action_remove_volume(self) -> None:
        self.remove_selected(
            self.table,
            "volume",
            "Its data is deleted. A volume that a sandbox mounts cannot be removed.",
            self._remove,
        )

    @work(group="volumes-remove", exit_on_error=False)
    async def _remove(self, name: str) -> None:
        try:
            await Volume.remove(name)
        except Exception as error:
            self.msb_app.report_error(error, context=f"removing volume {name}")
        else:
            self.notify(f"removed volume {name}", markup=False)
        self.action_refresh()

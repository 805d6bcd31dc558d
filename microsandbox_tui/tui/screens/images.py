"""The images view: the local images sandboxes can boot from; pull and remove them."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer

from microsandbox_tui import ImageInfo, remove_image
from microsandbox_tui.formatting import format_age, format_size

from ..dialogs import PullImageDialog
from ..widgets import Column, KeyedTable, ViewBar
from .base import MsbScreen

COLUMNS = (
    Column("name", "NAME"),
    Column("kind", "KIND", 6),
    Column("layers", "LAYERS", 7),
    Column("size", "SIZE", 11),
    Column("created", "CREATED", 12),
    Column("used", "LAST USED", 12),
)


class ImagesScreen(MsbScreen):
    HELP_TITLE = "Images"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "create", "Create sandbox", id="create"),
        Binding("P", "pull", "Pull", id="pull"),
        Binding("ctrl+d", "remove_image", "Remove", id="remove_image"),
        Binding("r", "refresh", "Refresh", id="refresh"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.images: list[ImageInfo] = []

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#images", KeyedTable)

    def compose(self) -> ComposeResult:
        yield ViewBar("images", id="view-bar")
        yield KeyedTable(COLUMNS, id="images")
        yield Footer()

    def on_mount(self) -> None:
        self.table.border_title = "Images"
        self.table.focus()
        self.action_refresh()

    def on_screen_resume(self) -> None:
        if self.is_mounted:
            self.action_refresh()

    def action_refresh(self) -> None:
        self._load()

    @work(exclusive=True, group="images", exit_on_error=False)
    async def _load(self) -> None:
        app = self.msb_app
        try:
            images = await app.source.list_images()
        except Exception as error:
            app.report_error(error, context="listing images")
            return
        now = app.source.now()
        self.images = images
        self.table.apply_rows(
            {
                image.name: {
                    "name": image.name,
                    "kind": image.kind,
                    "layers": str(image.layer_count),
                    "size": format_size(image.size_bytes),
                    "created": format_age(image.created_at, now),
                    "used": format_age(image.last_used_at, now) if image.last_used_at else "-",
                }
                for image in sorted(images, key=lambda image: image.name)
            }
        )
        self.table.border_title = f"Images [{len(images)}]"

    def action_create(self) -> None:
        """Opens the create form with the selected image filled in."""
        self.msb_app.open_create_dialog(image=self.table.selected_key)

    def action_pull(self) -> None:
        def pulled(name: str | None) -> None:
            if name:
                self.notify(f"pulled {name}", markup=False)
                self.action_refresh()

        self.app.push_screen(PullImageDialog(), callback=pulled)

    def action_remove_image(self) -> None:
        self.remove_selected(
            self.table,
            "image",
            "Its layers are removed too unless another image uses them.",
            self._remove,
        )

    @work(group="images-remove", exit_on_error=False)
    async def _remove(self, name: str) -> None:
        try:
            await remove_image(name)
        except Exception as error:
            self.msb_app.report_error(error, context=f"removing {name}")
        else:
            self.notify(f"removed {name}", markup=False)
        self.action_refresh()

"""The line at the top of every view: the views and their keys, the current one marked."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.widget import Widget

if TYPE_CHECKING:
    from ..app import MsbApp

#: (mode, title) in key order.
VIEWS: tuple[tuple[str, str], ...] = (
    ("sandboxes", "Sandboxes"),
    ("images", "Images"),
    ("volumes", "Volumes"),
    ("shells", "Shells"),
)


class ViewBar(Widget):
    """``1 Sandboxes  2 Images  3 Volumes`` with the active view (and a breadcrumb) marked."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "view-bar--brand",
        "view-bar--active",
        "view-bar--view",
        "view-bar--crumb",
    }

    def __init__(self, active: str, crumb: str | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.active = active
        self.crumb = crumb

    def set_crumb(self, crumb: str | None) -> None:
        self.crumb = crumb
        self.refresh()

    def render(self) -> Text:
        app = cast("MsbApp", self.app)
        style = self.get_component_rich_style
        line = Text()
        line.append(" msb-tui ", style=style("view-bar--brand"))
        for mode, title in VIEWS:
            key = app.key_display_for(f"view_{mode}")
            part = "view-bar--active" if mode == self.active else "view-bar--view"
            line.append(" ")
            line.append(f" {key} {title} ", style=style(part))
        if self.crumb:
            line.append(f" ▸ {self.crumb}", style=style("view-bar--crumb"))
        return line

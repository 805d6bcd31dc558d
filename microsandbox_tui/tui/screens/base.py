"""What every view of the dashboard shares: read-only mode and the app's services."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, cast

from textual.screen import Screen
from textual.worker import Worker

from ..dialogs import ConfirmDialog
from ..widgets import KeyedTable
from ..widgets.rules_editor import EDITING_ACTIONS
from ..widgets.secrets_panel import SECRET_EDITING_ACTIONS

if TYPE_CHECKING:
    from ..app import MsbApp

#: Actions that change something; hidden and refused in read-only mode, in every view.
MUTATING_ACTIONS = (
    frozenset(
        {
            "create",
            "stop",
            "start",
            "pause",
            "restart",
            "kill",
            "delete",
            "shell",
            "full_screen_shell",
            "pull",
            "remove_image",
            "create_volume",
            "remove_volume",
            "upload",
            "apply_policy",
            "allow_destination",
        }
    )
    | EDITING_ACTIONS
    | SECRET_EDITING_ACTIONS
)


class MsbScreen(Screen[None]):
    """A view (or a screen pushed over one) of the dashboard."""

    #: The heading of this screen's keys in the help.
    HELP_TITLE: ClassVar[str] = "This view"

    @property
    def msb_app(self) -> MsbApp:
        return cast("MsbApp", self.app)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in MUTATING_ACTIONS and self.msb_app.readonly)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.msb_app.report_worker_failure(event)

    def remove_selected(
        self, table: KeyedTable, what: str, consequence: str, remove: Callable[[str], object]
    ) -> None:
        """Asks to remove the selected row's ``what`` (e.g. "image"), then calls ``remove``
        with its key. Nothing happens without a selection or a confirmation."""
        name = table.selected_key
        if name is None:
            self.notify(f"no {what} selected", severity="warning")
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                remove(name)

        self.app.push_screen(
            ConfirmDialog(f"Remove {what} {name}?", consequence, confirm_label="Remove"),
            callback=confirmed,
        )

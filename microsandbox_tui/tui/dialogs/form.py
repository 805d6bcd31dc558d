"""What the dashboard's form dialogs share: ``enter`` in a field or the confirm button
submits, ``escape`` or the other button closes the dialog with ``None``."""

from __future__ import annotations

from typing import ClassVar, TypeVar

from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import Button, Input

from microsandbox_tui import InvalidConfigError

_R = TypeVar("_R")


class FormError(InvalidConfigError):
    """One or more form fields are invalid; ``fields`` maps each to its problem."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(fields.values()))
        self.fields = fields


class FormDialog(ModalScreen[_R | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    #: The id of the button that submits the form; every other button cancels.
    CONFIRM_ID: ClassVar[str] = "confirm"

    def submit(self) -> None:
        """Checks the form and acts on it, or shows in the dialog why it cannot."""
        raise NotImplementedError

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == self.CONFIRM_ID:
            self.submit()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        self.dismiss(None)

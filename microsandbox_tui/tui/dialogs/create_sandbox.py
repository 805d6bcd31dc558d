"""The create-sandbox form. It validates with the SDK's own config model before closing, so
that a bad value is reported in the form and nothing is started."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from microsandbox_tui import DEFAULT_IMAGE, InvalidConfigError
from microsandbox_tui.config import (
    DEFAULT_CPUS,
    DEFAULT_MEMORY_MIB,
    image_from_user,
    sandbox_config,
)

from ..operations import CreateRequest


def _optional_int(field: str, text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidConfigError(f"{field}: must be a whole number") from None


def build_request(name: str, image: str, cpus: str, memory: str) -> CreateRequest:
    """Turns the form's text into a request, raising :class:`InvalidConfigError` as
    ``Sandbox.create`` would, before anything is recorded or booted."""
    request = CreateRequest(
        name=name.strip(),
        image=image.strip() or DEFAULT_IMAGE,
        cpus=_optional_int("cpus", cpus),
        memory_mib=_optional_int("memory_mib", memory),
    )
    values: dict[str, object] = {"name": request.name, "image": image_from_user(request.image)}
    if request.cpus is not None:
        values["cpus"] = request.cpus
    if request.memory_mib is not None:
        values["memory_mib"] = request.memory_mib
    sandbox_config(**values)
    return request


class CreateSandboxDialog(ModalScreen[CreateRequest | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("Create sandbox", classes="dialog-title")
            yield Label("Name", classes="field-label")
            yield Input(placeholder="my-sandbox", id="name")
            yield Label("Image (local image name or host directory)", classes="field-label")
            yield Input(DEFAULT_IMAGE, id="image")
            with Horizontal(id="resources"):
                with Vertical():
                    yield Label("vCPUs", classes="field-label")
                    yield Input(placeholder=str(DEFAULT_CPUS), id="cpus", type="integer")
                with Vertical():
                    yield Label("Memory (MiB)", classes="field-label")
                    yield Input(placeholder=str(DEFAULT_MEMORY_MIB), id="memory", type="integer")
            yield Static("", id="create-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Create", id="create", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    @property
    def error_text(self) -> str:
        """The validation error shown, or ``""``."""
        return str(self.query_one("#create-error", Static).content)

    def _value(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value

    def submit(self) -> None:
        """Validates the form; closes it with the request, or shows why it cannot."""
        error = self.query_one("#create-error", Static)
        try:
            request = build_request(
                self._value("name"),
                self._value("image"),
                self._value("cpus"),
                self._value("memory"),
            )
        except InvalidConfigError as problem:
            error.update(str(problem))
            error.add_class("visible")
            return
        self.dismiss(request)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "create":
            self.submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

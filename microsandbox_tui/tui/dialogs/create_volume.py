"""The create-volume form: a name and a quota. The SDK validates both; its typed error stays
in the dialog so the value can be corrected."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static

from microsandbox_tui import Volume

from .form import FormDialog

#: What the quota field suggests.
DEFAULT_QUOTA_MIB = 1024


class CreateVolumeDialog(FormDialog[str]):
    """Dismisses with the new volume's name, or ``None`` when cancelled."""

    CONFIRM_ID = "create"

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("Create volume", classes="dialog-title")
            yield Label("Name", classes="field-label")
            yield Input(placeholder="my-data", id="volume-name")
            yield Label("Quota (MiB): the most it can hold", classes="field-label")
            yield Input(str(DEFAULT_QUOTA_MIB), id="volume-quota", type="integer")
            yield Static("", id="volume-status", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Create", id="create", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#volume-name", Input).focus()

    @property
    def status(self) -> str:
        return str(self.query_one("#volume-status", Static).content)

    def submit(self) -> None:
        name = self.query_one("#volume-name", Input).value.strip()
        quota = self.query_one("#volume-quota", Input).value.strip()
        if not name:
            self.query_one("#volume-status", Static).update("enter a name")
            return
        if not quota.isdigit():
            self.query_one("#volume-status", Static).update("the quota is a whole number of MiB")
            return
        self.query_one("#create", Button).disabled = True
        self._create(name, int(quota))

    @work(exclusive=True, group="create-volume", exit_on_error=False)
    async def _create(self, name: str, quota_mib: int) -> None:
        try:
            volume = await Volume.create(name, quota_mib)
        except Exception as error:
            self.query_one("#volume-status", Static).update(f"{type(error).__name__}: {error}")
            self.query_one("#create", Button).disabled = False
            return
        self.dismiss(volume.name)

"""The pull dialog: an image reference in, one progress bar per layer while it is pulled.

The pull runs in the dialog's worker through the SDK's pull stream; closing the dialog (or
``escape``) while it runs cancels it, which leaves nothing partial in the image store.
Errors stay in the dialog, named by their type, so the reference can be corrected.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, ProgressBar, Static, Switch

from microsandbox_tui import (
    LayerDownloadComplete,
    LayerDownloadProgress,
    LayerExtractStarted,
    LayerIndexComplete,
    LayerIndexStarted,
    PullComplete,
    PullProgress,
    RegistryAuth,
    Resolved,
    pull_stream,
)
from microsandbox_tui.formatting import format_size

from .form import FormDialog

#: What a layer's status line says at each step.
_LAYER_STEP: dict[type, str] = {
    LayerDownloadComplete: "downloaded",
    LayerExtractStarted: "extracting",
    LayerIndexStarted: "building its disk image",
    LayerIndexComplete: "ready",
}


def short_digest(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


class LayerProgress(Vertical):
    """One layer: its digest and step, and a bar of its download."""

    def __init__(self, digest: str, size_bytes: int) -> None:
        super().__init__(classes="layer-progress")
        self.digest = digest
        self.size_bytes = size_bytes
        #: The step the layer is at, as its line shows it.
        self.step = "waiting"

    def compose(self) -> ComposeResult:
        yield Static(self._line(self.step), classes="layer-line", markup=False)
        yield ProgressBar(total=max(self.size_bytes, 1), show_eta=False)

    def _line(self, step: str) -> str:
        return f"{short_digest(self.digest)}  {format_size(self.size_bytes):>9}  {step}"

    def _set_step(self, step: str) -> None:
        self.step = step
        self.query_one(".layer-line", Static).update(self._line(step))

    def show(self, event: PullProgress) -> None:
        bar = self.query_one(ProgressBar)
        if isinstance(event, LayerDownloadProgress):
            bar.update(total=max(event.total_bytes, 1), progress=event.downloaded_bytes)
            self._set_step("downloading")
        elif step := _LAYER_STEP.get(type(event)):
            if isinstance(event, LayerDownloadComplete):
                bar.update(progress=bar.total or 1)
            self._set_step(step)


class PullImageDialog(FormDialog[str]):
    """Dismisses with the pulled image's name, or ``None`` when closed."""

    CONFIRM_ID = "pull"

    def __init__(self) -> None:
        super().__init__()
        self.pulling = False
        #: The current pull's layers, by digest (kept after the dialog closes).
        self.layer_bars: dict[str, LayerProgress] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("Pull image", classes="dialog-title")
            yield Label(
                "Reference (alpine, python:3.12, host:5000/app@sha256:…)", classes="field-label"
            )
            yield Input(placeholder="alpine", id="reference")
            with Horizontal(id="credentials"):
                with Vertical():
                    yield Label("User (optional)", classes="field-label")
                    yield Input(id="username")
                with Vertical():
                    yield Label("Password or token", classes="field-label")
                    yield Input(id="password", password=True)
            with Horizontal(id="insecure-row"):
                yield Switch(value=False, id="insecure")
                yield Label("Plain HTTP (a local registry)", classes="switch-label")
            yield Static("", id="pull-status", markup=False)
            yield Vertical(id="layers")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Pull", id="pull", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#reference", Input).focus()

    @property
    def status(self) -> str:
        return str(self.query_one("#pull-status", Static).content)

    def _set_status(self, text: str) -> None:
        self.query_one("#pull-status", Static).update(text)

    def _auth(self) -> RegistryAuth | None:
        username = self.query_one("#username", Input).value.strip()
        password = self.query_one("#password", Input).value
        return RegistryAuth.basic(username, password) if username else None

    def submit(self) -> None:
        reference = self.query_one("#reference", Input).value.strip()
        if self.pulling:
            return
        if not reference:
            self._set_status("enter an image reference")
            return
        self.pulling = True
        self.query_one("#pull", Button).disabled = True
        self._pull(reference, self.query_one("#insecure", Switch).value, self._auth())

    @work(exclusive=True, group="pull", exit_on_error=False)
    async def _pull(self, reference: str, insecure: bool, auth: RegistryAuth | None) -> None:
        layers = self.query_one("#layers", Vertical)
        await layers.remove_children()
        self.layer_bars = {}
        self._set_status(f"resolving {reference}…")
        stream = pull_stream(reference, insecure=insecure, auth=auth)
        try:
            async with stream:
                async for event in stream:
                    if isinstance(event, Resolved):
                        total = format_size(event.total_bytes)
                        self._set_status(f"{event.reference}: {len(event.layers)} layers, {total}")
                        self.layer_bars = {
                            layer.digest: LayerProgress(layer.digest, layer.size_bytes)
                            for layer in event.layers
                        }
                        await layers.mount_all(self.layer_bars.values())
                    elif isinstance(event, PullComplete):
                        self._set_status(f"pulled {event.reference}")
                    elif (bar := self.layer_bars.get(getattr(event, "digest", ""))) is not None:
                        bar.show(event)
                name = await stream.result()
        except Exception as error:
            self._set_status(f"{type(error).__name__}: {error}")
            self.pulling = False
            self.query_one("#pull", Button).disabled = False
            return
        self.dismiss(name)

    def action_cancel(self) -> None:
        # Cancelling the worker leaves the stream's `async with`, which cancels the pull and
        # waits for its clean-up.
        self.workers.cancel_group(self, "pull")
        self.dismiss(None)

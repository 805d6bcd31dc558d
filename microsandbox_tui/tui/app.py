"""The ``msb-tui`` application: views, global keys and error reporting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen

from .screens import HelpScreen, SandboxesScreen


@dataclass(frozen=True, slots=True)
class AppOptions:
    """How the dashboard runs. Tests turn the background calls off for a fixed picture."""

    readonly: bool = False
    #: List sandboxes at start and then every ``refresh_interval`` seconds.
    auto_refresh: bool = True
    refresh_interval: float = 1.0
    #: Ask the runtime for the accelerator and home directory at start.
    host_info: bool = True


class MsbApp(App[None]):
    """A k9s-style dashboard for microVM sandboxes."""

    TITLE = "msb-tui"
    CSS_PATH = "app.tcss"
    MODES: ClassVar[dict[str, str | Callable[[], Screen[Any]]]] = {"sandboxes": SandboxesScreen}
    DEFAULT_MODE: ClassVar[str] = "sandboxes"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(
        self,
        *,
        readonly: bool = False,
        auto_refresh: bool = True,
        refresh_interval: float = 1.0,
        host_info: bool = True,
    ) -> None:
        self.options = AppOptions(
            readonly=readonly,
            auto_refresh=auto_refresh,
            refresh_interval=refresh_interval,
            host_info=host_info,
        )
        #: Every error reported to the user, as ``"TypeName: message"``, oldest first.
        self.errors: list[str] = []
        super().__init__()

    @property
    def readonly(self) -> bool:
        return self.options.readonly

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(readonly=self.readonly))

    def report_error(self, error: BaseException, *, context: str | None = None) -> None:
        """Shows an SDK error as a notification; the app carries on."""
        message = f"{context}: {error}" if context else str(error)
        self.errors.append(f"{type(error).__name__}: {message}")
        self.notify(message, severity="error", title=type(error).__name__, markup=False)

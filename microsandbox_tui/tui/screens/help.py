"""The key list, opened with ``?``: generated from the bindings active where it was opened, so
it always matches the footer, read-only mode and the user's ``keys.toml``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label


@dataclass(frozen=True, slots=True)
class HelpEntry:
    keys: str
    description: str


@dataclass(frozen=True, slots=True)
class HelpSection:
    title: str
    entries: tuple[HelpEntry, ...]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close", id="back"),
        Binding("question_mark", "close", "Close", id="help"),
    ]

    def __init__(self, sections: Sequence[HelpSection], *, readonly: bool = False) -> None:
        super().__init__()
        self.sections = tuple(sections)
        self._readonly = readonly

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help", classes="dialog"):
            yield Label("Keys", classes="dialog-title")
            with Grid(id="help-keys"):
                for section in self.sections:
                    yield Label(section.title, classes="help-section", markup=False)
                    for entry in section.entries:
                        yield Label(entry.keys, classes="help-key", markup=False)
                        yield Label(entry.description, classes="help-description", markup=False)
            if self._readonly:
                yield Label(
                    "Read-only: every action that changes a sandbox is disabled.",
                    id="help-readonly",
                )

    def action_close(self) -> None:
        self.dismiss(None)

"""The ``:`` palette: jump to a view or a sandbox, switch the theme, toggle the mouse."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from .widgets.view_bar import VIEWS

if TYPE_CHECKING:
    from .app import MsbApp


class MsbCommands(Provider):
    """Views (``view: images``), sandboxes (``sandbox: NAME``) and themes (``theme: NAME``)."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        app = cast("MsbApp", self.app)
        commands: list[tuple[str, str, Callable[[], Any]]] = [
            (f"view: {mode}", f"show the {title} view", partial(app.action_view, mode))
            for mode, title in VIEWS
        ]
        if app.snapshot is not None:
            commands += [
                (
                    f"sandbox: {info.name}",
                    f"open {info.name} ({info.status}, {info.image})",
                    partial(app.jump_to_sandbox, info.name),
                )
                for info in sorted(app.snapshot.infos, key=lambda info: info.name)
            ]
        commands += [
            (f"theme: {name}", "switch the colour theme", partial(app.switch_theme, name))
            for name in sorted(app.available_themes)
        ]
        commands.append(("mouse: toggle", "let the terminal select text", app.action_toggle_mouse))
        return commands

    async def discover(self) -> Hits:
        for title, help_text, command in self._commands():
            yield DiscoveryHit(title, command, help=help_text)

    async def search(self, query: str) -> AsyncIterator[Hit]:
        matcher = self.matcher(query)
        for title, help_text, command in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), command, text=title, help=help_text)

"""The lifecycle keys on a sandbox, shared by the sandboxes table and the detail screen.

Starting (or restarting) a sandbox whose secrets have no source to read them from asks for
their values first, one masked form each; cancelling one cancels the start."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.binding import Binding, BindingType

from microsandbox_tui import SandboxInfo, SandboxStatus, SecretConfig, SecretEntry

from ..dialogs import ConfirmDialog, SecretFormDialog
from ..operations import (
    delete_sandbox,
    kill_sandbox,
    restart_sandbox,
    start_sandbox,
    stop_sandbox,
    toggle_pause,
)
from .base import MsbScreen
from .shell import attach_on_host_terminal

LIFECYCLE_BINDINGS: list[BindingType] = [
    Binding("x", "stop", "Stop", id="stop"),
    Binding("u", "start", "Start", id="start"),
    Binding("p", "pause", "Pause/Resume", id="pause"),
    Binding("R", "restart", "Restart", show=False, id="restart"),
    Binding("K", "kill", "Kill", show=False, id="kill"),
    Binding("ctrl+d", "delete", "Delete", id="delete"),
    Binding("s", "shell", "Shell", id="shell"),
    Binding("S", "full_screen_shell", "Full-screen shell", show=False, id="full_screen_shell"),
]

_LIVE = frozenset(status for status in SandboxStatus if status.is_live)


class SandboxActionsScreen(MsbScreen):
    """A screen with a current sandbox that the lifecycle keys act on."""

    def target_sandbox(self) -> str | None:
        """The sandbox the keys act on, or ``None`` (after saying why). Screens with a
        current sandbox override this; here there is none."""
        self.notify("no sandbox selected", severity="warning")
        return None

    def target_info(self, name: str) -> SandboxInfo | None:
        """The last known state of ``name``, if any."""
        snapshot = self.msb_app.snapshot
        return snapshot.info(name) if snapshot else None

    def _target_in(self, allowed: frozenset[SandboxStatus], verb: str) -> str | None:
        name = self.target_sandbox()
        if name is None:
            return None
        info = self.target_info(name)
        if info is not None and info.status not in allowed:
            self.notify(
                f"cannot {verb} {name}: it is {info.status}", severity="warning", markup=False
            )
            return None
        return name

    def _operate(
        self, name: str, operation: Callable[[str], Awaitable[object]], doing: str, done: str
    ) -> None:
        self.msb_app.run_operation(name, doing, lambda: operation(name), f"{name} {done}")

    def action_stop(self) -> None:
        if name := self._target_in(frozenset({SandboxStatus.RUNNING}), "stop"):
            self._operate(name, stop_sandbox, "stopping", "stopped")

    def action_start(self) -> None:
        allowed = frozenset({SandboxStatus.STOPPED, SandboxStatus.CRASHED})
        if name := self._target_in(allowed, "start"):
            self._with_secret_values(
                name,
                "starting",
                lambda secrets: self._operate(
                    name, lambda n: start_sandbox(n, secrets), "starting", "is running"
                ),
            )

    def _with_secret_values(
        self, name: str, doing: str, then: Callable[[tuple[SecretEntry, ...]], None]
    ) -> None:
        """Asks for the value of each secret of ``name`` that no source gives, then hands
        them to ``then``; a cancelled form ends it there, with nothing started."""
        info = self.target_info(name)
        asked = [s for s in info.config.secrets if s.source is None] if info else []
        given: list[SecretEntry] = []

        def ask_next() -> None:
            if len(given) == len(asked):
                then(tuple(given))
                return
            secret: SecretConfig = asked[len(given)]
            self.app.push_screen(
                SecretFormDialog(
                    secret, rotate=True, title=f"{secret.env_var}'s value for {doing} {name}"
                ),
                callback=answered,
            )

        def answered(entry: SecretEntry | None) -> None:
            if entry is None:
                missing = asked[len(given)].env_var
                self.notify(f"{doing} {name} cancelled: {missing} has no value", markup=False)
                return
            given.append(entry)
            ask_next()

        ask_next()

    def action_pause(self) -> None:
        allowed = frozenset({SandboxStatus.RUNNING, SandboxStatus.PAUSED})
        if name := self._target_in(allowed, "pause"):
            self._operate(name, toggle_pause, "pausing", "paused/resumed")

    def action_restart(self) -> None:
        if name := self._target_in(frozenset({SandboxStatus.RUNNING}), "restart"):
            self._with_secret_values(
                name,
                "restarting",
                lambda secrets: self._operate(
                    name, lambda n: restart_sandbox(n, secrets), "restarting", "restarted"
                ),
            )

    def action_kill(self) -> None:
        name = self._target_in(_LIVE, "kill")
        if name is None:
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._operate(name, kill_sandbox, "killing", "killed")

        self.app.push_screen(
            ConfirmDialog(
                f"Kill {name}?",
                "The VM stops at once, without a clean shutdown; its disk is kept.",
                confirm_label="Kill",
            ),
            callback=confirmed,
        )

    def action_delete(self) -> None:
        name = self.target_sandbox()
        if name is None:
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._operate(name, delete_sandbox, "deleting", "deleted")
                self.deleted(name)

        self.app.push_screen(
            ConfirmDialog(
                f"Delete {name}?",
                "Its disk and logs are removed. A running sandbox is killed first.",
                confirm_label="Delete",
            ),
            callback=confirmed,
        )

    async def action_shell(self) -> None:
        """A shell tab in the Shells view: the newest detached terminal session, else a new
        login shell."""
        if name := self._target_in(frozenset({SandboxStatus.RUNNING}), "open a shell in"):
            await self.msb_app.open_shell(name)

    def action_full_screen_shell(self) -> None:
        """The login shell on the whole terminal, the dashboard suspended until it ends."""
        name = self._target_in(frozenset({SandboxStatus.RUNNING}), "open a shell in")
        if name is None:
            return
        try:
            with self.app.suspend():
                code = attach_on_host_terminal(name, self.msb_app.settings.shell)
        except Exception as error:
            self.msb_app.report_error(error, context=f"shell in {name}")
            return
        state = "detached" if code is None else f"exited ({code})"
        self.notify(f"shell in {name} {state}", markup=False)

    def deleted(self, name: str) -> None:
        """Called once a delete is confirmed (and under way)."""

"""A sandbox's secrets as a table, edited in the secret form and applied at once: add one,
edit its hosts and violation action, rotate its value (running sandboxes), remove it.

The table never shows a value, only whether there is one: a live sandbox's secrets have
theirs in its supervisor's memory; a stopped one's are read again at its next start from
where the stored config says (an env var, a file) or must be given then. Read-only, the table
is shown and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, DataTable, Static

from microsandbox_tui import SandboxInfo, SecretConfig, SecretEntry
from microsandbox_tui.secrets import EnvSource, FileSource

from ..dialogs import ConfirmDialog
from ..dialogs.secret_form import SecretFormDialog, hosts_text
from .keyed_table import Column, KeyedTable

if TYPE_CHECKING:
    from ..app import MsbApp

SECRET_COLUMNS = (
    Column("env_var", "ENV VAR"),
    Column("hosts", "ALLOWED HOSTS"),
    Column("placeholder", "PLACEHOLDER"),
    Column("on_violation", "ON VIOLATION"),
    Column("value", "VALUE SET"),
)
#: Actions that change the secrets; none is offered read-only.
SECRET_EDITING_ACTIONS = frozenset({"add_secret", "edit_secret", "remove_secret", "rotate_secret"})
#: Actions on the selected secret, greyed out without one.
_ON_SELECTED = frozenset({"edit_secret", "remove_secret", "rotate_secret"})


def value_state(secret: SecretConfig, live: bool) -> str:
    """Whether the secret has a value, never what it is: ``yes`` while the sandbox runs,
    else where its next start reads it."""
    if live:
        return "yes"
    source = secret.source
    if isinstance(source, EnvSource):
        return f"from env {source.name}"
    if isinstance(source, FileSource):
        return f"from file {source.path}"
    return "asked at start"


def secret_cells(secret: SecretConfig, live: bool) -> dict[str, str]:
    return {
        "env_var": secret.env_var,
        "hosts": hosts_text(secret),
        "placeholder": secret.placeholder,
        "on_violation": str(secret.on_violation),
        "value": value_state(secret, live),
    }


def secret_detail(secret: SecretConfig) -> str:
    """Where the placeholder is substituted, on one line."""
    inject = secret.inject
    places = [
        name
        for name, on_ in (
            ("headers", inject.headers),
            ("basic auth", inject.basic_auth),
            ("query", inject.query),
            ("body", inject.body),
        )
        if on_
    ]
    tls = "inside TLS only" if secret.require_tls else "also plain HTTP"
    where = ", ".join(places) or "nowhere"
    return f"{secret.env_var}={secret.placeholder} · substituted in {where} · {tls}"


class SecretsPanel(Vertical):
    """The secrets of one sandbox; :meth:`show` follows the listing."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add_secret", "Add secret", id="add_secret"),
        Binding("e", "edit_secret", "Edit secret", id="edit_secret"),
        Binding("r", "rotate_secret", "Rotate", id="rotate_secret"),
        Binding("delete", "remove_secret", "Remove secret", id="remove_secret"),
    ]

    def __init__(self, sandbox: str, *, editable: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sandbox = sandbox
        self.editable = editable
        self._secrets: tuple[SecretConfig, ...] = ()
        self._live = False

    @property
    def table(self) -> KeyedTable:
        return self.query_one("#secrets-table", KeyedTable)

    @property
    def secrets(self) -> tuple[SecretConfig, ...]:
        """The stored secrets, as last listed."""
        return self._secrets

    @property
    def selected(self) -> SecretConfig | None:
        key = self.table.selected_key if self.is_mounted else None
        return next((secret for secret in self._secrets if secret.env_var == key), None)

    def compose(self) -> ComposeResult:
        yield KeyedTable(SECRET_COLUMNS, id="secrets-table")
        yield Static("", id="secret-detail", markup=False)
        with Horizontal(classes="secrets-buttons") as buttons:
            buttons.display = self.editable
            yield Button("Add", id="secret-add", compact=True)
            yield Button("Edit", id="secret-edit", compact=True)
            yield Button("Rotate", id="secret-rotate", compact=True)
            yield Button("Remove", id="secret-remove", compact=True)

    def on_mount(self) -> None:
        self.table.border_title = "Secrets"
        self._describe()

    def show(self, info: SandboxInfo) -> None:
        """The secrets stored with ``info``, and whether they have values now."""
        secrets, live = info.config.secrets, info.status.is_live
        if (secrets, live) == (self._secrets, self._live):
            return
        self._secrets, self._live = secrets, live
        self.table.apply_rows({secret.env_var: secret_cells(secret, live) for secret in secrets})
        self._describe()

    def _describe(self) -> None:
        count = len(self._secrets)
        self.table.border_title = f"Secrets [{count}]"
        if not count:
            self.table.border_subtitle = "none: a to add one" if self.editable else "none"
        else:
            self.table.border_subtitle = "values are never shown" + (
                "" if self.editable else " · read-only"
            )
        selected = self.selected
        self.query_one("#secret-detail", Static).update(secret_detail(selected) if selected else "")
        self.screen.refresh_bindings()

    @on(DataTable.RowHighlighted, "#secrets-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._describe()

    # -- editing ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in SECRET_EDITING_ACTIONS:
            return True
        if not self.editable:
            return False
        if action in _ON_SELECTED and self.selected is None:
            return None
        if action == "rotate_secret" and not self._live:
            return None  # a stopped sandbox has no value to rotate: it gets one at start
        return True

    def _others(self, env_var: str | None) -> tuple[SecretConfig, ...]:
        return tuple(secret for secret in self._secrets if secret.env_var != env_var)

    def _open_form(self, form: SecretFormDialog, done: str) -> None:
        def saved(entry: SecretEntry | None) -> None:
            if entry is not None:
                self._set_secret(entry, done.format(env_var=entry.env_var))

        self.app.push_screen(form, callback=saved)

    def action_add_secret(self) -> None:
        form = SecretFormDialog(others=self._secrets, title=f"Add a secret to {self.sandbox}")
        self._open_form(form, "secret {env_var} added")

    def action_edit_secret(self) -> None:
        secret = self.selected
        if secret is not None:
            form = SecretFormDialog(secret, others=self._others(secret.env_var))
            self._open_form(form, "secret {env_var} updated")

    def action_rotate_secret(self) -> None:
        secret = self.selected
        if secret is not None and self._live:
            form = SecretFormDialog(secret, rotate=True, others=self._others(secret.env_var))
            self._open_form(form, "secret {env_var} rotated")

    def action_remove_secret(self) -> None:
        secret = self.selected
        if secret is None:
            return
        env_var = secret.env_var

        def confirmed(ok: bool | None) -> None:
            if ok:
                self._remove_secret(env_var)

        consequence = (
            f"The gateway stops substituting {secret.placeholder} at once, and {env_var} "
            "leaves the environment of new commands. The stored configuration forgets it."
        )
        self.app.push_screen(
            ConfirmDialog(
                f"Remove the secret {env_var} of {self.sandbox}?",
                consequence,
                confirm_label="Remove",
            ),
            callback=confirmed,
        )

    @work(group="secrets", exit_on_error=False)
    async def _set_secret(self, entry: SecretEntry, done: str) -> None:
        app = cast("MsbApp", self.app)
        try:
            await app.source.set_secret(self.sandbox, entry)
        except Exception as error:
            app.report_error(error, context=f"setting the secret {entry.env_var}")
            return
        self.notify(done, markup=False)
        app.refresh_sandboxes()

    @work(group="secrets", exit_on_error=False)
    async def _remove_secret(self, env_var: str) -> None:
        app = cast("MsbApp", self.app)
        try:
            await app.source.remove_secret(self.sandbox, env_var)
        except Exception as error:
            app.report_error(error, context=f"removing the secret {env_var}")
            return
        self.notify(f"secret {env_var} removed", markup=False)
        app.refresh_sandboxes()

    @on(Button.Pressed, ".secrets-buttons Button")
    def _button(self, event: Button.Pressed) -> None:
        event.stop()
        actions: dict[str, tuple[str, Callable[[], None]]] = {
            "secret-add": ("add_secret", self.action_add_secret),
            "secret-edit": ("edit_secret", self.action_edit_secret),
            "secret-rotate": ("rotate_secret", self.action_rotate_secret),
            "secret-remove": ("remove_secret", self.action_remove_secret),
        }
        action, run = actions[event.button.id or ""]
        if self.check_action(action, ()):
            run()
        self.table.focus()

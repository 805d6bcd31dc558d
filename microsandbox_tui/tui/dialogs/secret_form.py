"""The form of one secret: its env var, its value (masked, never pre-filled), the hosts it may
be sent to, what a violation does and where in a request it is substituted.

It builds the SDK's own :class:`SecretEntry`, so that a bad host or env var is refused with
the SDK's words under its field, the form staying open with what was typed. The value lives
only in its masked field while the form is open: submitted, it goes into the entry's
``SecretStr`` and the field is emptied; cancelled, the field is emptied. No attribute of the
dialog ever holds it.

Three uses: adding a secret (everything, a value required), editing one (the env var fixed,
the rest pre-filled, an empty value keeping the current one: the entry's value is ``None``),
and rotating one (only the value).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from microsandbox_tui import InvalidConfigError, SecretConfig, SecretEntry, SecretInjection
from microsandbox_tui.secrets import ViolationAction, check_unique

from .form import FormDialog, FormError

#: Form fields, in order; each has an error line under it.
SECRET_FIELDS = ("env_var", "value", "hosts", "on_violation", "inject")
#: The first part of an SDK error location (after ``secrets.``) → the form field.
_FIELD_OF = {
    "env_var": "env_var",
    "value": "value",
    "allow_hosts": "hosts",
    "allow_host_patterns": "hosts",
    "on_violation": "on_violation",
    "inject": "inject",
}
#: A host entry starting so is a pattern (``*.example.com``), matching every name below it.
PATTERN_PREFIX = "*."


def split_hosts(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``"api.example.com, *.example.org"`` → (hosts, patterns), in the order typed."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    hosts = tuple(item for item in items if not item.startswith(PATTERN_PREFIX))
    patterns = tuple(item for item in items if item.startswith(PATTERN_PREFIX))
    return hosts, patterns


def hosts_text(secret: SecretConfig) -> str:
    """The hosts and patterns of ``secret`` as the form's field holds them."""
    return ", ".join((*secret.allow_hosts, *secret.allow_host_patterns))


def _field_errors(error: InvalidConfigError) -> dict[str, str]:
    """``"secrets.allow_hosts: 'a b' is not ..."`` → ``{"hosts": "'a b' is not ..."}``. A
    problem of the whole secret names its env var first; one about the value goes under the
    value, any other under the hosts (the only other thing a whole secret is checked for)."""
    fields: dict[str, str] = {}
    for problem in str(error).split("; "):
        location, _, message = problem.partition(": ")
        parts = location.split(".")
        key = parts[1].split("[", 1)[0] if len(parts) > 1 else ""
        field = _FIELD_OF.get(key)
        if field is None:
            message = message.partition(": ")[2] or message
            field = "value" if "value" in message else "hosts"
        fields[field] = f"{fields[field]}; {message}" if field in fields else message
    return fields


class MaskedInput(Input):
    """A masked field whose text never leaves it: no copy, no cut (Textual's would put the
    value on the terminal's clipboard and keep it in the app's ``clipboard`` attribute)."""

    def __init__(self, *, placeholder: str = "", id: str | None = None) -> None:
        super().__init__(password=True, placeholder=placeholder, id=id)

    def action_copy(self) -> None:
        raise SkipAction()

    def action_cut(self) -> None:
        raise SkipAction()


def build_secret_entry(
    env_var: str,
    value: str,
    hosts: str,
    on_violation: str,
    inject_query: bool,
    inject_body: bool,
    *,
    current: SecretConfig | None = None,
    others: tuple[SecretConfig, ...] = (),
    value_required: bool = True,
) -> SecretEntry:
    """The form's values as a :class:`SecretEntry`. ``current`` is the secret being edited:
    its placeholder, TLS requirement, header substitution and source are kept; an empty
    ``value`` (allowed unless ``value_required``) keeps its value (the entry's is ``None``),
    a typed one replaces its source. ``others`` are the sandbox's other secrets, which this
    one may not clash with. Raises :class:`FormError` naming each bad field; no message
    holds the value."""
    if value_required and not value:
        raise FormError({"value": "give the secret's value"})
    allow_hosts, allow_host_patterns = split_hosts(hosts)
    injection = current.inject if current is not None else SecretInjection()
    try:
        entry = SecretEntry(
            env_var=env_var.strip(),
            value=SecretStr(value) if value else None,
            allow_hosts=allow_hosts,
            allow_host_patterns=allow_host_patterns,
            placeholder=current.placeholder if current is not None else None,
            require_tls=current.require_tls if current is not None else True,
            on_violation=ViolationAction(on_violation),
            inject=injection.model_copy(update={"query": inject_query, "body": inject_body}),
            source=current.source if current is not None and not value else None,
        )
    except InvalidConfigError as error:
        raise FormError(_field_errors(error)) from None
    config = entry.config()
    if any(other.env_var == config.env_var for other in others):
        raise FormError({"env_var": f"{config.env_var} is already a secret here: edit it"})
    try:
        check_unique((*others, config))
    except ValueError as error:
        raise FormError({"env_var": str(error)}) from None
    return entry


class SecretFormDialog(FormDialog[SecretEntry]):
    """Adds, edits or rotates one secret; dismisses with the new :class:`SecretEntry`, or
    ``None``. The value is never shown, pre-filled or kept: see the module's doc."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+s", "submit", "Save secret")]
    CONFIRM_ID = "save-secret"

    def __init__(
        self,
        secret: SecretConfig | None = None,
        *,
        rotate: bool = False,
        others: tuple[SecretConfig, ...] = (),
        title: str | None = None,
    ) -> None:
        super().__init__()
        self._secret = secret
        self._rotate = rotate and secret is not None
        self._others = others
        if title is None:
            env_var = secret.env_var if secret else ""
            title = f"Rotate {env_var}" if self._rotate else f"Edit {env_var}" if secret else None
        self._title = title or "Add secret"

    @property
    def rotating(self) -> bool:
        return self._rotate

    def compose(self) -> ComposeResult:
        secret = self._secret
        with Vertical(id="dialog", classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            with Vertical(id="secret-settings") as settings:
                settings.display = not self._rotate
                yield Label("Env var (the guest sees its placeholder)", classes="field-label")
                env_var = Input(
                    secret.env_var if secret else "", placeholder="OPENAI_API_KEY", id="env_var"
                )
                env_var.disabled = secret is not None
                yield env_var
                yield Static("", id="env_var-error", classes="field-error", markup=False)
            yield Label("Value (masked, never stored)", classes="field-label")
            keep = secret is not None and not self._rotate
            yield MaskedInput(
                placeholder="empty: keep the current value" if keep else "the secret's value",
                id="value",
            )
            yield Static(self._source_hint(), id="value-hint", classes="field-hint", markup=False)
            yield Static("", id="value-error", classes="field-error", markup=False)
            with Vertical(id="secret-rules") as rules:
                rules.display = not self._rotate
                yield from self._compose_rules(secret)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="save-secret", variant="primary")

    def _compose_rules(self, secret: SecretConfig | None) -> ComposeResult:
        yield Label(
            "Allowed hosts (comma-separated, *.example.com: subdomains)",
            classes="field-label",
        )
        yield Input(
            hosts_text(secret) if secret else "",
            placeholder="api.openai.com, *.openai.com",
            id="hosts",
        )
        yield Static("", id="hosts-error", classes="field-error", markup=False)
        yield Label("On violation", classes="field-label")
        action = secret.on_violation if secret else ViolationAction.BLOCK_AND_LOG
        yield Select(
            [(str(choice), str(choice)) for choice in ViolationAction],
            value=str(action),
            allow_blank=False,
            id="on_violation",
        )
        yield Static("", id="on_violation-error", classes="field-error", markup=False)
        with Horizontal(id="secret-inject"):
            yield Checkbox(
                "Also in the query", secret.inject.query if secret else False, id="query"
            )
            yield Checkbox("Also in the body", secret.inject.body if secret else False, id="body")
        yield Static("", id="inject-error", classes="field-error", markup=False)

    def _source_hint(self) -> str:
        source = self._secret.source if self._secret else None
        if source is None:
            return ""
        return f"read from the {source.describe()} at each start; a value typed here replaces it"

    def on_mount(self) -> None:
        first = "#value" if self._secret is not None else "#env_var"
        self.query_one(first, Input).focus()

    def field_error(self, field: str) -> str:
        return str(self.query_one(f"#{field}-error", Static).content)

    def _text(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value

    def submit(self) -> None:
        """Validates the secret; closes the form with it (the value field emptied), or shows
        why it cannot, keeping everything typed."""
        value_field = self.query_one("#value", Input)
        try:
            entry = build_secret_entry(
                self._text("env_var"),
                value_field.value,
                self._text("hosts"),
                str(self.query_one("#on_violation", Select).value),
                self.query_one("#query", Checkbox).value,
                self.query_one("#body", Checkbox).value,
                current=self._secret,
                others=self._others,
                value_required=self._secret is None or self._rotate,
            )
        except FormError as problem:
            self._show_errors(problem.fields)
            return
        value_field.clear()
        self.dismiss(entry)

    def _show_errors(self, fields: dict[str, str]) -> None:
        for field in SECRET_FIELDS:
            error = self.query_one(f"#{field}-error", Static)
            error.update(fields.get(field, ""))
            error.set_class(field in fields, "visible")

    def action_submit(self) -> None:
        self.submit()

    def action_cancel(self) -> None:
        self.query_one("#value", Input).clear()
        super().action_cancel()

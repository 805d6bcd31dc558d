"""The create-sandbox form. It validates with the SDK's own config model before closing, so
that a bad value is reported next to its field and nothing is started. The network is a
preset or, chosen as ``custom``, rules edited in the rules editor. Secrets are added in the
secret form and listed without their values, which the form holds only until it closes."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, Select, Static, Switch, TextArea

from microsandbox_tui import (
    DEFAULT_IMAGE,
    InvalidConfigError,
    Network,
    NetworkPolicy,
    SecretEntry,
)
from microsandbox_tui.config import (
    DEFAULT_CPUS,
    DEFAULT_MEMORY_MIB,
    image_from_user,
    sandbox_config,
)
from microsandbox_tui.network import (
    CUSTOM_POLICY,
    PRESET_SHORT_NAMES,
    PresetName,
    parse_published_ports,
)

from ..operations import CreateRequest, PolicyChoice
from ..widgets.keyed_table import Column, KeyedTable
from ..widgets.rules_editor import RulesEditor
from .form import FormDialog, FormError
from .secret_form import SecretFormDialog, hosts_text

if TYPE_CHECKING:
    from ..app import MsbApp

#: Form fields, in order; each has an error line under it.
FIELDS = ("name", "image", "cpus", "memory", "ports", "env", "secrets")
#: The first part of an error location (as the SDK names it) → the form field.
_FIELD_OF = {"name": "name", "image": "image", "path": "image", "cpus": "cpus"}
_FIELD_OF |= {"memory_mib": "memory", "env": "env", "network": "ports", "secrets": "secrets"}
#: What each preset of the network selector means, by its short name.
_PRESET_MEANINGS = {"public": "internet", "none": "no network", "all": "everything"}
CREATE_SECRET_COLUMNS = (Column("env_var", "ENV VAR", 24), Column("hosts", "ALLOWED HOSTS"))
#: A comma starts a new variable only when ``NAME=`` follows it, so values may hold commas.
_ENV_SPLIT = re.compile(r",(?=\s*[^\s=,]+=)")


def parse_env(text: str) -> dict[str, str]:
    """``KEY=VALUE`` pairs, one a line or separated by commas."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        for item in _ENV_SPLIT.split(line):
            item = item.strip()
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise InvalidConfigError(f"env: expected KEY=VALUE, got {item!r}")
            env[key.strip()] = value
    return env


def _optional_int(location: str, text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidConfigError(f"{location}: must be a whole number") from None


def _field_errors(error: InvalidConfigError, fallback: str) -> dict[str, str]:
    """``"loc: message; loc: message"`` → form field → ``"loc: message"``."""
    fields: dict[str, str] = {}
    for problem in str(error).split("; "):
        location = problem.split(":", 1)[0].split(".", 1)[0].strip()
        field = _FIELD_OF.get(location, fallback)
        fields[field] = f"{fields[field]}; {problem}" if field in fields else problem
    return fields


def build_request(
    name: str,
    image: str,
    cpus: str,
    memory: str,
    env: str = "",
    detached: bool = True,
    preset: PolicyChoice = "public_only",
    ports: str = "",
    secrets: tuple[SecretEntry, ...] = (),
) -> CreateRequest:
    """Turns the form's text into a request, raising :class:`FormError` (an
    :class:`InvalidConfigError`) as ``Sandbox.create`` would, before anything is booted."""
    errors: dict[str, str] = {}
    values: dict[str, object] = {"name": name.strip()}
    parsed: dict[str, object] = {}
    steps = (
        ("image", lambda: image_from_user(image.strip() or DEFAULT_IMAGE)),
        ("cpus", lambda: _optional_int("cpus", cpus)),
        ("memory", lambda: _optional_int("memory_mib", memory)),
        ("ports", lambda: Network(preset, parse_published_ports(ports))),
        ("env", lambda: parse_env(env)),
    )
    for field, step in steps:
        try:
            parsed[field] = step()
        except InvalidConfigError as error:
            errors |= _field_errors(error, field)
    fields = (("image", "image"), ("cpus", "cpus"), ("memory", "memory_mib"), ("ports", "network"))
    for field, key in fields:
        if parsed.get(field) is not None:
            values[key] = parsed[field]
    if parsed.get("env"):
        values["env"] = parsed["env"]
    if secrets:
        values["secrets"] = tuple(entry.config() for entry in secrets)
    try:
        sandbox_config(**values)
    except InvalidConfigError as error:
        errors = _field_errors(error, "name") | errors
    if errors:
        raise FormError({field: errors[field] for field in FIELDS if field in errors})
    return CreateRequest(
        name=name.strip(),
        image=image.strip() or DEFAULT_IMAGE,
        cpus=cast("int | None", parsed["cpus"]),
        memory_mib=cast("int | None", parsed["memory"]),
        env=cast("dict[str, str]", parsed["env"]),
        detached=detached,
        network=cast("Network", parsed["ports"]),
        secrets=secrets,
    )


class CreateSandboxDialog(FormDialog[CreateRequest]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+s", "submit", "Create")]
    CONFIRM_ID = "create"

    def __init__(self, image: str | None = None) -> None:
        super().__init__()
        self._image = image or DEFAULT_IMAGE
        #: The secrets added so far, values included, until the form closes.
        self._secrets: list[SecretEntry] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog"):
            yield Label("Create sandbox", classes="dialog-title")
            yield Label("Name", classes="field-label")
            yield Input(placeholder="my-sandbox", id="name")
            yield Static("", id="name-error", classes="field-error", markup=False)
            yield Label(
                "Image (OCI reference, local image or host directory)", classes="field-label"
            )
            yield Input(self._image, id="image")
            yield Static("", id="image-hint", classes="field-hint", markup=False)
            yield Static("", id="image-error", classes="field-error", markup=False)
            with Horizontal(id="resources"):
                with Vertical():
                    yield Label("vCPUs", classes="field-label")
                    yield Input(placeholder=str(DEFAULT_CPUS), id="cpus", type="integer")
                    yield Static("", id="cpus-error", classes="field-error", markup=False)
                with Vertical():
                    yield Label("Memory (MiB)", classes="field-label")
                    yield Input(placeholder=str(DEFAULT_MEMORY_MIB), id="memory", type="integer")
                    yield Static("", id="memory-error", classes="field-error", markup=False)
            with Horizontal(id="network-row"):
                with Vertical():
                    yield Label("Network", classes="field-label")
                    yield Select(
                        [
                            *(
                                (f"{short} ({_PRESET_MEANINGS[short]})", preset)
                                for short, preset in PRESET_SHORT_NAMES.items()
                            ),
                            (f"{CUSTOM_POLICY} (rules)", CUSTOM_POLICY),
                        ],
                        value="public_only",
                        allow_blank=False,
                        id="network",
                    )
                with Vertical():
                    yield Label(
                        "Ports (HOST:GUEST[/udp])",
                        classes="field-label",
                        markup=False,
                    )
                    yield Input(placeholder="8080:80, 5353:53/udp", id="ports")
                    yield Static("", id="ports-error", classes="field-error", markup=False)
            rules = RulesEditor(NetworkPolicy(), id="create-rules")
            rules.display = False
            yield rules
            yield Label(
                "Environment (KEY=VALUE, one a line or comma-separated)", classes="field-label"
            )
            yield TextArea(id="env", soft_wrap=False, show_line_numbers=False)
            yield Static("", id="env-error", classes="field-error", markup=False)
            yield from self._compose_secrets()
            with Horizontal(id="detached-row"):
                yield Switch(value=True, id="detached")
                yield Label("Detached: keeps running after msb-tui quits", classes="switch-label")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Create", id="create", variant="primary")

    def _compose_secrets(self) -> ComposeResult:
        with Horizontal(id="create-secrets-row"):
            yield Label("Secrets (values are never stored)", classes="field-label")
            yield Button("Add secret", id="create-secret-add", compact=True)
            yield Button("Remove", id="create-secret-remove", compact=True)
        table = KeyedTable(CREATE_SECRET_COLUMNS, id="create-secrets")
        table.display = False
        yield table
        yield Static("", id="secrets-error", classes="field-error", markup=False)

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()
        self._load_images()

    @work(exclusive=True, group="images", exit_on_error=False)
    async def _load_images(self) -> None:
        """Offers the local images as completions of the image field (free text still goes)."""
        app = cast("MsbApp", self.app)
        try:
            images = await app.source.list_images()
        except Exception as error:
            app.report_error(error, context="listing images")
            return
        names = sorted(image.name for image in images)
        self.query_one("#image", Input).suggester = SuggestFromList(names, case_sensitive=True)
        hint = "local: " + ", ".join(names) if names else "no local images: use a directory"
        self.query_one("#image-hint", Static).update(hint)

    @property
    def error_text(self) -> str:
        """Every validation error shown, ``"; "``-separated; ``""`` when there is none."""
        texts = [str(self.query_one(f"#{field}-error", Static).content) for field in FIELDS]
        return "; ".join(text for text in texts if text)

    def field_error(self, field: str) -> str:
        return str(self.query_one(f"#{field}-error", Static).content)

    def _value(self, field: str) -> str:
        return self.query_one(f"#{field}", Input).value

    @property
    def policy(self) -> PolicyChoice:
        """The chosen preset, or the rules editor's policy for ``custom``."""
        choice = self.query_one("#network", Select).value
        if choice == CUSTOM_POLICY:
            return self.query_one("#create-rules", RulesEditor).policy
        return cast("PresetName", choice)

    @property
    def secret_entries(self) -> tuple[SecretEntry, ...]:
        """The secrets added, in order."""
        return tuple(self._secrets)

    @on(Button.Pressed, "#create-secret-add")
    def _add_secret(self, event: Button.Pressed) -> None:
        """The secret form; its secret joins the list. (These two buttons neither submit
        nor cancel, as the form's other buttons do: the default handling is skipped.)"""
        event.stop()
        event.prevent_default()
        others = tuple(entry.config() for entry in self._secrets)

        def saved(entry: SecretEntry | None) -> None:
            if entry is not None:
                self._secrets.append(entry)
                self._show_secrets()

        self.app.push_screen(SecretFormDialog(others=others), callback=saved)

    @on(Button.Pressed, "#create-secret-remove")
    def _remove_secret(self, event: Button.Pressed) -> None:
        event.stop()
        event.prevent_default()
        table = self.query_one("#create-secrets", KeyedTable)
        selected = table.selected_key
        self._secrets = [entry for entry in self._secrets if entry.env_var != selected]
        self._show_secrets()

    def _show_secrets(self) -> None:
        table = self.query_one("#create-secrets", KeyedTable)
        rows = {}
        for entry in self._secrets:
            config = entry.config()
            rows[entry.env_var] = {"env_var": entry.env_var, "hosts": hosts_text(config)}
        table.apply_rows(rows)
        table.display = bool(rows)

    @on(Select.Changed, "#network")
    def _network_chosen(self, event: Select.Changed) -> None:
        self.query_one("#create-rules", RulesEditor).display = event.value == CUSTOM_POLICY

    def submit(self) -> None:
        """Validates the form; closes it with the request, or shows why it cannot."""
        try:
            request = build_request(
                self._value("name"),
                self._value("image"),
                self._value("cpus"),
                self._value("memory"),
                self.query_one("#env", TextArea).text,
                self.query_one("#detached", Switch).value,
                self.policy,
                self._value("ports"),
                self.secret_entries,
            )
        except FormError as problem:
            self._show_errors(problem.fields)
            return
        self._secrets = []  # the request carries the values on; the closed form does not
        self.dismiss(request)

    def action_cancel(self) -> None:
        self._secrets = []
        super().action_cancel()

    def _show_errors(self, fields: dict[str, str]) -> None:
        for field in FIELDS:
            error = self.query_one(f"#{field}-error", Static)
            error.update(fields.get(field, ""))
            error.set_class(field in fields, "visible")

    def action_submit(self) -> None:
        self.submit()

"""The form of one network rule. It builds the SDK's own :class:`Rule`, so that a bad CIDR,
domain or port range is refused with the SDK's words, shown under the field it is about."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Select, Static

from microsandbox_tui import Action, Direction, InvalidConfigError, Rule
from microsandbox_tui.network import Protocol

from .form import FormDialog, FormError

#: Form fields, in order; each has an error line under it.
RULE_FIELDS = ("action", "direction", "protocol", "destination", "port")
#: What the protocol selector shows for a rule that matches every protocol.
ANY = "any"


def build_rule(action: str, direction: str, protocol: str, destination: str, port: str) -> Rule:
    """The form's values as a :class:`Rule`; an empty destination or port (and the protocol
    ``any``) matches any. Raises :class:`FormError` naming each bad field."""
    port_text = port.strip()
    try:
        return Rule(
            action,
            direction,
            destination.strip() or None,
            None if protocol == ANY else protocol,
            int(port_text) if port_text.isdigit() else port_text or None,
        )
    except InvalidConfigError as error:
        raise FormError(_field_errors(error)) from None


def _field_errors(error: InvalidConfigError) -> dict[str, str]:
    """``"port: range 9000-8000 is reversed"`` → ``{"port": "range 9000-8000 is reversed"}``;
    a problem of no field goes under the destination, the field most often at fault."""
    fields: dict[str, str] = {}
    for problem in str(error).split("; "):
        location, _, message = problem.partition(": ")
        field = location.split(".", 1)[0].split("[", 1)[0].strip()
        if field not in RULE_FIELDS or not message:
            field, message = "destination", problem
        fields[field] = f"{fields[field]}; {message}" if field in fields else message
    return fields


def _choices(values: list[str]) -> list[tuple[str, str]]:
    return [(value, value) for value in values]


class RuleFormDialog(FormDialog[Rule]):
    """Adds or edits one rule; dismisses with the new :class:`Rule`, or ``None``."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+s", "submit", "Save rule")]
    CONFIRM_ID = "save-rule"

    def __init__(self, rule: Rule | None = None, *, title: str = "Add rule") -> None:
        super().__init__()
        self._rule = rule or Rule.allow()
        self._title = title

    def compose(self) -> ComposeResult:
        rule = self._rule
        with Vertical(id="dialog", classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            with Horizontal(id="rule-choices"):
                yield from self._select_field("action", "Action", list(Action), rule.action)
                yield from self._select_field(
                    "direction", "Direction", list(Direction), rule.direction
                )
                yield from self._select_field(
                    "protocol", "Protocol", [ANY, *Protocol], rule.protocol or ANY
                )
            yield Label(
                "Destination (*, group, CIDR, IP, domain or .suffix)",
                classes="field-label",
            )
            yield Input(rule.destination or "", placeholder="any", id="destination")
            yield Static("", id="destination-error", classes="field-error", markup=False)
            yield Label("Ports (a number or lo-hi)", classes="field-label")
            port = "" if rule.port is None else str(rule.port)
            yield Input(port, placeholder="any", id="port")
            yield Static("", id="port-error", classes="field-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="save-rule", variant="primary")

    def _select_field(self, field: str, label: str, values: list[str], value: str) -> ComposeResult:
        with Vertical():
            yield Label(label, classes="field-label")
            yield Select(_choices(values), value=str(value), allow_blank=False, id=field)
            yield Static("", id=f"{field}-error", classes="field-error", markup=False)

    def on_mount(self) -> None:
        self.query_one("#destination", Input).focus()

    def field_error(self, field: str) -> str:
        return str(self.query_one(f"#{field}-error", Static).content)

    def _choice(self, field: str) -> str:
        return str(self.query_one(f"#{field}", Select).value)

    def submit(self) -> None:
        """Validates the rule; closes the form with it, or shows why it cannot."""
        try:
            rule = build_rule(
                self._choice("action"),
                self._choice("direction"),
                self._choice("protocol"),
                self.query_one("#destination", Input).value,
                self.query_one("#port", Input).value,
            )
        except FormError as problem:
            self._show_errors(problem.fields)
            return
        self.dismiss(rule)

    def _show_errors(self, fields: dict[str, str]) -> None:
        for field in RULE_FIELDS:
            error = self.query_one(f"#{field}-error", Static)
            error.update(fields.get(field, ""))
            error.set_class(field in fields, "visible")

    def action_submit(self) -> None:
        self.submit()

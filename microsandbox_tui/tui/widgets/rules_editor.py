"""A network policy as a table of its rules in order, then its two defaults, edited in place:
add, edit, delete and move rules (in the rule form), flip a default, or start from a preset.

A sandbox whose policy is a preset shows the preset's name; adding a rule to it, or choosing
a preset to start from, spells the preset out as its rules and defaults
(``NetworkPolicy.from_preset``), which are then edited like any others. Read-only, the table
is shown and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar, cast

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Select
from textual.widgets.data_table import RowKey

from microsandbox_tui import Action, Direction, NetworkPolicy, Rule
from microsandbox_tui.network import CUSTOM_POLICY, PresetName

from ..operations import PolicyChoice

if TYPE_CHECKING:
    from ..app import MsbApp

#: Presets, in the order offered, as "start from" choices.
PRESETS: tuple[PresetName, ...] = ("public_only", "none", "allow_all")
#: The choice that starts from no rules and the SDK's defaults.
EMPTY_CUSTOM = "custom"
COLUMNS = (("#", 2), ("ACTION", 6), ("DIR", 7), ("PROTO", 6), ("DESTINATION", 18), ("PORTS", 9))
#: The rows of the two defaults, after the rules.
DEFAULT_ROWS: dict[str, Direction] = {
    "default-egress": Direction.EGRESS,
    "default-ingress": Direction.INGRESS,
}
#: Actions that change the policy; none is offered read-only.
EDITING_ACTIONS = frozenset(
    {"add_rule", "edit_rule", "delete_rule", "move_rule_up", "move_rule_down", "start_from_preset"}
)


def rule_cells(index: int, rule: Rule) -> tuple[str, ...]:
    """One rule as the table shows it, numbered from 0 as the flow log names rules; what is
    left open reads ``any``."""
    return (
        str(index),
        str(rule.action),
        str(rule.direction),
        str(rule.protocol or "any"),
        rule.destination or "any",
        "any" if rule.port is None else str(rule.port),
    )


class RulesEditor(Vertical):
    """Shows and edits a policy; :attr:`policy` is what it holds now."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "add_rule", "Add rule", id="add_rule"),
        Binding("e", "edit_rule", "Edit rule", id="edit_rule"),
        Binding("delete", "delete_rule", "Delete rule", id="delete_rule"),
        Binding("shift+up", "move_rule_up", "Move up", id="move_rule_up"),
        Binding("shift+down", "move_rule_down", "Move down", id="move_rule_down"),
        Binding("P", "start_from_preset", "From preset", id="start_from_preset"),
    ]

    class Changed(Message):
        """The policy was edited (it differs from what was loaded, or no longer does)."""

        def __init__(self, editor: RulesEditor) -> None:
            super().__init__()
            self.editor = editor

        @property
        def control(self) -> RulesEditor:
            return self.editor

    def __init__(
        self, policy: PolicyChoice, *, editable: bool = True, id: str | None = None
    ) -> None:
        super().__init__(id=id, classes="rules-editor")
        self.editable = editable
        self._loaded: PolicyChoice = policy
        self._preset: PresetName | None = None
        self._rules: list[Rule] = []
        self._defaults: dict[Direction, Action] = {}
        self._set(policy)

    # -- the policy ------------------------------------------------------------------------

    @property
    def policy(self) -> PolicyChoice:
        if self._preset is not None:
            return self._preset
        return NetworkPolicy(
            self._defaults[Direction.EGRESS], self._defaults[Direction.INGRESS], self._rules
        )

    @property
    def rules(self) -> tuple[Rule, ...]:
        return tuple(self._rules)

    @property
    def dirty(self) -> bool:
        """Whether the policy differs from the one loaded (or last marked applied)."""
        return self.policy != self._loaded

    def load(self, policy: PolicyChoice) -> None:
        """Shows ``policy`` as the one to edit from; :attr:`dirty` is false after."""
        self._loaded = policy
        self._set(policy)
        self._show()

    def mark_applied(self) -> None:
        """What is shown now is the sandbox's policy."""
        self._loaded = self.policy
        self.post_message(self.Changed(self))

    def _set(self, policy: PolicyChoice) -> None:
        custom = policy if isinstance(policy, NetworkPolicy) else NetworkPolicy()
        self._preset = policy if isinstance(policy, str) else None
        self._rules = list(custom.rules)
        self._defaults = {
            Direction.EGRESS: custom.default_egress,
            Direction.INGRESS: custom.default_ingress,
        }

    def insert_rule(self, rule: Rule, index: int) -> None:
        """Puts ``rule`` at ``index`` (a preset is spelt out as its rules first)."""
        if self._preset is not None:
            self._set(NetworkPolicy.from_preset(self._preset))
        self._rules.insert(index, rule)
        self._edited(select=f"rule-{index}")

    # -- the view --------------------------------------------------------------------------

    @property
    def table(self) -> DataTable[str]:
        return self.query_one("#rules-table", DataTable)

    def compose(self) -> ComposeResult:
        table: DataTable[str] = DataTable(id="rules-table", cursor_type="row")
        yield table
        with Horizontal(classes="rules-buttons") as buttons:
            buttons.display = self.editable
            yield Button("Add", id="rule-add", compact=True)
            yield Button("Edit", id="rule-edit", compact=True)
            yield Button("Delete", id="rule-delete", compact=True)
            yield Button("Up", id="rule-up", compact=True)
            yield Button("Down", id="rule-down", compact=True)
            yield Select(
                [(preset, preset) for preset in (*PRESETS, EMPTY_CUSTOM)],
                prompt="From preset",
                id="rule-preset",
                compact=True,
            )

    def on_mount(self) -> None:
        for label, width in COLUMNS:
            self.table.add_column(label, width=width, key=label)
        self._show()

    def _show(self, select: str | None = None) -> None:
        """Draws the table again, the cursor on ``select`` or where it was."""
        if not self.table.columns:
            return  # not mounted yet: on_mount draws it
        table = self.table
        previous = table.cursor_row
        table.clear()
        if self._preset is not None:
            table.add_row("-", "preset", "", "", self._preset, "", key="preset")
            table.border_title = f"Policy: preset {self._preset}"
            table.border_subtitle = "rules kept by the runtime"
            return
        for index, rule in enumerate(self._rules):
            table.add_row(*rule_cells(index, rule), key=f"rule-{index}")
        for key, direction in DEFAULT_ROWS.items():
            action = str(self._defaults[direction])
            table.add_row("-", action, str(direction), "", "default", "", key=key)
        count = len(self._rules)
        table.border_title = f"Policy: {CUSTOM_POLICY} ({count} rule{'' if count == 1 else 's'})"
        table.border_subtitle = "first match wins" if self.editable else "read-only"
        row = table.get_row_index(select) if select is not None else previous
        table.move_cursor(row=min(row, table.row_count - 1))

    def _edited(self, select: str | None = None) -> None:
        self._show(select)
        self.post_message(self.Changed(self))

    @property
    def _selected_key(self) -> str | None:
        table = self.table
        if table.row_count == 0:
            return None
        key: RowKey = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return key.value

    @property
    def selected_index(self) -> int | None:
        """The index of the rule under the cursor, or ``None`` (a default, a preset)."""
        key = self._selected_key
        return int(key.removeprefix("rule-")) if key and key.startswith("rule-") else None

    # -- editing ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in EDITING_ACTIONS and not self.editable)

    def action_add_rule(self) -> None:
        """A new rule below the selected one (at the end when a default is selected)."""
        index = self.selected_index
        place = len(self._rules) if index is None else index + 1

        def saved(rule: Rule | None) -> None:
            if rule is not None:
                self.insert_rule(rule, place)

        cast("MsbApp", self.app).open_rule_form(None, "Add rule", saved)

    def action_edit_rule(self) -> None:
        """The rule form on the selected rule; on a default, flips it."""
        key = self._selected_key
        if key in DEFAULT_ROWS:
            direction = DEFAULT_ROWS[key]
            flipped = Action.DENY if self._defaults[direction] is Action.ALLOW else Action.ALLOW
            self._defaults[direction] = flipped
            self._edited(select=key)
            return
        index = self.selected_index
        if index is None:
            self.notify("select a rule to edit", severity="warning")
            return

        def saved(rule: Rule | None) -> None:
            if rule is not None:
                self._rules[index] = rule
                self._edited(select=f"rule-{index}")

        cast("MsbApp", self.app).open_rule_form(self._rules[index], f"Edit rule {index + 1}", saved)

    def action_delete_rule(self) -> None:
        index = self.selected_index
        if index is None:
            self.notify("select a rule to delete", severity="warning")
            return
        del self._rules[index]
        self._edited(select=f"rule-{min(index, len(self._rules) - 1)}" if self._rules else None)

    def action_move_rule_up(self) -> None:
        self._move_rule(-1)

    def action_move_rule_down(self) -> None:
        self._move_rule(1)

    def _move_rule(self, step: int) -> None:
        """Moves the selected rule up (``-1``) or down (``1``), the cursor with it."""
        index = self.selected_index
        if index is None:
            return
        target = index + step
        if not 0 <= target < len(self._rules):
            return
        rules = self._rules
        rules[index], rules[target] = rules[target], rules[index]
        self._edited(select=f"rule-{target}")

    def action_start_from_preset(self) -> None:
        preset = self.query_one("#rule-preset", Select)
        preset.focus()
        preset.expanded = True

    @on(Select.Changed, "#rule-preset")
    def _preset_chosen(self, event: Select.Changed) -> None:
        event.stop()
        if event.value is Select.NULL:
            return
        choice = str(event.value)
        self._set(NetworkPolicy() if choice == EMPTY_CUSTOM else NetworkPolicy.from_preset(choice))
        self._edited(select=None)
        event.select.clear()
        self.table.focus()

    @on(DataTable.RowSelected, "#rules-table")
    def _row_chosen(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if self.editable:
            self.action_edit_rule()

    @on(Button.Pressed, ".rules-buttons Button")
    def _button(self, event: Button.Pressed) -> None:
        event.stop()
        actions: dict[str, Callable[[], None]] = {
            "rule-add": self.action_add_rule,
            "rule-edit": self.action_edit_rule,
            "rule-delete": self.action_delete_rule,
            "rule-up": self.action_move_rule_up,
            "rule-down": self.action_move_rule_down,
        }
        actions[event.button.id or ""]()
        self.table.focus()

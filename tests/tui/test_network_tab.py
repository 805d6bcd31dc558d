"""The Network tab and the rules editor, on recorded data: rules added, edited, moved and
deleted through the rule form, a policy applied to a running sandbox (the flow log's next
decision follows it), "allow this destination" from a denied flow, the create form's custom
policy, and read-only mode. The SDK is replaced at the dashboard's data source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from recorded import NOW, recorded_app, wait_for_listing
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static
from textual.widgets._footer import FooterKey

from microsandbox_tui import (
    Action,
    InvalidConfigError,
    NetworkPolicy,
    Rule,
)
from microsandbox_tui.network_log import FlowLogEntry
from microsandbox_tui.tui.data import RecordedSource
from microsandbox_tui.tui.dialogs import ConfirmDialog, CreateSandboxDialog, RuleFormDialog
from microsandbox_tui.tui.operations import CreateRequest, PolicyChoice
from microsandbox_tui.tui.screens import SandboxDetailScreen
from microsandbox_tui.tui.widgets.rules_editor import EDITING_ACTIONS

Waiter = Callable[..., Awaitable[None]]
SIZE = (110, 32)


@dataclass
class GatewaySource(RecordedSource):
    """The recorded source, whose flow log goes on with the flows :meth:`connect` makes,
    each decided by the policy last applied, as the sandbox's gateway would decide it."""

    fail_with: Exception | None = None
    _fed: asyncio.Queue[FlowLogEntry] = field(default_factory=asyncio.Queue)

    async def set_network_policy(self, name: str, policy: PolicyChoice) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        await super().set_network_policy(name, policy)

    async def network_log(
        self, name: str, *, tail: int | None = None, follow: bool = False
    ) -> AsyncIterator[FlowLogEntry]:
        async for entry in super().network_log(name, tail=tail, follow=follow):
            yield entry
        while follow:
            yield await self._fed.get()

    def connect(self, host: str, port: int, policy: NetworkPolicy) -> None:
        """A TCP flow of the guest to ``host:port``, decided by the first rule of ``policy``
        naming that address, protocol and port (or leaving them open), else its default."""
        index, action = next(
            (
                (index, rule.action)
                for index, rule in enumerate(policy.rules)
                if rule.destination in (None, "*", host)
                and rule.protocol in (None, "tcp")
                and rule.port in (None, port)
            ),
            (None, policy.default_egress),
        )
        line = {
            "kind": "flow",
            "time": NOW.isoformat(),
            "direction": "egress",
            "protocol": "tcp",
            "src": "172.16.0.2:40500",
            "dst": f"{host}:{port}",
            "action": str(action),
            "rule": index,
            "rule_text": "default" if index is None else f"{action}@{host}:tcp:{port}",
        }
        self._fed.put_nowait(FlowLogEntry.model_validate(line))


def gateway_app(**options: Any) -> tuple[Any, GatewaySource]:
    app = recorded_app(**options)
    recorded = app.source
    assert isinstance(recorded, RecordedSource)
    source = GatewaySource(**{name: getattr(recorded, name) for name in _RECORDED_FIELDS})
    app.source = source
    return app, source


_RECORDED_FIELDS = (
    "sandboxes",
    "metrics",
    "images",
    "process_tables",
    "volumes",
    "directories",
    "flow_logs",
    "clock",
)


async def open_network_tab(pilot: Pilot[None], name: str = "worker") -> SandboxDetailScreen:
    await wait_for_listing(pilot)
    pilot.app.screen.query_one("#sandboxes").select(name)  # type: ignore[attr-defined]
    await pilot.press("enter", "n")
    await pilot.pause(0.2)
    detail = pilot.app.screen
    assert isinstance(detail, SandboxDetailScreen)
    assert detail.active_tab == "network"
    return detail


def offered(pilot: Pilot[None]) -> set[str]:
    screen = pilot.app.screen
    ids = {active.binding.id for active in screen.active_bindings.values()}
    return {binding for binding in ids if binding} | {key.action for key in screen.query(FooterKey)}


# -- the rules editor -------------------------------------------------------------------------


async def test_rules_are_added_moved_and_deleted_and_a_bad_cidr_is_refused_in_the_form() -> None:
    app, _ = gateway_app()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_network_tab(pilot)
        editor = detail.rules_editor
        assert [rule.destination for rule in editor.rules] == [
            "api.example.com",
            ".pypi.org",
            "10.0.0.0/8",
        ]
        assert not editor.dirty
        assert {"add_rule", "edit_rule", "delete_rule"} <= offered(pilot), "keys in the footer"

        await pilot.press("a")  # below the selected rule, the first
        form = app.screen
        assert isinstance(form, RuleFormDialog)
        await pilot.press(*"10.1.0.0/33", "enter")
        assert app.screen is form, "a bad CIDR keeps the form open"
        assert form.field_error("destination") == (
            "'10.1.0.0/33' is not a valid CIDR: an IPv4 prefix is 0..32"
        )
        await pilot.press("backspace", "backspace", *"16", "tab", *"8000-7000", "enter")
        assert form.field_error("port") == "range 8000-7000 is reversed"
        assert form.field_error("destination") == ""
        await pilot.press("ctrl+u", *"8000-9000", "enter")
        assert not isinstance(app.screen, RuleFormDialog), "saved, the form closes"
        assert editor.rules[1] == Rule.allow(destination="10.1.0.0/16", port="8000-9000")
        assert editor.selected_index == 1
        assert editor.dirty
        assert str(detail.query_one("#network-status", Static).content) == "changes not applied yet"

        await pilot.press("shift+down")
        assert [rule.destination for rule in editor.rules][1:3] == [".pypi.org", "10.1.0.0/16"]
        assert editor.selected_index == 2, "the cursor moves with the rule"
        await pilot.press("shift+up", "shift+up")
        assert editor.rules[0].destination == "10.1.0.0/16"

        await pilot.press("delete")
        assert [rule.destination for rule in editor.rules] == [
            "api.example.com",
            ".pypi.org",
            "10.0.0.0/8",
        ]
        assert not editor.dirty, "back to the sandbox's policy"


async def test_editing_a_rule_and_flipping_a_default() -> None:
    app, _ = gateway_app()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_network_tab(pilot)
        editor = detail.rules_editor
        await pilot.press("e")
        form = app.screen
        assert isinstance(form, RuleFormDialog)
        assert form.query_one("#destination", Input).value == "api.example.com"
        assert form.query_one("#port", Input).value == "443"
        form.query_one("#action", Select).value = "deny"
        await pilot.press("enter")
        assert editor.rules[0] == Rule.deny(destination="api.example.com", protocol="tcp", port=443)

        editor.table.move_cursor(row=3)  # the egress default, after the three rules
        await pilot.press("e")
        policy = editor.policy
        assert isinstance(policy, NetworkPolicy)
        assert policy.default_egress is Action.ALLOW


async def test_a_preset_is_a_starting_point_spelt_out_as_its_rules() -> None:
    app, _ = gateway_app()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_network_tab(pilot)
        editor = detail.rules_editor
        editor.query_one("#rule-preset", Select).value = "public_only"
        await pilot.pause()
        public = NetworkPolicy.from_preset("public_only")
        assert editor.policy == public
        assert editor.table.row_count == len(public.rules) + 2
        await pilot.press("a", *"api.example.com", "enter")
        custom = editor.policy
        assert isinstance(custom, NetworkPolicy)
        assert custom.default_egress is Action.ALLOW
        added = Rule.allow(destination="api.example.com")
        assert [rule for rule in custom.rules if rule != added] == list(public.rules)


async def test_a_stored_preset_is_spelt_out_when_a_rule_is_added() -> None:
    app, _ = gateway_app()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_network_tab(pilot)
        editor = detail.rules_editor
        editor.load("public_only")
        await pilot.pause()
        assert editor.table.border_title == "Policy: preset public_only"
        editor.table.focus()
        await pilot.press("a", *"api.example.com", "enter")
        custom = editor.policy
        assert isinstance(custom, NetworkPolicy)
        assert len(custom.rules) == len(NetworkPolicy.from_preset("public_only").rules) + 1


# -- apply and the flow log -------------------------------------------------------------------


async def test_applying_a_policy_changes_the_next_decision_of_the_flow_log(
    wait_until: Waiter,
) -> None:
    app, source = gateway_app()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_network_tab(pilot)
        flow_log, editor = detail.flow_log, detail.rules_editor
        await wait_until(pilot, lambda: len(flow_log.shown) == 6, timeout=5, what="the backlog")
        stored = editor.policy
        assert isinstance(stored, NetworkPolicy)
        source.connect("198.51.100.20", 80, stored)
        await wait_until(pilot, lambda: len(flow_log.shown) == 7, timeout=5, what="a flow")
        assert flow_log.shown[-1].denied

        editor.table.focus()
        await pilot.press("a", *"198.51.100.20", "tab", *"80", "enter")
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, ConfirmDialog)
        assert "New flows follow it at once" in str(
            app.screen.query_one("#confirm-message", Static).content
        )
        await pilot.press("y")
        await wait_until(pilot, lambda: source.applied_policies, timeout=5, what="the apply")
        name, applied = source.applied_policies[-1]
        assert name == "worker"
        assert applied == editor.policy
        assert isinstance(applied, NetworkPolicy)
        assert applied.rules[1] == Rule.allow(destination="198.51.100.20", port=80)
        await wait_until(pilot, lambda: not editor.dirty, timeout=5, what="the editor to be clean")

        source.connect("198.51.100.20", 80, applied)
        await wait_until(pilot, lambda: len(flow_log.shown) == 8, timeout=5, what="the next flow")
        assert flow_log.shown[-1].action is Action.ALLOW
        assert flow_log.table.get_row_at(flow_log.table.row_count - 1)[1:3] == ["allow", "#1"]
        assert app.errors == []


async def test_a_refused_apply_is_reported_and_the_edits_are_kept(wait_until: Waiter) -> None:
    app, source = gateway_app()
    source.fail_with = InvalidConfigError("network.policy: rules[0]: refused")
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_network_tab(pilot)
        await pilot.press("delete", "ctrl+s", "y")
        await wait_until(pilot, lambda: app.errors, timeout=5, what="the error")
        assert app.errors == [
            "InvalidConfigError: applying the network policy of worker: "
            "network.policy: rules[0]: refused"
        ]
        assert detail.rules_editor.dirty


async def test_allow_this_destination_prefills_a_first_rule_from_a_denied_flow(
    wait_until: Waiter,
) -> None:
    app, _ = gateway_app()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_network_tab(pilot)
        flow_log = detail.flow_log
        await wait_until(pilot, lambda: len(flow_log.shown) == 6, timeout=5, what="the backlog")
        flow_log.table.focus()
        flow_log.table.move_cursor(row=1)  # an allowed flow: nothing to allow
        await pilot.pause()
        assert not app.screen.active_bindings["A"].enabled, "offered, greyed out"
        await pilot.press("A")
        assert app.screen is detail

        await pilot.press("D")  # denied only: the refused name, the flow, the deny rule's flow
        assert [entry.kind for entry in flow_log.shown] == ["dns", "flow", "flow"]
        flow_log.table.move_cursor(row=1)
        await pilot.pause()
        assert "198.51.100.20:80" in str(detail.query_one("#flow-detail", Static).content)
        await pilot.press("A")
        form = app.screen
        assert isinstance(form, RuleFormDialog)
        assert form.query_one("#destination", Input).value == "198.51.100.20"
        assert form.query_one("#port", Input).value == "80"
        assert form.query_one("#protocol", Select).value == "tcp"
        await pilot.press("enter")
        assert detail.rules_editor.rules[0] == Rule.allow(
            destination="198.51.100.20", protocol="tcp", port=80
        )

        assert app.focused is detail.rules_editor.table, "the new rule is shown"
        flow_log.table.focus()
        flow_log.table.move_cursor(row=0)  # the refused name: a rule for the name
        await pilot.pause()
        await pilot.press("A")
        form = app.screen
        assert isinstance(form, RuleFormDialog)
        assert form.query_one("#destination", Input).value == "other.example"
        assert form.query_one("#protocol", Select).value == "any"
        await pilot.press("escape")


async def test_the_flow_log_filters_by_destination_text() -> None:
    app, _ = gateway_app()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_network_tab(pilot)
        flow_log = detail.flow_log
        flow_log.table.focus()
        await pilot.press("slash", *"example.com", "enter")
        assert [entry.kind for entry in flow_log.shown] == ["dns", "flow", "close"]
        assert flow_log.table.border_title == "Flow log [3/6]"


async def test_escape_in_the_flow_filter_clears_it_and_stays_on_the_tab() -> None:
    app, _ = gateway_app()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_network_tab(pilot)
        flow_log = detail.flow_log
        flow_log.table.focus()
        await pilot.press("slash", *"example.com")
        assert len(flow_log.shown) == 3
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is detail
        assert (flow_log.query_text, len(flow_log.shown)) == ("", 6)
        assert flow_log.table.has_focus


async def test_published_ports_are_listed() -> None:
    app, _ = gateway_app()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_network_tab(pilot)
        ports = str(detail.query_one("#network-ports", Static).content)
        assert ports == "Published ports: 127.0.0.1:9090 -> 9090/tcp"


# -- read-only and the create form ------------------------------------------------------------


async def test_readonly_shows_the_policy_and_the_flow_log_but_edits_nothing(
    wait_until: Waiter,
) -> None:
    app, source = gateway_app(readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_network_tab(pilot)
        editor, flow_log = detail.rules_editor, detail.flow_log
        await wait_until(pilot, lambda: len(flow_log.shown) == 6, timeout=5, what="the backlog")
        assert len(editor.rules) == 3
        assert not (EDITING_ACTIONS | {"apply_policy", "allow_destination"}) & offered(pilot)
        assert not editor.query_one(".rules-buttons").display
        assert not detail.query_one("#network-apply-row").display

        await pilot.press("a", "e", "delete", "shift+down", "ctrl+s")
        flow_log.table.focus()
        flow_log.table.move_cursor(row=3)
        await pilot.press("A")
        assert app.screen is detail, "no form, no confirm"
        assert not editor.dirty
        assert source.applied_policies == []


async def test_the_create_form_builds_a_custom_policy_from_the_rules_editor() -> None:
    app = recorded_app()
    requests: list[CreateRequest | None] = []
    async with app.run_test(size=(100, 48)) as pilot:
        await wait_for_listing(pilot)
        await app.push_screen(CreateSandboxDialog(), callback=requests.append)
        dialog = app.screen
        rules = dialog.query_one("#create-rules")
        assert not rules.display, "hidden until custom is chosen"
        dialog.query_one("#network", Select).value = "custom"
        await pilot.pause()
        assert rules.display
        await pilot.press(*"box")
        rules.query_one("#rules-table").focus()
        await pilot.press("a", *"api.example.com", "tab", *"443", "enter")
        await pilot.press("ctrl+s")
        await pilot.pause()
    [request] = requests
    assert request is not None
    assert request.network.policy == NetworkPolicy(
        rules=[Rule.allow(destination="api.example.com", port=443)]
    )

"""The Secrets tab and the secret form, on recorded data: a secret added through the form (its
value masked, never listed, never kept by the form or the screen), rotated, its hosts edited,
removed after a confirmation, a bad host refused inline, the violations of the flow log,
read-only mode, the create form handing its secrets to ``Sandbox.create``, and a start asking
for the values no source gives. The SDK is
replaced at the dashboard's data source."""

from __future__ import annotations

import gc
import secrets
import types
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from recorded import RECORDED_SECRETS, recorded_app, wait_for_listing
from textual.pilot import Pilot
from textual.widgets import Checkbox, Input, Select
from textual.widgets._footer import FooterKey

from microsandbox_tui import Secret, SecretEntry
from microsandbox_tui.secrets import ViolationAction
from microsandbox_tui.tui import operations
from microsandbox_tui.tui.data import RecordedSource
from microsandbox_tui.tui.dialogs import ConfirmDialog, CreateSandboxDialog, SecretFormDialog
from microsandbox_tui.tui.operations import CreateRequest
from microsandbox_tui.tui.screens import SandboxDetailScreen, sandbox_actions
from microsandbox_tui.tui.widgets.secrets_panel import SECRET_EDITING_ACTIONS

Waiter = Callable[..., Awaitable[None]]
SIZE = (110, 32)
TALL = (100, 44)


def a_value() -> str:
    """A value no recorded data holds, built at run time (so no other object is it)."""
    return "sk-" + secrets.token_hex(12)


async def open_secrets_tab(pilot: Pilot[None], name: str = "web") -> SandboxDetailScreen:
    await wait_for_listing(pilot)
    pilot.app.screen.query_one("#sandboxes").select(name)  # type: ignore[attr-defined]
    await pilot.press("enter", "dollar_sign")
    await pilot.pause(0.2)
    detail = pilot.app.screen
    assert isinstance(detail, SandboxDetailScreen)
    assert detail.active_tab == "secrets"
    return detail


def source_of(app: Any) -> RecordedSource:
    source = app.source
    assert isinstance(source, RecordedSource)
    return source


def offered(pilot: Pilot[None]) -> set[str]:
    screen = pilot.app.screen
    ids = {active.binding.id for active in screen.active_bindings.values()}
    return {binding for binding in ids if binding} | {key.action for key in screen.query(FooterKey)}


def holders(target: object) -> list[object]:
    """What refers to ``target``, the test's own locals (its frame, its coroutine) left out."""
    gc.collect()
    own = (types.FrameType, types.CoroutineType)
    return [ref for ref in gc.get_referrers(target) if not isinstance(ref, own)]


async def test_a_secret_added_through_the_form_is_listed_without_its_value(
    wait_until: Waiter,
) -> None:
    app = recorded_app()
    source = source_of(app)
    typed = a_value()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_secrets_tab(pilot)
        panel = detail.secrets_panel
        assert panel.table.row_keys == ["OPENAI_API_KEY", "GITHUB_TOKEN"]
        assert {"add_secret", "edit_secret", "rotate_secret", "remove_secret"} <= offered(pilot)

        await pilot.press("a")
        form = app.screen
        assert isinstance(form, SecretFormDialog)
        value_field = form.query_one("#value", Input)
        assert value_field.password, "the value is masked"
        assert value_field.value == "", "and never pre-filled"
        await pilot.press(*"ANTHROPIC_API_KEY", "tab", *typed, "tab")
        await pilot.press(*"api.anthropic.com, *.anthropic.com")
        form.query_one("#body", Checkbox).value = True
        assert typed not in app.export_screenshot(), "typed, the value is not shown"
        value_field.focus()
        await pilot.press("ctrl+shift+a")
        assert value_field.selected_text == typed
        await pilot.press("ctrl+c", "ctrl+x")
        assert (app.clipboard, value_field.value) == ("", typed), "nor copied out"
        await pilot.press("ctrl+s")
        assert app.screen is detail, "saved, the form closes"

        await wait_until(pilot, lambda: source.applied_secrets, timeout=5, what="the set")
        [(name, entry)] = source.applied_secrets
        assert name == "web"
        assert entry.value is not None and entry.value.get_secret_value() == typed
        assert entry.allow_hosts == ("api.anthropic.com",)
        assert entry.allow_host_patterns == ("*.anthropic.com",)
        assert entry.on_violation is ViolationAction.BLOCK_AND_LOG
        assert (entry.inject.query, entry.inject.body) == (False, True)
        assert entry.source is None
        await wait_until(
            pilot, lambda: "ANTHROPIC_API_KEY" in panel.table.row_keys, timeout=5, what="the row"
        )
        assert panel.table.text_of("ANTHROPIC_API_KEY", "value") == "yes"
        assert panel.table.text_of("ANTHROPIC_API_KEY", "placeholder") == "$MSB_ANTHROPIC_API_KEY"
        assert typed not in app.export_screenshot()
        assert value_field.value == "", "the form's field was emptied"

        # Only the recording holds the entry, and only the entry the value: neither the form,
        # its fields nor the screen kept either.
        source.applied_secrets.clear()
        value = entry.value.get_secret_value()
        assert holders(entry) == []
        del entry
        assert [type(holder).__name__ for holder in holders(value)] == []
        assert app.errors == []


async def test_a_secret_is_rotated_with_only_a_new_value(wait_until: Waiter) -> None:
    app = recorded_app()
    source = source_of(app)
    typed = a_value()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_secrets_tab(pilot)
        assert detail.secrets_panel.selected == RECORDED_SECRETS[0]
        await pilot.press("r")
        form = app.screen
        assert isinstance(form, SecretFormDialog) and form.rotating
        assert not form.query_one("#secret-settings").display, "only the value is asked"
        assert not form.query_one("#secret-rules").display
        await pilot.press("enter")
        assert form.field_error("value") == "give the secret's value", "rotation needs one"
        await pilot.press(*typed, "enter")
        await wait_until(pilot, lambda: source.applied_secrets, timeout=5, what="the rotation")
        [(_, entry)] = source.applied_secrets
        assert entry.value is not None and entry.value.get_secret_value() == typed
        assert entry.config() == RECORDED_SECRETS[0], "everything else is as it was"


async def test_editing_hosts_keeps_the_value_and_what_the_form_does_not_show(
    wait_until: Waiter,
) -> None:
    app = recorded_app()
    source = source_of(app)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_secrets_tab(pilot)
        panel = detail.secrets_panel
        panel.table.select("GITHUB_TOKEN")
        await pilot.press("e")
        form = app.screen
        assert isinstance(form, SecretFormDialog) and not form.rotating
        env_var = form.query_one("#env_var", Input)
        assert (env_var.value, env_var.disabled) == ("GITHUB_TOKEN", True)
        assert form.query_one("#value", Input).value == ""
        hosts = form.query_one("#hosts", Input)
        assert hosts.value == "api.github.com, *.githubusercontent.com"
        assert form.query_one("#body", Checkbox).value
        hosts.value = "api.github.com, uploads.github.com"
        form.query_one("#on_violation", Select).value = "block_and_terminate"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: source.applied_secrets, timeout=5, what="the edit")
        [(_, entry)] = source.applied_secrets
        assert entry.value is None, "an empty value keeps the current one"
        assert entry.allow_hosts == ("api.github.com", "uploads.github.com")
        assert entry.allow_host_patterns == ()
        assert entry.on_violation is ViolationAction.BLOCK_AND_TERMINATE
        assert entry.inject == RECORDED_SECRETS[1].inject
        await wait_until(
            pilot,
            lambda: panel.table.text_of("GITHUB_TOKEN", "on_violation") == "block_and_terminate",
            timeout=5,
            what="the listing to follow",
        )
        assert panel.table.text_of("GITHUB_TOKEN", "hosts") == "api.github.com, uploads.github.com"


async def test_a_bad_host_is_refused_inline_and_the_form_keeps_what_was_typed() -> None:
    app = recorded_app()
    source = source_of(app)
    typed = a_value()
    async with app.run_test(size=TALL) as pilot:
        await open_secrets_tab(pilot)
        await pilot.press("a", *"API_KEY", "tab", *typed, "tab", *"api.example.com, bad host!")
        await pilot.press("enter")
        form = app.screen
        assert isinstance(form, SecretFormDialog), "the form stays open"
        assert form.field_error("hosts") == "'bad host!' is not a host name such as api.example.com"
        assert form.query_one("#env_var", Input).value == "API_KEY"
        assert form.query_one("#value", Input).value == typed, "kept while the form is open"
        assert typed not in form.field_error("hosts")

        form.query_one("#env_var", Input).value = "OPENAI_API_KEY"
        form.query_one("#hosts", Input).value = "api.example.com"
        await pilot.press("enter")
        assert form.field_error("env_var") == "OPENAI_API_KEY is already a secret here: edit it"
        assert form.field_error("hosts") == ""

        form.query_one("#env_var", Input).value = "OPENAI_API"
        await pilot.press("enter")
        assert form.field_error("env_var") == (
            "the placeholder of OPENAI_API is part of the placeholder of OPENAI_API_KEY: give "
            "them placeholders that do not overlap"
        )
        value_field = form.query_one("#value", Input)
        await pilot.press("escape")
        assert app.screen is not form
        assert value_field.value == "", "cancelled, the value is dropped"
        assert source.applied_secrets == []


async def test_a_secret_is_removed_only_once_confirmed(wait_until: Waiter) -> None:
    app = recorded_app()
    source = source_of(app)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_secrets_tab(pilot)
        panel = detail.secrets_panel
        await pilot.press("delete")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert source.removed_secrets == []
        await pilot.press("delete", "y")
        await wait_until(pilot, lambda: source.removed_secrets, timeout=5, what="the removal")
        assert source.removed_secrets == [("web", "OPENAI_API_KEY")]
        await wait_until(
            pilot, lambda: panel.table.row_keys == ["GITHUB_TOKEN"], timeout=5, what="the row"
        )


async def test_the_violations_of_the_flow_log_are_listed(wait_until: Waiter) -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_secrets_tab(pilot)
        violations = detail.secret_violations
        await wait_until(pilot, lambda: len(violations.shown) == 2, timeout=5, what="violations")
        assert [entry.secret for entry in violations.shown] == ["OPENAI_API_KEY", "GITHUB_TOKEN"]
        assert violations.table.get_row_at(0) == [
            "11:58:42",
            "OPENAI_API_KEY",
            "exfil.example",
            "198.51.100.66:443",
        ]
        assert violations.table.border_title == "Secret violations [2]"


async def test_a_stopped_sandboxs_secrets_say_where_their_values_come_from() -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_secrets_tab(pilot, "batch")
        table = detail.secrets_panel.table
        assert [table.text_of(key, "value") for key in table.row_keys] == [
            "from env OPENAI",
            "from file /run/keys/db",
            "asked at start",
        ]
        assert not app.screen.active_bindings["r"].enabled, "nothing to rotate: greyed out"
        await pilot.press("r")
        assert app.screen is detail


async def test_readonly_lists_secrets_and_violations_but_edits_nothing(
    wait_until: Waiter,
) -> None:
    app = recorded_app(readonly=True)
    source = source_of(app)
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_secrets_tab(pilot)
        panel = detail.secrets_panel
        assert panel.table.row_keys == ["OPENAI_API_KEY", "GITHUB_TOKEN"]
        violations = detail.secret_violations
        await wait_until(pilot, lambda: len(violations.shown) == 2, timeout=5, what="violations")
        assert not SECRET_EDITING_ACTIONS & offered(pilot)
        assert not panel.query_one(".secrets-buttons").display
        await pilot.press("a", "e", "r", "delete")
        assert app.screen is detail, "no form, no confirm"
        assert (source.applied_secrets, source.removed_secrets) == ([], [])


async def test_the_create_form_hands_its_secrets_to_the_request() -> None:
    app = recorded_app()
    requests: list[CreateRequest | None] = []
    typed = a_value()
    async with app.run_test(size=TALL) as pilot:
        await wait_for_listing(pilot)
        await app.push_screen(CreateSandboxDialog(), callback=requests.append)
        dialog = app.screen
        assert isinstance(dialog, CreateSandboxDialog)
        await pilot.press(*"box")
        await pilot.click("#create-secret-add")
        form = app.screen
        assert isinstance(form, SecretFormDialog)
        await pilot.press(*"OPENAI_API_KEY", "tab", *typed, "tab", *"api.openai.com", "enter")
        assert app.screen is dialog
        assert dialog.query_one("#create-secrets").row_keys == ["OPENAI_API_KEY"]  # type: ignore[attr-defined]
        assert typed not in app.export_screenshot()
        await pilot.press("ctrl+s")
        await pilot.pause()
    [request] = requests
    assert request is not None
    [entry] = request.secrets
    assert entry.env_var == "OPENAI_API_KEY"
    assert entry.value is not None and entry.value.get_secret_value() == typed
    assert dialog.secret_entries == (), "the closed form keeps no value"


async def test_create_sandbox_passes_the_requests_secrets_to_the_sdk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    created: dict[str, Any] = {}

    class Created:
        async def close(self) -> None:
            created["closed"] = True

    async def create(name: str, **options: Any) -> Created:
        created[name] = options
        return Created()

    monkeypatch.setattr(operations.Sandbox, "create", create)
    entry: SecretEntry = Secret.env("TOKEN", value=a_value(), allow_hosts=["api.example.com"])
    await operations.create_sandbox(CreateRequest("box", "msb-base", None, None, secrets=(entry,)))
    assert created["box"]["secrets"] == [entry]
    assert created["closed"]


async def test_a_secret_violation_in_the_network_tab_offers_no_allow_rule(
    wait_until: Waiter,
) -> None:
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        detail = await open_secrets_tab(pilot)
        await pilot.press("n")
        flow_log = detail.flow_log
        await wait_until(pilot, lambda: len(flow_log.shown) == 4, timeout=5, what="the backlog")
        flow_log.table.focus()
        flow_log.table.move_cursor(row=1)
        await pilot.pause()
        assert flow_log.selected is not None and flow_log.selected.denied
        assert not app.screen.active_bindings["A"].enabled, "a policy rule would not help"
        await pilot.press("A")
        assert app.screen is detail


async def test_starting_asks_for_the_values_no_source_gives_and_hands_them_to_the_start(
    monkeypatch: pytest.MonkeyPatch, wait_until: Waiter
) -> None:
    started: list[tuple[str, tuple[SecretEntry, ...]]] = []

    async def start(name: str, secrets: tuple[SecretEntry, ...] = ()) -> None:
        started.append((name, secrets))

    monkeypatch.setattr(sandbox_actions, "start_sandbox", start)
    app = recorded_app()
    typed = a_value()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)
        app.screen.query_one("#sandboxes").select("batch")  # type: ignore[attr-defined]
        await pilot.press("u")
        form = app.screen
        # Of batch's three secrets only STRIPE_KEY has no source: only its value is asked.
        assert isinstance(form, SecretFormDialog) and form.rotating
        value_field = form.query_one("#value", Input)
        assert value_field.password
        await pilot.press(*typed, "enter")
        await wait_until(pilot, lambda: started, timeout=5, what="the start")
        [(name, [entry])] = started
        assert name == "batch"
        assert entry.env_var == "STRIPE_KEY"
        assert entry.value is not None and entry.value.get_secret_value() == typed
        assert value_field.value == "", "the form keeps nothing"


async def test_cancelling_a_value_asked_at_start_starts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[str] = []

    async def start(name: str, secrets: tuple[SecretEntry, ...] = ()) -> None:
        started.append(name)

    monkeypatch.setattr(sandbox_actions, "start_sandbox", start)
    app = recorded_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_listing(pilot)
        app.screen.query_one("#sandboxes").select("batch")  # type: ignore[attr-defined]
        await pilot.press("u")
        assert isinstance(app.screen, SecretFormDialog)
        await pilot.press("escape")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, SecretFormDialog)
        assert started == []
        assert any("STRIPE_KEY has no value" in str(n.message) for n in app._notifications)

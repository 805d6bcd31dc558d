"""The Network tab on a real microVM: a rule added in the tab and applied reaches the running
sandbox's gateway, and the flow log in the tab shows the next flow decided by it.

Every flow here is to the gateway's own address (``host.msb.internal``): denied, it ends at
the gateway; allowed, on this machine's loopback, where nothing listens on its port. Nothing
leaves the machine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from microsandbox_tui import Network, NetworkPolicy, Sandbox
from microsandbox_tui.tui.app import MsbApp
from microsandbox_tui.tui.dialogs import ConfirmDialog
from microsandbox_tui.tui.screens import SandboxDetailScreen
from microsandbox_tui.tui.widgets import SandboxTable

Waiter = Callable[..., Awaitable[None]]

pytestmark = [pytest.mark.vm, pytest.mark.timeout(300)]

#: A port nothing on the host listens on (discard): a flow there ends at once either way.
CLOSED_PORT = 9


async def connect_from_the_guest(sandbox: Sandbox) -> None:
    await sandbox.shell(f"nc -w 2 host.msb.internal {CLOSED_PORT} </dev/null || true")


async def test_a_rule_applied_in_the_network_tab_decides_the_next_flow(
    clean_home: Path, sandbox_name: str, wait_until: Waiter
) -> None:
    name = sandbox_name
    denied = NetworkPolicy(default_egress="deny", default_ingress="deny")
    await Sandbox.create(name, detached=True, network=Network(denied))
    sandbox = await Sandbox.connect(name)
    app = MsbApp(refresh_interval=0.5, host_info=False)
    try:
        async with app.run_test(size=(140, 40)) as pilot:
            table = app.screen.query_one(SandboxTable)
            await wait_until(
                pilot, lambda: table.text_of(name, "status") == "running", timeout=20, what="row"
            )
            app.open_details(name)
            await pilot.pause()
            await pilot.press("n")
            detail = app.screen
            assert isinstance(detail, SandboxDetailScreen)
            flow_log, editor = detail.flow_log, detail.rules_editor

            def decisions() -> list[str]:
                return [
                    entry.rule_text or ""
                    for entry in flow_log.shown
                    if entry.kind == "flow" and (entry.dst or "").endswith(f":{CLOSED_PORT}")
                ]

            await connect_from_the_guest(sandbox)
            await wait_until(pilot, lambda: decisions() == ["default"], timeout=10, what="flow")

            editor.table.focus()
            await pilot.press("a", *"host", "enter")
            await pilot.press("ctrl+s")
            assert isinstance(app.screen, ConfirmDialog)
            await pilot.press("y")
            await wait_until(pilot, lambda: not editor.dirty, timeout=20, what="the apply")

            await connect_from_the_guest(sandbox)
            await wait_until(
                pilot,
                lambda: decisions() == ["default", "allow@host"],
                timeout=10,
                what="the next flow decided by the new rule",
            )
        stored = (await Sandbox.get_info(name)).config.network
        assert stored is not None and stored.policy == NetworkPolicy(
            "deny", "deny", [editor.rules[0]]
        )
        assert app.errors == []
    finally:
        await sandbox.close()

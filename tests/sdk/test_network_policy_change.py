"""``set_network_policy``: a stopped sandbox's new policy is stored (and nothing else of its
config changes) and used by its next start; a bad policy or a network that cannot change is a
typed error that leaves the stored policy as it was."""

from __future__ import annotations

import socket

import pytest

from microsandbox_tui import (
    DnsConfig,
    InvalidConfigError,
    Network,
    NetworkChangeError,
    NetworkPolicy,
    Rule,
    Sandbox,
    SandboxNotFoundError,
    _native,
)

pytestmark = pytest.mark.vm

CUSTOM = NetworkPolicy(
    default_egress="deny",
    rules=[Rule.allow(destination=".example.com", protocol="tcp", port=443)],
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_stopped_sandboxs_new_policy_is_stored_and_used_by_its_next_start(
    unique_name: str,
) -> None:
    network = Network(
        ports={_free_port(): 80},
        dns=DnsConfig(nameservers=["198.51.100.53"]),
        deny_domains=["blocked.example.com"],
    )
    sandbox = await Sandbox.create(unique_name, network=network, replace=True)
    await sandbox.stop_and_wait()
    handle = await Sandbox.get(unique_name)
    before = handle.config

    await handle.set_network_policy(CUSTOM)
    assert handle.config.network.policy == CUSTOM
    expected = before.model_copy(update={"network": network.model_copy(update={"policy": CUSTOM})})
    assert handle.config == expected, "nothing but the policy changes"

    with pytest.raises(InvalidConfigError, match=r"network\.policy: unknown preset 'public'"):
        await handle.set_network_policy("public")
    await handle.refresh()
    assert handle.config.network.policy == CUSTOM

    await handle.set_network_policy("allow-all")
    started = await handle.start()
    try:
        assert started.config.network.policy == "allow_all"
        assert (await started.info()).config == expected.model_copy(
            update={"network": network.model_copy(update={"policy": "allow_all"})}
        )
    finally:
        await started.kill()
        await Sandbox.remove(unique_name)


async def test_a_network_that_cannot_change_refuses_and_keeps_the_stored_policy(
    unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # QEMU's slirp instead of our gateway: nothing there can take a policy.
    monkeypatch.setenv("MSB_NET_BASELINE", "slirp")
    async with await Sandbox.create(unique_name, replace=True) as sandbox:
        with pytest.raises(NetworkChangeError):
            await sandbox.set_network_policy(CUSTOM)
        assert sandbox.config.network.policy == "public_only"
        assert (await sandbox.info()).config.network.policy == "public_only"


def test_the_policy_of_a_sandbox_that_does_not_exist_cannot_be_set() -> None:
    with pytest.raises(SandboxNotFoundError):
        _native.set_network_policy("no-such-sandbox", '"none"')

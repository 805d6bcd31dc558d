"""A running sandbox's policy changed with ``set_network_policy``, end to end inside the fake
internet: its flows follow the new policy at once, the flow log names the rule that decided
each, and the last policy set is the one the sandbox has after a stop and a start."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from microsandbox_tui import NetworkPolicy, Rule

from .internet import DNS_HOST, HTTP_HOST, HTTP_PORT, FakeInternet, unavailable_reason
from .sessions import GuestSession

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

#: How soon after the call new flows must follow the new policy.
FOLLOW_WITHIN_S = 1.0
ALLOW_HTTP = Rule.allow(destination=HTTP_HOST, protocol="tcp", port=HTTP_PORT)
ALLOWING = NetworkPolicy(default_egress="deny", rules=[ALLOW_HTTP])
DENYING = NetworkPolicy(default_egress="deny")


@pytest.fixture
def sandbox(fake_internet: FakeInternet) -> Iterator[GuestSession]:
    network = {
        "policy": DENYING.model_dump(mode="json"),
        "dns": {"nameservers": [DNS_HOST]},
    }
    session = GuestSession(fake_internet, "policy-change", network=network)
    try:
        yield session
    finally:
        session.close()


def connects(session: GuestSession) -> bool:
    """One TCP connect to the test web server from the guest (busybox nc)."""
    reply = session.sh(f"nc -w 3 {HTTP_HOST} {HTTP_PORT} </dev/null")
    return reply["exit_code"] == 0


def set_policy(session: GuestSession, policy: NetworkPolicy) -> None:
    """Sets ``policy`` and checks that the very next flow follows it, within the bound."""
    started = time.monotonic()
    took = session.ok("set_policy", policy=policy.model_dump(mode="json"))["seconds"]
    allowed = connects(session)
    assert took < FOLLOW_WITHIN_S, f"set_network_policy took {took:.2f} s"
    assert allowed == (policy == ALLOWING), f"{policy} after {time.monotonic() - started:.2f} s"


def decisions_for_the_web_server(session: GuestSession) -> list[dict[str, Any]]:
    entries = session.ok("network_log")["entries"]
    target = f"{HTTP_HOST}:{HTTP_PORT}"
    return [entry for entry in entries if entry["kind"] == "flow" and entry["dst"] == target]


def test_a_running_sandboxs_flows_follow_its_new_policy_and_keep_it_across_a_restart(
    sandbox: GuestSession,
) -> None:
    assert not connects(sandbox), "the policy the sandbox was created with denies"
    set_policy(sandbox, ALLOWING)
    set_policy(sandbox, DENYING)
    set_policy(sandbox, ALLOWING)

    decisions = decisions_for_the_web_server(sandbox)
    assert [entry["action"] for entry in decisions] == ["deny", "allow", "deny", "allow"]
    denied, allowed = decisions[0], decisions[1]
    assert (denied["rule"], denied["rule_text"]) == (None, "default")
    assert (allowed["rule"], allowed["rule_text"]) == (0, str(ALLOW_HTTP))

    restarted = sandbox.ok("restart", 120.0)
    assert NetworkPolicy.model_validate(restarted["policy"]) == ALLOWING
    assert connects(sandbox), "the policy set last is the one the sandbox starts with"

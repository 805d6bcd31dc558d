"""Custom policies end to end: rules, domain rules that cannot be tricked, DNS decided by
name, live policy changes and the flow log, on a real VM inside the fake internet.

One sandbox serves every test: each test sets the policy it needs on the running sandbox
(itself the live change under test) and then looks at what the guest gets and at what the
test hosts and the flow log saw. The policy flips and their persistence are in
``test_sandbox_policy_change``. Names: ``allowed.test`` and ``sibling.test`` are served from
the same address, ``other.test`` from another one.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from microsandbox_tui import pull

from .guest_probe import probe
from .internet import DNS_HOST, HTTP_HOST, SECOND_HTTP_HOST, FakeInternet, unavailable_reason
from .sessions import GuestSession

ZONE = {
    "allowed.test": [HTTP_HOST],
    "sibling.test": [HTTP_HOST],
    "other.test": [SECOND_HTTP_HOST],
}
IN_RANGE_PORT, PAST_RANGE_PORT = 8500, 9001
PUBLISHED_GUEST_PORT = 8080
ONLY_ALLOWED_TEST: dict[str, Any] = {
    "default_egress": "deny",
    "rules": [{"action": "allow", "destination": "allowed.test", "protocol": "tcp"}],
}

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


@pytest.fixture(scope="module")
def internet() -> Iterator[FakeInternet]:
    with FakeInternet(zone=ZONE, http_ports=(IN_RANGE_PORT, PAST_RANGE_PORT)) as fake:
        yield fake


@pytest.fixture(scope="module")
def host_port() -> int:
    """A port free on this machine's loopback now, published to the guest's 8080."""
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port: int = probe_socket.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def guest(internet: FakeInternet, debian_tools_ref: str, host_port: int) -> Iterator[GuestSession]:
    asyncio.run(pull(debian_tools_ref, insecure=True))
    network = {
        "policy": ONLY_ALLOWED_TEST,
        "dns": {"nameservers": [DNS_HOST], "rebind_protection": True},
        "ports": [
            {
                "host_address": "127.0.0.1",
                "host_port": host_port,
                "guest_port": PUBLISHED_GUEST_PORT,
                "protocol": "tcp",
            }
        ],
        "max_connections": None,
    }
    session = GuestSession(internet, "net-policy", image=debian_tools_ref, network=network)
    try:
        yield session
    finally:
        session.close()


def set_policy(guest: GuestSession, policy: str | dict[str, Any]) -> float:
    """Sets the running sandbox's policy; how long the call took."""
    applied_in_s: float = guest.ok("set_policy", policy=policy)["seconds"]
    return applied_in_s


def connect(guest: GuestSession, host: str, port: int = 80) -> str:
    return probe(guest, "connect", host, port)


def flow_log(guest: GuestSession) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = guest.ok("network_log")["entries"]
    return entries


def last_flow_to(guest: GuestSession, destination: str) -> dict[str, Any]:
    flows = [e for e in flow_log(guest) if e["kind"] == "flow" and e["dst"] == destination]
    assert flows, f"no flow to {destination} in the flow log"
    return flows[-1]


def queried_names(internet: FakeInternet, since: int) -> set[str]:
    return {query["name"] for query in internet.dns_queries()[since:] if "name" in query}


def requests_naming(internet: FakeInternet, host_header: str) -> list[dict[str, Any]]:
    return [e for e in internet.servers["http"].events() if e.get("host") == host_header]


# --- domain rules ---------------------------------------------------------------------------


def test_a_domain_rule_opens_its_name_and_only_its_name(
    guest: GuestSession, internet: FakeInternet
) -> None:
    set_policy(guest, ONLY_ALLOWED_TEST)
    assert probe(guest, "resolve", "allowed.test") == HTTP_HOST
    assert probe(guest, "get_as", "allowed.test", 80, "allowed.test") == "HTTP/1.1 200 OK"
    # Neither another name (served from the same address) nor an address nobody resolved.
    assert probe(guest, "resolve", "sibling.test") == "nxdomain"
    assert probe(guest, "resolve", "other.test") == "nxdomain"
    assert connect(guest, SECOND_HTTP_HOST) == "refused"


def test_under_default_deny_only_the_allowed_name_reaches_the_nameserver(
    guest: GuestSession, internet: FakeInternet
) -> None:
    set_policy(guest, ONLY_ALLOWED_TEST)
    before = len(internet.dns_queries())
    for name in ("sibling.test", "other.test", "exfiltrate.secret-data.test"):
        assert probe(guest, "resolve", name) == "nxdomain"
    assert probe(guest, "resolve", "allowed.test") == HTTP_HOST
    assert queried_names(internet, before) <= {"allowed.test"}


def test_a_second_name_on_the_allowed_address_is_cut_by_its_host_header(
    guest: GuestSession, internet: FakeInternet
) -> None:
    set_policy(guest, ONLY_ALLOWED_TEST)
    assert probe(guest, "resolve", "allowed.test") == HTTP_HOST
    assert probe(guest, "get_as", HTTP_HOST, 80, "sibling.test") == "reset"
    assert requests_naming(internet, "sibling.test") == []
    denied = last_flow_to(guest, f"{HTTP_HOST}:80")
    assert (denied["action"], denied["sni"]) == ("deny", "sibling.test")


def test_a_spoofed_sni_is_denied_and_the_true_one_passes(guest: GuestSession) -> None:
    set_policy(guest, ONLY_ALLOWED_TEST)
    assert probe(guest, "resolve", "allowed.test") == HTTP_HOST
    # The allowed name's SNI to an address never resolved for it: refused at the SYN.
    assert probe(guest, "tls", SECOND_HTTP_HOST, 80, "allowed.test") == "refused"
    # Another name's SNI to the allowed address: cut when the hello shows it.
    assert probe(guest, "tls", HTTP_HOST, 80, "sibling.test") == "reset"
    assert probe(guest, "tls", HTTP_HOST, 80, "allowed.test") == "passed"


def test_a_denied_name_claimed_to_an_allowed_address_is_cut(guest: GuestSession) -> None:
    set_policy(
        guest,
        {
            "default_egress": "deny",
            "rules": [
                {"action": "deny", "destination": "other.test"},
                {"action": "allow", "destination": "public"},
            ],
        },
    )
    # The name was never resolved: the address alone is allowed, but the hello names a
    # denied host, and a claim is enough to deny.
    assert probe(guest, "tls", SECOND_HTTP_HOST, 80, "other.test") == "reset"
    assert probe(guest, "get_as", SECOND_HTTP_HOST, 80, "other.test") == "reset"
    assert probe(guest, "get_as", SECOND_HTTP_HOST, 80, "second.test") == "HTTP/1.1 200 OK"


def test_an_address_shared_by_a_denied_and_an_allowed_name_serves_only_the_allowed_one(
    guest: GuestSession,
) -> None:
    # The denied name is allowed on another port, so it resolves and both names are pinned
    # to one address: the SYN cannot tell them apart, the first bytes do.
    set_policy(
        guest,
        {
            "default_egress": "deny",
            "rules": [
                {"action": "deny", "destination": "sibling.test", "protocol": "tcp", "port": 80},
                {"action": "allow", "destination": "sibling.test", "protocol": "tcp", "port": 8500},
                {"action": "allow", "destination": "allowed.test", "protocol": "tcp"},
            ],
        },
    )
    assert probe(guest, "resolve", "sibling.test") == HTTP_HOST
    assert probe(guest, "resolve", "allowed.test") == HTTP_HOST
    assert probe(guest, "get_as", HTTP_HOST, 80, "allowed.test") == "HTTP/1.1 200 OK"
    assert probe(guest, "tls", HTTP_HOST, 80, "allowed.test") == "passed"
    assert probe(guest, "get_as", HTTP_HOST, 80, "sibling.test") == "reset"
    decided = last_flow_to(guest, f"{HTTP_HOST}:80")
    assert (decided["action"], decided["rule"], decided["sni"]) == ("deny", 0, "sibling.test")


# --- address rules ----------------------------------------------------------------------------


def test_allow_public_with_one_cidr_denied(guest: GuestSession) -> None:
    set_policy(
        guest,
        {
            "default_egress": "deny",
            "rules": [
                {"action": "deny", "destination": "203.0.113.0/24"},
                {"action": "allow", "destination": "public"},
            ],
        },
    )
    assert connect(guest, HTTP_HOST) == "connected"
    assert connect(guest, SECOND_HTTP_HOST) == "refused"
    # Names resolve (an allow for `public` speaks for every name); the flow is still decided.
    assert probe(guest, "resolve", "other.test") == SECOND_HTTP_HOST
    denied = last_flow_to(guest, f"{SECOND_HTTP_HOST}:80")
    assert (denied["action"], denied["rule"], denied["rule_text"]) == (
        "deny",
        0,
        "deny@203.0.113.0/24",
    )


def test_a_bare_ip_rule_matches_that_address_alone(guest: GuestSession) -> None:
    set_policy(
        guest,
        {"default_egress": "deny", "rules": [{"action": "allow", "destination": HTTP_HOST}]},
    )
    assert connect(guest, HTTP_HOST) == "connected"
    assert connect(guest, SECOND_HTTP_HOST) == "refused"


def test_a_port_range_holds_its_ports_and_nothing_past_them(guest: GuestSession) -> None:
    rule = {"action": "allow", "destination": HTTP_HOST, "protocol": "tcp", "port": "8000-9000"}
    set_policy(guest, {"default_egress": "deny", "rules": [rule]})
    assert connect(guest, HTTP_HOST, IN_RANGE_PORT) == "connected"
    assert connect(guest, HTTP_HOST, PAST_RANGE_PORT) == "refused"
    assert connect(guest, HTTP_HOST, 80) == "refused"


def test_ingress_rules_decide_published_port_clients(guest: GuestSession, host_port: int) -> None:
    assert probe(guest, "daemon", "-m", "http.server", PUBLISHED_GUEST_PORT) == "started"
    assert probe(guest, "bound", PUBLISHED_GUEST_PORT) == "bound"
    request = {"address": "127.0.0.1", "port": host_port, "send": "GET / HTTP/1.0\r\n\r\n"}
    loopback_only = {
        "default_egress": "deny",
        "default_ingress": "deny",
        "rules": [
            {"action": "allow", "direction": "ingress", "destination": "loopback", "port": 8080}
        ],
    }
    set_policy(guest, loopback_only)
    assert guest.ok("tcp", **request, half_close=False)["reply"].startswith("HTTP/1.0 200")
    set_policy(guest, {"default_egress": "deny", "default_ingress": "deny", "rules": []})
    refused = guest.call("tcp", 30, **request, half_close=False)
    assert refused.get("reply", "") == "", refused
    denied = [e for e in flow_log(guest) if e["kind"] == "flow" and e["direction"] == "ingress"]
    assert (denied[-1]["action"], denied[-1]["rule_text"]) == ("deny", "default")


# --- the flow log ---------------------------------------------------------------------------


def test_the_flow_log_names_the_rule_that_decided(guest: GuestSession) -> None:
    rule = {"action": "allow", "destination": HTTP_HOST, "protocol": "tcp", "port": "8000-9000"}
    set_policy(guest, {"default_egress": "deny", "rules": [rule]})
    assert connect(guest, HTTP_HOST, IN_RANGE_PORT) == "connected"
    assert connect(guest, HTTP_HOST, PAST_RANGE_PORT) == "refused"
    allowed = last_flow_to(guest, f"{HTTP_HOST}:{IN_RANGE_PORT}")
    assert (allowed["action"], allowed["rule"]) == ("allow", 0)
    assert allowed["rule_text"] == f"allow@{HTTP_HOST}:tcp:8000-9000"
    denied = last_flow_to(guest, f"{HTTP_HOST}:{PAST_RANGE_PORT}")
    assert (denied["action"], denied["rule"], denied["rule_text"]) == ("deny", None, "default")
    closes = [
        e
        for e in flow_log(guest)
        if e["kind"] == "close" and e["dst"] == f"{HTTP_HOST}:{IN_RANGE_PORT}"
    ]
    assert closes and closes[-1]["duration_ms"] is not None


def test_dns_decisions_are_in_the_flow_log(guest: GuestSession) -> None:
    set_policy(guest, ONLY_ALLOWED_TEST)
    assert probe(guest, "resolve", "other.test") == "nxdomain"
    assert probe(guest, "resolve", "allowed.test") == HTTP_HOST
    queries = [e for e in flow_log(guest) if e["kind"] == "dns"]
    refused = [q for q in queries if q["name"] == "other.test"][-1]
    assert (refused["action"], refused["rcode"], refused["rule_text"]) == (
        "deny",
        "NXDOMAIN",
        "default",
    )
    answered = [q for q in queries if q["name"] == "allowed.test" and q["qtype"] == "A"][-1]
    assert (answered["action"], answered["rule"], answered["answers"]) == (
        "allow",
        0,
        [HTTP_HOST],
    )


# --- live changes -----------------------------------------------------------------------------


def test_an_open_flow_the_new_policy_denies_is_closed(guest: GuestSession) -> None:
    set_policy(
        guest,
        {"default_egress": "deny", "rules": [{"action": "allow", "destination": HTTP_HOST}]},
    )
    # A connection held open in the background: it sleeps, then reports how its read ended.
    script = (
        "python3 - <<'EOF' > /tmp/held.out 2>&1 &\n"
        "import socket, time\n"
        f"s = socket.create_connection(('{HTTP_HOST}', 80), timeout=30)\n"
        "print('open', flush=True)\n"
        "try:\n"
        "    print('read', s.recv(1), flush=True)\n"
        "except OSError as error:\n"
        "    print('error', type(error).__name__, flush=True)\n"
        "EOF\n"
        "for i in $(seq 50); do grep -q open /tmp/held.out && break; sleep 0.2; done\n"
        "cat /tmp/held.out"
    )
    assert "open" in guest.sh(script)["stdout"]
    set_policy(guest, {"default_egress": "deny", "rules": []})
    ended = guest.sh(
        "for i in $(seq 50); do grep -qE 'read|error' /tmp/held.out && break; sleep 0.1; done\n"
        "cat /tmp/held.out"
    )["stdout"]
    assert "error ConnectionResetError" in ended or "read b''" in ended, ended
    closes = [e for e in flow_log(guest) if e["kind"] == "close" and e["dst"] == f"{HTTP_HOST}:80"]
    assert closes[-1]["reason"] == "policy changed"

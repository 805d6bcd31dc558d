"""IPv6 in a sandbox, end to end on real VMs inside the fake internet: where the host has an
IPv6 route the guest gets its own address and reaches IPv6 hosts over TCP and UDP, by address
and by AAAA name, under the same policy as IPv4; where it has none, the guest has no IPv6 and
AAAA answers are empty, so nothing tries an address family that leads nowhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest

from microsandbox_tui import pull

from .guest_probe import probe
from .internet import (
    DNS_HOST,
    HTTP_HOST_V6,
    PRIVATE_HTTP_HOST_V6,
    UDP_ECHO_PORT,
    FakeInternet,
    unavailable_reason,
)
from .sessions import GuestSession

ZONE = {"v6only.test": [HTTP_HOST_V6]}
SANDBOX_LINKS = ipaddress.ip_network("fd6d:7362::/48")
"""Every sandbox's IPv6 link is a /64 in it, its slot the fourth group, the guest ``::2``."""

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


def _public_only() -> dict[str, Any]:
    dns = {
        "nameservers": [DNS_HOST],
        "query_timeout_ms": None,
        "rebind_protection": True,
        "deny_domains": [],
        "deny_domain_suffixes": [],
    }
    return {"policy": "public_only", "dns": dns, "ports": [], "max_connections": None}


@pytest.fixture(scope="module")
def tools_image(debian_tools_ref: str) -> str:
    """debian-tools (python3), pulled outside the host namespace, which cannot reach the
    registry."""
    asyncio.run(pull(debian_tools_ref, insecure=True))
    return debian_tools_ref


@pytest.fixture(scope="module")
def internet() -> Iterator[FakeInternet]:
    with FakeInternet(zone=ZONE) as fake:
        yield fake


@pytest.fixture(scope="module")
def dual_stack(internet: FakeInternet, tools_image: str) -> Iterator[GuestSession]:
    session = GuestSession(internet, "net-v6", image=tools_image, network=_public_only())
    try:
        yield session
    finally:
        session.close()


def test_the_guest_gets_an_ipv6_address_on_its_slots_link(dual_stack: GuestSession) -> None:
    addresses = [ipaddress.ip_address(a) for a in probe(dual_stack, "ipv6_addresses").split()]
    assert len(addresses) == 1, addresses
    assert addresses[0] in SANDBOX_LINKS, addresses
    assert int(addresses[0]) & 0xFFFF_FFFF_FFFF_FFFF == 2, addresses


def test_a_public_ipv6_host_is_reached_by_address(
    dual_stack: GuestSession, internet: FakeInternet
) -> None:
    assert f"hello from {HTTP_HOST_V6}" in probe(dual_stack, "get", HTTP_HOST_V6)
    assert internet.servers["http-v6"].events(), "the IPv6 host saw the request"


def test_a_public_ipv6_host_is_reached_by_its_aaaa_name(dual_stack: GuestSession) -> None:
    assert probe(dual_stack, "resolve", "v6only.test", 6) == HTTP_HOST_V6
    assert f"hello from {HTTP_HOST_V6}" in probe(dual_stack, "get", "v6only.test")


def test_udp_reaches_an_ipv6_host_and_its_answer_comes_back(dual_stack: GuestSession) -> None:
    assert probe(dual_stack, "udp", HTTP_HOST_V6, UDP_ECHO_PORT, "over-v6") == "over-v6"


def test_a_private_ipv6_host_is_refused_at_once_by_default(
    dual_stack: GuestSession, internet: FakeInternet
) -> None:
    assert probe(dual_stack, "connect", PRIVATE_HTTP_HOST_V6, 80) == "refused"
    assert internet.servers["private-http-v6"].events() == []


def _ipv6_gateway(session: GuestSession) -> str:
    """The gateway's IPv6 address: ``::1`` on the guest's /64."""
    guest = ipaddress.ip_address(probe(session, "ipv6_addresses"))
    return str(guest - 1)


def test_the_host_behind_the_ipv6_gateway_is_refused_by_default(
    dual_stack: GuestSession,
) -> None:
    on_loopback = dual_stack.ok("serve", address="::1", mode="hello")["port"]
    assert probe(dual_stack, "connect", _ipv6_gateway(dual_stack), on_loopback) == "refused"


def test_allow_all_reaches_a_host_service_on_ipv6_loopback_through_the_gateway(
    internet: FakeInternet, tools_image: str
) -> None:
    network = {**_public_only(), "policy": "allow_all"}
    session = GuestSession(internet, "net-v6-open", image=tools_image, network=network)
    try:
        port = session.ok("serve", address="::1", mode="hello")["port"]
        assert probe(session, "connect", _ipv6_gateway(session), port) == "connected"
        assert probe(session, "connect", PRIVATE_HTTP_HOST_V6, 80) == "connected"
    finally:
        session.close()


def test_without_an_ipv6_route_the_guest_has_no_ipv6_and_aaaa_answers_are_empty(
    tools_image: str,
) -> None:
    with FakeInternet(zone=ZONE, ipv6=False) as internet:
        session = GuestSession(internet, "net-v4only", image=tools_image, network=_public_only())
        try:
            assert probe(session, "ipv6_addresses") == "none"
            assert probe(session, "resolve", "v6only.test", 6) == "none"
        finally:
            session.close()

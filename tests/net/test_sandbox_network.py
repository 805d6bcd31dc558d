"""What a sandbox's network gives the user, end to end on real VMs inside the fake internet.

Every sandbox here runs (SDK process, supervisor, QEMU) in the fake internet's host namespace,
whose only link leads to the test hosts, and its DNS is pinned to the test DNS server. Three
sandboxes are shared by the tests of this module, one per preset, because each behaviour is a
property of the preset and not of a fresh boot: ``public`` (the default policy, the DNS deny
lists and published ports), ``airgapped`` (``none``) and ``open`` (``allow_all``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from microsandbox_tui import pull

from .guest_probe import probe
from .internet import (
    DEAD_DNS_HOST,
    DNS_HOST,
    HOST_LINK_ADDRESS,
    HTTP_HOST,
    PRIVATE_HTTP_HOST,
    FakeInternet,
    unavailable_reason,
)
from .sessions import GuestSession

ZONE = {
    "blocked.test": [HTTP_HOST],
    "evil.test": [HTTP_HOST],
    "www.evil.test": [HTTP_HOST],
    "rebind.test": [PRIVATE_HTTP_HOST],
    "big.test": [HTTP_HOST],
}
TRUNCATED = {"big.test"}
"""Names whose UDP answer is truncated, so the gateway must ask again over TCP."""
HTTP_PORT_IN_GUEST = 8080
COUNTER_PORT_IN_GUEST = 9000
UDP_PORT_IN_GUEST = 5353
BIG = 64 << 20
"""Bytes moved each way by the transfer tests."""

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


def _free_port(kind: int) -> int:
    """A port free on this machine's loopback now (the host namespace has its own loopback,
    but a port free here is as good a guess as any there)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _dns(*, deny: tuple[str, ...] = (), suffixes: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "nameservers": [DNS_HOST],
        "query_timeout_ms": None,
        "rebind_protection": True,
        "deny_domains": list(deny),
        "deny_domain_suffixes": list(suffixes),
    }


@pytest.fixture(scope="module")
def internet() -> Iterator[FakeInternet]:
    with FakeInternet(zone=ZONE, truncate=TRUNCATED) as fake:
        yield fake


@pytest.fixture(scope="module")
def tools_image(debian_tools_ref: str) -> str:
    """debian-tools (python3, curl), pulled here: the host namespace cannot reach the
    registry on this namespace's loopback."""
    asyncio.run(pull(debian_tools_ref, insecure=True))
    return debian_tools_ref


@pytest.fixture(scope="module")
def published() -> dict[str, int]:
    return {
        "tcp": _free_port(socket.SOCK_STREAM),
        "counter": _free_port(socket.SOCK_STREAM),
        "udp": _free_port(socket.SOCK_DGRAM),
    }


@pytest.fixture(scope="module")
def public(
    internet: FakeInternet, tools_image: str, published: dict[str, int]
) -> Iterator[GuestSession]:
    network = {
        "policy": "public_only",
        "dns": _dns(deny=("blocked.test",), suffixes=(".evil.test",)),
        "ports": [
            {
                "host_address": "127.0.0.1",
                "host_port": published["tcp"],
                "guest_port": HTTP_PORT_IN_GUEST,
                "protocol": "tcp",
            },
            {
                "host_address": "127.0.0.1",
                "host_port": published["counter"],
                "guest_port": COUNTER_PORT_IN_GUEST,
                "protocol": "tcp",
            },
            {
                "host_address": "127.0.0.1",
                "host_port": published["udp"],
                "guest_port": UDP_PORT_IN_GUEST,
                "protocol": "udp",
            },
        ],
        "max_connections": None,
    }
    session = GuestSession(internet, "net-public", image=tools_image, network=network)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="module")
def airgapped(internet: FakeInternet) -> Iterator[GuestSession]:
    network = {"policy": "none", "dns": _dns(), "ports": [], "max_connections": None}
    session = GuestSession(internet, "net-airgapped", network=network)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="module")
def open_sandbox(internet: FakeInternet, tools_image: str) -> Iterator[GuestSession]:
    network = {"policy": "allow_all", "dns": _dns(), "ports": [], "max_connections": None}
    session = GuestSession(internet, "net-open", image=tools_image, network=network)
    try:
        yield session
    finally:
        session.close()


def busybox_connect(session: GuestSession, host: str, port: int) -> dict[str, Any]:
    """A bare TCP connect with busybox nc: exit code 0 when it was accepted."""
    return session.sh(f"nc -w 3 {host} {port} </dev/null")


# --- the default: public only ---------------------------------------------------------------


def test_default_reaches_a_public_host_by_name(public: GuestSession) -> None:
    assert "hello from" in probe(public, "get", "public.test")


def test_default_refuses_a_private_host_at_once(public: GuestSession) -> None:
    assert probe(public, "connect", PRIVATE_HTTP_HOST, 80) == "refused"


def test_default_refuses_the_metadata_address(public: GuestSession) -> None:
    assert probe(public, "connect", "169.254.169.254", 80) == "refused"


def test_default_refuses_host_services_through_the_alias_and_the_hosts_address(
    public: GuestSession,
) -> None:
    on_loopback = public.ok("serve", address="127.0.0.1", mode="hello")["port"]
    on_every_address = public.ok("serve", address="0.0.0.0", mode="hello")["port"]
    assert probe(public, "connect", "host.msb.internal", on_loopback) == "refused"
    assert probe(public, "connect", HOST_LINK_ADDRESS, on_every_address) == "refused"


def test_a_refused_destination_port_is_connection_refused_in_the_guest(
    public: GuestSession,
) -> None:
    assert probe(public, "connect", HTTP_HOST, 81) == "refused"


def test_denied_domains_and_suffixes_answer_nxdomain(public: GuestSession) -> None:
    for name in ("blocked.test", "evil.test", "www.evil.test"):
        assert probe(public, "resolve", name) == "nxdomain", name
    assert probe(public, "resolve", "public.test") == HTTP_HOST


def test_a_rebinding_answer_is_dropped(public: GuestSession) -> None:
    assert PRIVATE_HTTP_HOST not in probe(public, "resolve", "rebind.test")


def test_a_truncated_answer_is_retried_over_tcp(
    public: GuestSession, internet: FakeInternet
) -> None:
    assert probe(public, "resolve", "big.test") == HTTP_HOST
    asked = [(query.get("name"), query.get("transport")) for query in internet.dns_queries()]
    assert ("big.test", "udp") in asked and ("big.test", "tcp") in asked, asked


def test_dns_over_tcp_from_the_guest(public: GuestSession) -> None:
    script = (
        "python3 - <<'EOF'\n"
        "import socket, struct\n"
        "q = bytes.fromhex('12340100000100000000000006707562' '6c696304746573740000010001')\n"
        "s = socket.create_connection(('172.16.0.1', 53), timeout=10)\n"
        "s.sendall(struct.pack('!H', len(q)) + q)\n"
        "n = struct.unpack('!H', s.recv(2))[0]\n"
        "a = b''\n"
        "while len(a) < n: a += s.recv(n - len(a))\n"
        "print(socket.inet_ntoa(a[-4:]))\n"
        "EOF"
    )
    gateway = public.created.get("gateway") or "172.16.0.1"
    reply = public.sh(script.replace("172.16.0.1", gateway))
    assert reply["stdout"].strip() == HTTP_HOST, reply


def test_64_mib_each_way_arrive_whole(public: GuestSession) -> None:
    expected = hashlib.sha256(bytes(i % 251 for i in range(BIG))).hexdigest()
    down = public.sh(
        f"curl -sS --max-time 170 http://{HTTP_HOST}/bytes/{BIG} | sha256sum", timeout_s=180
    )
    assert down["stdout"].split()[0] == expected, down
    up = public.sh(
        f"head -c {BIG} /dev/urandom > /tmp/up && sha256sum /tmp/up && "
        f"curl -sS --max-time 170 --data-binary @/tmp/up http://{HTTP_HOST}/upload",
        timeout_s=180,
    )
    local_digest = up["stdout"].split()[0]
    assert f'"sha256": "{local_digest}"' in up["stdout"], up


def _rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(kib) * 1024


def test_a_slow_guest_reader_loses_nothing_and_the_supervisor_holds_little(
    public: GuestSession,
) -> None:
    # The guest takes nothing for 10 s while the host offers 64 MiB as fast as it can: what
    # waits must wait in bounded buffers (256 KiB per flow), not in the supervisor's memory.
    pid = public.created["supervisor_pid"]
    baseline = _rss_bytes(pid)
    expected = hashlib.sha256(bytes(i % 251 for i in range(BIG))).hexdigest()
    pipeline = f"curl -sS http://{HTTP_HOST}/bytes/{BIG} | (sleep 10; sha256sum) > /tmp/slow"
    script = f"import subprocess\nsubprocess.run({pipeline!r}, shell=True)\n"
    public.sh(f"cat > /tmp/slow.py <<'EOF'\n{script}EOF")
    assert probe(public, "daemon", "/tmp/slow.py") == "started"
    peak = baseline
    for _ in range(16):
        time.sleep(0.5)
        peak = max(peak, _rss_bytes(pid))
    done = public.sh("while [ ! -s /tmp/slow ]; do sleep 0.2; done; cat /tmp/slow", timeout_s=150)
    assert done["stdout"].split()[0] == expected, done
    assert peak - baseline < 16 << 20, (baseline, peak)


def test_a_large_udp_datagram_makes_the_round_trip(public: GuestSession) -> None:
    payload = "u" * 4000
    assert probe(public, "udp", HTTP_HOST, 7, payload) == payload


def test_2000_sequential_connections_then_one_more(public: GuestSession) -> None:
    script = (
        "python3 - <<'EOF'\n"
        "import socket\n"
        f"for i in range(2001):\n"
        f"    s = socket.create_connection(('{HTTP_HOST}', 80), timeout=10)\n"
        "    s.close()\n"
        "print('done')\n"
        "EOF"
    )
    reply = public.sh(script, timeout_s=240)
    assert reply["stdout"].strip() == "done", reply


def test_metrics_count_the_bytes_moved(public: GuestSession) -> None:
    size = 16 << 20
    before = public.ok("metrics")
    moved = public.sh(f"curl -sS --max-time 100 http://{HTTP_HOST}/bytes/{size} | wc -c")
    assert moved["stdout"].strip() == str(size), moved
    after = public.sh("sleep 2") and public.ok("metrics")
    received = after["net_rx_bytes"] - before["net_rx_bytes"]
    assert size <= received <= size * 1.05, (before, after)


def test_a_published_guest_http_server_answers_on_the_host(
    public: GuestSession, published: dict[str, int]
) -> None:
    assert probe(public, "daemon", "-m", "http.server", HTTP_PORT_IN_GUEST) == "started"
    assert probe(public, "bound", HTTP_PORT_IN_GUEST) == "bound"
    reply = public.ok(
        "tcp",
        address="127.0.0.1",
        port=published["tcp"],
        send="GET / HTTP/1.0\r\n\r\n",
        half_close=False,
    )
    assert reply["reply"].startswith("HTTP/1.0 200"), reply


def test_a_published_guest_udp_echo_answers_on_the_host(
    public: GuestSession, published: dict[str, int]
) -> None:
    echo = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.bind(('0.0.0.0', {UDP_PORT_IN_GUEST}))\n"
        "while True:\n"
        "    data, peer = s.recvfrom(65535)\n"
        "    s.sendto(data.upper(), peer)\n"
    )
    public.sh(f"cat > /tmp/echo.py <<'EOF'\n{echo}EOF")
    assert probe(public, "daemon", "/tmp/echo.py") == "started"
    assert probe(public, "bound", UDP_PORT_IN_GUEST, "udp") == "bound"
    reply = public.ok("udp", address="127.0.0.1", port=published["udp"], send="ping me")
    assert reply["reply"] == "PING ME", reply


def test_host_to_guest_half_close_delivers_the_reply(
    public: GuestSession, published: dict[str, int], internet: FakeInternet
) -> None:
    counter = (
        "import socket\n"
        f"l = socket.create_server(('0.0.0.0', {COUNTER_PORT_IN_GUEST}))\n"
        "c, _ = l.accept()\n"
        "n = 0\n"
        "while True:\n"
        "    d = c.recv(65536)\n"
        "    if not d: break\n"
        "    n += len(d)\n"
        "c.sendall(str(n).encode())\n"
        "c.close()\n"
    )
    public.sh(f"cat > /tmp/count.py <<'EOF'\n{counter}EOF")
    assert probe(public, "daemon", "/tmp/count.py") == "started"
    assert probe(public, "bound", COUNTER_PORT_IN_GUEST) == "bound"
    reply = public.ok(
        "tcp", address="127.0.0.1", port=published["counter"], send="x" * 5000, half_close=True
    )
    assert reply["reply"] == "5000", reply


def test_ping_is_refused_with_a_reason_where_the_host_gives_no_ping_sockets(
    public: GuestSession,
) -> None:
    # The host namespace keeps Linux's default `ping_group_range` of `1 0`: nobody may ping.
    assert probe(public, "ping", HTTP_HOST) == "unreachable 13"
    log = Path(os.environ["MSB_HOME"]) / "sandboxes" / "net-public" / "supervisor.log"
    assert "ping from the sandbox refused" in log.read_text()


def test_ping_is_relayed_where_the_host_gives_ping_sockets(
    public: GuestSession, internet: FakeInternet
) -> None:
    allow = ["sysctl", "-w", "net.ipv4.ping_group_range=0 2147483647"]
    assert internet.run_in_host(allow).returncode == 0
    try:
        assert probe(public, "ping", HTTP_HOST) == "reply"
    finally:
        internet.run_in_host(["sysctl", "-w", "net.ipv4.ping_group_range=1 0"])


def test_a_busy_host_port_is_a_typed_error_and_leaves_nothing(internet: FakeInternet) -> None:
    script = (
        "import asyncio, socket\n"
        "from microsandbox_tui import Network, PortInUseError, Sandbox\n"
        "busy = socket.create_server(('127.0.0.1', 0))\n"
        "port = busy.getsockname()[1]\n"
        "async def main():\n"
        "    try:\n"
        "        await Sandbox.create('net-busy', ports={port: 80}, replace=True)\n"
        "    except PortInUseError as error:\n"
        "        print('typed:', error)\n"
        "    names = [info.name for info in await Sandbox.list()]\n"
        "    print('left:', 'net-busy' in names)\n"
        "asyncio.run(main())\n"
    )
    result = internet.run_in_host([sys.executable, "-c", script], timeout=120)
    assert "typed:" in result.stdout, result.stderr
    assert "left: False" in result.stdout, result.stdout


# --- none and allow_all ---------------------------------------------------------------------


def test_none_reaches_nothing_and_sends_no_dns_query(
    airgapped: GuestSession, internet: FakeInternet
) -> None:
    before = len(internet.dns_queries())
    lookup = airgapped.sh("nslookup public.test; echo exit=$?")
    assert "exit=0" not in lookup["stdout"], lookup
    reached = busybox_connect(airgapped, HTTP_HOST, 80)
    assert reached["exit_code"] != 0, reached
    assert len(internet.dns_queries()) == before, internet.dns_queries()[before:]


def test_allow_all_reaches_the_private_host_and_the_host_alias(open_sandbox: GuestSession) -> None:
    assert "hello from" in probe(open_sandbox, "get", PRIVATE_HTTP_HOST)
    port = open_sandbox.ok("serve", address="127.0.0.1", mode="hello")["port"]
    assert probe(open_sandbox, "connect", "host.msb.internal", port) == "connected"


def test_guest_to_host_half_close_delivers_the_reply(open_sandbox: GuestSession) -> None:
    port = open_sandbox.ok("serve", address="127.0.0.1", mode="count")["port"]
    script = (
        "python3 - <<'EOF'\n"
        "import socket\n"
        f"s = socket.create_connection(('host.msb.internal', {port}), timeout=10)\n"
        "s.sendall(b'y' * 3000)\n"
        "s.shutdown(socket.SHUT_WR)\n"
        "print(s.recv(100).decode().strip())\n"
        "EOF"
    )
    reply = open_sandbox.sh(script)
    assert reply["stdout"].strip() == "3000", reply


def test_a_dead_first_nameserver_falls_back_to_the_next(
    internet: FakeInternet, tools_image: str
) -> None:
    internet.check_route(internet.host_ns, DEAD_DNS_HOST)
    dns = _dns()
    dns["nameservers"] = [DEAD_DNS_HOST, DNS_HOST]
    dns["query_timeout_ms"] = 1000
    network = {"policy": "public_only", "dns": dns, "ports": [], "max_connections": None}
    session = GuestSession(internet, "net-fallback", network=network)
    try:
        reply = session.sh("nslookup public.test")
        assert HTTP_HOST in reply["stdout"], reply
    finally:
        session.close()

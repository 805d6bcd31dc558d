"""Tests of the fake internet itself (no VM): if these fail, the network tests would mislead."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .hosts import pattern_bytes
from .internet import (
    BYPASSED_NAME,
    DNS_HOST,
    H2_ONLY_HOST,
    H2_ONLY_NAME,
    HOST_LINK_ADDRESS,
    HOST_VETH,
    HTTP_HOST,
    HTTP_HOST_V6,
    HTTPS_PORT,
    INET_NS_PREFIX,
    PRIVATE_HTTP_HOST,
    PRIVATE_HTTP_HOST_V6,
    SECOND_HTTP_HOST,
    SECURE_NAME,
    UDP_ECHO_PORT,
    UNTRUSTED_NAME,
    FakeInternet,
    RouteError,
    ip,
    our_namespaces,
    remove_leftovers,
    unavailable_reason,
)

UNAVAILABLE = unavailable_reason()
pytestmark = [
    pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or ""),
    pytest.mark.timeout(60),
]

HTTP_HOSTS = [HTTP_HOST, SECOND_HTTP_HOST, PRIVATE_HTTP_HOST]
#: curl's exit code for a server certificate it cannot verify.
CURL_PEER_FAILED_VERIFICATION = 60


@pytest.fixture(scope="module")
def tls_internet() -> Iterator[FakeInternet]:
    with FakeInternet(tls_hosts=True, ipv6=False) as internet:
        yield internet


def _curl_https(
    internet: FakeInternet, name: str, address: str, ca: Path, *arguments: str, path: str = "/"
) -> subprocess.CompletedProcess[str]:
    """``curl https://NAME/PATH`` trusting only ``ca``, with NAME pinned to ``address`` (the
    host namespace has no resolver)."""
    pinned = f"{name}:{HTTPS_PORT}:{address}"
    return _curl(
        internet,
        address,
        "--cacert",
        str(ca),
        "--resolve",
        pinned,
        *arguments,
        f"https://{name}{path}",
    )


def _curl(
    internet: FakeInternet, address: str, *arguments: str
) -> subprocess.CompletedProcess[str]:
    return internet.run_in_host(
        ["curl", "--silent", "--show-error", "--max-time", "10", *arguments],
        reaches=[address],
        timeout=20,
    )


@pytest.mark.parametrize("address", HTTP_HOSTS)
def test_curl_in_the_host_namespace_reaches_each_http_host(
    fake_internet: FakeInternet, address: str
) -> None:
    result = _curl(fake_internet, address, f"http://{address}/")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"hello from {address}\n"


@pytest.mark.parametrize("address", [HTTP_HOST_V6, PRIVATE_HTTP_HOST_V6])
def test_curl_in_the_host_namespace_reaches_each_ipv6_http_host(
    fake_internet: FakeInternet, address: str
) -> None:
    result = _curl(fake_internet, address, f"http://[{address}]/")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"hello from {address}\n"


def test_udp_echo_answers_over_ipv6(fake_internet: FakeInternet) -> None:
    reply = fake_internet.probe(
        "udp-echo", HTTP_HOST_V6, str(UDP_ECHO_PORT), "ping-v6", reaches=HTTP_HOST_V6
    )
    assert reply == {"echo": "ping-v6"}


def test_without_ipv6_the_host_namespace_has_no_ipv6_route() -> None:
    with FakeInternet(ipv6=False) as internet:
        assert internet.test_hosts_v6 == ()
        with pytest.raises(RouteError):
            internet.check_route(internet.host_ns, HTTP_HOST_V6)


def test_python_in_the_host_namespace_reaches_the_http_hosts(fake_internet: FakeInternet) -> None:
    script = (
        "import sys, urllib.request\n"
        "for address in sys.argv[1:]:\n"
        "    reply = urllib.request.urlopen(f'http://{address}/', timeout=5)\n"
        "    print(reply.read().decode(), end='')\n"
    )
    result = fake_internet.run_in_host(
        [sys.executable, "-c", script, *HTTP_HOSTS], reaches=HTTP_HOSTS, timeout=20
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"hello from {address}" for address in HTTP_HOSTS]
    requests = fake_internet.servers["private-http"].events()
    assert [(event["method"], event["path"]) for event in requests] == [("GET", "/")]


def test_streamed_endpoint_answers_its_body_after_its_head_on_a_kept_alive_connection(
    fake_internet: FakeInternet,
) -> None:
    url = f"http://{HTTP_HOST}/streamed"
    result = _curl(fake_internet, HTTP_HOST, "-w", "%{num_connects}\n", url, url)
    assert result.returncode == 0, result.stderr
    body = f"streamed by {HTTP_HOST}\n"
    assert result.stdout == f"{body}1\n{body}0\n"
    assert len(fake_internet.servers["http"].events()) == 2


def test_bytes_endpoint_serves_exactly_n_pattern_bytes(fake_internet: FakeInternet) -> None:
    length = (1 << 20) + 7
    result = fake_internet.run_in_host(
        ["sh", "-c", f"curl -sS --max-time 10 http://{HTTP_HOST}/bytes/{length} | sha256sum"],
        reaches=[HTTP_HOST],
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == hashlib.sha256(pattern_bytes(0, length)).hexdigest()


def test_upload_is_answered_with_its_size_and_sha256(
    fake_internet: FakeInternet, tmp_path: Path
) -> None:
    body = pattern_bytes(3, 300_000)
    upload = tmp_path / "upload.bin"
    upload.write_bytes(body)
    result = _curl(
        fake_internet,
        SECOND_HTTP_HOST,
        "--data-binary",
        f"@{upload}",
        f"http://{SECOND_HTTP_HOST}/upload",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


def test_dns_answers_from_the_zone_and_logs_each_query() -> None:
    with FakeInternet(zone={"chosen.test": ["203.0.113.10", "198.51.100.10"]}) as internet:
        known = internet.probe("dns", DNS_HOST, "chosen.test", reaches=DNS_HOST)
        unknown = internet.probe("dns", DNS_HOST, "absent.test", reaches=DNS_HOST)
        queries = internet.dns_queries()
        host_address = internet.servers["dns"].events()[0]["client"]
    assert known["rcode"] == 0
    assert known["addresses"] == ["203.0.113.10", "198.51.100.10"]
    assert unknown["rcode"] == 3
    assert unknown["addresses"] == []
    assert [(query["name"], query["transport"]) for query in queries] == [
        ("chosen.test", "udp"),
        ("absent.test", "udp"),
    ]
    assert host_address == HOST_LINK_ADDRESS


def test_dns_log_is_empty_when_nothing_asked(fake_internet: FakeInternet) -> None:
    # The proof a test of `Network.none()` relies on: no query means an empty log.
    assert fake_internet.dns_queries() == []


def test_truncated_name_gets_tc_over_udp_then_the_full_answer_over_tcp() -> None:
    with FakeInternet(zone={"big.test": ["198.51.100.10"]}, truncate={"big.test"}) as internet:
        over_udp = internet.probe("dns", DNS_HOST, "big.test", reaches=DNS_HOST)
        over_tcp = internet.probe("dns", DNS_HOST, "big.test", "--tcp", reaches=DNS_HOST)
        queries = internet.dns_queries()
    assert over_udp["truncated"] is True
    assert over_udp["addresses"] == []
    assert over_tcp["truncated"] is False
    assert over_tcp["addresses"] == ["198.51.100.10"]
    assert [(query["transport"], query["truncated"]) for query in queries] == [
        ("udp", True),
        ("tcp", False),
    ]


def test_udp_echo_sends_the_datagram_back(fake_internet: FakeInternet) -> None:
    reply = fake_internet.probe(
        "udp-echo", HTTP_HOST, str(UDP_ECHO_PORT), "ping-42", reaches=HTTP_HOST
    )
    assert reply == {"echo": "ping-42"}
    assert [event["bytes"] for event in fake_internet.servers["udp-echo"].events()] == [7]


def test_check_route_accepts_only_our_hosts(fake_internet: FakeInternet) -> None:
    for address in [HTTP_HOST, SECOND_HTTP_HOST, DNS_HOST, PRIVATE_HTTP_HOST, "127.0.0.1"]:
        fake_internet.check_route(fake_internet.host_ns, address)
    for address in [HTTP_HOST_V6, PRIVATE_HTTP_HOST_V6, "::1"]:
        fake_internet.check_route(fake_internet.host_ns, address)
    fake_internet.check_route(None, "127.0.0.1")
    fake_internet.check_route(None, "::1")


@pytest.mark.parametrize(
    ("in_host_namespace", "address"),
    [
        (True, "198.51.100.77"),  # leaves through our veth, but no host of ours has it
        (True, "203.0.113.99"),
        (False, HTTP_HOST),  # from the root namespace it would go to the real network
        (False, PRIVATE_HTTP_HOST),
        (True, "2001:db8:6::99"),  # the IPv6 veth leads there, but no host of ours has it
        (False, HTTP_HOST_V6),
    ],
)
def test_check_route_refuses_an_address_that_leaves_our_namespaces(
    fake_internet: FakeInternet, in_host_namespace: bool, address: str
) -> None:
    namespace = fake_internet.host_ns if in_host_namespace else None
    with pytest.raises(RouteError):
        fake_internet.check_route(namespace, address)


def test_run_in_host_refuses_before_running_anything(
    fake_internet: FakeInternet, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(RouteError):
        fake_internet.run_in_host(["touch", str(marker)], reaches=["198.51.100.77"])
    assert not marker.exists()


def test_the_host_namespace_has_only_lo_and_the_veth(fake_internet: FakeInternet) -> None:
    links = json.loads(ip("-j", "link", "show", namespace=fake_internet.host_ns))
    assert sorted(link["ifname"] for link in links) == sorted(["lo", HOST_VETH])
    routes = json.loads(ip("-j", "route", "show", namespace=fake_internet.host_ns))
    default = [route for route in routes if route["dst"] == "default"]
    assert [route["dev"] for route in default] == [HOST_VETH]
    routes_v6 = json.loads(ip("-j", "-6", "route", "show", namespace=fake_internet.host_ns))
    default_v6 = [route for route in routes_v6 if route["dst"] == "default"]
    assert [route["dev"] for route in default_v6] == [HOST_VETH]


def test_teardown_leaves_nothing_behind_even_when_the_body_raises() -> None:
    with pytest.raises(ZeroDivisionError), FakeInternet() as internet:
        namespaces = [internet.host_ns, internet.inet_ns]
        workdir = internet.workdir
        sleeper = internet.popen_in_host(["sleep", "60"])
        servers = [server.process for server in internet.servers.values()]
        assert set(namespaces) <= set(our_namespaces())
        1 / 0  # noqa: B018
    assert not set(namespaces) & set(our_namespaces())
    assert workdir is not None and not workdir.exists()
    assert sleeper.wait(timeout=5) is not None
    assert all(process.poll() is not None for process in servers)


def test_leftover_namespaces_of_a_dead_run_are_removed(fake_internet: FakeInternet) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    leftover = f"{INET_NS_PREFIX}{finished.pid}-dead00"
    ip("netns", "add", leftover)
    try:
        removed = remove_leftovers()
    finally:
        if leftover in our_namespaces():
            ip("netns", "delete", leftover)
    assert removed == [leftover]
    # This run's own namespaces belong to a live process and stay.
    assert {fake_internet.host_ns, fake_internet.inet_ns} <= set(our_namespaces())


def test_the_trusted_https_host_answers_with_a_certificate_of_the_test_ca(
    tls_internet: FakeInternet,
) -> None:
    assert tls_internet.pki is not None
    for name in (SECURE_NAME, BYPASSED_NAME):
        result = _curl_https(
            tls_internet, name, HTTP_HOST, tls_internet.test_ca_cert, "-H", "X-Probe: 1"
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"hello from {HTTP_HOST}\n"
    events = tls_internet.servers["https"].events()[-2:]
    assert [event["sni"] for event in events] == [SECURE_NAME, BYPASSED_NAME]
    assert [event["host"] for event in events] == [SECURE_NAME, BYPASSED_NAME]
    assert events[0]["request_line"] == "GET / HTTP/1.1"
    assert ["X-Probe", "1"] in events[0]["headers"]
    assert events[0]["alpn"] == "http/1.1"


def test_the_untrusted_https_host_is_refused_by_a_client_of_the_test_ca(
    tls_internet: FakeInternet,
) -> None:
    assert tls_internet.pki is not None
    refused = _curl_https(tls_internet, UNTRUSTED_NAME, SECOND_HTTP_HOST, tls_internet.test_ca_cert)
    assert refused.returncode == CURL_PEER_FAILED_VERIFICATION, refused.stderr
    failed = tls_internet.servers["untrusted-https"].events()[-1]
    assert "handshake_error" in failed and "method" not in failed
    # The server itself works: a client of the rogue CA gets an answer.
    accepted = _curl_https(
        tls_internet, UNTRUSTED_NAME, SECOND_HTTP_HOST, tls_internet.pki.rogue_ca_cert
    )
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout == f"hello from {SECOND_HTTP_HOST}\n"
    assert tls_internet.servers["untrusted-https"].events()[-1]["sni"] == UNTRUSTED_NAME


def test_the_trusted_host_is_refused_by_a_client_of_the_rogue_ca(
    tls_internet: FakeInternet,
) -> None:
    assert tls_internet.pki is not None
    result = _curl_https(tls_internet, SECURE_NAME, HTTP_HOST, tls_internet.pki.rogue_ca_cert)
    assert result.returncode == CURL_PEER_FAILED_VERIFICATION, result.stderr


def test_the_tls_names_are_in_the_zone(tls_internet: FakeInternet) -> None:
    answers = {
        name: tls_internet.probe("dns", DNS_HOST, name, reaches=DNS_HOST)["addresses"]
        for name in (SECURE_NAME, BYPASSED_NAME, UNTRUSTED_NAME, H2_ONLY_NAME)
    }
    assert answers == {
        SECURE_NAME: [HTTP_HOST],
        BYPASSED_NAME: [HTTP_HOST],
        UNTRUSTED_NAME: [SECOND_HTTP_HOST],
        H2_ONLY_NAME: [H2_ONLY_HOST],
    }


def test_without_tls_hosts_there_is_no_https_and_no_certificate(
    fake_internet: FakeInternet,
) -> None:
    assert fake_internet.pki is None
    assert not {"https", "untrusted-https", "h2only"} & set(fake_internet.servers)
    assert SECURE_NAME not in fake_internet.records
    result = _curl(fake_internet, HTTP_HOST, "-k", f"https://{HTTP_HOST}/")
    assert result.returncode != 0


def test_the_h2_only_host_answers_http2_and_logs_its_pseudo_headers_and_headers(
    tls_internet: FakeInternet,
) -> None:
    result = _curl_https(
        tls_internet,
        H2_ONLY_NAME,
        H2_ONLY_HOST,
        tls_internet.test_ca_cert,
        "--http2",
        "-H",
        "Authorization: Bearer placeholder",
        path="/probe",
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["protocol"] == "HTTP/2"
    assert (answer["method"], answer["path"], answer["bytes"]) == ("GET", "/probe", 0)
    event = tls_internet.servers["h2only"].events()[-1]
    assert (event["sni"], event["alpn"], event["authority"]) == (H2_ONLY_NAME, "h2", H2_ONLY_NAME)
    # The pseudo-headers come first, as HTTP/2 requires, then the client's headers in order.
    pseudo = {name: value for name, value in event["headers"][:4]}
    assert pseudo == {
        ":method": "GET",
        ":scheme": "https",
        ":authority": H2_ONLY_NAME,
        ":path": "/probe",
    }
    assert ["authorization", "Bearer placeholder"] in event["headers"]


def test_the_h2_only_host_hashes_an_uploaded_body(
    tls_internet: FakeInternet, tmp_path: Path
) -> None:
    # Larger than HTTP/2's initial 64 KiB window: the host must give the window back.
    body = pattern_bytes(0, 3 << 20)
    (tmp_path / "body").write_bytes(body)
    result = _curl_https(
        tls_internet,
        H2_ONLY_NAME,
        H2_ONLY_HOST,
        tls_internet.test_ca_cert,
        "--http2",
        "--data-binary",
        f"@{tmp_path / 'body'}",
        path="/upload",
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["bytes"] == len(body)
    assert answer["sha256"] == hashlib.sha256(body).hexdigest()


def test_the_h2_only_host_refuses_an_http1_client(tls_internet: FakeInternet) -> None:
    result = _curl_https(
        tls_internet, H2_ONLY_NAME, H2_ONLY_HOST, tls_internet.test_ca_cert, "--http1.1"
    )
    assert result.returncode != 0
    event = tls_internet.servers["h2only"].events()[-1]
    assert event == {
        "client": HOST_LINK_ADDRESS,
        "sni": H2_ONLY_NAME,
        "alpn": None,
        "refused": "not h2",
    }

"""TLS interception end to end, on real VMs inside the fake internet with its HTTPS hosts.

One sandbox intercepts (``Network(tls=TlsConfig(upstream_ca_cert=<the test CA>,
bypass=[bypassed.test]))``, DNS pinned to the test DNS server): what its guest trusts, the
certificate it is shown for an intercepted name and for a bypassed one, what the real server
receives, and the refusal of a server the host does not trust; then flows that stress the
interception: HTTP/2 to a server that speaks nothing else (and an HTTP/1.1 client of it, which
must fail, not hang), a 16 MiB upload, and ten connections at once. A second sandbox, without
``tls``, shows what a guest sees when nothing is intercepted. Every check is made by the
guest's own clients (curl, and Python's ssl for the certificate's fields).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from microsandbox_tui import DnsConfig, Network, TlsConfig, pull

from .certs import ROGUE_CA_NAME, TEST_CA_NAME
from .hosts import pattern_bytes
from .internet import (
    BYPASSED_NAME,
    DNS_HOST,
    H2_ONLY_HOST,
    H2_ONLY_NAME,
    HTTP_HOST,
    SECOND_HTTP_HOST,
    SECURE_NAME,
    TRUSTED_NAMES,
    UNTRUSTED_NAME,
    FakeInternet,
    unavailable_reason,
)
from .sessions import GuestSession

#: Where the agent puts the interception CA, and the environment every exec gets for it.
GUEST_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
GUEST_CA_FILE = "/usr/local/share/ca-certificates/msb-interception.crt"
CA_ENVIRONMENT = {
    "SSL_CERT_FILE": GUEST_BUNDLE,
    "REQUESTS_CA_BUNDLE": GUEST_BUNDLE,
    "NODE_EXTRA_CA_CERTS": GUEST_CA_FILE,
}
#: Where the test CA's certificate is copied in the guests, for clients told to trust it.
GUEST_TEST_CA = "/tmp/test-ca.pem"
#: curl's exit code for a server certificate it cannot verify.
CURL_PEER_FAILED_VERIFICATION = 60
#: curl's exit code when ``--max-time`` ran out.
CURL_OPERATION_TIMEDOUT = 28
UPLOAD_SIZE = 16 << 20
PARALLEL_CONNECTIONS = 10
PARALLEL_BASE_SIZE = 1 << 20

PEER_CERTIFICATE_PROBE = """
import json, socket, ssl, sys
name = sys.argv[1]
# No file: the default trust, which SSL_CERT_FILE names when the agent set it.
context = ssl.create_default_context(cafile=sys.argv[2] if len(sys.argv) > 2 else None)
with socket.create_connection((name, 443), timeout=15) as raw:
    with context.wrap_socket(raw, server_hostname=name) as tls:
        cert = tls.getpeercert()
        tls.sendall(f"GET / HTTP/1.1\\r\\nHost: {name}\\r\\nConnection: close\\r\\n\\r\\n".encode())
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
head, _, body = reply.partition(b"\\r\\n\\r\\n")
print(json.dumps({
    "issuer": dict(pair for rdn in cert["issuer"] for pair in rdn),
    "subject": dict(pair for rdn in cert["subject"] for pair in rdn),
    "names": [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"],
    "status": head.split(b"\\r\\n")[0].decode(),
    "body": body.decode(),
}))
"""
"""Connects to NAME:443 verifying against the default trust or the file given, and prints
the certificate's issuer, subject and DNS names and the answer to ``GET /``, as JSON."""

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


@pytest.fixture(scope="module")
def internet() -> Iterator[FakeInternet]:
    with FakeInternet(tls_hosts=True, ipv6=False) as fake:
        yield fake


@pytest.fixture(scope="module")
def tools_image(debian_tools_ref: str) -> str:
    """debian-tools (python3, curl), pulled outside the host namespace, which cannot reach
    the registry on this namespace's loopback."""
    asyncio.run(pull(debian_tools_ref, insecure=True))
    return debian_tools_ref


def _network(tls: TlsConfig | None) -> dict[str, Any]:
    network = Network("public_only", dns=DnsConfig(nameservers=[DNS_HOST]), tls=tls)
    stored: dict[str, Any] = network.model_dump(mode="json")
    return stored


def _boot(internet: FakeInternet, image: str, name: str, tls: TlsConfig | None) -> GuestSession:
    session = GuestSession(internet, name, image=image, network=_network(tls))
    try:
        session.sh(f"cat > {GUEST_TEST_CA} <<'EOF'\n{internet.test_ca_cert.read_text()}EOF")
        session.sh(f"cat > /tmp/peer.py <<'EOF'\n{PEER_CERTIFICATE_PROBE}\nEOF")
    except BaseException:
        session.close()
        raise
    return session


@pytest.fixture(scope="module")
def intercepting(internet: FakeInternet, tools_image: str) -> Iterator[GuestSession]:
    tls = TlsConfig(upstream_ca_cert=internet.test_ca_cert, bypass=[BYPASSED_NAME])
    session = _boot(internet, tools_image, "tls-intercepting", tls)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture(scope="module")
def plain(internet: FakeInternet, tools_image: str) -> Iterator[GuestSession]:
    session = _boot(internet, tools_image, "tls-plain", None)
    try:
        yield session
    finally:
        session.close()


def _home_ca_pem() -> str:
    """The home's interception CA, generated by the supervisor on first use."""
    return (Path(os.environ["MSB_HOME"]) / "tls" / "ca.pem").read_text()


def _common_name(pem: str) -> str:
    """The common name of a PEM certificate's subject, as ``openssl`` reads it."""
    result = subprocess.run(
        ["openssl", "x509", "-noout", "-subject", "-nameopt", "sep_multiline,sname"],
        input=pem,
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    fields = dict(
        line.strip().split("=", 1) for line in result.stdout.splitlines()[1:] if "=" in line
    )
    return fields["CN"]


def _peer(session: GuestSession, name: str, cafile: str | None = None) -> dict[str, Any]:
    reply = session.sh(f"python3 /tmp/peer.py {name} {cafile or ''}")
    assert reply["exit_code"] == 0, reply
    peer: dict[str, Any] = json.loads(reply["stdout"])
    return peer


def _curl(session: GuestSession, *arguments: str, max_time_s: int = 20) -> dict[str, Any]:
    return session.sh(
        f"curl -sS --max-time {max_time_s} " + " ".join(arguments), timeout_s=max_time_s + 20
    )


def _requests(internet: FakeInternet, server: str) -> list[dict[str, Any]]:
    return [event for event in internet.servers[server].events() if "method" in event]


# -- the CA in the guest ----------------------------------------------------------------------


def test_the_interception_ca_is_trusted_in_the_guest_and_named_in_every_exec(
    intercepting: GuestSession,
) -> None:
    home_ca = _home_ca_pem().strip()
    installed = intercepting.sh(f"cat {GUEST_CA_FILE}")
    assert installed["exit_code"] == 0, installed
    assert installed["stdout"].strip() == home_ca
    bundle = intercepting.sh(f"cat {GUEST_BUNDLE}")["stdout"]
    assert home_ca in bundle
    # The image's own roots stay in the bundle beside it.
    assert bundle.count("BEGIN CERTIFICATE") > 1
    environment = intercepting.sh("env")["stdout"].splitlines()
    for variable, value in CA_ENVIRONMENT.items():
        assert f"{variable}={value}" in environment


def test_an_exec_that_sets_a_ca_variable_itself_keeps_its_own(intercepting: GuestSession) -> None:
    reply = intercepting.sh(
        "echo $SSL_CERT_FILE $REQUESTS_CA_BUNDLE", env={"SSL_CERT_FILE": "/tmp/mine"}
    )
    assert reply["stdout"].split() == ["/tmp/mine", GUEST_BUNDLE]


# -- an intercepted name --------------------------------------------------------------------


def test_an_intercepted_name_gets_a_leaf_of_the_interception_ca_for_its_sni(
    internet: FakeInternet, intercepting: GuestSession
) -> None:
    peer = _peer(intercepting, SECURE_NAME)
    assert peer["issuer"]["commonName"] == _common_name(_home_ca_pem())
    assert peer["issuer"]["commonName"] != TEST_CA_NAME
    assert peer["names"] == [SECURE_NAME]
    assert peer["status"] == "HTTP/1.1 200 OK"
    assert peer["body"] == f"hello from {HTTP_HOST}\n"
    # The real server was reached over TLS with the guest's name, and got the request.
    request = _requests(internet, "https")[-1]
    assert (request["sni"], request["host"], request["path"]) == (SECURE_NAME, SECURE_NAME, "/")


def test_curl_trusts_the_intercepted_certificate_and_only_the_interception_ca_signed_it(
    intercepting: GuestSession,
) -> None:
    verbose = _curl(intercepting, "-v", f"https://{SECURE_NAME}/")
    assert verbose["exit_code"] == 0, verbose
    assert verbose["stdout"] == f"hello from {HTTP_HOST}\n"
    assert _common_name(_home_ca_pem()) in verbose["stderr"]
    only_ours = _curl(intercepting, "--cacert", GUEST_CA_FILE, f"https://{SECURE_NAME}/")
    assert only_ours["exit_code"] == 0, only_ours
    # The real server's CA alone does not verify what the guest was shown.
    only_real = _curl(intercepting, "--cacert", GUEST_TEST_CA, f"https://{SECURE_NAME}/")
    assert only_real["exit_code"] == CURL_PEER_FAILED_VERIFICATION, only_real


def test_plain_http_is_not_touched_by_interception(
    internet: FakeInternet, intercepting: GuestSession
) -> None:
    reply = _curl(intercepting, f"http://{SECURE_NAME}/")
    assert reply["exit_code"] == 0, reply
    assert reply["stdout"] == f"hello from {HTTP_HOST}\n"
    assert _requests(internet, "http")[-1]["host"] == SECURE_NAME


# -- a bypassed name ------------------------------------------------------------------------


def test_a_bypassed_name_sees_the_real_servers_certificate(
    internet: FakeInternet, intercepting: GuestSession
) -> None:
    peer = _peer(intercepting, BYPASSED_NAME, GUEST_TEST_CA)
    assert peer["issuer"]["commonName"] == TEST_CA_NAME
    assert peer["names"] == list(TRUSTED_NAMES)
    assert peer["body"] == f"hello from {HTTP_HOST}\n"
    assert _requests(internet, "https")[-1]["sni"] == BYPASSED_NAME
    # The guest does not trust the test CA, so its default trust refuses the real
    # certificate: nothing in between replaced it.
    refused = _curl(intercepting, f"https://{BYPASSED_NAME}/")
    assert refused["exit_code"] == CURL_PEER_FAILED_VERIFICATION, refused


# -- an upstream the host does not trust ---------------------------------------------------


def test_an_untrusted_server_is_refused_when_verifying_upstream(
    internet: FakeInternet, intercepting: GuestSession
) -> None:
    before = len(internet.servers["untrusted-https"].events())
    refused = _curl(intercepting, f"https://{UNTRUSTED_NAME}/")
    assert refused["exit_code"] != 0, refused
    # Refused by the gateway, not by the guest: even a guest that checks nothing gets no
    # answer, and the server never receives a request.
    unchecked = _curl(intercepting, "-k", f"https://{UNTRUSTED_NAME}/")
    assert unchecked["exit_code"] != 0, unchecked
    assert f"hello from {SECOND_HTTP_HOST}" not in unchecked["stdout"]
    events = internet.servers["untrusted-https"].events()[before:]
    assert events, "the gateway's handshake with the real server should reach it"
    assert not [event for event in events if "method" in event]


# -- HTTP/2, a large upload, parallel connections -------------------------------------------


def test_curl_reaches_an_http2_only_server_over_h2_through_interception(
    internet: FakeInternet, intercepting: GuestSession
) -> None:
    reply = _curl(
        intercepting,
        "--http2",
        "-H",
        "'Authorization: Bearer guest-placeholder'",
        "-w",
        "'\\n%{http_version}'",
        f"https://{H2_ONLY_NAME}/h2",
    )
    assert reply["exit_code"] == 0, reply
    body, _, version = reply["stdout"].rpartition("\n")
    assert version == "2", reply
    answer = json.loads(body)
    assert (answer["host"], answer["protocol"], answer["path"]) == (H2_ONLY_HOST, "HTTP/2", "/h2")
    # The gateway offered the real server the guest's h2 and passed the request on in it.
    request = _requests(internet, "h2only")[-1]
    assert (request["sni"], request["alpn"], request["authority"]) == (
        H2_ONLY_NAME,
        "h2",
        H2_ONLY_NAME,
    )
    pseudo = {name: value for name, value in request["headers"][:4]}
    assert pseudo == {
        ":method": "GET",
        ":scheme": "https",
        ":authority": H2_ONLY_NAME,
        ":path": "/h2",
    }
    assert ["authorization", "Bearer guest-placeholder"] in request["headers"]


def test_an_http1_client_of_an_http2_only_server_fails_at_once_through_interception(
    internet: FakeInternet, intercepting: GuestSession
) -> None:
    before = len(internet.servers["h2only"].events())
    started = time.monotonic()
    reply = _curl(intercepting, "--http1.1", f"https://{H2_ONLY_NAME}/")
    elapsed = time.monotonic() - started
    # An error the guest sees, not an answer and not curl's own timeout: the server's close
    # reached it through the gateway.
    assert reply["exit_code"] not in (0, CURL_OPERATION_TIMEDOUT), reply
    assert elapsed < 15, f"the refusal took {elapsed:.1f} s"
    events = internet.servers["h2only"].events()[before:]
    assert [(event.get("refused"), event.get("alpn")) for event in events] == [("not h2", None)]


@pytest.mark.parametrize(
    ("name", "protocol"), [(SECURE_NAME, "--http1.1"), (H2_ONLY_NAME, "--http2")]
)
def test_a_16_mib_upload_arrives_intact_through_interception(
    internet: FakeInternet, intercepting: GuestSession, name: str, protocol: str
) -> None:
    made = intercepting.sh(
        f"head -c {UPLOAD_SIZE} /dev/urandom > /tmp/upload && sha256sum /tmp/upload"
    )
    assert made["exit_code"] == 0, made
    sent_digest = made["stdout"].split()[0]
    # No `Expect: 100-continue`: the body follows the headers at once, the harder case.
    reply = _curl(
        intercepting,
        protocol,
        "-H",
        "Expect:",
        "--data-binary",
        "@/tmp/upload",
        f"https://{name}/upload",
        max_time_s=90,
    )
    assert reply["exit_code"] == 0, reply
    answer = json.loads(reply["stdout"])
    assert (answer["bytes"], answer["sha256"]) == (UPLOAD_SIZE, sent_digest)


def test_ten_parallel_connections_through_interception_all_get_their_own_bytes(
    intercepting: GuestSession,
) -> None:
    sizes = [PARALLEL_BASE_SIZE + index * 4099 for index in range(PARALLEL_CONNECTIONS)]
    transfers = " ".join(
        f"-o /tmp/parallel.{size} https://{SECURE_NAME}/bytes/{size}" for size in sizes
    )
    reply = _curl(
        intercepting,
        "--http1.1",
        f"--parallel --parallel-immediate --parallel-max {PARALLEL_CONNECTIONS}",
        "-w",
        "'%{local_port} %{num_connects} %{size_download}\\n'",
        transfers,
        "&& sha256sum /tmp/parallel.*",
        max_time_s=60,
    )
    assert reply["exit_code"] == 0, reply
    lines = reply["stdout"].splitlines()
    written = [line.split() for line in lines[:PARALLEL_CONNECTIONS]]
    # Each transfer opened its own connection: ten local ports, each connected once.
    assert len({port for port, _, _ in written}) == PARALLEL_CONNECTIONS, written
    assert {connects for _, connects, _ in written} == {"1"}, written
    assert sorted(int(size) for _, _, size in written) == sizes
    digests = {
        int(path.rsplit(".", 1)[1]): digest
        for digest, path in (line.split() for line in lines[PARALLEL_CONNECTIONS:])
    }
    assert digests == {size: hashlib.sha256(pattern_bytes(0, size)).hexdigest() for size in sizes}


# -- no interception ------------------------------------------------------------------------


def test_without_tls_the_guest_sees_the_real_certificate_and_no_interception_ca(
    internet: FakeInternet, plain: GuestSession
) -> None:
    peer = _peer(plain, SECURE_NAME, GUEST_TEST_CA)
    assert peer["issuer"]["commonName"] == TEST_CA_NAME
    assert peer["names"] == list(TRUSTED_NAMES)
    assert peer["body"] == f"hello from {HTTP_HOST}\n"
    assert _requests(internet, "https")[-1]["sni"] == SECURE_NAME
    refused = _curl(plain, f"https://{SECURE_NAME}/")
    assert refused["exit_code"] == CURL_PEER_FAILED_VERIFICATION, refused
    assert plain.sh(f"test -e {GUEST_CA_FILE}")["exit_code"] != 0
    environment = plain.sh("env")["stdout"]
    assert not [variable for variable in CA_ENVIRONMENT if f"{variable}=" in environment]


def test_without_tls_an_untrusted_server_is_reached_by_a_guest_that_checks_nothing(
    plain: GuestSession,
) -> None:
    # The counterpart of the refusal above: only interception puts the host's check there.
    reply = _curl(plain, "-k", "-v", f"https://{UNTRUSTED_NAME}/")
    assert reply["exit_code"] == 0, reply
    assert reply["stdout"] == f"hello from {SECOND_HTTP_HOST}\n"
    assert ROGUE_CA_NAME in reply["stderr"]

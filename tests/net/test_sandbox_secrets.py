"""Secrets end to end, on real VMs inside the fake internet with its HTTPS hosts.

One sandbox intercepts TLS (the test CA as upstream trust, ``bypassed.test`` bypassed) and has
two secrets for ``secure.test``: ``OPENAI_API_KEY``, read from the driver's environment
(``from_env``), and ``SECOND_KEY``, given by value. Its guest's curl sends placeholders; the
test HTTPS server, which logs every request's headers, shows what arrived. The same sandbox
proves that the value is nowhere else (QEMU's memory, which holds the guest's RAM, the
runtime home, the supervisor's and QEMU's command lines and environments), then is
restarted and rotated. A second sandbox stops itself on a violation (``block_and_terminate``),
and a third, without ``tls``, shows that only the secret's host is intercepted then.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from microsandbox_tui import DnsConfig, Network, TlsConfig, _native, pull

from .certs import TEST_CA_NAME
from .internet import (
    BYPASSED_NAME,
    DNS_HOST,
    ELSEWHERE_NAME,
    H2_ONLY_NAME,
    SECURE_NAME,
    FakeInternet,
    unavailable_reason,
)
from .sessions import GuestSession

pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))

#: Long and random, so that finding its bytes anywhere can only mean it leaked.
VALUE = f"sk-test-{secrets.token_hex(24)}"
SECOND_VALUE = f"sk-second-{secrets.token_hex(24)}"
ROTATED_VALUE = f"sk-rotated-{secrets.token_hex(24)}"
PLACEHOLDER = "$MSB_OPENAI_API_KEY"
#: What the guest writes into a file, so that its RAM (the page cache) surely holds it.
GUEST_MARKER = "msb-test-marker:"
STOPPED_WITHIN_S = 10.0

OPENAI = {
    "env_var": "OPENAI_API_KEY",
    "from_env": "OPENAI_API_KEY",
    "allow_hosts": [SECURE_NAME, H2_ONLY_NAME],
}
SECOND = {"env_var": "SECOND_KEY", "value": SECOND_VALUE, "allow_hosts": [SECURE_NAME]}

PEER_ISSUER_PROBE = """
import socket, ssl, sys
name, cafile = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None
context = ssl.create_default_context(cafile=cafile)
with socket.create_connection((name, 443), timeout=15) as raw:
    with context.wrap_socket(raw, server_hostname=name) as tls:
        print(dict(pair for rdn in tls.getpeercert()["issuer"] for pair in rdn)["commonName"])
"""
"""Prints the common name of the issuer of NAME:443's certificate, verified against the
default trust or the file given."""
GUEST_TEST_CA = "/tmp/test-ca.pem"


@pytest.fixture(scope="module")
def internet() -> Iterator[FakeInternet]:
    with FakeInternet(tls_hosts=True, ipv6=False) as fake:
        yield fake


@pytest.fixture(scope="module")
def tools_image(debian_tools_ref: str) -> str:
    asyncio.run(pull(debian_tools_ref, insecure=True))
    return debian_tools_ref


def _network(tls: TlsConfig | None) -> dict[str, Any]:
    network = Network("public_only", dns=DnsConfig(nameservers=[DNS_HOST]), tls=tls)
    stored: dict[str, Any] = network.model_dump(mode="json")
    return stored


def _driver_env(**extra: str) -> dict[str, str]:
    """The driver's environment: ours, the value of ``OPENAI_API_KEY`` (its source), and a
    variable holding the value inside other text, which must not reach the supervisor."""
    return {
        **os.environ,
        "OPENAI_API_KEY": VALUE,
        "MSB_TEST_AUTH_HEADER": f"Authorization: Bearer {VALUE}",
        **extra,
    }


@pytest.fixture(scope="module")
def intercepting(internet: FakeInternet, tools_image: str) -> Iterator[GuestSession]:
    tls = TlsConfig(upstream_ca_cert=internet.test_ca_cert, bypass=[BYPASSED_NAME])
    session = GuestSession(
        internet,
        "secrets-tls",
        image=tools_image,
        network=_network(tls),
        env=_driver_env(),
        secrets=[OPENAI, SECOND],
    )
    try:
        yield session
    finally:
        session.close()


def _curl(session: GuestSession, *arguments: str) -> dict[str, Any]:
    return session.sh("curl -sS --max-time 20 " + " ".join(arguments), timeout_s=40)


def _requests(internet: FakeInternet, host: str) -> list[dict[str, Any]]:
    return [
        event
        for event in internet.servers["https"].events()
        if "method" in event and event.get("host") == host
    ]


def _header(request: dict[str, Any], name: str) -> str | None:
    return next((value for key, value in request["headers"] if key.lower() == name), None)


def _secret_records(session: GuestSession, reason: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = session.ok("network_log")["entries"]
    return [entry for entry in entries if entry["reason"] == reason]


# -- substitution ------------------------------------------------------------------------------


def test_the_guest_sees_the_placeholder_and_the_secret_host_gets_the_value(
    internet: FakeInternet, intercepting: GuestSession
) -> None:
    assert intercepting.sh("echo $OPENAI_API_KEY")["stdout"] == f"{PLACEHOLDER}\n"
    reply = _curl(
        intercepting,
        '-H "Authorization: Bearer $OPENAI_API_KEY"',
        '-H "X-Second: $SECOND_KEY"',
        f"https://{SECURE_NAME}/",
    )
    assert reply["exit_code"] == 0, reply
    request = _requests(internet, SECURE_NAME)[-1]
    assert _header(request, "authorization") == f"Bearer {VALUE}"
    assert _header(request, "x-second") == SECOND_VALUE
    injected = _secret_records(intercepting, "secret_injected")
    assert {entry["secret"] for entry in injected} >= {"OPENAI_API_KEY", "SECOND_KEY"}


def test_an_http2_only_server_gets_the_value_in_every_request_of_one_connection(
    internet: FakeInternet, intercepting: GuestSession
) -> None:
    # Two requests on one HTTP/2 connection: the second may name the header through the
    # guest's HPACK table, which the gateway must decode and re-encode for the server.
    before = len(internet.servers["h2only"].events())
    urls = " ".join(f"-o /dev/null https://{H2_ONLY_NAME}/h2/{index}" for index in range(2))
    reply = _curl(
        intercepting,
        "--http2",
        "-w '%{http_version} %{num_connects}\\n'",
        '-H "Authorization: Bearer $OPENAI_API_KEY"',
        urls,
    )
    assert reply["exit_code"] == 0, reply
    assert reply["stdout"].split() == ["2", "1", "2", "0"], reply
    requests = [e for e in internet.servers["h2only"].events()[before:] if "method" in e]
    assert [request["path"] for request in requests] == ["/h2/0", "/h2/1"]
    for request in requests:
        assert _header(request, "authorization") == f"Bearer {VALUE}", request


def test_basic_auth_credentials_carry_the_value(
    internet: FakeInternet, intercepting: GuestSession
) -> None:
    reply = _curl(intercepting, '-u "user:$OPENAI_API_KEY"', f"https://{SECURE_NAME}/basic")
    assert reply["exit_code"] == 0, reply
    request = _requests(internet, SECURE_NAME)[-1]
    assert request["path"] == "/basic"
    credentials = base64.b64encode(f"user:{VALUE}".encode()).decode()
    assert _header(request, "authorization") == f"Basic {credentials}"


def test_a_placeholder_for_another_host_is_refused_with_a_403_logged_and_never_sent(
    internet: FakeInternet, intercepting: GuestSession
) -> None:
    reply = _curl(
        intercepting,
        "-w '\\n%{http_code}'",
        '-H "Authorization: Bearer $OPENAI_API_KEY"',
        f"https://{ELSEWHERE_NAME}/",
    )
    assert reply["exit_code"] == 0, reply
    body, _, status = reply["stdout"].rpartition("\n")
    assert status == "403"
    assert "OPENAI_API_KEY" in body and ELSEWHERE_NAME in body, body
    assert not _requests(internet, ELSEWHERE_NAME)
    violations = _secret_records(intercepting, "secret_violation")
    assert [(entry["secret"], entry["sni"]) for entry in violations][-1] == (
        "OPENAI_API_KEY",
        ELSEWHERE_NAME,
    )
    # The same host without a placeholder is reached: only the secret was refused.
    plain = _curl(intercepting, f"https://{ELSEWHERE_NAME}/")
    assert plain["exit_code"] == 0, plain
    assert len(_requests(internet, ELSEWHERE_NAME)) == 1


# -- the value goes nowhere else -----------------------------------------------------------


def _readable_regions(pid: int) -> Iterator[tuple[int, int]]:
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        span, permissions = line.split()[:2]
        if permissions.startswith("r"):
            start, end = (int(address, 16) for address in span.split("-"))
            yield start, end


def _memory_holds(pid: int, needles: list[bytes]) -> set[bytes]:
    """Which of ``needles`` the memory of process ``pid`` holds (for QEMU: the guest's RAM
    too, which it maps). Read through ``/proc/PID/mem``: the supervisor keeps QEMU's only
    QMP connection, so a ``dump-guest-memory`` has no socket to go through."""
    found: set[bytes] = set()
    overlap = max(len(needle) for needle in needles)
    chunk_size = 16 << 20
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
        for start, end in _readable_regions(pid):
            tail = b""
            for offset in range(start, end, chunk_size):
                try:
                    memory.seek(offset)
                    chunk = memory.read(min(chunk_size, end - offset))
                except OSError:
                    break  # a region the kernel does not let us read (vvar, guard pages)
                window = tail + chunk
                found.update(needle for needle in needles if needle in window)
                tail = window[-overlap:]
    return found


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    """Every file under ``root`` that holds ``needle``, reading only the data of sparse
    files (a sandbox's upper disk is 8 GiB, mostly holes)."""
    holding = []
    for path in root.rglob("*"):
        if path.is_symlink() or not path.is_file():
            continue
        try:
            if needle in b"".join(_data_chunks(path)):
                holding.append(path)
        except OSError:
            continue  # a socket or a file removed meanwhile
    return holding


def _data_chunks(path: Path) -> Iterator[bytes]:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(descriptor).st_size
        position = 0
        while position < size:
            try:
                data = os.lseek(descriptor, position, os.SEEK_DATA)
            except OSError:
                return  # only a hole is left
            hole = os.lseek(descriptor, data, os.SEEK_HOLE)
            # Each extent with a little before it, so a value across two extents is found.
            yield os.pread(descriptor, hole - data + 256, max(0, data - 256))
            position = hole
    finally:
        os.close(descriptor)


def test_the_value_is_nowhere_but_in_the_request(
    internet: FakeInternet, intercepting: GuestSession
) -> None:
    marked = intercepting.sh(f'printf "{GUEST_MARKER}%s" "$OPENAI_API_KEY" > /root/marker; sync')
    assert marked["exit_code"] == 0, marked
    sent = _curl(
        intercepting, '-H "Authorization: Bearer $OPENAI_API_KEY"', f"https://{SECURE_NAME}/"
    )
    assert sent["exit_code"] == 0, sent
    assert _header(_requests(internet, SECURE_NAME)[-1], "authorization") == f"Bearer {VALUE}"
    info = intercepting.ok("info")
    values = [VALUE.encode(), SECOND_VALUE.encode()]
    marker = f"{GUEST_MARKER}{PLACEHOLDER}".encode()
    found = _memory_holds(info["vmm_pid"], [*values, marker])
    # The search can fail: the guest's own copy of the placeholder is found.
    assert marker in found, "the guest's RAM should hold the marker it wrote"
    assert not found & set(values), "a value is in QEMU's memory (the guest's RAM)"
    # ... and so is the value, in the one process meant to hold it.
    assert VALUE.encode() in _memory_holds(info["supervisor_pid"], values)
    for pid in (info["supervisor_pid"], info["vmm_pid"]):
        for part in ("cmdline", "environ"):
            text = Path(f"/proc/{pid}/{part}").read_bytes()
            assert not [value for value in values if value in text], f"/proc/{pid}/{part}"
    variables = Path(f"/proc/{info['supervisor_pid']}/environ").read_bytes().split(b"\0")
    names = {variable.partition(b"=")[0] for variable in variables}
    assert not names & {b"OPENAI_API_KEY", b"MSB_TEST_AUTH_HEADER"}, "not scrubbed"
    home = Path(_native.home_dir())
    for value in values:
        assert not _files_holding(home, value)
    # The home's logs are searched too, and hold what they should.
    assert _files_holding(home, b'"secret":"OPENAI_API_KEY"'), "the flow log names the secret"


# -- starting again --------------------------------------------------------------------------


def test_a_start_reads_the_source_again_and_needs_the_secret_given_by_value(
    internet: FakeInternet, intercepting: GuestSession
) -> None:
    refused = intercepting.call("restart", 120)
    assert refused.get("error") == "SecretValueMissingError", refused
    assert "SECOND_KEY" in refused["message"] and SECOND_VALUE not in refused["message"]
    assert intercepting.ok("info")["status"] == "stopped"
    intercepting.ok("restart", 120, secrets=[SECOND])
    reply = _curl(
        intercepting,
        '-H "Authorization: Bearer $OPENAI_API_KEY"',
        '-H "X-Second: $SECOND_KEY"',
        f"https://{SECURE_NAME}/again",
    )
    assert reply["exit_code"] == 0, reply
    request = _requests(internet, SECURE_NAME)[-1]
    assert request["path"] == "/again"
    assert _header(request, "authorization") == f"Bearer {VALUE}"
    assert _header(request, "x-second") == SECOND_VALUE


def test_set_secret_rotates_the_value_for_the_next_request(
    internet: FakeInternet, intercepting: GuestSession
) -> None:
    rotated = {"env_var": "OPENAI_API_KEY", "value": ROTATED_VALUE, "allow_hosts": [SECURE_NAME]}
    env = intercepting.ok("set_secret", secret=rotated)["env"]
    assert env["OPENAI_API_KEY"] == PLACEHOLDER
    reply = _curl(
        intercepting, '-H "Authorization: Bearer $OPENAI_API_KEY"', f"https://{SECURE_NAME}/new"
    )
    assert reply["exit_code"] == 0, reply
    request = _requests(internet, SECURE_NAME)[-1]
    assert (request["path"], _header(request, "authorization")) == (
        "/new",
        f"Bearer {ROTATED_VALUE}",
    )


# -- block_and_terminate ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def terminating(internet: FakeInternet, tools_image: str) -> Iterator[GuestSession]:
    tls = TlsConfig(upstream_ca_cert=internet.test_ca_cert)
    secret = {**OPENAI, "on_violation": "block_and_terminate"}
    session = GuestSession(
        internet,
        "secrets-terminate",
        image=tools_image,
        network=_network(tls),
        env=_driver_env(),
        secrets=[secret],
    )
    try:
        yield session
    finally:
        session.close()


def test_block_and_terminate_stops_the_sandbox_and_says_why(
    internet: FakeInternet, terminating: GuestSession
) -> None:
    reply = terminating.call(
        "sh",
        60,
        script=f'curl -sS --max-time 20 -H "Authorization: Bearer $OPENAI_API_KEY" '
        f"https://{ELSEWHERE_NAME}/terminate",
        timeout_s=30,
    )
    # The command may be cut off with the VM: how it ended does not matter.
    assert "stdout" in reply or "error" in reply, reply
    deadline = time.monotonic() + STOPPED_WITHIN_S
    while (info := terminating.ok("info"))["status"] != "stopped":
        assert time.monotonic() < deadline, info
        time.sleep(0.2)
    assert "OPENAI_API_KEY" in info["exit_reason"] and ELSEWHERE_NAME in info["exit_reason"]
    assert not [r for r in _requests(internet, ELSEWHERE_NAME) if r["path"] == "/terminate"]
    log = Path(_native.log_path("secrets-terminate", "console")).with_name("supervisor.log")
    text = log.read_text()
    assert f"secret OPENAI_API_KEY was sent to {ELSEWHERE_NAME}" in text
    assert VALUE not in text


# -- secrets without tls -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def without_tls(internet: FakeInternet, tools_image: str) -> Iterator[GuestSession]:
    # The host's trust store is the upstream trust without `tls`: here, the test CA.
    env = _driver_env(SSL_CERT_FILE=str(internet.test_ca_cert))
    session = GuestSession(
        internet,
        "secrets-no-tls",
        image=tools_image,
        network=_network(None),
        env=env,
        secrets=[OPENAI],
    )
    try:
        session.sh(f"cat > {GUEST_TEST_CA} <<'EOF'\n{internet.test_ca_cert.read_text()}EOF")
        session.sh(f"cat > /tmp/issuer.py <<'EOF'\n{PEER_ISSUER_PROBE}\nEOF")
        yield session
    finally:
        session.close()


def test_without_tls_only_the_secret_host_is_intercepted(
    internet: FakeInternet, without_tls: GuestSession
) -> None:
    home_ca = (Path(os.environ["MSB_HOME"]) / "tls" / "ca.pem").read_text()
    secret_host = without_tls.sh(f"python3 /tmp/issuer.py {SECURE_NAME}")
    assert secret_host["exit_code"] == 0, secret_host
    assert secret_host["stdout"].strip() != TEST_CA_NAME
    assert home_ca.strip() in without_tls.sh("cat /etc/ssl/certs/ca-certificates.crt")["stdout"]
    other_host = without_tls.sh(f"python3 /tmp/issuer.py {BYPASSED_NAME} {GUEST_TEST_CA}")
    assert other_host["exit_code"] == 0, other_host
    assert other_host["stdout"].strip() == TEST_CA_NAME
    reply = _curl(
        without_tls, '-H "Authorization: Bearer $OPENAI_API_KEY"', f"https://{SECURE_NAME}/no-tls"
    )
    assert reply["exit_code"] == 0, reply
    request = _requests(internet, SECURE_NAME)[-1]
    assert (request["path"], _header(request, "authorization")) == ("/no-tls", f"Bearer {VALUE}")

"""TLS interception benchmark: HTTPS through the gateway's interception against the same flows
relayed untouched (``tls=None``), on the same kernel and image, interleaved in one run.

    ./dev bench tls [--requests N] [--size-mib N] [--rounds N]

Everything runs inside the fake internet of ``tests/net`` (network namespaces, the HTTPS test
host ``secure.test`` on 198.51.100.10 with a certificate of the fake internet's test CA), so
nothing reaches a real network. Two sandboxes of the ``debian-tools`` image (curl) are booted
once: ``intercepted`` (``TlsConfig(upstream_ca_cert=<the test CA>)``: the gateway ends the
guest's TLS with a leaf of the interception CA and opens its own TLS to the server) and
``relayed`` (no ``tls``: the guest's TLS goes to the server as bytes). Each guest's curl trusts
exactly one CA file (the interception CA, or the test CA), so both load the same trust. Per
sandbox and round:

- fresh GET: ``GET /`` on a new connection each time (``Connection: close``, no TLS session
  resumption: a full handshake every time), median of N; the handshake part of it too
  (curl's ``time_appconnect``);
- keep-alive GET: N more ``GET /`` on one connection, the first (which connects) left out;
  and the same of ``GET /streamed``, whose head and body are two writes 2 ms apart, as a
  streaming server writes (the case a relay holding small writes for an ACK delays);
- download: ``GET /bytes/N MiB``, MiB/s.

Times are curl's own (``-w``) inside the guest, so the curl process's start is not counted.
The ratios (intercepted / relayed) are what to read: latency above 1 is the interception's
cost, throughput below 1 too.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("MSB_HOME", tempfile.mkdtemp(prefix="msb-bench-home-"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from net.internet import DNS_HOST, SECURE_NAME, FakeInternet, unavailable_reason
from net.sessions import GuestSession
from registry.builder import push
from registry.images import debian_tools_image
from registry.server import RegistryServer

from microsandbox_tui import DnsConfig, Network, TlsConfig, pull

GUEST_INTERCEPTION_CA = "/usr/local/share/ca-certificates/msb-interception.crt"
"""Where the agent puts the interception CA (see docs/NETWORKING.md)."""
GUEST_TEST_CA = "/tmp/test-ca.pem"
STEP_TIMEOUT_S = 300.0
"""Bound of one measured step: 64 MiB through TLS under TCG take well under a minute."""
MODES = ("intercepted", "relayed")


class BenchmarkError(RuntimeError):
    """A measured step failed or did not do what it was to measure."""


def curl_lines(session: GuestSession, arguments: str) -> list[list[str]]:
    """Runs curl in the guest and returns its ``-w`` lines, split into fields."""
    script = f"curl -sS --max-time {int(STEP_TIMEOUT_S)} {arguments}"
    reply = session.sh(script, timeout_s=STEP_TIMEOUT_S + 30)
    if reply["exit_code"] != 0:
        raise BenchmarkError(f"{script[:120]!r} failed: {reply}")
    return [line.split() for line in reply["stdout"].splitlines() if line.strip()]


def fresh_gets(session: GuestSession, trust: str, requests: int) -> tuple[float, float]:
    """Median total and handshake time in ms of ``requests`` GETs, each a new connection."""
    transfers = f"-o /dev/null https://{SECURE_NAME}/ " * requests
    lines = curl_lines(
        session,
        f"--cacert {trust} --no-sessionid -H 'Connection: close' "
        f"-w '%{{num_connects}} %{{time_appconnect}} %{{time_total}}\\n' {transfers}",
    )
    if len(lines) != requests or {connects for connects, _, _ in lines} != {"1"}:
        raise BenchmarkError(f"the fresh GETs did not each connect once: {lines}")
    handshake = statistics.median(float(appconnect) for _, appconnect, _ in lines)
    total = statistics.median(float(total) for _, _, total in lines)
    return total * 1000, handshake * 1000


def keep_alive_gets(session: GuestSession, trust: str, requests: int, path: str = "/") -> float:
    """Median time in ms of ``requests`` GETs of ``path`` on one connection, after the one
    that opens it."""
    transfers = f"-o /dev/null https://{SECURE_NAME}{path} " * (requests + 1)
    lines = curl_lines(
        session, f"--cacert {trust} -w '%{{num_connects}} %{{time_total}}\\n' {transfers}"
    )
    reused = lines[1:]
    if len(reused) != requests or {connects for connects, _ in reused} != {"0"}:
        raise BenchmarkError(f"the keep-alive GETs did not reuse one connection: {lines}")
    return statistics.median(float(total) for _, total in reused) * 1000


def download(session: GuestSession, trust: str, size: int) -> float:
    """MiB/s of one GET of ``size`` bytes."""
    [[received, seconds]] = curl_lines(
        session,
        f"--cacert {trust} -o /dev/null -w '%{{size_download}} %{{time_total}}\\n' "
        f"https://{SECURE_NAME}/bytes/{size}",
    )
    if int(received) != size:
        raise BenchmarkError(f"downloaded {received} bytes of {size}")
    return size / (1 << 20) / float(seconds)


def measure(session: GuestSession, trust: str, requests: int, size: int) -> dict[str, float]:
    fresh, handshake = fresh_gets(session, trust, requests)
    return {
        "fresh GET ms": fresh,
        "handshake ms": handshake,
        "keep-alive GET ms": keep_alive_gets(session, trust, requests),
        "keep-alive streamed GET ms": keep_alive_gets(session, trust, requests, "/streamed"),
        "download MiB/s": download(session, trust, size),
    }


def tools_image(registry: RegistryServer) -> str:
    """debian-tools pushed to the local registry and pulled, outside the host namespace
    (which cannot reach the registry on this namespace's loopback)."""
    push(registry.url, "debian-tools", "1", debian_tools_image())
    reference = f"{registry.host}/debian-tools:1"
    asyncio.run(pull(reference, insecure=True))
    return reference


def boot(internet: FakeInternet, image: str, mode: str) -> tuple[GuestSession, str]:
    """The sandbox of ``mode`` and the CA file its curl is to trust."""
    tls = TlsConfig(upstream_ca_cert=internet.test_ca_cert) if mode == "intercepted" else None
    network = Network("public_only", dns=DnsConfig(nameservers=[DNS_HOST]), tls=tls)
    session = GuestSession(
        internet, f"bench-tls-{mode}", image=image, network=network.model_dump(mode="json")
    )
    if mode == "intercepted":
        return session, GUEST_INTERCEPTION_CA
    session.sh(f"cat > {GUEST_TEST_CA} <<'EOF'\n{internet.test_ca_cert.read_text()}EOF")
    return session, GUEST_TEST_CA


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20, help="GETs per latency figure")
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        sys.exit(f"tls benchmark needs network namespaces: {reason}")
    size = options.size_mib << 20
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    with RegistryServer() as registry, FakeInternet(tls_hosts=True, ipv6=False) as internet:
        image = tools_image(registry)
        sessions: dict[str, tuple[GuestSession, str]] = {}
        try:
            for mode in MODES:
                sessions[mode] = boot(internet, image, mode)
            for round_number in range(options.rounds):
                for mode, (session, trust) in sessions.items():
                    figures = measure(session, trust, options.requests, size)
                    results[mode].append(figures)
                    print(f"round {round_number + 1} {mode}: {figures}", flush=True)
        finally:
            for session, _ in sessions.values():
                session.close()
    report(results)


def report(results: dict[str, list[dict[str, float]]]) -> None:
    medians = {
        mode: {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        for mode, runs in results.items()
    }
    keys = list(medians["relayed"])
    width = max(len(key) for key in keys) + 2
    print(f"\n{'tls':<14}" + "".join(f"{key:>{width}}" for key in keys))
    for mode, figures in medians.items():
        print(f"{mode:<14}" + "".join(f"{figures[key]:>{width}.2f}" for key in keys))
    ratios = {key: medians["intercepted"][key] / medians["relayed"][key] for key in keys}
    print("ratio intercepted / relayed: " + "  ".join(f"{k} {v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()

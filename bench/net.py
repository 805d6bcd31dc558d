"""Network benchmark: our user-space network against QEMU's slirp (``-netdev user``) and, if
Debian's ``passt`` is installed, passt, on the same kernel and image, interleaved in one run.

    ./dev bench net [--size-mib N] [--rounds N] [--mtus 1500,65520]

Everything runs inside the fake internet of ``tests/net`` (network namespaces, test hosts on
198.51.100.0/24), so nothing reaches a real network. Per network and round:

- download: the guest fetches N MiB from the HTTP test host;
- upload: the guest posts N MiB to it;
- connect: TCP connect + first byte of ``GET /``, mean of 20 (each a busybox ``nc``);
- dns: one A query through the gateway's resolver, mean of 20 (each a busybox ``nslookup``);
- published: the host sends N/4 MiB into the guest through a published port.

The guest's busybox processes are part of every figure alike; the ratios (ours / slirp,
ours / passt) are what to read: throughput above 1 and latency below 1 are better.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MSB_HOME", tempfile.mkdtemp(prefix="msb-bench-home-"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from net.internet import DNS_HOST, HTTP_HOST, FakeInternet, unavailable_reason
from net.sessions import GuestSession

GUEST_SINK_PORT = 9000
LATENCY_SAMPLES = 20
STEP_TIMEOUT_S = 300.0
"""Bound of one measured step: 256 MiB under TCG take about a minute; a network that moves
less than 1 MiB/s is reported as stalled."""
TIMEOUT_EXIT = 143
"""busybox ``timeout`` kills with SIGTERM."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def networks(mtus: list[int]) -> dict[str, dict[str, str]]:
    """Name → the supervisor's environment for that network."""
    chosen = {f"ours-{mtu}": {"MSB_NET_MTU": str(mtu)} for mtu in mtus}
    chosen["slirp"] = {"MSB_NET_BASELINE": "slirp"}
    if shutil.which("passt"):
        chosen["passt"] = {"MSB_NET_BASELINE": "passt", "MSB_NET_MTU": "65520"}
    return chosen


class Stalled(RuntimeError):
    """A step did not finish within its bound: the network stalled."""


def timed(session: GuestSession, script: str) -> float:
    started = time.perf_counter()
    reply = session.sh(
        f"timeout {int(STEP_TIMEOUT_S)} sh -c {shell_quote(script)}", timeout_s=STEP_TIMEOUT_S + 30
    )
    elapsed = time.perf_counter() - started
    if reply["exit_code"] == TIMEOUT_EXIT:
        raise Stalled(f"{script[:60]!r} did not finish within {STEP_TIMEOUT_S:.0f} s")
    if reply["exit_code"] != 0:
        raise RuntimeError(f"{script!r} failed: {reply}")
    return elapsed


def shell_quote(script: str) -> str:
    return "'" + script.replace("'", "'\\''") + "'"


def measure(session: GuestSession, size: int, host_port: int, figures: dict[str, float]) -> None:
    """Fills ``figures`` step by step, so a network that stalls keeps what it did."""
    mib = size / (1 << 20)
    request = f"printf 'GET /bytes/{size} HTTP/1.0\\r\\n\\r\\n'"
    figures["download MiB/s"] = mib / timed(session, f"{request} | nc {HTTP_HOST} 80 | wc -c")
    post = f"printf 'POST /upload HTTP/1.0\\r\\nContent-Length: {size}\\r\\n\\r\\n'"
    upload = timed(session, f"({post}; head -c {size} /dev/zero) | nc {HTTP_HOST} 80 | wc -c")
    figures["upload MiB/s"] = mib / upload
    get = "printf 'GET / HTTP/1.0\\r\\n\\r\\n'"
    connects = timed(
        session,
        f"for i in $(seq {LATENCY_SAMPLES}); do {get} | nc {HTTP_HOST} 80 | head -c 1 "
        ">/dev/null; done",
    )
    figures["connect ms"] = connects / LATENCY_SAMPLES * 1000
    lookups = timed(
        session,
        f"for i in $(seq {LATENCY_SAMPLES}); do nslookup public.test >/dev/null; done",
    )
    figures["dns ms"] = lookups / LATENCY_SAMPLES * 1000
    figures["published MiB/s"] = mib / 4 / publish_into(session, size // 4, host_port)


def publish_into(session: GuestSession, size: int, host_port: int) -> float:
    """Seconds until ``size`` bytes pushed from the host through the published port have all
    been counted in the guest (a network that accepts first, as slirp does, takes the bytes
    long before the guest has them)."""
    session.sh(
        f"setsid sh -c 'nc -l -p {GUEST_SINK_PORT} | wc -c > /tmp/sink.part && "
        "mv /tmp/sink.part /tmp/sink' >/dev/null 2>&1 </dev/null & sleep 1"
    )
    started = time.perf_counter()
    reply = session.ok("push", STEP_TIMEOUT_S + 30, address="127.0.0.1", port=host_port, size=size)
    counted = session.sh(
        "while [ ! -e /tmp/sink ]; do sleep 0.05; done; cat /tmp/sink", timeout_s=STEP_TIMEOUT_S
    )
    elapsed = time.perf_counter() - started
    if reply.get("sent") != size or counted["stdout"].strip() != str(size):
        raise RuntimeError(f"published port push failed: {reply} {counted}")
    return elapsed


def boot(internet: FakeInternet, name: str, env: dict[str, str], host_port: int) -> GuestSession:
    network = {
        "policy": "public_only",
        "dns": {"nameservers": [DNS_HOST]},
        "ports": [
            {"host_address": "127.0.0.1", "host_port": host_port, "guest_port": GUEST_SINK_PORT}
        ],
    }
    return GuestSession(internet, f"bench-{name}", network=network, env={**os.environ, **env})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--mtus", default="1500,65520")
    parser.add_argument("--only", default="", help="comma-separated networks to run")
    options = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        sys.exit(f"net benchmark needs network namespaces: {reason}")
    size = options.size_mib << 20
    chosen = networks([int(mtu) for mtu in options.mtus.split(",")])
    if options.only:
        chosen = {name: env for name, env in chosen.items() if name in options.only.split(",")}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in chosen}
    stalled: dict[str, str] = {}
    with FakeInternet(pin_resolver=True) as internet:
        for round_number in range(options.rounds):
            for name, env in chosen.items():
                if name in stalled:
                    continue
                host_port = free_port()
                session = boot(internet, name, env, host_port)
                figures: dict[str, float] = {}
                results[name].append(figures)
                try:
                    measure(session, size, host_port, figures)
                except Stalled as error:
                    stalled[name] = str(error)
                    print(f"round {round_number + 1} {name}: {figures}, then stalled: {error}")
                    continue
                finally:
                    session.close()
                print(f"round {round_number + 1} {name}: {results[name][-1]}", flush=True)
    report(results)
    for name, reason in stalled.items():
        print(f"{name}: stalled ({reason}); the figures before the stall are shown")


def report(results: dict[str, list[dict[str, float]]]) -> None:
    medians = {
        name: {key: statistics.median(run[key] for run in runs if key in run) for key in runs[0]}
        for name, runs in results.items()
        if runs and runs[0]
    }
    keys = list(next(iter(medians.values())))
    print(f"\n{'network':<14}" + "".join(f"{key:>17}" for key in keys))
    for name, figures in medians.items():
        cells = (f"{figures[key]:>17.2f}" if key in figures else f"{'-':>17}" for key in keys)
        print(f"{name:<14}" + "".join(cells))
    ours = [name for name in medians if name.startswith("ours-")]
    for baseline in ("slirp", "passt"):
        if baseline not in medians:
            continue
        for name in ours:
            shared = [key for key in keys if key in medians[baseline] and key in medians[name]]
            ratios = {key: medians[name][key] / medians[baseline][key] for key in shared}
            text = "  ".join(f"{key} {value:.2f}" for key, value in ratios.items())
            print(f"ratio {name} / {baseline}: {text}")


if __name__ == "__main__":
    main()

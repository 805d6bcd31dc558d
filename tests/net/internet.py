"""A fake internet in two network namespaces, so network tests never touch a real network.

``msbt-host-<id>`` is where a test runs the SDK, supervisor and QEMU: its only links are
``lo`` and a veth to ``msbt-inet-<id>``, and its default route goes through that veth.
``msbt-inet-<id>`` owns the test hosts (public ones in 198.51.100.0/24 and 203.0.113.0/24,
a private one in 10.77.0.0/16) on its loopback, has no route onwards and does not forward,
so whatever leaves the host namespace ends there.

With ``ipv6`` (the default) the veth has IPv6 addresses too and the host namespace an IPv6
default route through it, so sandboxes there get IPv6; the IPv6 test hosts are in the
documentation range 2001:db8::/32 (public) and in fd00::/8 (private, inside fc00::/7).

With ``tls_hosts``, both public test hosts also serve HTTPS on port 443: ``secure.test`` (and
``bypassed.test`` and ``elsewhere.test``, the same server) with a certificate of the fake
internet's test CA, which a test passes to the sandbox as the upstream trust, and
``untrusted.test`` with one of a rogue CA nobody trusts. ``h2only.test``, on a host of its
own, speaks HTTP/2 alone (ALPN ``h2``; an HTTP/1.1 client is refused), with a certificate of
the test CA. The certificates are made with ``openssl`` in the workdir.

Before anything is sent, :meth:`FakeInternet.check_route` asks ``ip route get`` in the
sending namespace where the address leads, and refuses unless it is a host of ours. The
documentation range TEST-NET-1 is never used: on these machines it is the real local network.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from .certs import FakePki, make_test_pki

PREFIX = "msbt-"
HOST_NS_PREFIX = f"{PREFIX}host-"
INET_NS_PREFIX = f"{PREFIX}inet-"

HTTP_HOST = "198.51.100.10"
"""A public test host: HTTP on port 80, UDP echo on port 7."""
SECOND_HTTP_HOST = "203.0.113.10"
"""A second public test host in the other documentation range, HTTP on port 80."""
H2_ONLY_HOST = "198.51.100.20"
"""A public test host serving HTTPS on port 443 in HTTP/2 only (``tls_hosts``)."""
DNS_HOST = "198.51.100.53"
DEAD_DNS_HOST = "198.51.100.54"
"""A host of ours that runs no server: a nameserver that never answers."""
"""The test DNS server, UDP and TCP port 53."""
PRIVATE_HTTP_HOST = "10.77.0.10"
"""A "private network" host, HTTP on port 80: the default policy must deny it."""
HTTP_HOST_V6 = "2001:db8:6::10"
"""A public IPv6 test host, HTTP on port 80 and UDP echo on port 7."""
PRIVATE_HTTP_HOST_V6 = "fd00:77::10"
"""A "private network" IPv6 host (fc00::/7), HTTP on port 80: the default policy denies it."""
HTTP_PORT = 80
HTTPS_PORT = 443
UDP_ECHO_PORT = 7
DNS_PORT = 53

SECURE_NAME = "secure.test"
"""HTTPS on :data:`HTTP_HOST` with a certificate of the test CA (``tls_hosts``)."""
BYPASSED_NAME = "bypassed.test"
"""The same HTTPS server and certificate as :data:`SECURE_NAME`, for a name a test bypasses."""
ELSEWHERE_NAME = "elsewhere.test"
"""The same HTTPS server and certificate as :data:`SECURE_NAME`, for a name a secret may not
be sent to."""
TRUSTED_NAMES = (SECURE_NAME, BYPASSED_NAME, ELSEWHERE_NAME)
"""Every name the test CA's certificate of :data:`HTTP_HOST` holds."""
UNTRUSTED_NAME = "untrusted.test"
"""HTTPS on :data:`SECOND_HTTP_HOST` with a certificate of a CA nobody trusts."""
H2_ONLY_NAME = "h2only.test"
"""HTTPS in HTTP/2 only on :data:`H2_ONLY_HOST`, with a certificate of the test CA."""
TLS_ZONE: dict[str, list[str]] = {
    SECURE_NAME: [HTTP_HOST],
    BYPASSED_NAME: [HTTP_HOST],
    ELSEWHERE_NAME: [HTTP_HOST],
    UNTRUSTED_NAME: [SECOND_HTTP_HOST],
    H2_ONLY_NAME: [H2_ONLY_HOST],
}

# The link between the namespaces: a /30 of its own so no test host is on-link.
HOST_LINK_ADDRESS = "198.51.100.249"
INET_LINK_ADDRESS = "198.51.100.250"
LINK_PREFIX = 30
HOST_LINK_ADDRESS_V6 = "2001:db8:ffff::1"
INET_LINK_ADDRESS_V6 = "2001:db8:ffff::2"
LINK_PREFIX_V6 = 64
HOST_VETH = "inet0"
"""The host namespace's end of the veth (named inside the namespace, so never clashing)."""
INET_VETH = "host0"

DEFAULT_ZONE: dict[str, list[str]] = {
    "public.test": [HTTP_HOST],
    "second.test": [SECOND_HTTP_HOST],
    "private.test": [PRIVATE_HTTP_HOST],
}
"""Names every fake internet answers; a test's ``zone`` adds to or overrides them."""

START_TIMEOUT_S = 10.0
IP_COMMAND_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
RUN_TIMEOUT_S = 60.0

PR_SET_PDEATHSIG = 1
TESTS_DIR = Path(__file__).resolve().parents[1]


class FakeInternetError(RuntimeError):
    """The fake internet could not be built, or a server in it did not start."""


class RouteError(RuntimeError):
    """An address does not lead into our own namespaces: nothing is sent to it."""


def unavailable_reason() -> str | None:
    """Why the fake internet cannot be built here, or ``None`` when it can."""
    if os.geteuid() != 0:
        return "the fake internet needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "`ip` is missing: install the Debian package iproute2"
    probe = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=IP_COMMAND_TIMEOUT_S
    )
    if probe.returncode != 0:
        return f"`ip netns` is unavailable: {probe.stderr.strip()}"
    return None


def _die_with_parent() -> None:
    """Runs in the child before exec: a killed pytest must not leave servers behind."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def ip(*arguments: str, namespace: str | None = None) -> str:
    """Run ``ip [-n NS] ARGS`` and return its output; raises :class:`FakeInternetError`."""
    command = ["ip", *(["-n", namespace] if namespace else []), *arguments]
    result = subprocess.run(command, capture_output=True, text=True, timeout=IP_COMMAND_TIMEOUT_S)
    if result.returncode != 0:
        raise FakeInternetError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
    return result.stdout


def route_get(namespace: str | None, address: str) -> dict[str, Any]:
    """The kernel's route to ``address`` from ``namespace`` (``ip -j route get``)."""
    try:
        output = ip("-j", "route", "get", address, namespace=namespace)
    except FakeInternetError as error:
        raise RouteError(
            f"no route to {address} in {namespace or 'the root namespace'}: {error}"
        ) from error
    routes: list[dict[str, Any]] = json.loads(output)
    if len(routes) != 1:
        raise RouteError(f"`ip route get {address}` gave {len(routes)} routes")
    return routes[0]


def namespace_pids(namespace: str) -> list[int]:
    """Processes whose network namespace is ``namespace``."""
    try:
        output = ip("netns", "pids", namespace)
    except FakeInternetError:
        return []
    return [int(pid) for pid in output.split()]


def _kill_namespace(namespace: str) -> None:
    """Kill what still runs in ``namespace`` (all of it ours), then delete it."""
    for pid in namespace_pids(namespace):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while namespace_pids(namespace) and time.monotonic() < deadline:
        time.sleep(0.02)
    with contextlib.suppress(FakeInternetError):
        ip("netns", "delete", namespace)


def _owner_pid(namespace: str) -> int | None:
    """The pid in ``msbt-host-<pid>-<random>``, or ``None`` for a name not of that shape."""
    for prefix in (HOST_NS_PREFIX, INET_NS_PREFIX):
        if namespace.startswith(prefix):
            owner = namespace[len(prefix) :].split("-", 1)[0]
            return int(owner) if owner.isdigit() else None
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def our_namespaces() -> list[str]:
    """Every namespace with our prefix, from this run or any other."""
    names = [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]
    return [name for name in names if name.startswith(PREFIX)]


def remove_leftovers() -> list[str]:
    """Delete our namespaces whose creating process is gone (a crashed or killed run).

    Namespaces of a live process are another run in parallel and are left alone.
    """
    removed = []
    for namespace in our_namespaces():
        owner = _owner_pid(namespace)
        if owner is not None and not _pid_alive(owner):
            _kill_namespace(namespace)
            removed.append(namespace)
    return removed


@dataclass
class Server:
    """One server process in the internet namespace and the files it writes."""

    kind: str
    address: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    def events(self) -> list[dict[str, Any]]:
        """What the server logged so far, one dict per request or query."""
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line]


@dataclass
class FakeInternet:
    """The two namespaces, their veth and the test hosts, torn down on exit.

    ``zone`` adds DNS records to :data:`DEFAULT_ZONE` (and :data:`TLS_ZONE` with
    ``tls_hosts``); names in ``truncate`` get a truncated (TC) answer over UDP and the full
    answer over TCP. The HTTP servers log each request's line and headers; the HTTPS ones
    (servers ``https`` and ``untrusted-https``) also the SNI, and failed handshakes; the
    HTTP/2-only one (server ``h2only``) its pseudo-headers and headers, and refused clients.
    """

    zone: dict[str, list[str]] = field(default_factory=dict)
    truncate: set[str] = field(default_factory=set)
    #: Give the host namespace a resolv.conf naming the test DNS server (``ip netns exec``
    #: mounts ``/etc/netns/NAME/resolv.conf``), for networks that read the host's resolvers.
    pin_resolver: bool = False
    ipv6: bool = True
    #: More ports the first public test host serves HTTP on (server ``http-PORT``).
    http_ports: tuple[int, ...] = ()
    #: HTTPS on port 443 of both public test hosts (see the module doc).
    tls_hosts: bool = False
    run_id: str = field(default_factory=lambda: f"{os.getpid()}-{secrets.token_hex(3)}")
    workdir: Path | None = None
    servers: dict[str, Server] = field(default_factory=dict)
    #: The test CA and the HTTPS hosts' certificates, once started with ``tls_hosts``.
    pki: FakePki | None = None
    _created: list[str] = field(default_factory=list)

    @property
    def host_ns(self) -> str:
        return f"{HOST_NS_PREFIX}{self.run_id}"

    @property
    def inet_ns(self) -> str:
        return f"{INET_NS_PREFIX}{self.run_id}"

    @property
    def test_hosts(self) -> tuple[str, ...]:
        v4 = (
            HTTP_HOST,
            SECOND_HTTP_HOST,
            H2_ONLY_HOST,
            DNS_HOST,
            DEAD_DNS_HOST,
            PRIVATE_HTTP_HOST,
        )
        return v4 + self.test_hosts_v6

    @property
    def test_hosts_v6(self) -> tuple[str, ...]:
        return (HTTP_HOST_V6, PRIVATE_HTTP_HOST_V6) if self.ipv6 else ()

    @property
    def records(self) -> dict[str, list[str]]:
        return {**DEFAULT_ZONE, **(TLS_ZONE if self.tls_hosts else {}), **self.zone}

    @property
    def test_ca_cert(self) -> Path:
        """The PEM of the CA that signed the trusted HTTPS host's certificate."""
        assert self.pki is not None, "start a FakeInternet(tls_hosts=True) first"
        return self.pki.ca_cert

    # --- building -------------------------------------------------------------------------

    def start(self) -> FakeInternet:
        remove_leftovers()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{self.run_id}-"))
        try:
            if self.tls_hosts:
                self.pki = make_test_pki(
                    self.workdir / "pki",
                    trusted_names=list(TRUSTED_NAMES),
                    trusted_address=HTTP_HOST,
                    untrusted_names=[UNTRUSTED_NAME],
                    untrusted_address=SECOND_HTTP_HOST,
                    h2_only_names=[H2_ONLY_NAME],
                    h2_only_address=H2_ONLY_HOST,
                )
            self._build_namespaces()
            self._start_servers()
        except BaseException:
            self.stop()
            raise
        return self

    def _build_namespaces(self) -> None:
        for namespace in (self.host_ns, self.inet_ns):
            ip("netns", "add", namespace)
            self._created.append(namespace)
            ip("link", "set", "lo", "up", namespace=namespace)
        host, inet = self.host_ns, self.inet_ns
        ip(
            *f"link add {HOST_VETH} type veth peer name {INET_VETH} netns {inet}".split(),
            namespace=host,
        )
        ip(*f"addr add {HOST_LINK_ADDRESS}/{LINK_PREFIX} dev {HOST_VETH}".split(), namespace=host)
        ip(*f"addr add {INET_LINK_ADDRESS}/{LINK_PREFIX} dev {INET_VETH}".split(), namespace=inet)
        ip("link", "set", HOST_VETH, "up", namespace=host)
        ip("link", "set", INET_VETH, "up", namespace=inet)
        ip(*f"route add default via {INET_LINK_ADDRESS} dev {HOST_VETH}".split(), namespace=host)
        if self.ipv6:
            self._add_ipv6_link()
        for address in self.test_hosts:
            length = 128 if ":" in address else 32
            # `nodad`: usable at once rather than after duplicate address detection.
            nodad = ["nodad"] if length == 128 else []
            ip("addr", "add", f"{address}/{length}", "dev", "lo", *nodad, namespace=self.inet_ns)
        if self.pin_resolver:
            self._netns_etc.mkdir(parents=True, exist_ok=True)
            (self._netns_etc / "resolv.conf").write_text(f"nameserver {DNS_HOST}\n")
        self._verify_isolation()

    @property
    def _netns_etc(self) -> Path:
        return Path("/etc/netns") / self.host_ns

    def _add_ipv6_link(self) -> None:
        host, inet = self.host_ns, self.inet_ns
        for namespace, device, address in (
            (host, HOST_VETH, HOST_LINK_ADDRESS_V6),
            (inet, INET_VETH, INET_LINK_ADDRESS_V6),
        ):
            ip(
                "addr",
                "add",
                f"{address}/{LINK_PREFIX_V6}",
                "dev",
                device,
                "nodad",
                namespace=namespace,
            )
        ip(
            "-6",
            "route",
            "add",
            "default",
            "via",
            INET_LINK_ADDRESS_V6,
            "dev",
            HOST_VETH,
            namespace=host,
        )

    def _verify_isolation(self) -> None:
        """The host namespace has exactly ``lo`` and our veth, and the test hosts route in."""
        links = json.loads(ip("-j", "link", "show", namespace=self.host_ns))
        names = sorted(link["ifname"] for link in links)
        if names != sorted(["lo", HOST_VETH]):
            raise FakeInternetError(f"{self.host_ns} has unexpected links: {names}")
        for address in self.test_hosts:
            self.check_route(self.host_ns, address)

    def _server_command(self, kind: str, address: str, port: int, name: str) -> list[str]:
        assert self.workdir is not None
        files = self.workdir / name
        command = ["ip", "netns", "exec", self.inet_ns, sys.executable, "-m"]
        if kind == "h2":
            assert self.pki is not None
            command += ["net.h2host", "--cert", str(self.pki.h2_only.cert)]
            command += ["--key", str(self.pki.h2_only.key)]
        else:
            command += ["net.hosts", kind]
        command += ["--bind", address, "--port", str(port)]
        command += ["--log", f"{files}.log", "--ready", f"{files}.ready"]
        if kind == "dns":
            zone_file = self.workdir / "zone.json"
            zone_file.write_text(
                json.dumps({"records": self.records, "truncate": sorted(self.truncate)})
            )
            command += ["--zone", str(zone_file)]
        if kind == "https":
            assert self.pki is not None
            certificate = self.pki.trusted if address == HTTP_HOST else self.pki.untrusted
            command += ["--cert", str(certificate.cert), "--key", str(certificate.key)]
        return command

    def _start_server(self, name: str, kind: str, address: str, port: int) -> None:
        assert self.workdir is not None
        self.check_route(self.inet_ns, address)
        stderr = (self.workdir / f"{name}.stderr").open("wb")
        try:
            process = subprocess.Popen(
                self._server_command(kind, address, port, name),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(TESTS_DIR)},
                preexec_fn=_die_with_parent,
            )
        finally:
            stderr.close()
        self.servers[name] = Server(kind, address, port, self.workdir / f"{name}.log", process)

    def _start_servers(self) -> None:
        self._start_server("http", "http", HTTP_HOST, HTTP_PORT)
        self._start_server("second-http", "http", SECOND_HTTP_HOST, HTTP_PORT)
        self._start_server("private-http", "http", PRIVATE_HTTP_HOST, HTTP_PORT)
        self._start_server("dns", "dns", DNS_HOST, DNS_PORT)
        self._start_server("udp-echo", "udp-echo", HTTP_HOST, UDP_ECHO_PORT)
        for port in self.http_ports:
            self._start_server(f"http-{port}", "http", HTTP_HOST, port)
        if self.tls_hosts:
            self._start_server("https", "https", HTTP_HOST, HTTPS_PORT)
            self._start_server("untrusted-https", "https", SECOND_HTTP_HOST, HTTPS_PORT)
            self._start_server("h2only", "h2", H2_ONLY_HOST, HTTPS_PORT)
        if self.ipv6:
            self._start_server("http-v6", "http", HTTP_HOST_V6, HTTP_PORT)
            self._start_server("private-http-v6", "http", PRIVATE_HTTP_HOST_V6, HTTP_PORT)
            self._start_server("udp-echo-v6", "udp-echo", HTTP_HOST_V6, UDP_ECHO_PORT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.workdir is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = dict(self.servers)
        while waiting and time.monotonic() < deadline:
            for name, server in list(waiting.items()):
                if (self.workdir / f"{name}.ready").exists():
                    del waiting[name]
                elif server.process.poll() is not None:
                    raise FakeInternetError(
                        f"server {name} exited with {server.process.returncode}:\n"
                        + self.server_output(name)
                    )
            time.sleep(0.02)
        if waiting:
            raise FakeInternetError(f"servers not ready in {START_TIMEOUT_S}s: {list(waiting)}")

    def server_output(self, name: str) -> str:
        """A server's stdout and stderr, for diagnosing a failed start."""
        assert self.workdir is not None
        return (self.workdir / f"{name}.stderr").read_text(errors="replace")[-4000:]

    # --- using ----------------------------------------------------------------------------

    def check_route(self, namespace: str | None, address: str) -> None:
        """Raise :class:`RouteError` unless ``address`` sent from ``namespace`` stays ours.

        Accepted: an address local to one of our namespaces; from the host namespace, an
        address that leaves through our veth and is local in the internet namespace (which
        forwards nothing); from any namespace, loopback. Only ``ip route get`` runs here.
        """
        target = ipaddress.ip_address(address)
        route = route_get(namespace, address)
        if target.is_loopback and route.get("dev") == "lo":
            return
        if namespace not in (self.host_ns, self.inet_ns):
            raise RouteError(f"{address} from {namespace or 'the root namespace'} leaves ours")
        if route.get("type") == "local":
            return
        if namespace == self.host_ns and route.get("dev") == HOST_VETH:
            peer = route_get(self.inet_ns, address)
            if peer.get("type") == "local":
                return
        raise RouteError(
            f"{address} from {namespace} does not lead to a host of ours: {json.dumps(route)}"
        )

    def _host_command(self, command: Sequence[str], reaches: Iterable[str]) -> list[str]:
        for address in reaches:
            self.check_route(self.host_ns, address)
        return ["ip", "netns", "exec", self.host_ns, *command]

    def run_in_host(
        self,
        command: Sequence[str],
        *,
        reaches: Iterable[str] = (),
        timeout: float = RUN_TIMEOUT_S,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the host namespace after checking the route to each of
        ``reaches``; the probe modules of ``tests/net`` are importable as ``net.*``."""
        return subprocess.run(
            self._host_command(command, reaches),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self._env(env),
            stdin=subprocess.DEVNULL,
        )

    def popen_in_host(
        self,
        command: Sequence[str],
        *,
        reaches: Iterable[str] = (),
        env: dict[str, str] | None = None,
        **popen_arguments: Any,
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` in the host namespace; it is killed with the namespace at exit."""
        return subprocess.Popen(
            self._host_command(command, reaches),
            env=self._env(env),
            preexec_fn=_die_with_parent,
            **popen_arguments,
        )

    def _env(self, env: dict[str, str] | None) -> dict[str, str]:
        base = dict(os.environ if env is None else env)
        paths = [str(TESTS_DIR), *filter(None, [base.get("PYTHONPATH")])]
        return {**base, "PYTHONPATH": os.pathsep.join(paths)}

    def probe(self, *arguments: str, reaches: str) -> dict[str, Any]:
        """Run ``python -m net.probe ARGS`` in the host namespace and parse its JSON."""
        result = self.run_in_host(
            [sys.executable, "-m", "net.probe", *arguments], reaches=[reaches], timeout=15
        )
        if result.returncode != 0:
            raise FakeInternetError(f"probe {arguments} failed:\n{result.stderr}")
        parsed: dict[str, Any] = json.loads(result.stdout)
        return parsed

    def dns_queries(self) -> list[dict[str, Any]]:
        """Every query the test DNS server received, in order."""
        return self.servers["dns"].events()

    # --- tearing down ---------------------------------------------------------------------

    def stop(self) -> None:
        """Kill every server and process in our namespaces, delete them; safe to call twice."""
        for server in self.servers.values():
            if server.process.poll() is None:
                server.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.process.wait(timeout=STOP_TIMEOUT_S)
        created, self._created = self._created, []
        for namespace in reversed(created):
            _kill_namespace(namespace)
        shutil.rmtree(self._netns_etc, ignore_errors=True)
        workdir, self.workdir, self.pki = self.workdir, None, None
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)

    def __enter__(self) -> FakeInternet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""The fake internet's servers, each run as its own process inside the internet namespace.

``python -m net.hosts http|https|dns|udp-echo --bind ADDR --log FILE --ready FILE [...]``
(with ``tests/`` on ``PYTHONPATH``). Every request is appended to ``--log`` as one JSON line
so a test can prove what arrived, and also that nothing did. ``--ready`` is written once the
sockets are bound, so the harness waits for a file instead of guessing with sleeps.

``https`` is the HTTP host behind TLS (``--cert``, ``--key``: PEM files): each request's
event also names the SNI the client sent, and a handshake that fails is an event too
(``handshake_error``), so a test sees a client that refused the certificate. The HTTP/2-only
host is :mod:`net.h2host`, a process of its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import socketserver
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import dnswire

CHUNK = 64 * 1024
MAX_BODY = 1 << 31
"""Largest /bytes/N or upload served: bounds what a buggy test can make the host do."""
UDP_MAX = 65535
STREAMED_PAUSE_S = 0.002
"""How long ``GET /streamed`` waits between its head and its body."""


class EventLog:
    """An append-only JSON-lines file shared by a server's threads.

    Every server writes its entry before it replies, so a client holding the reply can read
    the entry without waiting or polling.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def write(self, **event: Any) -> None:
        line = json.dumps(event, sort_keys=True) + "\n"
        with self._lock, self._path.open("a") as file:
            file.write(line)


def pattern_bytes(offset: int, length: int) -> bytes:
    """Bytes of a repeating 0..250 pattern: not all zeros, so a lost or shifted chunk shows."""
    return bytes((offset + index) % 251 for index in range(length))


# The pattern repeats every 251 bytes, so one precomputed block serves every offset.
_PATTERN_BLOCK = pattern_bytes(0, 251 + CHUNK)


def pattern_chunk(offset: int, length: int) -> bytes:
    """``pattern_bytes(offset, length)`` for ``length <= CHUNK``, without recomputing."""
    start = offset % 251
    return _PATTERN_BLOCK[start : start + length]


class HttpHandler(BaseHTTPRequestHandler):
    """``GET /`` names the host, ``GET /bytes/N`` streams N bytes, ``GET /streamed`` sends its
    head and then, a moment later, its body (as a server that streams its answer writes it),
    ``POST`` hashes the body."""

    server: HttpHost
    protocol_version = "HTTP/1.1"
    # An answer is written as its head, then its body: with Nagle's algorithm the body waits
    # for the client's delayed ACK of the head, 40 ms on every kept-alive request (measured:
    # 44 ms per HTTPS GET on one connection from the host namespace, 0.4 ms without).
    # Servers of the real internet turn it off on their connections, as this does.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        # The JSON log replaces the default stderr access log.
        return

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _log_request(self, **details: Any) -> None:
        """The request line, the headers in order (a list of pairs) and ``details``."""
        self.server.log.write(
            method=self.command,
            path=self.path,
            client=self.client_address[0],
            request_line=self.requestline,
            headers=[[name, value] for name, value in self.headers.items()],
            **self.server.connection_details(self.connection),
            **details,
        )

    def do_GET(self) -> None:
        self._log_request(host=self.headers.get("Host"))
        if self.path == "/":
            self._reply(200, f"hello from {self.server.name}\n".encode())
        elif self.path.startswith("/bytes/") and self.path[7:].isdigit():
            self._send_pattern(int(self.path[7:]))
        elif self.path == "/streamed":
            self._send_streamed(f"streamed by {self.server.name}\n".encode())
        else:
            self._reply(404, b"not found\n")

    def _send_pattern(self, length: int) -> None:
        if length > MAX_BODY:
            self._reply(413, b"too large\n")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        for offset in range(0, length, CHUNK):
            self.wfile.write(pattern_chunk(offset, min(CHUNK, length - offset)))

    def _send_streamed(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        time.sleep(STREAMED_PAUSE_S)
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        if not 0 <= length <= MAX_BODY:
            self._reply(413, b"too large\n")
            return
        digest = hashlib.sha256()
        remaining = length
        while remaining:
            chunk = self.rfile.read(min(CHUNK, remaining))
            if not chunk:
                break
            digest.update(chunk)
            remaining -= len(chunk)
        received = length - remaining
        self._log_request(bytes=received)
        reply = {"bytes": received, "sha256": digest.hexdigest()}
        self._reply(200, json.dumps(reply).encode(), "application/json")

    do_PUT = do_POST


class HttpHost(ThreadingHTTPServer):
    """One public or private test host on ``ADDR:port``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], name: str, log: EventLog) -> None:
        self.name = name
        self.log = log
        self.address_family = _family(address[0])
        super().__init__(address, HttpHandler)

    def connection_details(self, connection: socket.socket) -> dict[str, Any]:
        """What a request's event says of its connection besides the request itself."""
        return {}


class HttpsHost(HttpHost):
    """The HTTP host behind TLS (HTTP/1.1 only, as its ALPN says). The handshake runs in the
    request's own thread, so a client that stalls or fails it holds up no other client."""

    def __init__(
        self, address: tuple[str, int], name: str, log: EventLog, cert: Path, key: Path
    ) -> None:
        super().__init__(address, name, log)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.context.set_alpn_protocols(["http/1.1"])
        self.context.sni_callback = remember_sni

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            self.log.write(client=client_address[0], handshake_error=str(error))
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def connection_details(self, connection: socket.socket) -> dict[str, Any]:
        assert isinstance(connection, ssl.SSLSocket)
        return {
            "sni": getattr(connection, "sni", None),
            "alpn": connection.selected_alpn_protocol(),
        }


def remember_sni(
    connection: ssl.SSLSocket | ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
) -> None:
    """Keeps the name the client asked for on its connection, for the request's event."""
    setattr(connection, "sni", server_name)  # noqa: B010 (an attribute of our own)


class DnsZone:
    """Answers from the test's zone: names map to addresses, names outside it are NXDOMAIN."""

    def __init__(self, records: dict[str, list[str]], truncate: set[str], log: EventLog):
        self.records = {name.lower().rstrip("."): addrs for name, addrs in records.items()}
        self.truncate = {name.lower().rstrip(".") for name in truncate}
        self.log = log

    def answer(self, query: bytes, client: str, transport: str) -> bytes | None:
        try:
            question = dnswire.decode_question(query)
        except dnswire.DnsFormatError as error:
            self.log.write(transport=transport, client=client, error=str(error))
            return dnswire.encode_error(query, dnswire.RCODE_FORMERR)
        truncated = transport == "udp" and question.name in self.truncate
        self.log.write(
            transport=transport,
            client=client,
            name=question.name,
            qtype=question.qtype,
            truncated=truncated,
        )
        addresses = self.records.get(question.name)
        return dnswire.encode_answer(question, addresses, truncated=truncated)


def serve_dns_udp(sock: socket.socket, zone: DnsZone) -> None:
    while True:
        query, client = sock.recvfrom(UDP_MAX)
        reply = zone.answer(query, client[0], "udp")
        if reply is not None:
            sock.sendto(reply, client)


class DnsTcpHandler(socketserver.StreamRequestHandler):
    """Length-prefixed messages (RFC 1035 §4.2.2) until the client closes."""

    server: DnsTcpServer

    def handle(self) -> None:
        while True:
            prefix = self.rfile.read(2)
            if len(prefix) < 2:
                return
            (length,) = struct.unpack("!H", prefix)
            query = self.rfile.read(length)
            reply = self.server.zone.answer(query, self.client_address[0], "tcp")
            if reply is None:
                return
            self.wfile.write(struct.pack("!H", len(reply)) + reply)


class DnsTcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], zone: DnsZone) -> None:
        self.zone = zone
        super().__init__(address, DnsTcpHandler)


def serve_udp_echo(sock: socket.socket, log: EventLog) -> None:
    while True:
        data, client = sock.recvfrom(UDP_MAX)
        log.write(client=client[0], bytes=len(data))
        sock.sendto(data, client)


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _udp_socket(address: str, port: int) -> socket.socket:
    sock = socket.socket(_family(address), socket.SOCK_DGRAM)
    sock.bind((address, port))
    return sock


def run(arguments: argparse.Namespace) -> None:
    log = EventLog(Path(arguments.log))
    if arguments.kind in ("http", "https"):
        address = (arguments.bind, arguments.port)
        http = (
            HttpsHost(address, arguments.bind, log, Path(arguments.cert), Path(arguments.key))
            if arguments.kind == "https"
            else HttpHost(address, arguments.bind, log)
        )
        Path(arguments.ready).write_text("ready\n")
        http.serve_forever()
    elif arguments.kind == "dns":
        config = json.loads(Path(arguments.zone).read_text())
        zone = DnsZone(config["records"], set(config["truncate"]), log)
        udp = _udp_socket(arguments.bind, arguments.port)
        tcp = DnsTcpServer((arguments.bind, arguments.port), zone)
        threading.Thread(target=tcp.serve_forever, daemon=True).start()
        Path(arguments.ready).write_text("ready\n")
        serve_dns_udp(udp, zone)
    else:
        udp = _udp_socket(arguments.bind, arguments.port)
        Path(arguments.ready).write_text("ready\n")
        serve_udp_echo(udp, log)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["http", "https", "dns", "udp-echo"])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--zone", help="JSON file: {records: {name: [addr]}, truncate: [name]}")
    parser.add_argument("--cert", help="https: the server's certificate chain, PEM")
    parser.add_argument("--key", help="https: the server's private key, PEM")
    return parser.parse_args(argv)


if __name__ == "__main__":
    run(parse_arguments())

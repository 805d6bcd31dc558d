"""The fake internet's HTTP/2-only HTTPS host, run as its own process in the internet namespace.

``python -m net.h2host --bind ADDR --port N --cert PEM --key PEM --log FILE --ready FILE``
(with ``tests/`` on ``PYTHONPATH``). Its TLS offers ALPN ``h2`` alone; a client that does not
agree on ``h2`` (an HTTP/1.1 client) is logged as ``refused`` and its connection closed before
a byte of it is read, as an HTTP/2-only server does. Each request's event holds every header
in order, the pseudo-headers first (a list of pairs, so a test can check a header the gateway
replaced), the SNI, the ALPN and the body's size; the answer is JSON: the method, the path,
the body's size and its sha256. The protocol itself is the ``h2`` library's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import socketserver
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from .hosts import EventLog, remember_sni

H2 = "h2"
RECEIVE_SIZE = 65536
IDLE_TIMEOUT_S = 60.0
"""A client silent this long is dropped, so a stalled test leaves no thread behind forever."""


@dataclass
class Stream:
    """One request as it arrives: its headers, then its body, hashed on the way."""

    headers: list[tuple[str, str]]
    digest: Any = field(default_factory=hashlib.sha256)
    received: int = 0

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key == name), None)


class H2Handler(socketserver.BaseRequestHandler):
    """One TLS connection: the handshake, then HTTP/2 until the client or an error ends it."""

    server: H2Host
    request: socket.socket

    def handle(self) -> None:
        self.request.settimeout(IDLE_TIMEOUT_S)
        try:
            tls = self.server.context.wrap_socket(self.request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            self.server.log.write(client=self.client_address[0], handshake_error=str(error))
            return
        with tls:
            alpn = tls.selected_alpn_protocol()
            if alpn != H2:
                self.server.log.write(
                    client=self.client_address[0], sni=_sni(tls), alpn=alpn, refused="not h2"
                )
                return
            try:
                self._serve(tls)
            except (OSError, h2.exceptions.ProtocolError) as error:
                self.server.log.write(client=self.client_address[0], connection_error=str(error))

    def _serve(self, tls: ssl.SSLSocket) -> None:
        connection = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        connection.initiate_connection()
        tls.sendall(connection.data_to_send())
        streams: dict[int, Stream] = {}
        while data := tls.recv(RECEIVE_SIZE):
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ConnectionTerminated):
                    return
                self._on_event(connection, streams, tls, event)
            tls.sendall(connection.data_to_send())

    def _on_event(
        self,
        connection: h2.connection.H2Connection,
        streams: dict[int, Stream],
        tls: ssl.SSLSocket,
        event: h2.events.Event,
    ) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = [(str(name), str(value)) for name, value in event.headers or []]
            streams[event.stream_id] = Stream(headers)
        elif isinstance(event, h2.events.DataReceived):
            stream = streams[event.stream_id]
            stream.digest.update(event.data)
            stream.received += len(event.data)
            # Gives the window back at once, so a large upload is never held by flow control.
            connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            self._answer(connection, event.stream_id, streams.pop(event.stream_id), tls)
        elif isinstance(event, h2.events.StreamReset):
            streams.pop(event.stream_id, None)

    def _answer(
        self,
        connection: h2.connection.H2Connection,
        stream_id: int,
        stream: Stream,
        tls: ssl.SSLSocket,
    ) -> None:
        method, path = stream.header(":method"), stream.header(":path")
        self.server.log.write(
            client=self.client_address[0],
            sni=_sni(tls),
            alpn=H2,
            protocol="HTTP/2",
            method=method,
            path=path,
            authority=stream.header(":authority"),
            headers=[list(pair) for pair in stream.headers],
            bytes=stream.received,
        )
        body = json.dumps(
            {
                "host": self.server.name,
                "protocol": "HTTP/2",
                "method": method,
                "path": path,
                "bytes": stream.received,
                "sha256": stream.digest.hexdigest(),
            }
        ).encode()
        connection.send_headers(
            stream_id,
            [
                (":status", "200"),
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
            ],
        )
        connection.send_data(stream_id, body, end_stream=True)


def _sni(tls: ssl.SSLSocket) -> str | None:
    return getattr(tls, "sni", None)


class H2Host(socketserver.ThreadingTCPServer):
    """The HTTP/2-only host on ``ADDR:port``; each connection is served in its own thread."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], log: EventLog, cert: Path, key: Path) -> None:
        self.name = address[0]
        self.log = log
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        # h2 alone: a client offering only http/1.1 gets no ALPN, and is refused above.
        self.context.set_alpn_protocols([H2])
        self.context.sni_callback = remember_sni
        super().__init__(address, H2Handler)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True, help="the server's certificate chain, PEM")
    parser.add_argument("--key", required=True, help="the server's private key, PEM")
    parser.add_argument("--log", required=True)
    parser.add_argument("--ready", required=True)
    return parser.parse_args(argv)


def run(arguments: argparse.Namespace) -> None:
    log = EventLog(Path(arguments.log))
    server = H2Host(
        (arguments.bind, arguments.port), log, Path(arguments.cert), Path(arguments.key)
    )
    Path(arguments.ready).write_text("ready\n")
    server.serve_forever()


if __name__ == "__main__":
    run(parse_arguments())

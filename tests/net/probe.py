"""Clients for the fake internet's DNS and UDP echo hosts, run where a test needs them.

``python -m net.probe dns SERVER NAME [--tcp]`` and ``python -m net.probe udp-echo ADDR PORT
PAYLOAD`` print one JSON object. The harness runs them inside the host namespace (after its
route check), so they see the network exactly as a sandbox's supervisor there would.
"""

from __future__ import annotations

import argparse
import json
import secrets
import socket
import struct

from . import dnswire

DNS_PORT = 53
TIMEOUT_S = 3.0


def _receive_exactly(sock: socket.socket, length: int) -> bytes:
    data = b""
    while len(data) < length:
        chunk = sock.recv(length - len(data))
        if not chunk:
            raise ConnectionError("the DNS server closed the connection mid-answer")
        data += chunk
    return data


def dns_query(server: str, name: str, *, tcp: bool) -> dnswire.Reply:
    """One A query over UDP or TCP; raises on a timeout or an answer to another query."""
    query_id = secrets.randbelow(1 << 16)
    query = dnswire.encode_query(query_id, name)
    if tcp:
        with socket.create_connection((server, DNS_PORT), timeout=TIMEOUT_S) as sock:
            sock.sendall(struct.pack("!H", len(query)) + query)
            (length,) = struct.unpack("!H", _receive_exactly(sock, 2))
            answer = _receive_exactly(sock, length)
    else:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(TIMEOUT_S)
            sock.sendto(query, (server, DNS_PORT))
            answer, _ = sock.recvfrom(65535)
    reply = dnswire.decode_reply(answer)
    if reply.query_id != query_id:
        raise ConnectionError(f"answer to query {reply.query_id}, expected {query_id}")
    return reply


def udp_echo(address: str, port: int, payload: bytes) -> bytes:
    """What the echo host sends back for ``payload``."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.sendto(payload, (address, port))
        data, _ = sock.recvfrom(65535)
        return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    dns = commands.add_parser("dns")
    dns.add_argument("server")
    dns.add_argument("name")
    dns.add_argument("--tcp", action="store_true")
    echo = commands.add_parser("udp-echo")
    echo.add_argument("address")
    echo.add_argument("port", type=int)
    echo.add_argument("payload")
    arguments = parser.parse_args(argv)
    if arguments.command == "dns":
        reply = dns_query(arguments.server, arguments.name, tcp=arguments.tcp)
        print(json.dumps(reply.__dict__))
    else:
        data = udp_echo(arguments.address, arguments.port, arguments.payload.encode())
        print(json.dumps({"echo": data.decode(errors="replace")}))


if __name__ == "__main__":
    main()

"""The script the debian-tools guests of the network tests run for their checks (they have
python3, not nc), and the call that runs it."""

from __future__ import annotations

from .sessions import GuestSession

GUEST_PROBE = """
import ipaddress, os, socket, struct, sys, time
def connect(host, port):
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        return "connected"
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
def resolve(name, family="4"):
    kind = socket.AF_INET6 if family == "6" else socket.AF_INET
    try:
        return " ".join(sorted({a[4][0] for a in socket.getaddrinfo(name, 80, kind)}))
    except socket.gaierror as error:
        if error.errno == socket.EAI_NONAME:
            return "nxdomain"
        # A name with no address of the family: glibc's EAI_NODATA (not in Python's module).
        return "none" if error.errno == -5 else f"error {error}"
def ipv6_addresses():
    # Global-scope (scope 00) addresses of every interface.
    with open("/proc/net/if_inet6") as table:
        rows = [line.split() for line in table]
    found = sorted(str(ipaddress.IPv6Address(int(row[0], 16))) for row in rows if row[3] == "00")
    return " ".join(found) or "none"
def udp(host, port, payload):
    kind = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(kind, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(payload.encode(), (host, int(port)))
        return s.recvfrom(65535)[0].decode()
def bound(port, protocol="tcp"):
    # Waits (up to 30 s) until a socket of the guest is bound to the port, listening if TCP: a
    # cold python3 takes seconds under TCG before it binds.
    suffix = f":{int(port):04X}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for table in (f"/proc/net/{protocol}", f"/proc/net/{protocol}6"):
            with open(table) as rows:
                for row in list(rows)[1:]:
                    local, state = row.split()[1], row.split()[3]
                    if local.endswith(suffix) and (protocol == "udp" or state == "0A"):
                        return "bound"
        time.sleep(0.1)
    return "not bound"
def get(host, path="/"):
    with socket.create_connection((host, 80), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n".encode())
        return b"".join(iter(lambda: s.recv(65536), b"")).decode(errors="replace")
def get_as(address, port, host_header):
    # A GET to ADDRESS:PORT naming another host: the status line, or "reset" if the gateway
    # cut the connection.
    try:
        with socket.create_connection((address, int(port)), timeout=10) as s:
            s.sendall(f"GET / HTTP/1.0\\r\\nHost: {host_header}\\r\\n\\r\\n".encode())
            reply = b"".join(iter(lambda: s.recv(65536), b""))
    except ConnectionRefusedError:
        return "refused"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    return reply.split(b"\\r\\n", 1)[0].decode(errors="replace") or "reset"
def tls(address, port, sni):
    # A real TLS ClientHello naming SNI (built by Python's ssl in memory) sent to ADDRESS:PORT,
    # a plain HTTP server, followed by an empty line so that the server answers at once:
    # "passed" when the hello reached it, "reset" when the gateway cut the connection,
    # "refused" when it refused the SYN.
    import ssl
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    outgoing = ssl.MemoryBIO()
    client = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname=sni)
    try:
        client.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    try:
        with socket.create_connection((address, int(port)), timeout=10) as s:
            s.sendall(hello + b"\\r\\n\\r\\n")
            reply = b"".join(iter(lambda: s.recv(65536), b""))
    except ConnectionRefusedError:
        return "refused"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    return "passed" if reply else "closed"
def ping(host):
    # One echo request from a raw socket (the guest is root): "reply", "unreachable CODE"
    # (the ICMP error the gateway answered with) or "timeout".
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(1)
        ident = os.getpid() & 0xFFFF
        body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"msb-ping"
        total = sum(struct.unpack(f"!{len(body) // 2}H", body))
        total = (total & 0xFFFF) + (total >> 16)
        checksum = ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF
        s.sendto(body[:2] + struct.pack("!H", checksum) + body[4:], (host, 0))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                data = s.recv(2048)
            except socket.timeout:
                continue
            icmp = data[(data[0] & 15) * 4:]
            if icmp[0] == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
                return "reply"
            if icmp[0] == 3:
                return f"unreachable {icmp[1]}"
        return "timeout"
def daemon(*argv):
    # A server that outlives this exec: its own session, no terminal, no pipes.
    if os.fork():
        return "started"
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.execvp("python3", ["python3", *argv])
print(globals()[sys.argv[1]](*sys.argv[2:]))
"""
"""What the debian-tools guests run for their checks (they have python3, not nc)."""


def probe(session: GuestSession, *arguments: object) -> str:
    """Runs :data:`GUEST_PROBE` in the guest with ``arguments``; its one line of output."""
    if not session.created.get("probe"):
        session.sh(f"cat > /tmp/probe.py <<'EOF'\n{GUEST_PROBE}\nEOF")
        session.created["probe"] = True
    reply = session.sh("python3 /tmp/probe.py " + " ".join(str(a) for a in arguments))
    assert reply["exit_code"] == 0, reply
    return str(reply["stdout"]).strip()

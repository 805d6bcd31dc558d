"""The flow log's records as the SDK reads them: ``FlowLogEntry.parse`` over lines of the
supervisor's format (and lines that are none), the peer a record names, its line for people,
and reading a sandbox's ``network.log`` through ``read_network_log`` and ``read_logs``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from microsandbox_tui import (
    Action,
    Direction,
    FlowLogEntry,
    InvalidConfigError,
    LogSource,
    _native,
    read_logs,
    read_network_log,
)

FLOW = (
    '{"kind":"flow","time":"2026-12-02T03:00:00.123Z","direction":"egress","protocol":"tcp",'
    '"src":"172.16.0.2:40000","dst":"203.0.113.7:443","domain":"api.example.com","sni":null,'
    '"action":"allow","rule":2,"rule_text":"allow@.example.com:tcp:443","reason":null}'
)
DENIED = (
    '{"kind":"flow","time":"2026-12-02T03:00:01.000Z","direction":"egress","protocol":"tcp",'
    '"src":"172.16.0.2:40002","dst":"[2001:db8::7]:8443","domain":null,"sni":"api.example.com",'
    '"action":"deny","rule":null,"rule_text":"default",'
    '"reason":"sni names a host not resolved to this address"}'
)
INGRESS = (
    '{"kind":"flow","time":"2026-12-02T03:00:02.000Z","direction":"ingress","protocol":"tcp",'
    '"src":"198.51.100.9:51000","dst":"172.16.0.2:80","domain":null,"sni":null,'
    '"action":"allow","rule":0,"rule_text":"allow:ingress@*:tcp:80","reason":null}'
)
PING = (
    '{"kind":"flow","time":"2026-12-02T03:00:03.000Z","direction":"egress","protocol":"icmpv4",'
    '"src":"172.16.0.2","dst":"203.0.113.7","domain":null,"sni":null,"action":"deny",'
    '"rule":1,"rule_text":"deny@*:icmpv4","reason":"denied by the policy"}'
)
CLOSE = (
    '{"kind":"close","time":"2026-12-02T03:00:04.500Z","direction":"egress","protocol":"tcp",'
    '"src":"172.16.0.2:40000","dst":"203.0.113.7:443","domain":"api.example.com",'
    '"sni":"api.example.com","bytes_sent":123,"bytes_received":4567,"duration_ms":812,'
    '"reason":"closed"}'
)
DNS = (
    '{"kind":"dns","time":"2026-12-02T03:00:05.000Z","protocol":"udp",'
    '"src":"172.16.0.2:41000","name":"other.example","qtype":"A","action":"deny","rule":null,'
    '"rule_text":"default","rcode":"NXDOMAIN","answers":[],"reason":"denied by the policy"}'
)
ANSWERED = (
    '{"kind":"dns","time":"2026-12-02T03:00:06.000Z","protocol":"udp",'
    '"src":"172.16.0.2:41001","name":"api.example.com","qtype":65,"action":"allow","rule":2,'
    '"rule_text":"allow@.example.com:tcp:443","rcode":"NOERROR",'
    '"answers":["203.0.113.7","2001:db8::7"],"reason":null}'
)
MALFORMED = [
    "",
    "   ",
    "not json",
    '{"kind":"flow","time":"2026-12-02T03:00:0',  # cut short by a crash
    "[1, 2]",
    '"flow"',
    '{"kind":"teleport","time":"2026-12-02T03:00:00.000Z","protocol":"tcp"}',
    '{"kind":"flow","time":"yesterday","protocol":"tcp"}',
    '{"kind":"flow","protocol":"tcp"}',
    '{"kind":"flow","time":"2026-12-02T03:00:00.000Z","protocol":"tcp","action":"maybe"}',
]


def parsed(line: str) -> FlowLogEntry:
    entry = FlowLogEntry.parse(line)
    assert entry is not None, line
    return entry


def test_a_flow_record_has_every_field_of_its_line() -> None:
    entry = parsed(FLOW)
    assert entry.kind == "flow"
    assert entry.time == datetime(2026, 12, 2, 3, 0, 0, 123000, tzinfo=UTC)
    assert (entry.direction, entry.protocol) == (Direction.EGRESS, "tcp")
    assert (entry.src, entry.dst) == ("172.16.0.2:40000", "203.0.113.7:443")
    assert (entry.domain, entry.sni) == ("api.example.com", None)
    assert (entry.action, entry.rule, entry.rule_text) == (
        Action.ALLOW,
        2,
        "allow@.example.com:tcp:443",
    )
    assert (entry.reason, entry.bytes_sent, entry.name, entry.answers) == (None, None, None, ())
    assert not entry.denied
    with pytest.raises(ValueError, match="frozen"):
        entry.rule = 3  # type: ignore[misc]


def test_close_and_dns_records_carry_their_own_fields() -> None:
    close = parsed(CLOSE)
    assert (close.bytes_sent, close.bytes_received, close.duration_ms) == (123, 4567, 812)
    assert (close.action, close.rule, close.reason) == (None, None, "closed")
    dns = parsed(DNS)
    assert (dns.name, dns.qtype, dns.rcode, dns.answers) == ("other.example", "A", "NXDOMAIN", ())
    assert dns.direction is None and dns.denied and dns.rule is None
    answered = parsed(ANSWERED)
    assert answered.qtype == "65", "a type without a name is its number"
    assert answered.answers == ("203.0.113.7", "2001:db8::7")


@pytest.mark.parametrize("line", MALFORMED)
def test_a_line_that_is_no_record_parses_as_none(line: str) -> None:
    assert FlowLogEntry.parse(line) is None


def test_fields_a_newer_supervisor_adds_are_ignored() -> None:
    record = {**json.loads(FLOW), "tls_version": "1.3"}
    assert parsed(json.dumps(record)) == parsed(FLOW)


@pytest.mark.parametrize(
    ("line", "host", "port"),
    [
        (FLOW, "203.0.113.7", 443),
        (DENIED, "2001:db8::7", 8443),
        (INGRESS, "198.51.100.9", 80),
        (PING, "203.0.113.7", None),
        (CLOSE, "203.0.113.7", 443),
        (DNS, "other.example", None),
    ],
)
def test_the_peer_is_what_a_rule_would_name(line: str, host: str, port: int | None) -> None:
    entry = parsed(line)
    assert (entry.peer_host, entry.peer_port) == (host, port)


@pytest.mark.parametrize(
    ("line", "text"),
    [
        (
            FLOW,
            "03:00:00.123 allow egress tcp 172.16.0.2:40000 -> 203.0.113.7:443 "
            "(api.example.com) by rule 2 allow@.example.com:tcp:443",
        ),
        (
            DENIED,
            "03:00:01.000 deny  egress tcp 172.16.0.2:40002 -> [2001:db8::7]:8443 "
            "sni api.example.com by default: sni names a host not resolved to this address",
        ),
        (
            PING,
            "03:00:03.000 deny  egress icmpv4 172.16.0.2 -> 203.0.113.7 by rule 1 "
            "deny@*:icmpv4: denied by the policy",
        ),
        (
            CLOSE,
            "03:00:04.500 close egress tcp 172.16.0.2:40000 -> 203.0.113.7:443 "
            "(api.example.com), 123 B sent, 4567 B received in 812 ms: closed",
        ),
        (
            DNS,
            "03:00:05.000 deny  dns udp 172.16.0.2:41000 A other.example -> NXDOMAIN "
            "by default: denied by the policy",
        ),
        (
            ANSWERED,
            "03:00:06.000 allow dns udp 172.16.0.2:41001 65 api.example.com -> NOERROR "
            "[203.0.113.7, 2001:db8::7] by rule 2 allow@.example.com:tcp:443",
        ),
    ],
)
def test_each_record_reads_as_one_line(line: str, text: str) -> None:
    assert str(parsed(line)) == text


def _write_network_log(name: str, lines: list[str]) -> None:
    path = Path(_native.log_path(name, "network"))
    assert path.name == "network.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


async def test_the_network_log_yields_its_records_and_skips_other_lines() -> None:
    name = "flow-log-reader"
    _write_network_log(name, [FLOW, "garbage", DNS, CLOSE])
    entries = [entry async for entry in read_network_log(name)]
    assert entries == [parsed(FLOW), parsed(DNS), parsed(CLOSE)]
    assert [entry async for entry in read_network_log(name, tail=1)] == [parsed(CLOSE)]
    lines = [line async for line in read_logs(name, LogSource.NETWORK, tail=2)]
    assert lines == [str(parsed(DNS)), str(parsed(CLOSE))]
    first = await anext(aiter(read_logs(name, "network")))
    assert first == str(parsed(FLOW))


async def test_an_unknown_log_names_the_network_one_among_the_choices() -> None:
    with pytest.raises(InvalidConfigError, match="console, exec, network"):
        [line async for line in read_logs("flow-log-reader", "flows")]

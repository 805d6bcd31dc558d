"""The ``--net-rule`` grammar: ``Rule.__str__`` writes the text the supervisor writes in the
flow log (the shared fixture, which the Rust side is tested against too), ``parse_rule``
reads it and upstream's shorthands back, and refuses bad tokens naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from microsandbox_tui import InvalidConfigError, Rule
from microsandbox_tui.network import parse_rule, parse_rules

FIXTURE = Path(__file__).parents[1] / "fixtures" / "net_rules.json"
CASES: list[dict[str, Any]] = json.loads(FIXTURE.read_text())


def _case_id(case: dict[str, Any]) -> str:
    return str(case["text"])


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_every_rule_of_the_shared_fixture_is_written_as_its_text(case: dict[str, Any]) -> None:
    assert str(Rule(**case["rule"])) == case["text"]


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_every_text_of_the_shared_fixture_reads_back_as_its_rule(case: dict[str, Any]) -> None:
    expected = Rule(**case["rule"])
    parsed = parse_rule(case["text"])
    assert str(parsed) == case["text"]
    assert (parsed.action, parsed.direction, parsed.protocol) == (
        expected.action,
        expected.direction,
        expected.protocol,
    )


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("allow@public", Rule.allow(destination="public")),
        (" deny:any@host ", Rule.deny(direction="any", destination="host")),
        ("allow@any", Rule.allow()),
        ("allow@*", Rule.allow()),
        ("allow@any:any:any", Rule.allow()),
        ("allow@meta", Rule.allow(destination="metadata")),
        ("deny@*.ads.example.com", Rule.deny(destination=".ads.example.com")),
        ("deny@suffix=corp.example", Rule.deny(destination=".corp.example")),
        ("allow@domain=localhost", Rule.allow(destination="localhost.")),
        ("allow@domain=public.example", Rule.allow(destination="public.example")),
        ("deny@198.51.100.5", Rule.deny(destination="198.51.100.5")),
        ("allow@public:tcp:443", Rule.allow(destination="public", protocol="tcp", port=443)),
        (
            "allow@public:tcp:80-443",
            Rule.allow(destination="public", protocol="tcp", port="80-443"),
        ),
        ("allow@[::1]:tcp:22", Rule.allow(destination="::1", protocol="tcp", port=22)),
        ("deny@[2001:db8::/32]:tcp", Rule.deny(destination="2001:db8::/32", protocol="tcp")),
        ("allow@host:any:53", Rule.allow(destination="host", port=53)),
        (
            "allow:ingress@*:tcp:8000-9000",
            Rule.allow(direction="ingress", protocol="tcp", port="8000-9000"),
        ),
    ],
)
def test_upstream_tokens_and_shorthands_read_as_rules(text: str, rule: Rule) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("allow public", "it has no '@'"),
        ("alow@public", "unknown action 'alow', expected allow or deny (did you mean 'allow'?)"),
        ("Allow@public", "unknown action 'Allow'"),
        ("allow:out@public", "unknown direction 'out', expected egress, ingress or any"),
        ("allow@", "the target is empty"),
        ("allow@:tcp:443", "the target is empty"),
        ("allow@pubic", "unknown target 'pubic'"),
        ("allow@public:tpc", "unknown protocol 'tpc'"),
        ("allow@public:", "unknown protocol ''"),
        ("allow@public:tcp:8000-", "ports '8000-' is neither a number nor a lo-hi range"),
        ("allow@public:tcp:x", "ports 'x' is neither a number nor a lo-hi range"),
        ("allow@public:tcp:443-80", "ports range 443-80 is reversed"),
        ("allow@public:tcp:70000", "70000 is outside 1..65535"),
        ("allow@public:tcp:0", "0 is outside 1..65535"),
        (
            "allow@example.com:443",
            "'443' is a port, not a protocol; did you mean example.com:tcp:443?",
        ),
        ("allow@example.com:80-443", "'80-443' is a port, not a protocol"),
        ("allow@public:tcp:443:x", "it has fields after the ports"),
        ("allow@2001:db8::1", "an IPv6 address goes in brackets"),
        ("allow@[2001:db8::1", "its '[' is not closed"),
        ("allow@[2001:db8::1]x", "'x' follows ']'"),
        ("allow@[198.51.100.5]", "'198.51.100.5' is not an IPv6 address or CIDR"),
        ("allow@[example.com]", "'example.com' is not an IPv6 address or CIDR"),
        ("allow@10.0.0.0/33", "'10.0.0.0/33' is not a valid CIDR"),
        ("allow@bad_name.example", "is not a valid domain"),
        ("allow@dns", "there is no 'dns' target"),
    ],
)
def test_bad_tokens_name_the_token_and_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(InvalidConfigError) as raised:
        parse_rule(text)
    message = str(raised.value)
    assert message.startswith(f"rule {text.strip()!r}: "), message
    assert problem in message, message


def test_a_rule_reads_back_from_its_own_text() -> None:
    rules = [
        Rule.allow(destination="localhost."),
        Rule.deny(direction="any", protocol="icmpv6"),
        Rule.allow(destination="2001:DB8::1", port="443-444"),
        Rule.allow(destination="*", protocol="udp", port="53"),
    ]
    for rule in rules:
        assert str(parse_rule(str(rule))) == str(rule)


def test_a_comma_list_is_its_rules_in_order() -> None:
    assert parse_rules("deny@198.51.100.5, ,allow@public,") == (
        Rule.deny(destination="198.51.100.5"),
        Rule.allow(destination="public"),
    )
    with pytest.raises(InvalidConfigError, match="rule 'allow@nope'"):
        parse_rules("allow@public,allow@nope")

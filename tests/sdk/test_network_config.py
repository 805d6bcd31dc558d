"""A sandbox's network configuration, refused or stored before anything boots: what each field
accepts (the tables follow the supervisor's own parsers in ``native/net``: a value accepted
here must never be refused when the sandbox starts), the messages naming the field, presets,
published ports and their merge, and the JSON round trip. No virtual machine."""

from __future__ import annotations

import json
from typing import Any

import pytest

import microsandbox_tui
from microsandbox_tui import (
    Action,
    DestGroup,
    Direction,
    DnsConfig,
    InvalidConfigError,
    MicrosandboxError,
    Network,
    NetworkInfo,
    NetworkPolicy,
    PortInUseError,
    PortProtocol,
    Protocol,
    PublishedPort,
    Rule,
    Sandbox,
    SandboxConfig,
    sandbox_config,
)
from microsandbox_tui.network import parse_published_port, parse_published_ports
from microsandbox_tui.sandbox_info import decode_sandbox_info

LONG_LABEL = "a" * 64
LONGEST_NAME = ".".join(["a" * 63] * 3 + ["b" * 61])

# -- rule destinations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "destination",
    [
        "*",
        "public",
        "Private",
        "link-local",
        "metadata",
        "multicast",
        "loopback",
        "host",
        DestGroup.LINK_LOCAL,
        "10.0.0.0/8",
        "10.1.2.3/8",
        "0.0.0.0/0",
        "2001:db8::/32",
        "::/0",
        "::ffff:10.0.0.0/104",
        "10.0.0.0/08",
        "2001:db8::/064",
        "198.51.100.7",
        "2001:db8::1",
        "::ffff:203.0.113.1",
        ".example.com",
        ".Example.com.",
        "api.example.com",
        "localhost.",
        "a1-b.x9",
        "xn--bcher-kva.example",
        LONGEST_NAME,
    ],
)
def test_rule_destinations_the_supervisor_accepts(destination: str) -> None:
    assert Rule.allow(destination=destination).destination == str(destination)


@pytest.mark.parametrize(
    ("destination", "problem"),
    [
        ("", "the destination is empty"),
        ("10.0.0.0/33", "'10.0.0.0/33' is not a valid CIDR"),
        ("::/129", "'::/129' is not a valid CIDR"),
        ("10.0.0/8", "is not a valid CIDR"),
        ("example.com/8", "is not a valid CIDR"),
        ("/", "is not a valid CIDR"),
        ("10.0.0.0/", "is not a valid CIDR"),
        ("10.0.0.0/8/8", "is not a valid CIDR"),
        # The supervisor reads at most two prefix digits for IPv4 and three for IPv6.
        ("10.0.0.0/008", "is not a valid CIDR"),
        ("2001:db8::/0064", "is not a valid CIDR"),
        # Leading zeros read as octal elsewhere; both parsers refuse them in an address.
        ("010.0.0.1", "is not a valid domain"),
        ("fe80::1%eth0", "'fe80::1%eth0' is not a valid domain"),
        ("[::1]", "'[::1]' is not a valid domain"),
        (" public", "label ' public' is not letters"),
        ("privat", "unknown group 'privat'"),
        ("link_local", "unknown group 'link_local'"),
        ("localhost", "unknown group 'localhost'"),
        ("999.1.1.1", "its last label is numeric"),
        (".10.0.0.1", "its last label is numeric"),
        (".", "it has no labels"),
        ("..example.com", "it has an empty label"),
        ("a..b", "it has an empty label"),
        ("-a.com", "label '-a' is not letters, digits and inner hyphens"),
        ("*.example.com", "label '*' is not letters"),
        ("bücher.de", "label 'bücher' is not letters"),
        (f"{LONG_LABEL}.com", "a label is longer than 63 characters"),
        (LONGEST_NAME + "b", "it is longer than 253 characters"),
        ("xn--a.example", "label 'xn--a' is not valid punycode"),
    ],
)
def test_rule_destinations_refused_name_the_problem(destination: str, problem: str) -> None:
    with pytest.raises(InvalidConfigError, match=r"^destination: ") as refused:
        Rule.allow(destination=destination)
    assert problem in str(refused.value)


# -- rule ports ---------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [1, 443, 65535, "443", "0080", "8000-9000", "80-80", "1-65535"])
def test_rule_ports_the_supervisor_accepts(port: int | str) -> None:
    assert Rule.deny(port=port).port == port


@pytest.mark.parametrize(
    ("port", "problem"),
    [
        (0, "0 is outside 1..65535"),
        (65536, "65536 is outside 1..65535"),
        (-1, "-1 is outside 1..65535"),
        (True, "a port is a whole number, not True"),
        (1.5, "a port is a whole number, not 1.5"),
        ("9000-8000", "range 9000-8000 is reversed"),
        ("0", "'0': 0 is outside 1..65535"),
        ("1-70000", "'1-70000': 70000 is outside"),
        ("1-", "neither a number nor a lo-hi range"),
        ("-1", "neither a number nor a lo-hi range"),
        ("+80", "neither a number nor a lo-hi range"),
        (" 80", "neither a number nor a lo-hi range"),
        ("1-2-3", "neither a number nor a lo-hi range"),
        ("http", "neither a number nor a lo-hi range"),
        ("٨٠", "neither a number nor a lo-hi range"),
    ],
)
def test_rule_ports_refused_name_the_problem(port: object, problem: str) -> None:
    with pytest.raises(InvalidConfigError, match=r"^port: ") as refused:
        Rule.deny(port=port)  # type: ignore[arg-type]
    assert problem in str(refused.value)


def test_a_rule_takes_its_fields_by_position_as_upstream_does() -> None:
    rule = Rule(Action.DENY, Direction.ANY, "10.0.0.0/8", Protocol.UDP, "53-54")
    assert rule == Rule.deny(
        direction="any", destination="10.0.0.0/8", protocol="udp", port="53-54"
    )
    assert Rule.allow() == Rule("allow", Direction.EGRESS, None, None, None)
    with pytest.raises(InvalidConfigError, match=r"^action: "):
        Rule("maybe")
    with pytest.raises(InvalidConfigError, match=r"^protocol: "):
        Rule.allow(protocol="sctp")
    with pytest.raises(TypeError):
        Rule("allow", action="deny")  # type: ignore[misc]


# -- DNS ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "nameserver",
    [
        "198.51.100.53",
        "203.0.113.53:5353",
        "198.51.100.53:053",
        "[2001:db8::53]:53",
        "2001:db8::54",
        "[::ffff:198.51.100.53]:53",
    ],
)
def test_nameservers_the_supervisor_accepts(nameserver: str) -> None:
    assert DnsConfig(nameservers=[nameserver]).nameservers == (nameserver,)


@pytest.mark.parametrize(
    "nameserver",
    [
        "",
        "dns.example",
        "198.51.100.53:0",
        "198.51.100.53:65536",
        "198.51.100.53:",
        "[2001:db8::53]",
        "[198.51.100.53]:53",
        "2001:db8::53%eth0",
        "[fe80::1%1]:53",
        "198.051.100.53",
    ],
)
def test_nameservers_refused_name_the_entry(nameserver: str) -> None:
    with pytest.raises(InvalidConfigError, match=r"^nameservers\[0\]: ") as refused:
        DnsConfig(nameservers=[nameserver])
    assert f"{nameserver!r} is not an IP address or address:port" in str(refused.value)


def test_dns_defaults_timeout_bounds_and_positional_fields() -> None:
    dns = DnsConfig()
    assert (dns.rebind_protection, dns.nameservers, dns.query_timeout_ms) == (True, (), None)
    assert DnsConfig(False, ["198.51.100.53"], 1) == DnsConfig(
        rebind_protection=False, nameservers=("198.51.100.53",), query_timeout_ms=1
    )
    assert DnsConfig(query_timeout_ms=3_600_000).query_timeout_ms == 3_600_000
    for timeout in (0, 3_600_001, True, "5000"):
        with pytest.raises(InvalidConfigError, match=r"^query_timeout_ms: "):
            DnsConfig(query_timeout_ms=timeout)  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match=r"^nameservers: expected a list of texts"):
        DnsConfig(nameservers="198.51.100.53")
    with pytest.raises(InvalidConfigError, match=r"^rebind_protection: "):
        DnsConfig(rebind_protection="no")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name", ["blocked.example.com", "Blocked.Example.COM.", "localhost", "xn--bcher-kva.example"]
)
def test_deny_domains_the_supervisor_accepts(name: str) -> None:
    assert Network(deny_domains=[name]).deny_domains == (name,)


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a..b", "sp ace.com", f"{LONG_LABEL}.com", "bücher.example", "10.0.0.1"],
)
def test_deny_domains_refused_name_the_entry(name: str) -> None:
    with pytest.raises(InvalidConfigError, match=r"^network\.deny_domains\[1\]: "):
        Network(deny_domains=["fine.example", name])


def test_deny_domain_suffixes_take_the_leading_dot_or_not() -> None:
    suffixes = (".evil.com", "tracker.net.", "ads.example")
    assert Network(deny_domain_suffixes=suffixes).deny_domain_suffixes == suffixes
    for zone in (".", "..evil.com", ".-evil.com"):
        with pytest.raises(InvalidConfigError, match=r"^network\.deny_domain_suffixes\[0\]: "):
            Network(deny_domain_suffixes=[zone])
    with pytest.raises(InvalidConfigError, match=r"^network\.deny_domains: expected a list"):
        Network(deny_domains="evil.com")


# -- published ports ---------------------------------------------------------------------------


def test_a_published_port_is_tcp_on_the_host_loopback_unless_told() -> None:
    port = PublishedPort(8080, 80)
    assert (port.protocol, port.host_address) == (PortProtocol.TCP, "127.0.0.1")
    assert PublishedPort(5353, 53, "udp", "0.0.0.0").protocol is PortProtocol.UDP
    assert PublishedPort(1, 2, host_address="0:0::1").host_address == "::1"
    assert str(PublishedPort(9000, 90, "udp", "::1")) == "[::1]:9000 -> 90/udp"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"host_port": 0, "guest_port": 80}, "host_port"),
        ({"host_port": 65536, "guest_port": 80}, "host_port"),
        ({"host_port": 8080, "guest_port": 0}, "guest_port"),
        ({"host_port": "8080", "guest_port": 80}, "host_port"),
        ({"host_port": True, "guest_port": 80}, "host_port"),
        ({"host_port": 8080, "guest_port": 80, "protocol": "sctp"}, "protocol"),
        ({"host_port": 8080, "guest_port": 80, "host_address": "localhost"}, "host_address"),
        ({"host_port": 8080, "guest_port": 80, "host_address": "fe80::1%lo"}, "host_address"),
    ],
)
def test_bad_published_ports_name_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidConfigError, match=rf"^{field}: "):
        PublishedPort(**values)


def test_ports_are_named_by_their_host_port_in_errors() -> None:
    with pytest.raises(InvalidConfigError) as refused:
        Network(ports={8080: 0, 9090: 90, 7070: 70000})
    assert str(refused.value) == (
        "network.ports[8080].guest_port: 0 is outside 1..65535; "
        "network.ports[7070].guest_port: 70000 is outside 1..65535"
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (PublishedPort(8080, 80), PublishedPort(8080, 81)),
        (PublishedPort(8080, 80), PublishedPort(8080, 80, host_address="0.0.0.0")),
        (PublishedPort(8080, 80, host_address="::"), PublishedPort(8080, 80)),
        (PublishedPort(53, 53, "udp"), PublishedPort(53, 5353, "udp")),
    ],
)
def test_a_host_port_bound_twice_is_refused(first: PublishedPort, second: PublishedPort) -> None:
    with pytest.raises(InvalidConfigError, match=rf"^network\.ports\[{second.host_port}\]: "):
        Network(ports=[first, second])


def test_one_host_port_on_other_addresses_or_protocols_is_fine() -> None:
    ports = [
        PublishedPort(8080, 80),
        PublishedPort(8080, 80, "udp"),
        PublishedPort(8080, 80, host_address="127.0.0.2"),
        PublishedPort(8080, 80, host_address="::1"),
        PublishedPort(9090, 80),
    ]
    assert Network(ports=ports).ports == tuple(ports)


def test_create_merges_ports_into_the_network_and_refuses_one_given_twice() -> None:
    network = Network("allow_all", [PublishedPort(5353, 53, "udp")])
    merged = network.with_ports({8080: 80})
    assert merged.ports == (PublishedPort(5353, 53, "udp"), PublishedPort(8080, 80))
    assert merged.policy == "allow_all"
    assert Network().with_ports({5353: 53}).ports == (PublishedPort(5353, 53),)
    with pytest.raises(InvalidConfigError, match=r"^network\.ports\[8080\]: .* collides with "):
        Network(ports={8080: 80}).with_ports({8080: 81})


async def test_create_refuses_a_bad_network_before_anything_runs() -> None:
    with pytest.raises(InvalidConfigError, match=r"^network\.ports\[8080\]: "):
        await Sandbox.create("bad-net", network=Network(ports={8080: 80}), ports={8080: 81})
    with pytest.raises(InvalidConfigError, match=r"^network\.ports\[0\]\.host_port: "):
        await Sandbox.create("bad-net", ports={0: 80})
    with pytest.raises(InvalidConfigError, match=r"^network\.ports\[8080\]: "):
        Sandbox.create_with_progress(
            "bad-net", image="alpine", network=Network(ports={8080: 80}), ports={8080: 80}
        )
    assert "bad-net" not in [info.name for info in await Sandbox.list()]


@pytest.mark.parametrize(
    ("text", "port"),
    [
        ("8080:80", PublishedPort(8080, 80)),
        ("5353:53/udp", PublishedPort(5353, 53, "udp")),
        ("8080:80/tcp", PublishedPort(8080, 80)),
        ("0.0.0.0:8080:80", PublishedPort(8080, 80, host_address="0.0.0.0")),
        ("127.0.0.2:53:53/udp", PublishedPort(53, 53, "udp", "127.0.0.2")),
        ("[::1]:8080:80", PublishedPort(8080, 80, host_address="::1")),
        (" 8080:80 ", PublishedPort(8080, 80)),
    ],
)
def test_the_port_syntax_of_the_cli_and_the_dashboard(text: str, port: PublishedPort) -> None:
    assert parse_published_port(text) == port


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("8080", "expected HOST:GUEST[/udp] or ADDR:HOST:GUEST[/tcp|udp]"),
        ("8080:80/sctp", "expected HOST:GUEST"),
        ("8080:80/UDP", "expected HOST:GUEST"),
        ("a:b", "expected HOST:GUEST"),
        ("1:2:3:4", "expected HOST:GUEST"),
        ("::1:8080:80", "expected HOST:GUEST"),
        ("-1:80", "expected HOST:GUEST"),
        ("8080:0", "guest_port: 0 is outside 1..65535"),
        ("70000:80", "host_port: 70000 is outside 1..65535"),
        ("1.2.3:8080:80", "host_address: '1.2.3' is not an IP address"),
    ],
)
def test_bad_port_texts_name_the_text_and_the_problem(text: str, problem: str) -> None:
    with pytest.raises(InvalidConfigError, match=rf"^port {text!r}: ") as refused:
        parse_published_port(text)
    assert problem in str(refused.value)


def test_a_ports_text_is_a_list_separated_by_commas_spaces_or_lines() -> None:
    assert parse_published_ports("8080:80, 5353:53/udp\n9000:90") == (
        PublishedPort(8080, 80),
        PublishedPort(5353, 53, "udp"),
        PublishedPort(9000, 90),
    )
    assert parse_published_ports(" , ") == ()


# -- presets and policies ------------------------------------------------------------------------


def test_the_presets_and_their_spellings() -> None:
    assert Network().policy == "public_only"
    assert Network.public_only() == Network(policy="public-only") == Network()
    assert Network.none().policy == "none"
    assert Network.allow_all() == Network(policy="allow-all") == Network("allow_all")
    assert Network.allow_all().policy_name == "allow_all"
    custom = Network(NetworkPolicy(rules=[Rule.allow(destination="public")]))
    assert custom.policy_name == "custom"
    with pytest.raises(InvalidConfigError, match=r"^network\.policy: unknown preset 'public'"):
        Network("public")


def test_deny_lists_without_a_policy_narrow_public_only_instead_of_opening_everything() -> None:
    network = Network(deny_domains=["tracker.example"], deny_domain_suffixes=[".ads.example"])
    assert network.policy == "public_only"


def test_a_custom_policy_defaults_to_no_egress_and_open_published_ports() -> None:
    policy = NetworkPolicy()
    assert (policy.default_egress, policy.default_ingress, policy.rules) == (
        Action.DENY,
        Action.ALLOW,
        (),
    )
    assert NetworkPolicy("allow", "deny", [Rule.deny(destination="private")]).rules == (
        Rule.deny(destination="private"),
    )


def test_errors_in_nested_values_name_the_whole_location() -> None:
    rules: list[dict[str, Any]] = [
        {"action": "allow"},
        {"action": "allow", "destination": "privat"},
        {"action": "deny", "destination": "10.0.0.0/33"},
        {"action": "deny", "port": "9000-8000", "ports": 1},
    ]
    with pytest.raises(InvalidConfigError) as refused:
        Network(policy={"rules": rules})  # type: ignore[arg-type]
    problems = str(refused.value).split("; ")
    assert [problem.split(": ", 1)[0] for problem in problems] == [
        "network.policy.rules[1].destination",
        "network.policy.rules[2].destination",
        "network.policy.rules[3].port",
        "network.policy.rules[3].ports",
    ]
    assert problems[0].startswith("network.policy.rules[1].destination: unknown group 'privat'")
    assert problems[2] == "network.policy.rules[3].port: range 9000-8000 is reversed"
    with pytest.raises(InvalidConfigError, match=r"^network\.dns\.nameservers\[0\]: "):
        Network(dns={"nameservers": ["dns.example"]})  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError, match=r"^network\.max_connections: "):
        Network(max_connections=0)
    with pytest.raises(InvalidConfigError, match=r"^network\.policy\.rules\[0\]\.destination: "):
        sandbox_config(
            name="n", network={"policy": {"rules": [{"action": "allow", "destination": "x"}]}}
        )


# -- the stored JSON -----------------------------------------------------------------------------


def test_the_stored_json_has_the_supervisor_shape() -> None:
    network = Network(
        "none",
        [PublishedPort(8080, 80), PublishedPort(5353, 53, "udp", "0.0.0.0")],
        deny_domains=["blocked.example.com"],
        deny_domain_suffixes=[".evil.com"],
        dns=DnsConfig(nameservers=["198.51.100.53"]),
    )
    assert json.loads(network.model_dump_json()) == {
        "policy": "none",
        "dns": {
            "nameservers": ["198.51.100.53"],
            "query_timeout_ms": None,
            "rebind_protection": True,
            "deny_domains": ["blocked.example.com"],
            "deny_domain_suffixes": [".evil.com"],
        },
        "ports": [
            {"host_address": "127.0.0.1", "host_port": 8080, "guest_port": 80, "protocol": "tcp"},
            {"host_address": "0.0.0.0", "host_port": 5353, "guest_port": 53, "protocol": "udp"},
        ],
        "max_connections": None,
    }


@pytest.mark.parametrize(
    "network",
    [
        Network(),
        Network.none(),
        Network.allow_all(),
        Network(
            NetworkPolicy(
                "allow",
                "deny",
                [
                    Rule.allow(destination="host", protocol="udp", port=53),
                    Rule.deny(direction="any", destination="10.0.0.0/8"),
                    Rule.allow(destination=".example.com", protocol="tcp", port="443-444"),
                ],
            ),
            {8080: 80},
            ["a.example"],
            [".b.example"],
            DnsConfig(False, ["[2001:db8::53]:5353"], 250),
            64,
        ),
    ],
)
def test_a_network_round_trips_through_its_json(network: Network) -> None:
    text = network.model_dump_json()
    assert Network.model_validate_json(text) == network
    config = sandbox_config(name="n", network=network)
    assert SandboxConfig.model_validate_json(config.model_dump_json()).network == network
    if network.policy_name != "custom":
        assert json.loads(text)["policy"] == network.policy


def test_a_stored_config_without_a_network_has_the_default_one() -> None:
    for stored in ({"name": "old"}, {"name": "old", "network": None}):
        assert SandboxConfig.model_validate(stored).network == Network()


def test_stored_deny_lists_are_read_back_from_dns_and_only_from_one_place() -> None:
    stored = {"dns": {"deny_domains": ["a.example"], "deny_domain_suffixes": [".b.example"]}}
    network = Network.model_validate(stored)
    assert (network.deny_domains, network.deny_domain_suffixes) == (("a.example",), (".b.example",))
    with pytest.raises(InvalidConfigError, match=r"^network: deny_domains is given both"):
        Network(deny_domains=["c.example"], dns={"deny_domains": ["a.example"]})  # type: ignore[arg-type]


# -- what the runtime reports, and its error ---------------------------------------------------


def _info_json(**extra: object) -> str:
    return json.dumps(
        {
            "name": "web",
            "status": "running",
            "config": {"name": "web", "network": {"policy": "allow_all"}},
            "detached": True,
            "created_at": 0,
            "started_at": 1,
            "stopped_at": None,
            "accelerator": "tcg",
            "boot_ms": 900,
            "exit_reason": None,
            **extra,
        }
    )


def test_sandbox_info_carries_the_addresses_when_the_runtime_has_them() -> None:
    addresses = {
        "guest_address": "172.16.0.6",
        "gateway": "172.16.0.5",
        "prefix_len": 30,
        "host_alias": "host.msb.internal",
    }
    info = decode_sandbox_info(_info_json(network=addresses))
    assert info.network == NetworkInfo(**addresses)  # type: ignore[arg-type]
    assert info.config.network == Network.allow_all()
    assert decode_sandbox_info(_info_json(network=None)).network is None
    assert decode_sandbox_info(_info_json()).network is None


def test_port_in_use_is_a_typed_sdk_error_exported_with_the_network_types() -> None:
    assert issubclass(PortInUseError, MicrosandboxError)
    exported = {
        "Network",
        "NetworkPolicy",
        "Rule",
        "DnsConfig",
        "Action",
        "Direction",
        "Protocol",
        "PortProtocol",
        "DestGroup",
        "PublishedPort",
        "PortInUseError",
        "NetworkInfo",
    }
    assert exported <= set(microsandbox_tui.__all__)
    assert [group.value for group in DestGroup] == [
        "loopback",
        "private",
        "link-local",
        "metadata",
        "multicast",
        "host",
    ]


def test_a_preset_spells_out_as_the_rules_the_gateway_applies() -> None:
    public = NetworkPolicy.from_preset("public-only")
    assert public.default_egress == Action.ALLOW
    denied = [str(rule.destination) for rule in public.rules if rule.action == Action.DENY]
    assert denied == ["loopback", "private", "link-local", "metadata", "multicast", "host"]
    assert NetworkPolicy.from_preset("none") == NetworkPolicy("deny", "deny")
    assert NetworkPolicy.from_preset("allow_all") == NetworkPolicy("allow", "allow")
    with pytest.raises(InvalidConfigError, match="unknown preset 'public'"):
        NetworkPolicy.from_preset("public")

"""How ``msb`` writes what it reads from the runtime, on records built in the test (no
runtime, no virtual machine)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from microsandbox_tui import (
    DnsConfig,
    Network,
    NetworkInfo,
    NetworkPolicy,
    PublishedPort,
    Rule,
    SandboxConfig,
    SandboxInfo,
    SandboxStatus,
    TlsConfig,
)
from microsandbox_tui.cli.output import inspect_rows, policy_lines

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
ADDRESSES = NetworkInfo("172.16.0.6", "172.16.0.5", 30, "host.msb.internal")


def _info(network: Network, addresses: NetworkInfo | None) -> SandboxInfo:
    return SandboxInfo(
        name="web",
        status=SandboxStatus.RUNNING,
        config=SandboxConfig(name="web", network=network),
        detached=True,
        created_at=NOW - timedelta(minutes=5),
        started_at=NOW - timedelta(minutes=4),
        stopped_at=None,
        accelerator="tcg",
        boot_ms=900,
        exit_reason=None,
        network=addresses,
    )


def test_inspect_shows_the_preset_addresses_ports_and_dns() -> None:
    network = Network(
        "allow_all",
        [PublishedPort(8080, 80), PublishedPort(5353, 53, "udp", "::1")],
        deny_domains=["ads.example"],
        deny_domain_suffixes=[".evil.com"],
        dns=DnsConfig(False, ["198.51.100.53", "203.0.113.53:5353"], 250),
    )
    rows = dict(inspect_rows(_info(network, ADDRESSES), NOW))
    assert rows["name"] == "web"
    assert rows["uptime"] == "4m00s"
    assert rows["network"] == "allow_all"
    assert rows["address"] == "172.16.0.6/30"
    assert rows["gateway"] == "172.16.0.5 (host.msb.internal)"
    assert rows["ports"] == "127.0.0.1:8080 -> 80/tcp, [::1]:5353 -> 53/udp"
    assert rows["nameservers"] == "198.51.100.53, 203.0.113.53:5353"
    assert rows["dns timeout"] == "250 ms per nameserver"
    assert rows["rebind protection"] == "off"
    assert rows["denied names"] == "ads.example, .evil.com"


def test_inspect_of_the_default_network_before_the_runtime_reports_addresses() -> None:
    rows = dict(inspect_rows(_info(Network(), None), NOW))
    assert (rows["network"], rows["address"], rows["gateway"], rows["ports"]) == (
        "public_only",
        "-",
        "-",
        "-",
    )
    assert rows["nameservers"] == "the host's"
    assert rows["dns timeout"] == "5000 ms per nameserver"
    assert (rows["rebind protection"], rows["denied names"]) == ("on", "-")


def test_a_custom_policy_is_named_custom_with_its_rules_and_defaults() -> None:
    policy = NetworkPolicy("allow", "deny", [Rule.deny(destination="private")])
    rows = dict(inspect_rows(_info(Network(policy), ADDRESSES), NOW))
    assert rows["network"] == "custom (1 rule; egress allow, ingress deny otherwise)"


def test_inspect_and_net_show_list_a_custom_policys_rules_with_their_index() -> None:
    rules = [
        Rule.deny(destination="198.51.100.0/24"),
        Rule.allow(destination=".example.com", port=443),
    ]
    network = Network(NetworkPolicy(rules=rules))
    rows = dict(inspect_rows(_info(network, ADDRESSES), NOW))
    assert (rows["rule 0"], rows["rule 1"]) == (
        "deny@198.51.100.0/24",
        "allow@.example.com:any:443",
    )
    assert policy_lines(network) == [
        "custom (2 rules; egress deny, ingress allow otherwise)",
        "0  deny@198.51.100.0/24",
        "1  allow@.example.com:any:443",
    ]
    assert policy_lines(Network.none()) == ["none"]
    assert not any(
        label.startswith("rule") for label, _ in inspect_rows(_info(Network(), None), NOW)
    )


def test_inspect_says_whether_and_how_tls_is_intercepted(tmp_path: Path) -> None:
    assert dict(inspect_rows(_info(Network(), None), NOW))["tls interception"] == "off"
    ca = tmp_path / "ca.pem"
    ca.write_text("pem")
    tls = TlsConfig(
        bypass=["*.internal.example"], intercepted_ports=[443, 8443], upstream_ca_cert=ca
    )
    rows = dict(inspect_rows(_info(Network(tls=tls), None), NOW))
    assert rows["tls interception"] == "ports 443, 8443"
    assert rows["tls bypass"] == "*.internal.example"
    assert rows["tls verify upstream"] == f"on, {ca}"
    assert rows["tls ca"] == "the home's"
    own = TlsConfig(verify_upstream=False, block_quic=True, ca_cert=ca, ca_key=ca)
    rows = dict(inspect_rows(_info(Network(tls=own), None), NOW))
    assert rows["tls interception"] == "ports 443, QUIC blocked"
    assert (rows["tls bypass"], rows["tls verify upstream"]) == ("-", "off")
    assert rows["tls ca"] == str(ca)

"""A network's TLS interception settings, refused or stored before anything boots: each
field's checks and the message naming it, paths made absolute and required to exist, and the
stored JSON of the supervisor's shape. No virtual machine."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import microsandbox_tui
from microsandbox_tui import InvalidConfigError, Network, SandboxConfig, TlsConfig, sandbox_config
from microsandbox_tui.validation import STORED_CONFIG


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    """A file where a PEM would be (its content is read by the supervisor, not here)."""
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "ca.key"
    path.write_text("-----BEGIN PRIVATE KEY-----\n")
    return path


def test_the_defaults_intercept_https_verified_with_the_homes_ca() -> None:
    tls = TlsConfig()
    assert tls.intercepted_ports == (443,)
    assert tls.bypass == ()
    assert tls.verify_upstream is True
    assert tls.upstream_ca_certs == ()
    assert (tls.ca_cert, tls.ca_key) == (None, None)
    assert tls.block_quic is False
    assert Network().tls is None


def test_exported_from_the_package() -> None:
    assert "TlsConfig" in microsandbox_tui.__all__
    assert microsandbox_tui.TlsConfig is TlsConfig


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"intercepted_ports": [0]}, r"^network\.tls\.intercepted_ports\[0\]: 0 is outside"),
        ({"intercepted_ports": [65536]}, r"intercepted_ports\[0\]: 65536 is outside 1\.\.65535"),
        ({"intercepted_ports": [443, True]}, r"intercepted_ports\[1\]: a port is a whole number"),
        ({"intercepted_ports": ["443"]}, r"intercepted_ports\[0\]: a port is a whole number"),
        ({"intercepted_ports": [443, 8443, 443]}, r"intercepted_ports: port 443 is given twice"),
        ({"intercepted_ports": []}, r"intercepted_ports: at least one port is intercepted"),
        ({"bypass": [""]}, r"^network\.tls\.bypass\[0\]: an empty name cannot be bypassed"),
        ({"bypass": ["a.example", "  "]}, r"bypass\[1\]: an empty name cannot be bypassed"),
        ({"bypass": "a.example"}, r"bypass: expected a list of texts, not the text"),
        ({"bypass": ["a.*.example"]}, r"bypass\[0\]: 'a\.\*\.example': a wildcard may only be"),
        ({"bypass": ["*example.com"]}, r"bypass\[0\]: '\*example\.com': a wildcard may only"),
        ({"bypass": ["*."]}, r"bypass\[0\]: '' is not a valid domain"),
        ({"bypass": ["a..example"]}, r"bypass\[0\]: 'a\.\.example' is not a valid domain"),
        ({"verify_upstream": "yes"}, r"^network\.tls\.verify_upstream: Input should be"),
        ({"block_quic": 1}, r"^network\.tls\.block_quic: Input should be"),
        ({"unknown": 1}, r"^network\.tls\.unknown: Extra inputs are not permitted"),
    ],
)
def test_bad_values_name_the_field(values: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        TlsConfig(**values)


def test_bypass_takes_names_and_wildcards_of_names_below_a_domain() -> None:
    names = ("api.example.com", "*.internal.example", "Pinned.Example.com.")
    assert TlsConfig(bypass=names).bypass == names


def test_other_ports_may_be_intercepted_in_the_given_order() -> None:
    assert TlsConfig(intercepted_ports=(8443, 443)).intercepted_ports == (8443, 443)


def test_a_missing_file_is_refused_naming_the_field(tmp_path: Path, pem: Path) -> None:
    missing = tmp_path / "absent.pem"
    with pytest.raises(InvalidConfigError, match=r"^network\.tls\.ca_cert: .* is not an existing"):
        TlsConfig(ca_cert=missing, ca_key=pem)
    with pytest.raises(InvalidConfigError, match=r"^network\.tls\.ca_key: .* is not an existing"):
        TlsConfig(ca_cert=pem, ca_key=missing)
    with pytest.raises(InvalidConfigError, match=r"upstream_ca_certs\[1\]: .* is not an existing"):
        TlsConfig(upstream_ca_cert=[pem, missing])
    with pytest.raises(InvalidConfigError, match=r"upstream_ca_certs\[0\]: .* is not an existing"):
        TlsConfig(upstream_ca_cert=tmp_path)


@pytest.mark.parametrize("given", ["ca_cert", "ca_key"])
def test_one_of_the_ca_pair_alone_is_refused(given: str, pem: Path) -> None:
    missing = "ca_key" if given == "ca_cert" else "ca_cert"
    with pytest.raises(
        InvalidConfigError, match=rf"^network\.tls: {given} is given without {missing}"
    ):
        TlsConfig(ca_cert=pem) if given == "ca_cert" else TlsConfig(ca_key=pem)
    with pytest.raises(InvalidConfigError, match=rf"^network\.tls: {given} is given without"):
        Network(tls={given: str(pem)})  # type: ignore[arg-type]


def test_paths_are_made_absolute(
    pem: Path, key: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    tls = TlsConfig(ca_cert="ca.pem", ca_key=Path("ca.key"), upstream_ca_cert="./ca.pem")
    assert tls.ca_cert == str(pem.resolve())
    assert tls.ca_key == str(key.resolve())
    assert tls.upstream_ca_certs == (str(pem.resolve()),)
    assert all(os.path.isabs(path) for path in (tls.ca_cert, tls.ca_key))


def test_upstream_ca_cert_takes_one_path_several_or_none(pem: Path, key: Path) -> None:
    assert TlsConfig(upstream_ca_cert=None).upstream_ca_certs == ()
    assert TlsConfig(upstream_ca_cert=pem).upstream_ca_certs == (str(pem),)
    assert TlsConfig(upstream_ca_cert=str(pem)).upstream_ca_certs == (str(pem),)
    both = TlsConfig(upstream_ca_cert=[pem, str(key)])
    assert both.upstream_ca_certs == (str(pem), str(key))
    with pytest.raises(InvalidConfigError, match=r"upstream_ca_cert or upstream_ca_certs"):
        TlsConfig(upstream_ca_cert=pem, upstream_ca_certs=[])  # type: ignore[call-arg]


def test_the_stored_json_has_the_supervisor_shape(pem: Path, key: Path) -> None:
    tls = TlsConfig(
        bypass=["*.internal.example", "pinned.example.com"],
        verify_upstream=False,
        intercepted_ports=[443, 8443],
        block_quic=True,
        ca_cert=pem,
        ca_key=key,
        upstream_ca_cert=pem,
    )
    stored = json.loads(Network(tls=tls).model_dump_json())
    assert stored["tls"] == {
        "intercepted_ports": [443, 8443],
        "bypass": ["*.internal.example", "pinned.example.com"],
        "verify_upstream": False,
        "upstream_ca_certs": [str(pem)],
        "ca_cert": str(pem),
        "ca_key": str(key),
        "block_quic": True,
    }


def test_a_network_without_interception_stores_no_tls_key() -> None:
    # The supervisor refuses keys it does not know; an older one still reads this network.
    assert "tls" not in json.loads(Network().model_dump_json())
    assert "tls" not in Network().model_dump()


def test_a_network_with_interception_round_trips_through_its_json(pem: Path, key: Path) -> None:
    network = Network("allow_all", tls=TlsConfig(bypass=["a.example"], upstream_ca_cert=pem))
    assert Network.model_validate_json(network.model_dump_json()) == network
    config = sandbox_config(name="n", network=network)
    assert SandboxConfig.model_validate_json(config.model_dump_json()).network == network
    own_ca = network.model_copy(update={"tls": TlsConfig(ca_cert=pem, ca_key=key)})
    assert Network.model_validate_json(own_ca.model_dump_json()) == own_ca


def test_a_stored_network_is_read_back_after_its_files_are_gone(pem: Path, key: Path) -> None:
    # Checked at creation; starting the sandbox says so if the supervisor cannot read them.
    config = sandbox_config(
        name="n", network=Network(tls=TlsConfig(ca_cert=pem, ca_key=key, upstream_ca_cert=pem))
    )
    text = config.model_dump_json()
    pem.unlink()
    stored = SandboxConfig.model_validate_json(text, context=STORED_CONFIG)
    assert stored.network.tls is not None
    assert stored.network.tls.ca_cert == str(pem)
    with pytest.raises(Exception, match="is not an existing file"):
        SandboxConfig.model_validate_json(text)


def test_with_ports_keeps_the_interception() -> None:
    network = Network(tls=TlsConfig(bypass=["a.example"]))
    assert network.with_ports({8080: 80}).tls == network.tls


def test_tls_is_keyword_only() -> None:
    with pytest.raises(TypeError, match="at most 0 positional"):
        TlsConfig(("a.example",))  # type: ignore[call-arg]

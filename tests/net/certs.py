"""Certificates for the fake internet's HTTPS hosts, made with the ``openssl`` command.

Two CAs: the test CA, which a test hands to the sandbox as the upstream trust (and which
signs the certificates of the trusted host and of the HTTP/2-only host), and a rogue CA
nobody is told about, which signs the certificate of the untrusted host. Keys are P-256
(quick to make: the whole set takes a few tens of milliseconds).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

OPENSSL_TIMEOUT_S = 30.0
VALIDITY_DAYS = 7
TEST_CA_NAME = "msb fake internet test CA"
ROGUE_CA_NAME = "msb fake internet rogue CA"
_KEY_OPTIONS = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


class CertificateError(RuntimeError):
    """``openssl`` failed to make a key or certificate."""


@dataclass(frozen=True)
class ServerCertificate:
    """A server's certificate (PEM) and its private key (PEM)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class FakePki:
    """The test CA's certificate, and each HTTPS host's certificate and key."""

    ca_cert: Path
    rogue_ca_cert: Path
    trusted: ServerCertificate
    untrusted: ServerCertificate
    #: The HTTP/2-only host's, signed by the test CA.
    h2_only: ServerCertificate


def _openssl(*arguments: str) -> None:
    if shutil.which("openssl") is None:
        raise CertificateError("`openssl` is missing: install the Debian package openssl")
    result = subprocess.run(
        ["openssl", *arguments], capture_output=True, text=True, timeout=OPENSSL_TIMEOUT_S
    )
    if result.returncode != 0:
        raise CertificateError(f"openssl {' '.join(arguments)} failed:\n{result.stderr}")


def _make_ca(directory: Path, stem: str, name: str) -> ServerCertificate:
    ca = ServerCertificate(directory / f"{stem}.pem", directory / f"{stem}.key")
    _openssl(
        "req",
        "-x509",
        *_KEY_OPTIONS,
        "-keyout",
        str(ca.key),
        "-out",
        str(ca.cert),
        "-days",
        str(VALIDITY_DAYS),
        "-subj",
        f"/CN={name}",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    )
    return ca


def _make_server(
    directory: Path, stem: str, ca: ServerCertificate, names: Sequence[str], address: str
) -> ServerCertificate:
    """A server certificate signed by ``ca`` for ``names`` and ``address``, as rustls and
    curl verify one: names in the subjectAltName, the serverAuth usage, not a CA."""
    server = ServerCertificate(directory / f"{stem}.pem", directory / f"{stem}.key")
    request = directory / f"{stem}.csr"
    extensions = directory / f"{stem}.ext"
    alt_names = ",".join([*(f"DNS:{name}" for name in names), f"IP:{address}"])
    extensions.write_text(
        f"subjectAltName={alt_names}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "req",
        "-new",
        *_KEY_OPTIONS,
        "-keyout",
        str(server.key),
        "-out",
        str(request),
        "-subj",
        f"/CN={names[0]}",
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(request),
        "-CA",
        str(ca.cert),
        "-CAkey",
        str(ca.key),
        "-CAcreateserial",
        "-out",
        str(server.cert),
        "-days",
        str(VALIDITY_DAYS),
        "-extfile",
        str(extensions),
    )
    return server


def make_test_pki(
    directory: Path,
    *,
    trusted_names: Sequence[str],
    trusted_address: str,
    untrusted_names: Sequence[str],
    untrusted_address: str,
    h2_only_names: Sequence[str],
    h2_only_address: str,
) -> FakePki:
    """Both CAs and the three servers' certificates, in ``directory`` (created)."""
    directory.mkdir(parents=True, exist_ok=True)
    test_ca = _make_ca(directory, "test-ca", TEST_CA_NAME)
    rogue_ca = _make_ca(directory, "rogue-ca", ROGUE_CA_NAME)
    return FakePki(
        ca_cert=test_ca.cert,
        rogue_ca_cert=rogue_ca.cert,
        trusted=_make_server(directory, "trusted", test_ca, trusted_names, trusted_address),
        untrusted=_make_server(
            directory, "untrusted", rogue_ca, untrusted_names, untrusted_address
        ),
        h2_only=_make_server(directory, "h2-only", test_ca, h2_only_names, h2_only_address),
    )

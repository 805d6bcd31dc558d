"""A sandbox's network: its policy (a preset or rules), its DNS settings, its published
ports and its TLS interception, as :class:`Network` and the types it is made of.

Every value is checked here, on construction, as the sandbox's supervisor will read it
(``native/net``: the policy's destinations, port ranges and groups, and the DNS settings), so
that a network this accepts is never refused when the sandbox starts. Where a check here is
stricter, its comment says why. A bad value raises :class:`InvalidConfigError` naming the
field: ``network.policy.rules[2].destination: '10.0.0.0/33' is not a valid CIDR ...``.

The configuration is stored as JSON of the supervisor's shape, in which a preset is its name
and the deny lists sit in ``dns`` beside the nameservers::

    {"policy": "public_only",
     "dns": {"nameservers": [], "query_timeout_ms": null, "rebind_protection": true,
             "deny_domains": [], "deny_domain_suffixes": []},
     "ports": [{"host_address": "127.0.0.1", "host_port": 8080, "guest_port": 80,
                "protocol": "tcp"}],
     "max_connections": null,
     "tls": {"intercepted_ports": [443], "bypass": ["*.internal.example"],
             "verify_upstream": true, "upstream_ca_certs": ["/abs/test-ca.pem"],
             "ca_cert": null, "ca_key": null, "block_quic": false}}

A network without TLS interception has no ``tls`` key.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SerializerFunctionWrapHandler,
    Strict,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import InitErrorDetails

from . import _native
from .errors import InvalidConfigError
from .validation import Checked, HostFile, problem_at, raise_problems, relocated

# -- vocabulary ------------------------------------------------------------------------------


class Action(StrEnum):
    ALLOW = "allow"
    DENY = "deny"


class Direction(StrEnum):
    """Which flows a rule covers: opened by the sandbox, towards it (through a published
    port), or both."""

    EGRESS = "egress"
    INGRESS = "ingress"
    ANY = "any"


class Protocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    ICMPV4 = "icmpv4"
    ICMPV6 = "icmpv6"


class PortProtocol(StrEnum):
    """What a published port carries."""

    TCP = "tcp"
    UDP = "udp"


class DestGroup(StrEnum):
    """Named sets of destinations; every address is in exactly one of them or in ``public``
    (which a rule may name as the string ``"public"``). ``metadata`` (169.254.169.254) wins
    over ``link-local``; ``host`` is the gateway, ``host.msb.internal``, and the host's own
    addresses."""

    LOOPBACK = "loopback"
    PRIVATE = "private"
    LINK_LOCAL = "link-local"
    METADATA = "metadata"
    MULTICAST = "multicast"
    HOST = "host"


#: What a rule's destination may name as a group.
_GROUP_NAMES: Final = (*(group.value for group in DestGroup), "public")
#: A policy preset, by the name it is stored under.
PresetName = Literal["none", "public_only", "allow_all"]
#: The names the SDK takes for each preset.
_PRESET_SPELLINGS: Final[dict[str, PresetName]] = {
    "none": "none",
    "public_only": "public_only",
    "public-only": "public_only",
    "allow_all": "allow_all",
    "allow-all": "allow_all",
}
#: The one-word names ``msb --net`` and the dashboard offer.
PRESET_SHORT_NAMES: Final[dict[str, PresetName]] = {
    "public": "public_only",
    "none": "none",
    "all": "allow_all",
}
#: What :attr:`Network.policy_name` says of a policy that is not a preset.
CUSTOM_POLICY = "custom"
DEFAULT_HOST_ADDRESS = "127.0.0.1"

MIN_PORT, MAX_PORT = 1, 65535
#: What the supervisor waits for one nameserver when ``query_timeout_ms`` is ``None``.
DEFAULT_QUERY_TIMEOUT_MS = 5000
#: The supervisor adds the timeout to a monotonic clock reading, which a value near 2**64
#: ms would overflow; no DNS answer is worth waiting an hour for.
MAX_QUERY_TIMEOUT_MS = 3_600_000
#: The most connections the supervisor gives one sandbox (each holds up to two 256 KiB
#: buffers); the same bound as its own ``MAX_CONNECTIONS_LIMIT``.
MAX_CONNECTIONS_LIMIT = 16384

_StrictInt = Annotated[int, Strict()]
_StrictBool = Annotated[bool, Strict()]

# -- checks shared by the models ---------------------------------------------------------------

#: One label of a domain name: letters, digits and hyphens, not at either end (the policy's
#: own rule; DNS would take more, but a rule or a deny entry never needs it).
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
_DIGITS = re.compile(r"[0-9]+")
#: What a misspelt group looks like: one word, no dot.
_WORD = re.compile(r"[A-Za-z0-9_-]+")
#: ``address/prefix`` with the prefix's digit counts of the supervisor's CIDR parser.
_CIDR = re.compile(r"(?P<address>[^/]+)/(?P<prefix>[0-9]{1,3})")
_BRACKETED_SOCKET = re.compile(r"\[(?P<address>[^\]]+)\]:(?P<port>[0-9]+)")
MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63


def _ip_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an IP address, or ``None``. A zone (``fe80::1%eth0``) is not taken: the
    supervisor's parser has no zones."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _domain_problem(name: str) -> str | None:
    """Why ``name`` (without a leading dot) is not a domain name, or ``None``."""
    name = name.removesuffix(".")
    if not name:
        return "it has no labels"
    if len(name.encode()) > MAX_NAME_LENGTH:
        return f"it is longer than {MAX_NAME_LENGTH} characters"
    labels = name.split(".")
    for label in labels:
        if not label:
            return "it has an empty label"
        if len(label) > MAX_LABEL_LENGTH:
            return f"a label is longer than {MAX_LABEL_LENGTH} characters"
        if _LABEL.fullmatch(label) is None:
            return f"label {label!r} is not letters, digits and inner hyphens"
        if _is_bad_punycode(label):
            return f"label {label!r} is not valid punycode"
    if labels[-1].isdigit():
        # A mistyped address such as 10.0.0.256 would otherwise be a name that never matches.
        return "its last label is numeric, so it looks like a mistyped IP address"
    return None


def _is_bad_punycode(label: str) -> bool:
    """Whether an ``xn--`` label is not one the DNS deny list's IDNA parser takes back.
    Its full rules (UTS 46) are large; this takes a subset of them: the label must decode and
    encode back to itself, to letters and digits of left-to-right scripts that NFKC case
    folding leaves as they are, not starting with a combining mark."""
    if not label.lower().startswith("xn--"):
        return False
    encoded = label[4:].lower()
    try:
        decoded = encoded.encode("ascii").decode("punycode")
    except UnicodeError:
        return True
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", decoded).casefold())
    return (
        decoded.isascii()
        or decoded.encode("punycode").decode("ascii") != encoded
        or folded != decoded
        or not all(char.isalnum() or char == "-" for char in decoded)
        or unicodedata.category(decoded[0]).startswith("M")
        # Right-to-left letters bring the bidi rules, which also constrain the other labels.
        or any(unicodedata.bidirectional(char) in ("R", "AL", "AN") for char in decoded)
    )


def check_domain(text: str) -> str:
    """``text`` if it is a domain name (a trailing dot allowed), else ``ValueError``."""
    problem = _domain_problem(text)
    if problem is not None:
        raise ValueError(f"{text!r} is not a valid domain: {problem}")
    return text


def check_zone(text: str) -> str:
    """``text`` if it is a zone: a domain name, with or without a leading dot."""
    problem = _domain_problem(text.removeprefix("."))
    if problem is not None:
        raise ValueError(f"{text!r} is not a valid domain: {problem}")
    return text


def _check_cidr(text: str) -> None:
    match = _CIDR.fullmatch(text)
    address = _ip_address(match["address"]) if match else None
    if match is None or address is None:
        raise ValueError(f"{text!r} is not a valid CIDR: expected ADDRESS/PREFIX")
    # The supervisor's parser reads at most 2 prefix digits for IPv4 and 3 for IPv6.
    longest, digits = (32, 2) if address.version == 4 else (128, 3)
    if len(match["prefix"]) > digits or int(match["prefix"]) > longest:
        raise ValueError(
            f"{text!r} is not a valid CIDR: an IPv{address.version} prefix is 0..{longest}"
        )


def check_destination(text: str) -> str:
    """A rule's destination: ``*``, a group, a CIDR (it has a ``/``), an IP address,
    ``.suffix`` or a domain. A word without a dot is taken for a group, since a one-label
    name in a rule is far more often a misspelt group than a name (write ``localhost.`` to
    mean the name)."""
    if not text:
        raise ValueError("the destination is empty")
    if text == "*" or (text.isascii() and text.lower() in _GROUP_NAMES):
        return text
    if "/" in text:
        _check_cidr(text)
        return text
    if _ip_address(text) is not None:
        return text
    if _WORD.fullmatch(text):
        groups = ", ".join(_GROUP_NAMES)
        raise ValueError(f"unknown group {text!r}, not one of {groups} (a domain has a dot)")
    return check_zone(text)


def check_port(value: object) -> int:
    """A port number, 1 to 65535."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"a port is a whole number, not {value!r}")
    if not MIN_PORT <= value <= MAX_PORT:
        raise ValueError(f"{value} is outside {MIN_PORT}..{MAX_PORT}")
    return value


def _port_text(text: str, whole: str) -> int:
    if _DIGITS.fullmatch(text) is None:
        raise ValueError(f"{whole!r} is neither a number nor a lo-hi range")
    number = int(text)
    if not MIN_PORT <= number <= MAX_PORT:
        raise ValueError(f"{whole!r}: {number} is outside {MIN_PORT}..{MAX_PORT}")
    return number


def check_port_range(value: object) -> int | str | None:
    """A rule's port: a number, a ``"443"`` text, or an inclusive ``"lo-hi"`` range."""
    if value is None:
        return None
    if not isinstance(value, str):
        return check_port(value)
    first, dash, last = value.partition("-")
    low = _port_text(first, value)
    high = _port_text(last, value) if dash else low
    if low > high:
        raise ValueError(f"range {value} is reversed")
    return value


def check_nameserver(text: str) -> str:
    """An IP address (port 53), ``address:port`` or ``[v6-address]:port``."""
    bracketed = _BRACKETED_SOCKET.fullmatch(text)
    if bracketed is not None:
        address, port = bracketed["address"], bracketed["port"]
        valid = isinstance(_ip_address(address), ipaddress.IPv6Address)
    elif text.count(":") == 1:
        address, port = text.split(":")
        valid = isinstance(_ip_address(address), ipaddress.IPv4Address)
    else:
        address, port, valid = text, "53", _ip_address(text) is not None
    if not valid or _DIGITS.fullmatch(port) is None or not MIN_PORT <= int(port) <= MAX_PORT:
        raise ValueError(f"{text!r} is not an IP address or address:port with a port 1..65535")
    return text


def _not_a_text(value: object) -> object:
    """A list field given one text would otherwise read as a list of its characters."""
    if isinstance(value, str):
        raise ValueError(f"expected a list of texts, not the text {value!r}")
    return value


_NOT_A_TEXT = BeforeValidator(_not_a_text)
Nameservers = Annotated[tuple[Annotated[str, AfterValidator(check_nameserver)], ...], _NOT_A_TEXT]
DomainNames = Annotated[tuple[Annotated[str, AfterValidator(check_domain)], ...], _NOT_A_TEXT]
DomainSuffixes = Annotated[tuple[Annotated[str, AfterValidator(check_zone)], ...], _NOT_A_TEXT]

# -- the models --------------------------------------------------------------------------------


class Rule(Checked):
    """One rule of a :class:`NetworkPolicy`; the first rule matching a flow decides it. A
    destination, protocol or port left ``None`` matches any.

    ``destination``: ``"*"``, a :class:`DestGroup` (or ``"public"``), a CIDR
    (``"10.0.0.0/8"``), an IP address, a suffix (``".example.com"``: the name and every name
    below it) or a domain (``"api.example.com"``), matched through the names the sandbox
    resolved. ``port``: a number or an inclusive ``"lo-hi"`` range.
    """

    positional = ("action", "direction", "destination", "protocol", "port")

    action: Action
    direction: Direction = Direction.EGRESS
    destination: str | None = None
    protocol: Protocol | None = None
    port: _StrictInt | str | None = None

    if TYPE_CHECKING:

        def __init__(
            self,
            action: Action | str,
            direction: Direction | str = Direction.EGRESS,
            destination: str | None = None,
            protocol: Protocol | str | None = None,
            port: int | str | None = None,
        ) -> None: ...

    @field_validator("destination", mode="before")
    @classmethod
    def _destination(cls, value: object) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValueError(f"expected a text, not {value!r}")
        # A DestGroup is stored as its plain name.
        return check_destination(str(value))

    @field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: object) -> int | str | None:
        return check_port_range(value)

    def __str__(self) -> str:
        """The rule in the ``--net-rule`` grammar (see :func:`parse_rule`), in its canonical
        form: ``allow@.example.com:tcp:443``, ``deny:any@10.0.0.0/8``."""
        return rule_text(self)

    @classmethod
    def allow(
        cls,
        *,
        direction: Direction | str = Direction.EGRESS,
        protocol: Protocol | str | None = None,
        port: int | str | None = None,
        destination: str | None = None,
    ) -> Rule:
        return cls(Action.ALLOW, direction, destination, protocol, port)

    @classmethod
    def deny(
        cls,
        *,
        direction: Direction | str = Direction.EGRESS,
        protocol: Protocol | str | None = None,
        port: int | str | None = None,
        destination: str | None = None,
    ) -> Rule:
        return cls(Action.DENY, direction, destination, protocol, port)


class NetworkPolicy(Checked):
    """Rules in order, and what happens to a flow no rule matches. The gateway's DNS is
    always reachable, and each query is decided by its name: the first egress rule about
    the name that allows it (a destination absent, ``*``, ``public``, or a domain or suffix
    matching it), or denies it with no protocol and no port, decides; else the egress
    default. A policy whose default denies egress resolves only the names a rule allows."""

    positional = ("default_egress", "default_ingress", "rules")

    default_egress: Action = Action.DENY
    default_ingress: Action = Action.ALLOW
    rules: tuple[Rule, ...] = ()

    if TYPE_CHECKING:

        def __init__(
            self,
            default_egress: Action | str = Action.DENY,
            default_ingress: Action | str = Action.ALLOW,
            rules: Iterable[Rule] = (),
        ) -> None: ...

    @classmethod
    def from_preset(cls, preset: str) -> NetworkPolicy:
        """The rules a preset stands for (``"public_only"``, ``"none"``, ``"allow_all"``, in
        any of their spellings), as a policy to edit from. The presets are defined once, by
        the sandbox's gateway, which spells them out here."""
        if preset not in _PRESET_SPELLINGS:
            presets = ", ".join(_PRESET_SPELLINGS)
            raise InvalidConfigError(f"unknown preset {preset!r}: expected one of {presets}")
        return cls.model_validate_json(_native.preset_policy(_PRESET_SPELLINGS[preset]))


class DnsConfig(Checked):
    """How the gateway resolves the guest's names. ``nameservers`` (an IP, ``ip:port`` or
    ``[v6]:port``) are tried in order; none means the host's resolvers. ``query_timeout_ms``
    is per nameserver tried (``None``: 5000). ``rebind_protection`` drops the address records
    that point a name at an internal address (loopback, private, link-local, multicast,
    unspecified), unless the policy allows that address for that name."""

    positional = ("rebind_protection", "nameservers", "query_timeout_ms")

    rebind_protection: _StrictBool = True
    nameservers: Nameservers = ()
    query_timeout_ms: Annotated[_StrictInt, Field(ge=1, le=MAX_QUERY_TIMEOUT_MS)] | None = None

    if TYPE_CHECKING:

        def __init__(
            self,
            rebind_protection: bool = True,
            nameservers: Iterable[str] = (),
            query_timeout_ms: int | None = None,
        ) -> None: ...


class PublishedPort(Checked):
    """A host port forwarded to a guest port, bound on ``host_address`` (default: only the
    host's loopback)."""

    positional = ("host_port", "guest_port", "protocol", "host_address")

    host_port: _StrictInt
    guest_port: _StrictInt
    protocol: PortProtocol = PortProtocol.TCP
    host_address: str = DEFAULT_HOST_ADDRESS

    if TYPE_CHECKING:

        def __init__(
            self,
            host_port: int,
            guest_port: int,
            protocol: PortProtocol | str = PortProtocol.TCP,
            host_address: str = DEFAULT_HOST_ADDRESS,
        ) -> None: ...

    _ports = field_validator("host_port", "guest_port")(check_port)

    @field_validator("host_address")
    @classmethod
    def _normalized_address(cls, value: str) -> str:
        address = _ip_address(value)
        if address is None:
            raise ValueError(f"{value!r} is not an IP address")
        return str(address)

    def overlaps(self, other: PublishedPort) -> bool:
        """Whether binding both would collide: the same port and protocol on the same
        address, or on any address of the family when one is the wildcard (``::`` takes IPv4
        too, as a Linux dual-stack socket does)."""
        if (self.host_port, self.protocol) != (other.host_port, other.protocol):
            return False
        mine = ipaddress.ip_address(self.host_address)
        theirs = ipaddress.ip_address(other.host_address)
        if mine == theirs or any(a.version == 6 and a.is_unspecified for a in (mine, theirs)):
            return True
        return mine.version == theirs.version and (mine.is_unspecified or theirs.is_unspecified)

    def __str__(self) -> str:
        """``127.0.0.1:8080 -> 80/tcp``."""
        address = self.host_address
        host = f"[{address}]" if ":" in address else address
        return f"{host}:{self.host_port} -> {self.guest_port}/{self.protocol}"


#: Written before a bypass name to bypass every name below it (not the name itself).
BYPASS_WILDCARD = "*."


def check_bypass_name(text: str) -> str:
    """A TLS bypass entry: a domain name, or ``*.`` and a domain for every name below it.
    Stricter than the gateway's list, which takes any text without a misplaced ``*``: an
    entry that is not a domain name could never equal the name a guest asks for."""
    if not text.strip():
        raise ValueError("an empty name cannot be bypassed")
    name = text.removeprefix(BYPASS_WILDCARD)
    if "*" in name:
        raise ValueError(f"{text!r}: a wildcard may only be a leading {BYPASS_WILDCARD!r}")
    check_domain(name)
    return text


def _host_path_text(value: object) -> object:
    """A path given as a :class:`~pathlib.Path` is stored as its text."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _one_or_more_paths(value: object) -> object:
    """``upstream_ca_cert`` takes one path, several, or ``None`` for none."""
    if value is None:
        return ()
    if isinstance(value, str | os.PathLike):
        return (value,)
    return value


def _distinct_ports(ports: tuple[int, ...]) -> tuple[int, ...]:
    if not ports:
        raise ValueError("at least one port is intercepted (leave tls out for none)")
    repeated = sorted({port for port in ports if ports.count(port) > 1})
    if repeated:
        raise ValueError(f"port {repeated[0]} is given twice")
    return ports


_HostFilePath = Annotated[HostFile, BeforeValidator(_host_path_text)]
BypassNames = Annotated[tuple[Annotated[str, AfterValidator(check_bypass_name)], ...], _NOT_A_TEXT]
InterceptedPorts = Annotated[
    tuple[Annotated[int, BeforeValidator(check_port)], ...], AfterValidator(_distinct_ports)
]
UpstreamCaCerts = Annotated[tuple[_HostFilePath, ...], BeforeValidator(_one_or_more_paths)]
#: The port of HTTPS, intercepted unless the ports are given.
HTTPS_PORT = 443


class TlsConfig(Checked):
    """TLS interception: the sandbox's gateway ends the guest's TLS on ``intercepted_ports``
    with a certificate for the name the guest asked (minted by an interception CA the guest
    trusts) and opens its own TLS to the real server, so it sees the requests in the clear.

    ``bypass``: names never intercepted (``api.example.com``, or ``*.example.com`` for every
    name below it), whose guests see the real server's certificate. ``verify_upstream``:
    verify the real server against the host's trust store and ``upstream_ca_cert`` (one PEM
    file or several, stored as ``upstream_ca_certs``). ``ca_cert`` and ``ca_key``: the PEM
    files of your own interception CA, both or neither; neither means the home's CA,
    generated on first use. ``block_quic``: refuse UDP to the intercepted ports, so HTTP/3
    clients fall back to TCP, which is intercepted. Every path is made absolute and must be
    an existing file.
    """

    error_location = "network.tls"

    intercepted_ports: InterceptedPorts = (HTTPS_PORT,)
    bypass: BypassNames = ()
    verify_upstream: _StrictBool = True
    upstream_ca_certs: UpstreamCaCerts = ()
    ca_cert: _HostFilePath | None = None
    ca_key: _HostFilePath | None = None
    block_quic: _StrictBool = False

    if TYPE_CHECKING:

        def __init__(
            self,
            *,
            bypass: Iterable[str] = (),
            verify_upstream: bool = True,
            intercepted_ports: Iterable[int] = (HTTPS_PORT,),
            block_quic: bool = False,
            ca_cert: str | os.PathLike[str] | None = None,
            ca_key: str | os.PathLike[str] | None = None,
            upstream_ca_cert: str
            | os.PathLike[str]
            | Iterable[str | os.PathLike[str]]
            | None = None,
        ) -> None: ...

    @model_validator(mode="before")
    @classmethod
    def _upstream_ca_cert(cls, values: Any) -> Any:
        """The constructor's ``upstream_ca_cert`` is the stored ``upstream_ca_certs``."""
        if not isinstance(values, Mapping) or "upstream_ca_cert" not in values:
            return values
        if "upstream_ca_certs" in values:
            raise ValueError("give upstream_ca_cert or upstream_ca_certs, not both")
        values = dict(values)
        values["upstream_ca_certs"] = values.pop("upstream_ca_cert")
        return values

    @model_validator(mode="after")
    def _ca_pair(self) -> TlsConfig:
        if (self.ca_cert is None) != (self.ca_key is None):
            given, missing = ("ca_cert", "ca_key") if self.ca_key is None else ("ca_key", "ca_cert")
            raise ValueError(f"{given} is given without {missing}: give both files or neither")
        return self


def _policy(value: object) -> PresetName | NetworkPolicy:
    if value is None:
        return "public_only"
    if isinstance(value, str):
        if value not in _PRESET_SPELLINGS:
            presets = ", ".join(_PRESET_SPELLINGS)
            raise ValueError(f"unknown preset {value!r} (one of {presets}), or a NetworkPolicy")
        return _PRESET_SPELLINGS[value]
    if isinstance(value, NetworkPolicy):
        return value
    if isinstance(value, Mapping):
        return NetworkPolicy.model_validate(value)
    raise ValueError(f"expected a preset name or a NetworkPolicy, not {value!r}")


def _published_ports(value: object) -> tuple[PublishedPort, ...]:
    """``{host_port: guest_port}`` or published ports (or their stored dicts); a problem is
    placed under the entry's host port, ``ports[8080]``."""
    if isinstance(value, str) or not isinstance(value, Mapping | Iterable):
        raise ValueError(f"expected {{host_port: guest_port}} or PublishedPorts, not {value!r}")
    entries: Iterable[object] = (
        ({"host_port": host, "guest_port": guest} for host, guest in value.items())
        if isinstance(value, Mapping)
        else value
    )
    ports: list[PublishedPort] = []
    problems: list[InitErrorDetails] = []
    for index, entry in enumerate(entries):
        host_port = entry.get("host_port") if isinstance(entry, Mapping) else None
        key = host_port if isinstance(host_port, int) else index
        try:
            port = PublishedPort.model_validate(entry)
        except ValidationError as error:
            problems += relocated(error, key)
            continue
        earlier = next((other for other in ports if port.overlaps(other)), None)
        if earlier is not None:
            problems.append(problem_at(port.host_port, f"{port} collides with {earlier}", entry))
        ports.append(port)
    raise_problems("ports", problems)
    return tuple(ports)


#: Fields of :class:`Network` stored inside ``dns``.
_DENY_LISTS: Final = ("deny_domains", "deny_domain_suffixes")


class Network(Checked):
    """A sandbox's network. ``policy``: a preset (``"public_only"``, the default; ``"none"``;
    ``"allow_all"``) or a :class:`NetworkPolicy`. ``ports``: ``{host_port: guest_port}`` (TCP
    on 127.0.0.1) or :class:`PublishedPort` entries. ``deny_domains`` (exact names) and
    ``deny_domain_suffixes`` (zones, apex included) are answered NXDOMAIN. Without a
    ``policy``, deny lists narrow ``public_only``; they never widen the default to
    everything (upstream 0.4.5 turned such a network into allow-all).

    Presets: ``public_only`` reaches the public internet and resolves every name, nothing
    private, link-local, metadata, loopback, multicast or of the host (not even its own
    public addresses); ``none`` reaches nothing, resolves no name, and takes no
    published-port connections; ``allow_all`` reaches everything, the host's loopback
    services included (through ``host.msb.internal``).
    """

    error_location = "network"
    positional = (
        "policy",
        "ports",
        "deny_domains",
        "deny_domain_suffixes",
        "dns",
        "max_connections",
        "tls",
    )

    policy: PresetName | NetworkPolicy = "public_only"
    ports: tuple[PublishedPort, ...] = ()
    deny_domains: DomainNames = ()
    deny_domain_suffixes: DomainSuffixes = ()
    dns: DnsConfig = Field(default_factory=DnsConfig)
    max_connections: Annotated[_StrictInt, Field(ge=1, le=MAX_CONNECTIONS_LIMIT)] | None = None
    tls: TlsConfig | None = None

    if TYPE_CHECKING:

        def __init__(
            self,
            policy: str | NetworkPolicy | None = None,
            ports: Mapping[int, int] | Iterable[PublishedPort] = (),
            deny_domains: Iterable[str] = (),
            deny_domain_suffixes: Iterable[str] = (),
            dns: DnsConfig | None = None,
            max_connections: int | None = None,
            tls: TlsConfig | None = None,
        ) -> None: ...

    @classmethod
    def none(cls) -> Network:
        return cls(policy="none")

    @classmethod
    def public_only(cls) -> Network:
        return cls(policy="public_only")

    @classmethod
    def allow_all(cls) -> Network:
        return cls(policy="allow_all")

    @property
    def policy_name(self) -> str:
        """The preset's name, or ``custom`` for a :class:`NetworkPolicy`."""
        return self.policy if isinstance(self.policy, str) else CUSTOM_POLICY

    def with_ports(self, ports: Mapping[int, int]) -> Network:
        """This network with ``ports`` (TCP on 127.0.0.1) published too; a host port that
        is already published is refused."""
        return Network(
            self.policy,
            [*self.ports, *Network(ports=ports).ports],
            self.deny_domains,
            self.deny_domain_suffixes,
            self.dns,
            self.max_connections,
            self.tls,
        )

    _policy = field_validator("policy", mode="before")(_policy)
    _ports = field_validator("ports", mode="before")(_published_ports)

    @field_validator("dns", mode="before")
    @classmethod
    def _default_dns(cls, value: object) -> object:
        return DnsConfig() if value is None else value

    @model_validator(mode="before")
    @classmethod
    def _deny_lists_from_dns(cls, values: Any) -> Any:
        """The stored shape keeps the deny lists in ``dns``, beside the nameservers."""
        if not isinstance(values, Mapping) or not isinstance(values.get("dns"), Mapping):
            return values
        dns = dict(values["dns"])
        lifted = {key: dns.pop(key) for key in _DENY_LISTS if key in dns}
        for key in lifted:
            if values.get(key):
                raise ValueError(f"{key} is given both in dns and beside it")
        return {**values, "dns": dns, **lifted}

    @model_serializer(mode="wrap")
    def _stored_shape(self, handler: SerializerFunctionWrapHandler) -> Any:
        """The deny lists go into ``dns``; no interception is no ``tls`` key at all, so a
        network without it is stored as before."""
        data = handler(self)
        for key in _DENY_LISTS:
            data["dns"][key] = data.pop(key)
        if data["tls"] is None:
            del data["tls"]
        return data


def parse_published_port(text: str) -> PublishedPort:
    """``HOST:GUEST[/tcp|udp]`` or ``ADDR:HOST:GUEST[/tcp|udp]`` (an IPv6 ADDR in brackets),
    as ``msb -p`` and the dashboard's ports field take it."""
    spec, slash, protocol = text.strip().partition("/")
    address, ports = _split_address(spec)
    parts = ports.split(":")
    usage = f"port {text.strip()!r}: expected HOST:GUEST[/udp] or ADDR:HOST:GUEST[/tcp|udp]"
    if len(parts) != 2 or not all(_DIGITS.fullmatch(part) for part in parts):
        raise InvalidConfigError(usage)
    if slash and protocol not in tuple(PortProtocol):
        raise InvalidConfigError(usage)
    try:
        return PublishedPort(
            int(parts[0]),
            int(parts[1]),
            protocol or PortProtocol.TCP,
            address or DEFAULT_HOST_ADDRESS,
        )
    except InvalidConfigError as error:
        raise InvalidConfigError(f"port {text.strip()!r}: {error}") from None


def _split_address(spec: str) -> tuple[str | None, str]:
    """``[::1]:8080:80`` → (``::1``, ``8080:80``); ``1.2.3.4:8080:80`` → (``1.2.3.4``, ...);
    ``8080:80`` → (``None``, ``8080:80``)."""
    if spec.startswith("["):
        address, bracket, rest = spec[1:].partition("]")
        return (address, rest[1:]) if bracket and rest.startswith(":") else (None, spec)
    if spec.count(":") == 2:
        address, _, rest = spec.partition(":")
        return address, rest
    return None, spec


def parse_published_ports(text: str) -> tuple[PublishedPort, ...]:
    """Ports separated by commas, spaces or lines: ``8080:80, 5353:53/udp``."""
    return tuple(parse_published_port(item) for item in re.split(r"[,\s]+", text) if item)


# -- the --net-rule grammar -------------------------------------------------------------------
#
# Upstream microsandbox's ``--net-rule`` tokens, ``<action>[:<direction>]@<target>[:<protocol>
# [:<ports>]]``, with our destinations as targets. From upstream: the keywords (exact, lower
# case), ``any`` for any target, protocol or ports, ``meta`` for ``metadata``, ``*.name`` and
# ``suffix=name`` for a suffix, ``domain=name`` for a one-label name, IPv6 in brackets, and
# the refusal of a port in the protocol's place. Ours: ``*`` and ``.name`` as our Rule writes
# them; no ``dns`` target, since the gateway's DNS is always reachable and each query is
# decided by its name.

#: The grammar, for error messages and help texts.
RULE_GRAMMAR = "<action>[:<direction>]@<target>[:<protocol>[:<ports>]]"
#: Written for a field that matches anything.
_ANY = "any"
_GROUP_ALIASES: Final = {"meta": DestGroup.METADATA.value}
_SUFFIX_PREFIXES: Final = ("*.", "suffix=")
_DOMAIN_PREFIX = "domain="
#: Upstream's ``dns`` target: the gateway's port 53, which is no longer a policy flow.
_DNS_TARGET = "dns"
#: Builds the error for a problem of the token being parsed.
_Problem = Callable[[str], InvalidConfigError]
_Keyword = TypeVar("_Keyword", Action, Direction, Protocol)


def rule_text(rule: Rule) -> str:
    """``rule`` in the ``--net-rule`` grammar, as the supervisor writes it in the flow log:
    the destination as it reads it (a group in lower case, a CIDR truncated to its network
    and a one-address one as the address, a name in lower case without its trailing dot),
    ``*`` for any destination, ``any`` for the protocol only when ports follow."""
    direction = "" if rule.direction is Direction.EGRESS else f":{rule.direction}"
    text = f"{rule.action}{direction}@{_target_text(rule.destination)}"
    if rule.protocol is None and rule.port is None:
        return text
    text += f":{rule.protocol or _ANY}"
    return text if rule.port is None else f"{text}:{_port_text_of(rule.port)}"


def _target_text(destination: str | None) -> str:
    if destination is None or destination == "*":
        return "*"
    if destination.lower() in _GROUP_NAMES:
        return destination.lower()
    network = _network_of(destination)
    if network is not None:
        single = network.prefixlen == network.max_prefixlen
        text = str(network.network_address) if single else str(network)
        return f"[{text}]" if network.version == 6 else text
    name = destination.removesuffix(".").lower()
    if name.startswith("."):
        return name
    # A one-label name would read back as a misspelt group.
    return name if "." in name else f"{_DOMAIN_PREFIX}{name}"


def _network_of(destination: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """A CIDR or an address destination as the network the supervisor matches: truncated,
    an IPv4-mapped IPv6 one as IPv4; ``None`` for other destinations."""
    if "/" in destination:
        network = ipaddress.ip_network(destination, strict=False)
    else:
        address = _ip_address(destination)
        if address is None:
            return None
        network = ipaddress.ip_network(address)
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


def _port_text_of(port: int | str) -> str:
    first, _, last = str(port).partition("-")
    low, high = int(first), int(last or first)
    return str(low) if low == high else f"{low}-{high}"


def parse_rule(text: str) -> Rule:
    """One ``--net-rule`` token as a :class:`Rule`::

        <action>[:<direction>]@<target>[:<protocol>[:<ports>]]

    ``action`` is ``allow`` or ``deny``; ``direction`` ``egress`` (the default), ``ingress``
    or ``any``; ``target`` ``*`` or ``any``, a group (``public``, ``private``, ``loopback``,
    ``link-local``, ``metadata`` or ``meta``, ``multicast``, ``host``), an IP address, a CIDR
    (IPv6 ones in brackets: ``[2001:db8::/32]``), a domain (``api.example.com``;
    ``domain=name`` for a one-label name) or a suffix (``.example.com``, ``*.example.com`` or
    ``suffix=example.com``); ``protocol`` ``tcp``, ``udp``, ``icmpv4``, ``icmpv6`` or ``any``;
    ``ports`` a number, ``lo-hi`` or ``any``. Raises :class:`InvalidConfigError` naming what
    is wrong."""
    token = text.strip()

    def problem(message: str) -> InvalidConfigError:
        return InvalidConfigError(f"rule {token!r}: {message}")

    left, at, right = token.partition("@")
    if not at:
        raise problem(f"it has no '@'; expected {RULE_GRAMMAR}")
    action_word, colon, direction_word = left.partition(":")
    action = _keyword(Action, action_word, "action", problem)
    direction = _keyword(Direction, direction_word, "direction", problem) if colon else None
    target, fields = _split_target(right, problem)
    if len(fields) > 2:
        raise problem(
            "it has fields after the ports (an IPv6 address goes in brackets: [2001:db8::1])"
        )
    if fields and _looks_like_ports(fields[0]):
        raise problem(
            f"{fields[0]!r} is a port, not a protocol; did you mean {target}:tcp:{fields[0]}?"
        )
    protocol = _protocol_of(fields[0], problem) if fields else None
    port = _ports_of(fields[1], problem) if len(fields) == 2 else None
    destination = _destination_of(target, problem)
    try:
        return Rule(action, direction or Direction.EGRESS, destination, protocol, port)
    except InvalidConfigError as error:
        raise problem(str(error)) from None


def parse_rules(text: str) -> tuple[Rule, ...]:
    """Rules separated by commas (``deny@10.0.0.0/8,allow@public``), in order, as one
    ``--net-rule`` value may hold them upstream; empty items are skipped."""
    return tuple(parse_rule(item) for item in text.split(",") if item.strip())


def _keyword(kind: type[_Keyword], word: str, what: str, problem: _Problem) -> _Keyword:
    try:
        return kind(word)
    except ValueError:
        choices = [member.value for member in kind]
        expected = f"{', '.join(choices[:-1])} or {choices[-1]}"
        raise problem(
            f"unknown {what} {word!r}, expected {expected}{_suggestion(word, choices)}"
        ) from None


def _suggestion(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _split_target(right: str, problem: _Problem) -> tuple[str, list[str]]:
    """The target and the ``:`` fields after it; an IPv6 target sits in brackets."""
    if not right.startswith("["):
        target, *fields = right.split(":")
        return target, fields
    inner, bracket, rest = right[1:].partition("]")
    if not bracket:
        raise problem("its '[' is not closed; an IPv6 address is written [2001:db8::1]")
    if rest and not rest.startswith(":"):
        raise problem(f"{rest!r} follows ']'; expected ':<protocol>' or nothing")
    if _network_of_text(inner) != 6:
        raise problem(f"{inner!r} is not an IPv6 address or CIDR; only those go in brackets")
    return inner, rest[1:].split(":") if rest else []


def _network_of_text(text: str) -> int | None:
    """The IP version of an address or CIDR text, or ``None``."""
    try:
        return ipaddress.ip_network(text, strict=False).version
    except ValueError:
        return None


def _looks_like_ports(field: str) -> bool:
    first, _, last = field.partition("-")
    return all(_DIGITS.fullmatch(part) for part in (first, last) if part) and bool(first)


def _protocol_of(word: str, problem: _Problem) -> Protocol | None:
    return None if word == _ANY else _keyword(Protocol, word, "protocol", problem)


def _ports_of(word: str, problem: _Problem) -> int | str | None:
    if word == _ANY:
        return None
    try:
        check_port_range(word)
    except ValueError as error:
        raise problem(f"ports {error}") from None
    return int(word) if _DIGITS.fullmatch(word) else word


def _destination_of(target: str, problem: _Problem) -> str | None:
    if not target:
        raise problem(f"the target is empty; expected {RULE_GRAMMAR}")
    if target in ("*", _ANY):
        return None
    if target == _DNS_TARGET:
        raise problem(
            "there is no 'dns' target: the gateway's DNS is always reachable and each "
            "query is decided by the rules about its name"
        )
    if target in _GROUP_ALIASES:
        return _GROUP_ALIASES[target]
    for prefix in _SUFFIX_PREFIXES:
        if target.startswith(prefix):
            return f".{target.removeprefix(prefix)}"
    if target.startswith(_DOMAIN_PREFIX):
        name = target.removeprefix(_DOMAIN_PREFIX)
        # A trailing dot makes a one-label name a name, not a group, for Rule.
        return name if "." in name.rstrip(".") else f"{name.rstrip('.')}."
    if _WORD.fullmatch(target) and target.lower() not in _GROUP_NAMES:
        raise problem(
            f"unknown target {target!r}: not a group ({', '.join(_GROUP_NAMES)}), and a "
            f"domain has a dot (domain={target} for a one-label name)"
            f"{_suggestion(target, _GROUP_NAMES)}"
        )
    return target

"""The flow log's records: what the sandbox's gateway decided about each flow and DNS query,
and how each flow ended, one JSON object a line in the sandbox's ``network.log``::

    {"kind":"flow","time":"2026-12-02T03:00:00.123Z","direction":"egress","protocol":"tcp",
     "src":"172.16.0.2:40000","dst":"203.0.113.7:443","domain":"api.example.com","sni":null,
     "action":"allow","rule":2,"rule_text":"allow@.example.com:tcp:443","reason":null}

``kind`` is ``flow`` (a decision), ``close`` (a flow ended: its byte counts and duration) or
``dns`` (a query: the name, the answer code and addresses). A secret put into a request is a
``flow`` record with reason ``secret_injected``, one sent where it may not go reason
``secret_violation``; both name the secret's variable in ``secret``. ``rule`` is the index of the
deciding rule in the policy's ``rules``, ``None`` for the default (``rule_text`` then reads
``default``). Read them with ``sandbox.network_log()``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .network import Action, Direction

#: ``rule_text`` of a decision no rule made.
DEFAULT_RULE_TEXT = "default"
#: The ``reason`` of a record of a secret's placeholder sent where the secret may not go.
SECRET_VIOLATION = "secret_violation"


class FlowLogEntry(BaseModel):
    """One record of the flow log. Fields a kind has no value for are ``None``."""

    # Fields a newer supervisor adds are ignored, not a reason to drop its records.
    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: Literal["flow", "close", "dns"]
    time: datetime
    direction: Direction | None = None
    protocol: str
    #: ``IP:PORT``, ``[IPv6]:PORT``, or a bare IP for ICMP. Ingress: the remote client.
    src: str | None = None
    #: As ``src``. Ingress: the guest's address and port.
    dst: str | None = None
    #: The name the destination was resolved from through the gateway's DNS.
    domain: str | None = None
    #: The TLS SNI or HTTP Host seen on the flow.
    sni: str | None = None
    action: Action | None = None
    rule: int | None = None
    rule_text: str | None = None
    reason: str | None = None
    #: The environment variable of the secret a ``secret_injected`` or ``secret_violation``
    #: record is about (never its value).
    secret: str | None = None
    #: ``close``: guest → peer.
    bytes_sent: int | None = None
    #: ``close``: peer → guest.
    bytes_received: int | None = None
    duration_ms: int | None = None
    #: ``dns``: the queried name, lower case without the trailing dot.
    name: str | None = None
    #: ``dns``: ``A``, ``AAAA``, ``TXT``, ..., or the type's number.
    qtype: str | None = None
    #: ``dns``: ``NOERROR``, ``NXDOMAIN``, ``SERVFAIL`` or ``REFUSED``.
    rcode: str | None = None
    #: ``dns``: the A/AAAA addresses given to the guest.
    answers: tuple[str, ...] = ()

    @field_validator("qtype", mode="before")
    @classmethod
    def _qtype_text(cls, value: object) -> object:
        """A type without a name is written as its number."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("answers", mode="before")
    @classmethod
    def _no_answers(cls, value: object) -> object:
        return () if value is None else value

    @classmethod
    def parse(cls, line: str) -> FlowLogEntry | None:
        """The record on ``line``, or ``None`` for a line that is not one (blank, cut short
        by a crash, or of an unknown kind)."""
        try:
            data = json.loads(line)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        try:
            return cls.model_validate(data)
        except ValidationError:
            return None

    @property
    def denied(self) -> bool:
        return self.action is Action.DENY

    @property
    def is_secret_violation(self) -> bool:
        return self.reason == SECRET_VIOLATION

    @property
    def _peer(self) -> str | None:
        """The peer's ``src`` or ``dst``: the destination, or for ingress the remote client
        (what a rule's destination names)."""
        return self.src if self.direction is Direction.INGRESS else self.dst

    @property
    def peer_host(self) -> str | None:
        """The peer's IP without its port (for ``dns``, the queried name): what a rule's
        destination would name."""
        if self.kind == "dns":
            return self.name
        return None if self._peer is None else _split_host_port(self._peer)[0]

    @property
    def peer_port(self) -> int | None:
        """The port a rule's ports are matched against: the destination's (for ingress, the
        guest's); ``None`` for ICMP and DNS records."""
        if self.kind == "dns" or self.dst is None:
            return None
        return _split_host_port(self.dst)[1]

    def __str__(self) -> str:
        """One line for people, e.g. ``03:00:00.123 deny  egress tcp 172.16.0.2:40000 ->
        203.0.113.7:443 (api.example.com) by rule 2 allow@.example.com:tcp:443``."""
        stamp = self.time.astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
        body = {"flow": self._decision, "close": self._close, "dns": self._query}[self.kind]()
        reason = f": {self.reason}" if self.reason else ""
        return f"{stamp} {body}{reason}"

    def _flow_text(self) -> str:
        domain = f" ({self.domain})" if self.domain else ""
        sni = f" sni {self.sni}" if self.sni and self.sni != self.domain else ""
        return f"{self.direction} {self.protocol} {self.src} -> {self.dst}{domain}{sni}"

    def _decided_by(self) -> str:
        if self.rule is not None:
            return f" by rule {self.rule} {self.rule_text or ''}".rstrip()
        return " by default" if self.rule_text == DEFAULT_RULE_TEXT else ""

    def _decision(self) -> str:
        return f"{self.action or '-':<5} {self._flow_text()}{self._decided_by()}"

    def _close(self) -> str:
        sent, received = self.bytes_sent or 0, self.bytes_received or 0
        return (
            f"close {self._flow_text()}, {sent} B sent, {received} B received"
            f" in {self.duration_ms or 0} ms"
        )

    def _query(self) -> str:
        answers = f" [{', '.join(self.answers)}]" if self.answers else ""
        query = f"{self.src} {self.qtype} {self.name} -> {self.rcode}{answers}"
        return f"{self.action or '-':<5} dns {self.protocol} {query}{self._decided_by()}"


def _split_host_port(address: str) -> tuple[str, int | None]:
    """``203.0.113.7:443`` → (``203.0.113.7``, 443); ``[2001:db8::1]:443`` →
    (``2001:db8::1``, 443); a bare IP (ICMP) → (the IP, ``None``)."""
    if address.startswith("["):
        host, _, port = address[1:].partition("]:")
        return host.rstrip("]"), int(port) if port.isdigit() else None
    if address.count(":") == 1:
        host, _, port = address.partition(":")
        return host, int(port) if port.isdigit() else None
    return address, None

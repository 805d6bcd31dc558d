"""A stand-in for the SDK's ``FlowLogEntry`` (``microsandbox_tui.network_log``), with the
fields, ``parse``, ``denied``, ``peer_host`` and ``peer_port`` that the flow log's line format
gives it, so that the dashboard's tests can feed flow log entries until that model exists."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from microsandbox_tui import Action, Direction


class FlowLogEntry(BaseModel):
    """One line of a sandbox's ``network.log``."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["flow", "close", "dns"]
    time: datetime
    direction: Direction | None = None
    protocol: str
    src: str | None = None
    dst: str | None = None
    domain: str | None = None
    sni: str | None = None
    action: Action | None = None
    rule: int | None = None
    rule_text: str | None = None
    reason: str | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None
    duration_ms: int | None = None
    name: str | None = None
    qtype: str | None = None
    rcode: str | None = None
    answers: tuple[str, ...] = ()

    @classmethod
    def parse(cls, line: str) -> FlowLogEntry | None:
        try:
            return cls.model_validate(json.loads(line))
        except ValueError:
            return None

    @property
    def denied(self) -> bool:
        return self.action is Action.DENY

    def _destination(self) -> tuple[str | None, int | None]:
        if self.dst is None:
            return None, None
        if self.dst.startswith("["):
            host, _, port = self.dst[1:].partition("]:")
            return host, int(port) if port else None
        host, colon, port = self.dst.rpartition(":")
        if not colon or ":" in host:
            return self.dst, None
        return host, int(port)

    @property
    def peer_host(self) -> str | None:
        return self.name if self.kind == "dns" else self._destination()[0]

    @property
    def peer_port(self) -> int | None:
        return None if self.kind == "dns" else self._destination()[1]

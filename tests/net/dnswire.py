"""The few parts of the DNS wire format (RFC 1035) the test DNS server and its probe need.

Only single-question queries and A/AAAA answers: that is all the network tests ask of a
resolver, and keeping it this small keeps the test server stdlib-only and easy to audit.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_OK = 0
RCODE_FORMERR = 1
RCODE_NXDOMAIN = 3

FLAG_RESPONSE = 0x8000
FLAG_AUTHORITATIVE = 0x0400
FLAG_TRUNCATED = 0x0200
FLAG_RECURSION_DESIRED = 0x0100
FLAG_RECURSION_AVAILABLE = 0x0080

HEADER = struct.Struct("!HHHHHH")
ANSWER_TTL = 60
MAX_LABELS = 64
"""A name has at most 127 labels; far fewer keeps a hostile query from looping long."""


class DnsFormatError(ValueError):
    """A message that is not a well-formed single-question DNS message."""


@dataclass(frozen=True)
class Question:
    """The question of a query: who asked what."""

    query_id: int
    name: str
    qtype: int
    flags: int


@dataclass(frozen=True)
class Reply:
    """What a probe learned from an answer."""

    query_id: int
    rcode: int
    truncated: bool
    addresses: list[str]


def encode_name(name: str) -> bytes:
    """``example.test`` as length-prefixed labels ending in the root label."""
    labels = [label for label in name.rstrip(".").split(".") if label]
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in labels) + b"\0"


def decode_name(message: bytes, offset: int) -> tuple[str, int]:
    """The uncompressed name at ``offset`` and the offset after it (queries never compress)."""
    labels: list[str] = []
    for _ in range(MAX_LABELS):
        if offset >= len(message):
            raise DnsFormatError("name runs past the end of the message")
        length = message[offset]
        offset += 1
        if length == 0:
            return ".".join(labels).lower(), offset
        if length & 0xC0:
            raise DnsFormatError("compressed names are not expected here")
        labels.append(message[offset : offset + length].decode("ascii", errors="replace"))
        offset += length
    raise DnsFormatError("too many labels")


def encode_query(query_id: int, name: str, qtype: int = TYPE_A) -> bytes:
    """A recursive query for one name."""
    header = HEADER.pack(query_id, FLAG_RECURSION_DESIRED, 1, 0, 0, 0)
    return header + encode_name(name) + struct.pack("!HH", qtype, CLASS_IN)


def decode_question(message: bytes) -> Question:
    """The question of a query, or :class:`DnsFormatError`."""
    if len(message) < HEADER.size:
        raise DnsFormatError("shorter than a header")
    query_id, flags, questions, _, _, _ = HEADER.unpack_from(message)
    if questions != 1:
        raise DnsFormatError(f"{questions} questions, expected 1")
    name, offset = decode_name(message, HEADER.size)
    if offset + 4 > len(message):
        raise DnsFormatError("question runs past the end of the message")
    qtype, _qclass = struct.unpack_from("!HH", message, offset)
    return Question(query_id, name, qtype, flags)


def _record(address: str) -> tuple[int, bytes]:
    packed = ipaddress.ip_address(address).packed
    return (TYPE_A if len(packed) == 4 else TYPE_AAAA), packed


def encode_answer(
    question: Question, addresses: list[str] | None, *, truncated: bool = False
) -> bytes:
    """The answer to ``question``: NXDOMAIN for ``None``, else the records of its type.

    ``truncated`` sends the TC bit with no records, as a server does when the answer does not
    fit a UDP datagram, so the resolver must ask again over TCP.
    """
    flags = FLAG_RESPONSE | FLAG_AUTHORITATIVE | FLAG_RECURSION_AVAILABLE
    flags |= question.flags & FLAG_RECURSION_DESIRED
    rcode = RCODE_NXDOMAIN if addresses is None else RCODE_OK
    records = [] if addresses is None or truncated else [_record(a) for a in addresses]
    matching = [data for rtype, data in records if rtype == question.qtype]
    if truncated:
        flags |= FLAG_TRUNCATED
    name = encode_name(question.name)
    body = name + struct.pack("!HH", question.qtype, CLASS_IN)
    for data in matching:
        # 0xC00C points back at the question's name, right after the 12-byte header.
        body += struct.pack("!HHHIH", 0xC00C, question.qtype, CLASS_IN, ANSWER_TTL, len(data))
        body += data
    return HEADER.pack(question.query_id, flags | rcode, 1, len(matching), 0, 0) + body


def encode_error(message: bytes, rcode: int) -> bytes | None:
    """A header-only error reply, or ``None`` when not even the ID can be read."""
    if len(message) < 2:
        return None
    (query_id,) = struct.unpack_from("!H", message)
    return HEADER.pack(query_id, FLAG_RESPONSE | rcode, 0, 0, 0, 0)


def decode_reply(message: bytes) -> Reply:
    """The rcode, TC bit and A/AAAA addresses of an answer."""
    if len(message) < HEADER.size:
        raise DnsFormatError("shorter than a header")
    query_id, flags, questions, answers, _, _ = HEADER.unpack_from(message)
    offset = HEADER.size
    for _ in range(questions):
        _, offset = decode_name(message, offset)
        offset += 4
    addresses: list[str] = []
    for _ in range(answers):
        if offset + 12 > len(message):
            raise DnsFormatError("answer runs past the end of the message")
        _pointer, rtype, _rclass, _ttl, length = struct.unpack_from("!HHHIH", message, offset)
        offset += 12
        data = message[offset : offset + length]
        offset += length
        if rtype in (TYPE_A, TYPE_AAAA):
            addresses.append(str(ipaddress.ip_address(data)))
    return Reply(query_id, flags & 0x000F, bool(flags & FLAG_TRUNCATED), addresses)

"""The boundary with the native runtime: every record it returns is JSON text, decoded here.

Each record is declared once, as the SDK's public type (a dataclass marked :data:`record`, or
a pydantic model); the JSON has exactly its field names, and :func:`decode` turns the text
into it. A field the SDK does not declare is an error rather than skipped: the runtime and the
SDK ship together, so a mismatch is a bug to surface at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Annotated, Any, TypeVar, overload

from pydantic import ConfigDict, PlainValidator, TypeAdapter, with_config

_T = TypeVar("_T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: Marks a stdlib dataclass as a record of the runtime, decoded strictly: an unknown field or
#: a value of another JSON type (``"42"`` for an int) fails.
record = with_config(ConfigDict(extra="forbid", strict=True))


def _from_epoch_ms(value: object) -> datetime:
    # bool is an int in Python, and never a time.
    if isinstance(value, int) and not isinstance(value, bool):
        return _EPOCH + timedelta(milliseconds=value)
    raise ValueError(f"expected milliseconds since the Unix epoch, got {value!r}")


#: A moment as the runtime sends it (integer milliseconds since the Unix epoch), read as an
#: aware UTC datetime.
Timestamp = Annotated[datetime, PlainValidator(_from_epoch_ms)]


@cache
def _adapter(type_: Any) -> TypeAdapter[Any]:
    # Building an adapter compiles a validator: once per type, not once per call.
    return TypeAdapter(type_)


@overload
def decode(type_: type[_T], text: str, *, context: dict[str, Any] | None = None) -> _T: ...


@overload
def decode(type_: object, text: str, *, context: dict[str, Any] | None = None) -> Any: ...


def decode(type_: object, text: str, *, context: dict[str, Any] | None = None) -> Any:
    """``text`` (JSON from the runtime) as ``type_``: a record, a ``list[...]`` or ``dict[...]``
    of records, or a union (typed by the caller). ``context`` reaches the validators (a
    stored sandbox config is validated as one). Raises pydantic's ``ValidationError`` when the
    text does not have the record's shape."""
    return _adapter(type_).validate_json(text, context=context)

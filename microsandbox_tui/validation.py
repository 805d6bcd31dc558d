"""What the SDK's validated models share: a frozen base, construction that raises
:class:`InvalidConfigError`, and error messages that name the field.

A location is written as the user would reach the value: ``network.policy.rules[2].port``
(items of a sequence by index, published ports by host port).

Host paths (a patch's source, a disk image, a CA file) are made absolute and must exist when
a configuration is built, not when a stored one is read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError, ValidationInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from .errors import InvalidConfigError

_M = TypeVar("_M", bound=BaseModel)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Checked(Frozen):
    """A frozen model that users build themselves (``Network(...)``, ``Rule(...)``): bad
    values raise :class:`InvalidConfigError` naming the field, not pydantic's error, and
    the fields named in :attr:`positional` may be given by position, as upstream's
    dataclasses take them.

    Only a direct construction converts the error; nested and stored values are validated
    by pydantic as usual and raise ``ValidationError`` with their whole location, which the
    enclosing model's constructor (or :func:`validated`) turns into the message.
    """

    #: Where the model sits in a sandbox's configuration: the start of its error locations.
    error_location: ClassVar[str] = ""
    #: The fields that may be given by position, in order.
    positional: ClassVar[tuple[str, ...]] = ()

    def __init__(self, /, *args: Any, **values: Any) -> None:
        if len(args) > len(self.positional):
            raise TypeError(
                f"{type(self).__name__} takes at most {len(self.positional)} "
                f"positional arguments, {len(args)} given"
            )
        for field, value in zip(self.positional, args, strict=False):
            if field in values:
                raise TypeError(f"{type(self).__name__} got {field!r} twice")
            values[field] = value
        try:
            super().__init__(**values)
        except ValidationError as error:
            message = describe_validation_error(error, self.error_location)
            raise InvalidConfigError(message) from None

    # Pydantic calls a model's own __init__ for nested and stored values too, unless it is
    # marked as the base one; marked, those are validated as usual and keep their locations.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]


def validated(model: type[_M], **values: object) -> _M:
    """``model(**values)``, raising :class:`InvalidConfigError` on bad input."""
    try:
        return model(**values)
    except ValidationError as error:
        raise InvalidConfigError(describe_validation_error(error)) from None


def format_location(parts: Sequence[str | int]) -> str:
    """``("rules", 2, "port")`` as ``rules[2].port``; ``value`` for the empty location."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "value"


def describe_validation_error(error: ValidationError, location: str = "") -> str:
    """One readable line per problem, ``field: message``, joined with ``"; "``; each
    location starts with ``location`` when one is given."""
    start = (location,) if location else ()
    parts = []
    for problem in error.errors():
        where = format_location((*start, *problem["loc"]))
        message = problem["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def problem_at(key: str | int, message: str, value: object) -> InitErrorDetails:
    """A problem with ``value`` to raise (see :func:`raise_problems`) under ``key``."""
    return InitErrorDetails(
        type=PydanticCustomError("invalid", "{message}", {"message": message}),
        loc=(key,),
        input=value,
    )


def relocated(error: ValidationError, key: str | int) -> list[InitErrorDetails]:
    """The problems of ``error`` (raised by one item of a collection) placed under ``key``
    instead of the item's position: a published port is named by its host port."""
    return [
        {
            **problem_at(key, problem["msg"].removeprefix("Value error, "), problem["input"]),
            "loc": (key, *problem["loc"]),
        }
        for problem in error.errors()
    ]


def raise_problems(title: str, problems: list[InitErrorDetails]) -> None:
    """Raises ``problems`` as one ``ValidationError`` (a validator raising it has them
    placed under its own field), if there are any."""
    if problems:
        raise ValidationError.from_exception_data(title, problems)


def absolute_host_path(value: str) -> str:
    """``value`` as an absolute host path, ``~`` expanded and symbolic links resolved."""
    return str(Path(value).expanduser().resolve())


#: Validation context of a configuration read back from the database. Host files may be gone
#: since it was created (patches copied theirs then; a disk image may have been deleted, and
#: starting the sandbox says so); they were checked at creation.
STORED_CONFIG: dict[str, Any] = {"stored": True}


def _existing_host_path(kind: Literal["file", "directory"]) -> AfterValidator:
    """Makes a host path absolute; it must be an existing ``kind`` unless the configuration
    is a stored one."""
    is_kind = Path.is_file if kind == "file" else Path.is_dir

    def check(value: str, info: ValidationInfo) -> str:
        path = absolute_host_path(value)
        stored = bool(info.context and info.context.get("stored"))
        if not stored and not is_kind(Path(path)):
            raise ValueError(f"{value!r} is not an existing {kind}")
        return path

    return AfterValidator(check)


HostFile = Annotated[str, _existing_host_path("file")]
HostDirectory = Annotated[str, _existing_host_path("directory")]

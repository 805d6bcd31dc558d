"""Secrets that never enter the VM: the guest's environment holds a placeholder
(``OPENAI_API_KEY=$MSB_OPENAI_API_KEY``), and the sandbox's gateway puts the real value into
a request on its way out, only to the hosts the secret names.

Two models: :class:`SecretEntry` is what a user builds (``Secret.env(...)``), with the value
or where to read it; :class:`SecretConfig` is what is stored with the sandbox, without the
value — at most a reference to where it comes from (an environment variable or a file of the
caller's host), read again when a stopped sandbox is started. A value itself lives only in
the supervisor's memory.

No message, ``repr`` or log line of these models shows a value.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, SecretStr, Strict, field_validator, model_validator

from .errors import InvalidConfigError, SecretNotFoundError, SecretValueMissingError
from .validation import Checked, Frozen, absolute_host_path

#: What a placeholder is made of unless the secret names its own.
PLACEHOLDER_PREFIX = "$MSB_"
#: A host pattern: ``*.`` and a domain, matching every name below it (not the apex).
_HOST_PATTERN = re.compile(r"^\*\.(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")
_HOST_NAME = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Bytes a value may not hold: it goes into HTTP headers, where they would end or split one.
_FORBIDDEN_VALUE_CHARS = frozenset("\r\n\0")
_MIN_PLACEHOLDER_LENGTH = 8

_StrictBool = Annotated[bool, Strict()]


class ViolationAction(StrEnum):
    """What happens when a placeholder heads for a host its secret does not allow."""

    #: The request is answered with an HTTP 403 that says why; nothing is logged.
    BLOCK = "block"
    #: As ``BLOCK``, and a flow-log line names the secret (never its value).
    BLOCK_AND_LOG = "block_and_log"
    #: As ``BLOCK_AND_LOG``, and the sandbox is stopped.
    BLOCK_AND_TERMINATE = "block_and_terminate"


class SecretInjection(Checked):
    """Where in a request the placeholder is replaced: headers (``headers``), the
    ``Authorization: Basic`` credentials once decoded (``basic_auth``), the query string
    (``query``) and the body (``body``; ``Content-Length`` is fixed, compressed bodies are left
    as they are). A placeholder where substitution is off is passed on as it is."""

    error_location = "inject"

    headers: _StrictBool = True
    basic_auth: _StrictBool = True
    query: _StrictBool = False
    body: _StrictBool = False


class EnvSource(Frozen):
    """The value is the caller's environment variable ``name``, read at each start."""

    kind: Literal["env"] = "env"
    name: str

    @field_validator("name")
    @classmethod
    def _env_name(cls, value: str) -> str:
        return _checked_env_name(value)

    def read(self) -> str | None:
        return os.environ.get(self.name)

    def describe(self) -> str:
        return f"environment variable {self.name}"


class FileSource(Frozen):
    """The value is the content of the caller's file ``path`` (one trailing newline
    dropped), read at each start."""

    kind: Literal["file"] = "file"
    path: str

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        return absolute_host_path(value)

    def read(self) -> str | None:
        try:
            with open(self.path, encoding="utf-8") as file:
                text = file.read()
        except OSError:
            return None
        return text.removesuffix("\n")

    def describe(self) -> str:
        return f"file {self.path}"


SecretSource = Annotated[EnvSource | FileSource, Field(discriminator="kind")]


class SecretConfig(Checked):
    """A secret as the sandbox stores it: everything but the value.

    The gateway substitutes ``placeholder`` only on flows whose TLS server name is one of
    ``allow_hosts`` or matches one of ``allow_host_patterns`` (``*.example.com``), whose
    destination was resolved for that name through the sandbox's DNS, and whose HTTP ``Host``
    (or HTTP/2 ``:authority``) is that name; with ``require_tls`` only inside TLS. A
    placeholder sent anywhere else is a violation, handled as ``on_violation`` says.
    ``source`` is where the value is read again on the next start; ``None``: the caller
    gives it each time.
    """

    error_location = "secrets"

    env_var: str
    allow_hosts: tuple[str, ...] = ()
    allow_host_patterns: tuple[str, ...] = ()
    placeholder: str = ""
    require_tls: _StrictBool = True
    on_violation: ViolationAction = ViolationAction.BLOCK_AND_LOG
    inject: SecretInjection = Field(default_factory=SecretInjection)
    source: SecretSource | None = None

    @field_validator("env_var")
    @classmethod
    def _env_name(cls, value: str) -> str:
        return _checked_env_name(value)

    @field_validator("allow_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        return _host_list(value, _HOST_NAME, "a host name such as api.example.com")

    @field_validator("allow_host_patterns", mode="before")
    @classmethod
    def _patterns(cls, value: object) -> object:
        return _host_list(value, _HOST_PATTERN, "a pattern such as *.example.com")

    @model_validator(mode="after")
    def _defaults_and_hosts(self) -> SecretConfig:
        if not self.allow_hosts and not self.allow_host_patterns:
            raise ValueError(
                f"{self.env_var}: give allow_hosts or allow_host_patterns, the hosts the "
                "secret may be sent to"
            )
        if not self.placeholder:
            object.__setattr__(self, "placeholder", PLACEHOLDER_PREFIX + self.env_var)
        elif len(self.placeholder) < _MIN_PLACEHOLDER_LENGTH or any(
            char in _FORBIDDEN_VALUE_CHARS or char.isspace() for char in self.placeholder
        ):
            raise ValueError(
                f"{self.env_var}: the placeholder must be at least {_MIN_PLACEHOLDER_LENGTH} "
                "characters without spaces, so it cannot occur by chance"
            )
        return self

    def allows(self, host: str) -> bool:
        """Whether the secret may be sent to ``host`` (a name, not an address)."""
        host = host.lower().rstrip(".")
        return host in self.allow_hosts or any(
            host.endswith(pattern[1:]) for pattern in self.allow_host_patterns
        )


class SecretEntry(Checked):
    """A secret as a user gives it: its :class:`SecretConfig` and its value, given
    (``value``) or read from the caller's host (``from_env``, ``from_file``, which are also
    stored, so a later start reads them again). No value at all is allowed only in
    ``set_secret`` of a sandbox that has the secret: it keeps its value."""

    error_location = "secrets"
    positional = ("env_var",)

    env_var: str
    value: SecretStr | None = None
    allow_hosts: tuple[str, ...] = ()
    allow_host_patterns: tuple[str, ...] = ()
    placeholder: str | None = None
    require_tls: _StrictBool = True
    on_violation: ViolationAction = ViolationAction.BLOCK_AND_LOG
    inject: SecretInjection = Field(default_factory=SecretInjection)
    source: SecretSource | None = None

    @model_validator(mode="after")
    def _one_value(self) -> SecretEntry:
        if self.value is not None and self.source is not None:
            raise ValueError(
                f"{self.env_var}: give the value or where to read it (from_env, from_file), "
                "not both"
            )
        if self.value is not None:
            try:
                _check_value(self.value.get_secret_value())
            except ValueError as error:
                raise ValueError(f"{self.env_var}: {error}") from None
        self.config()  # the stored half is checked now, where the user built it
        return self

    def config(self) -> SecretConfig:
        """The stored half: everything but the value."""
        stored = self.model_dump(exclude={"value"})
        stored["placeholder"] = self.placeholder or ""
        # Validated without SecretConfig's own error location: this model's names it.
        return SecretConfig.model_validate(stored)

    def resolve_value(self) -> str | None:
        """The value: given, or read from the source now; ``None`` when there is neither
        or the source has nothing."""
        if self.value is not None:
            return self.value.get_secret_value()
        return read_source(self.config())


class Secret:
    """Factories of :class:`SecretEntry`, as the seed's ``Secret.env(...)``."""

    @staticmethod
    def env(
        env_var: str,
        *,
        value: str | None = None,
        from_env: str | None = None,
        from_file: str | os.PathLike[str] | None = None,
        allow_hosts: tuple[str, ...] | list[str] = (),
        allow_host_patterns: tuple[str, ...] | list[str] = (),
        placeholder: str | None = None,
        require_tls: bool = True,
        on_violation: ViolationAction = ViolationAction.BLOCK_AND_LOG,
        inject: SecretInjection | None = None,
    ) -> SecretEntry:
        """The secret behind the guest's environment variable ``env_var``. Give exactly one
        of ``value``, ``from_env`` (the caller's variable to read, at create and at each
        start) and ``from_file`` (a file to read likewise); see :class:`SecretConfig`."""
        sources: list[EnvSource | FileSource] = []
        if from_env is not None:
            sources.append(EnvSource(name=from_env))
        if from_file is not None:
            sources.append(FileSource(path=os.fspath(from_file)))
        if len(sources) > 1:
            raise InvalidConfigError(f"secrets: {env_var}: give from_env or from_file, not both")
        return SecretEntry(
            env_var=env_var,
            value=None if value is None else SecretStr(value),
            allow_hosts=tuple(allow_hosts),
            allow_host_patterns=tuple(allow_host_patterns),
            placeholder=placeholder,
            require_tls=require_tls,
            on_violation=on_violation,
            inject=inject or SecretInjection(),
            source=sources[0] if sources else None,
        )


def read_source(config: SecretConfig) -> str | None:
    """The value from ``config``'s source, checked; ``None`` without a source or value."""
    if config.source is None:
        return None
    value = config.source.read()
    if value is None:
        return None
    _check_value(value)
    return value


def check_unique(secrets: tuple[SecretConfig, ...]) -> None:
    """Raises ``ValueError`` when two secrets share a variable, or one's placeholder holds
    another's (the gateway could not tell which was meant)."""
    seen: set[str] = set()
    for secret in secrets:
        if secret.env_var in seen:
            raise ValueError(f"{secret.env_var} is given twice")
        seen.add(secret.env_var)
    for secret in secrets:
        for other in secrets:
            if other is not secret and secret.placeholder in other.placeholder:
                raise ValueError(
                    f"the placeholder of {secret.env_var} is part of the placeholder of "
                    f"{other.env_var}: give them placeholders that do not overlap"
                )


def placeholders(secrets: Sequence[SecretConfig]) -> dict[str, str]:
    """Each secret's environment variable with its placeholder, for the exec environment."""
    return {secret.env_var: secret.placeholder for secret in secrets}


def creation_values(entries: Sequence[SecretEntry]) -> dict[str, SecretStr]:
    """The value of each secret of a new sandbox, given or read from its source now;
    :class:`InvalidConfigError` naming the first that has none."""
    values: dict[str, SecretStr] = {}
    for entry in entries:
        value = entry.resolve_value()
        if value is None:
            raise InvalidConfigError(f"secrets: {entry.env_var}: {_no_value(entry.config())}")
        values[entry.env_var] = SecretStr(value)
    return values


def start_values(
    stored: Sequence[SecretConfig], given: Sequence[SecretEntry] | None
) -> dict[str, SecretStr]:
    """The value of each stored secret for a start: from the entry ``given`` for it (matched
    by environment variable), else from its stored source. Raises
    :class:`SecretValueMissingError` naming the first that has none, and
    :class:`InvalidConfigError` for an entry the sandbox has no secret for."""
    by_name = {entry.env_var: entry for entry in given or ()}
    unknown = sorted(set(by_name) - {secret.env_var for secret in stored})
    if unknown:
        raise InvalidConfigError(
            f"secrets: {', '.join(unknown)}: not a secret of this sandbox (add it with set_secret)"
        )
    values: dict[str, SecretStr] = {}
    for secret in stored:
        entry = by_name.get(secret.env_var)
        value = entry.resolve_value() if entry is not None else None
        if value is None:
            value = read_source(secret)
        if value is None:
            raise SecretValueMissingError(
                f"secret {secret.env_var} has no value: {_no_value(secret)}"
            )
        values[secret.env_var] = SecretStr(value)
    return values


def with_secret(stored: Sequence[SecretConfig], entry: SecretEntry) -> tuple[SecretConfig, ...]:
    """The set ``stored`` with ``entry``'s config added, or in place of the secret of the
    same variable. An entry without value and source keeps that secret's source."""
    config = entry.config()
    old = next((secret for secret in stored if secret.env_var == entry.env_var), None)
    if old is not None and entry.value is None and entry.source is None:
        config = config.model_copy(update={"source": old.source})
    replaced = tuple(config if secret.env_var == entry.env_var else secret for secret in stored)
    secrets = replaced if old is not None else (*stored, config)
    try:
        check_unique(secrets)
    except ValueError as error:
        raise InvalidConfigError(f"secrets: {error}") from None
    return secrets


def without_secret(stored: Sequence[SecretConfig], env_var: str) -> tuple[SecretConfig, ...]:
    """The set ``stored`` without the secret of ``env_var``; :class:`SecretNotFoundError`
    when it has none."""
    if all(secret.env_var != env_var for secret in stored):
        raise SecretNotFoundError(f"the sandbox has no secret {env_var}")
    return tuple(secret for secret in stored if secret.env_var != env_var)


def update_value(entry: SecretEntry) -> SecretStr | None:
    """The value ``set_secret`` sends with ``entry``: given, or read from its source now;
    ``None`` (keep the running value) when it has neither. A source with nothing raises
    :class:`SecretValueMissingError`."""
    if entry.value is None and entry.source is None:
        return None
    value = entry.resolve_value()
    if value is None:
        raise SecretValueMissingError(
            f"secret {entry.env_var} has no value: {_no_value(entry.config())}"
        )
    return SecretStr(value)


def update_json(secrets: Sequence[SecretConfig], values: Mapping[str, SecretStr]) -> str:
    """The runtime's ``set_secrets`` argument: the whole set, each with its new value or
    ``null`` (keep the running one). It holds values: it goes to the runtime and nowhere
    else."""
    entries = [
        {
            "config": secret.model_dump(mode="json"),
            "value": None
            if (value := values.get(secret.env_var)) is None
            else value.get_secret_value(),
        }
        for secret in secrets
    ]
    return json.dumps(entries)


def exposed(values: Mapping[str, SecretStr]) -> dict[str, str]:
    """The values as the runtime takes them, for the one call that hands them over."""
    return {env_var: value.get_secret_value() for env_var, value in values.items()}


def _no_value(secret: SecretConfig) -> str:
    if secret.source is None:
        return "pass it again with secrets=[...] or give it a source"
    return f"its source ({secret.source.describe()}) has nothing"


def _checked_env_name(value: str) -> str:
    if not _ENV_NAME.match(value):
        raise ValueError(
            "must be an environment variable name: letters, digits and '_', not starting "
            "with a digit"
        )
    return value


def _check_value(value: str) -> None:
    """Refuses a value that cannot go into a header; the message never shows it."""
    if not value:
        raise ValueError("the value is empty")
    if any(char in _FORBIDDEN_VALUE_CHARS for char in value):
        raise ValueError("the value holds a line break or NUL, which cannot go into a header")


def _host_list(value: object, pattern: re.Pattern[str], expected: str) -> object:
    if isinstance(value, str):
        value = (value,)
    if not isinstance(value, tuple | list):
        return value
    hosts = []
    for item in value:
        if not isinstance(item, str):
            return value  # pydantic reports the type
        host = item.strip().lower().rstrip(".")
        if not pattern.match(host):
            raise ValueError(f"{item!r} is not {expected}")
        hosts.append(host)
    return tuple(dict.fromkeys(hosts))

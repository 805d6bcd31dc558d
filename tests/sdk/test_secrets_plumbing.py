"""How the SDK carries secrets before anything boots: the config a creation stores (its
placeholders in the exec env, no value anywhere), the values a creation and a start hand the
runtime, the sets ``set_secret`` and ``remove_secret`` make, the update's JSON, and the
errors naming the secret. No virtual machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from microsandbox_tui import (
    FlowLogEntry,
    InvalidConfigError,
    Secret,
    SecretConfig,
    SecretEntry,
    SecretNotFoundError,
    SecretValueMissingError,
    ViolationAction,
)
from microsandbox_tui.sandbox import _Creation
from microsandbox_tui.secrets import (
    EnvSource,
    creation_values,
    start_values,
    update_json,
    update_value,
    with_secret,
    without_secret,
)

VALUE = "sk-test-3f9d0c41b7e2a6"


def _openai(**overrides: Any) -> SecretEntry:
    options: dict[str, Any] = {"value": VALUE, "allow_hosts": ["api.openai.com"], **overrides}
    return Secret.env("OPENAI_API_KEY", **options)


def test_a_creation_stores_the_placeholder_in_the_env_and_no_value() -> None:
    creation = _Creation.of("agent", None, {"env": {"HOME": "/root"}, "secrets": [_openai()]})
    config = creation.config
    assert config.env == {"HOME": "/root", "OPENAI_API_KEY": "$MSB_OPENAI_API_KEY"}
    assert [secret.env_var for secret in config.secrets] == ["OPENAI_API_KEY"]
    assert VALUE not in config.model_dump_json()
    assert VALUE not in repr(creation)
    assert creation.secret_values["OPENAI_API_KEY"].get_secret_value() == VALUE


def test_a_secrets_placeholder_wins_over_the_same_variable_in_env() -> None:
    creation = _Creation.of(
        "agent",
        None,
        {"env": {"OPENAI_API_KEY": VALUE}, "secrets": [_openai()]},
    )
    assert creation.config.env["OPENAI_API_KEY"] == "$MSB_OPENAI_API_KEY"
    assert VALUE not in creation.config.model_dump_json()


def test_a_creation_secret_without_a_value_is_an_invalid_config_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MSB_TEST_UNSET_KEY", raising=False)
    entry = _openai(value=None, from_env="MSB_TEST_UNSET_KEY")
    with pytest.raises(InvalidConfigError, match="OPENAI_API_KEY") as raised:
        _Creation.of("agent", None, {"secrets": [entry]})
    assert "environment variable MSB_TEST_UNSET_KEY" in str(raised.value)
    with pytest.raises(InvalidConfigError, match="OPENAI_API_KEY: pass it again"):
        creation_values([_openai(value=None)])


def test_a_creation_reads_a_sources_value_now(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MY_KEY", VALUE)
    key_file = tmp_path / "key"
    key_file.write_text("from-file\n")
    values = creation_values(
        [
            _openai(value=None, from_env="MY_KEY"),
            Secret.env("OTHER", from_file=key_file, allow_hosts=["x.test"]),
        ]
    )
    assert {name: value.get_secret_value() for name, value in values.items()} == {
        "OPENAI_API_KEY": VALUE,
        "OTHER": "from-file",
    }


def _stored(*names: str, source_env: str | None = None) -> tuple[SecretConfig, ...]:
    source = None if source_env is None else EnvSource(name=source_env)
    return tuple(
        SecretConfig(env_var=name, allow_hosts=("api.test",), source=source) for name in names
    )


def test_a_start_takes_given_values_then_stored_sources_and_names_a_missing_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORED_SOURCE", "from-env")
    stored = (*_stored("A"), *_stored("B", source_env="STORED_SOURCE"))
    given = [Secret.env("A", value="given-a", allow_hosts=["api.test"])]
    values = start_values(stored, given)
    assert {name: value.get_secret_value() for name, value in values.items()} == {
        "A": "given-a",
        "B": "from-env",
    }
    with pytest.raises(SecretValueMissingError, match="secret A has no value: pass it again"):
        start_values(stored, None)
    monkeypatch.delenv("STORED_SOURCE")
    with pytest.raises(SecretValueMissingError, match=r"secret B .*environment variable"):
        start_values(stored, given)


def test_a_start_refuses_a_secret_the_sandbox_does_not_have() -> None:
    with pytest.raises(InvalidConfigError, match="C: not a secret of this sandbox"):
        start_values(_stored("A"), [Secret.env("C", value="x", allow_hosts=["c.test"])])


def test_set_secret_replaces_by_variable_and_keeps_a_source_when_only_hosts_change() -> None:
    stored = (*_stored("A", source_env="SRC"), *_stored("B"))
    edited = with_secret(stored, Secret.env("A", allow_hosts=["new.test"]))
    assert [secret.env_var for secret in edited] == ["A", "B"]
    assert edited[0].allow_hosts == ("new.test",)
    assert edited[0].source is not None and edited[0].source.describe() == (
        "environment variable SRC"
    )
    added = with_secret(stored, Secret.env("C", value="c", allow_hosts=["c.test"]))
    assert [secret.env_var for secret in added] == ["A", "B", "C"]
    with pytest.raises(InvalidConfigError, match="placeholder"):
        with_secret(stored, Secret.env("C", placeholder="$MSB_A_AND_MORE", allow_hosts=["c"]))


def test_set_secret_sends_a_value_only_when_one_was_given_or_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert update_value(Secret.env("A", allow_hosts=["a.test"])) is None
    rotated = update_value(Secret.env("A", value="rotated", allow_hosts=["a.test"]))
    assert rotated is not None and rotated.get_secret_value() == "rotated"
    monkeypatch.delenv("MSB_TEST_UNSET_KEY", raising=False)
    with pytest.raises(SecretValueMissingError, match="secret A"):
        update_value(Secret.env("A", from_env="MSB_TEST_UNSET_KEY", allow_hosts=["a.test"]))


def test_remove_secret_of_an_unknown_variable_is_not_found() -> None:
    assert without_secret(_stored("A", "B"), "A") == _stored("B")
    with pytest.raises(SecretNotFoundError, match="C"):
        without_secret(_stored("A"), "C")
    assert issubclass(SecretNotFoundError, LookupError)


def test_the_update_json_holds_the_configs_and_only_the_values_given() -> None:
    stored = _stored("A", "B")
    rotated = update_value(Secret.env("A", value="rotated-a", allow_hosts=["api.test"]))
    assert rotated is not None
    entries = json.loads(update_json(stored, {"A": rotated}))
    assert [entry["value"] for entry in entries] == ["rotated-a", None]
    assert entries[1]["config"]["placeholder"] == "$MSB_B"
    assert entries[0]["config"]["on_violation"] == "block_and_log"


def test_an_entry_shows_no_value_in_its_repr_or_json() -> None:
    entry = _openai(on_violation=ViolationAction.BLOCK)
    assert VALUE not in repr(entry)
    assert VALUE not in entry.model_dump_json()
    assert VALUE not in entry.config().model_dump_json()


def test_a_flow_log_record_names_its_secret() -> None:
    line = json.dumps(
        {
            "kind": "flow",
            "time": "2026-12-02T03:00:00.123Z",
            "protocol": "tcp",
            "sni": "evil.test",
            "action": "deny",
            "reason": "secret_violation",
            "secret": "OPENAI_API_KEY",
        }
    )
    entry = FlowLogEntry.parse(line)
    assert entry is not None
    assert (entry.reason, entry.secret) == ("secret_violation", "OPENAI_API_KEY")
    plain = FlowLogEntry.parse(line.replace(', "secret": "OPENAI_API_KEY"', ""))
    assert plain is not None and plain.secret is None

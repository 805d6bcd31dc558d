"""``msb create --secret ENV@HOST`` and ``--secret-on-violation`` as parsed and turned into
the SDK's secrets, and ``msb inspect``'s secret rows: the value read from the caller's
environment, never from argv, and never shown. No runtime, no virtual machine."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from microsandbox_tui import (
    EnvSource,
    SandboxConfig,
    SandboxInfo,
    SandboxStatus,
    SecretConfig,
    ViolationAction,
)
from microsandbox_tui.cli import commands, parse_args
from microsandbox_tui.cli.output import inspect_rows

VALUE = "sk-cli-9a8b7c6d5e4f"
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def test_a_secret_flag_names_the_variable_and_its_hosts_and_patterns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", VALUE)
    args = parse_args(["create", "web", "--secret", "OPENAI_API_KEY@api.openai.com,*.openai.com"])
    (entry,) = commands.secrets_of(args)
    config = entry.config()
    assert config.env_var == "OPENAI_API_KEY"
    assert config.allow_hosts == ("api.openai.com",)
    assert config.allow_host_patterns == ("*.openai.com",)
    assert config.on_violation is ViolationAction.BLOCK_AND_LOG
    assert config.source == EnvSource(name="OPENAI_API_KEY")
    assert entry.resolve_value() == VALUE
    assert VALUE not in repr(args)


def test_the_violation_action_applies_to_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A", "one")
    monkeypatch.setenv("B", "two")
    args = parse_args(
        [
            "run",
            "--secret",
            "A@a.test",
            "--secret",
            "B@b.test",
            "--secret-on-violation",
            "block-and-terminate",
            "--",
            "true",
        ]
    )
    actions = {entry.config().on_violation for entry in commands.secrets_of(args)}
    assert actions == {ViolationAction.BLOCK_AND_TERMINATE}


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("OPENAI_API_KEY", "expected ENV@HOST"),
        ("OPENAI_API_KEY@", "expected ENV@HOST"),
        ("1BAD@api.test", "environment variable name"),
        ("KEY@not a host", "not a host name"),
    ],
)
def test_a_malformed_secret_flag_exits_2(
    flag: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["create", "web", "--secret", flag])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_secret_whose_variable_is_not_set_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MSB_TEST_UNSET_KEY", raising=False)
    with pytest.raises(SystemExit) as exited:
        parse_args(["create", "web", "--secret", "MSB_TEST_UNSET_KEY@api.test"])
    assert exited.value.code == 2
    assert "the environment variable MSB_TEST_UNSET_KEY is not set" in capsys.readouterr().err


def test_inspect_lists_each_secret_with_its_hosts_and_source_and_no_value() -> None:
    secrets = (
        SecretConfig(
            env_var="OPENAI_API_KEY",
            allow_hosts=("api.openai.com",),
            allow_host_patterns=("*.openai.com",),
            source=EnvSource(name="OPENAI_API_KEY"),
        ),
        SecretConfig(env_var="GIVEN", allow_hosts=("x.test",), on_violation=ViolationAction.BLOCK),
    )
    info = SandboxInfo(
        name="web",
        status=SandboxStatus.STOPPED,
        config=SandboxConfig(name="web", secrets=secrets),
        detached=True,
        created_at=NOW,
        started_at=None,
        stopped_at=None,
        accelerator=None,
        boot_ms=None,
        exit_reason=None,
        network=None,
    )
    rows = dict(inspect_rows(info, NOW))
    assert rows["secret OPENAI_API_KEY"] == (
        "api.openai.com, *.openai.com; block_and_log; from environment variable OPENAI_API_KEY"
    )
    assert rows["secret GIVEN"] == "x.test; block; value given at each start"
    without = dict(inspect_rows(replace(info, config=SandboxConfig(name="web")), NOW))
    assert without["secrets"] == "-"

"""``msb`` commands that need no virtual machine, run as the real program in a child process
against an empty throw-away runtime home."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from registry.server import RegistryServer

from microsandbox_tui import _native, doctor, version

MsbRunner = Callable[..., subprocess.CompletedProcess[str]]


def test_version(msb: MsbRunner) -> None:
    for argv in (["version"], ["--version"]):
        result = msb(*argv)
        assert result.returncode == 0
        assert result.stdout == f"msb {version()}\n"


def test_a_log_level_leaves_the_output_as_it_is(msb: MsbRunner) -> None:
    """The log goes to stderr: stdout stays the command's."""
    result = msb("--log-level", "trace", "volume", "ls", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == []


def test_usage_error_exits_2(msb: MsbRunner) -> None:
    result = msb("run")
    assert result.returncode == 2
    assert "usage: msb" in result.stderr
    assert result.stdout == ""


def test_ls_on_an_empty_home(msb_home: Path, msb: MsbRunner) -> None:
    result = msb("ls")
    assert result.returncode == 0
    assert result.stdout.split() == ["NAME", "STATUS", "IMAGE", "CPUS", "MEMORY", "UPTIME"]
    result = msb("ls", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == []


def test_sdk_errors_are_one_line_and_exit_1(msb_home: Path, msb: MsbRunner) -> None:
    result = msb("rm", "no-such-sandbox")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: SandboxNotFoundError: ")
    assert result.stderr.count("\n") == 1

    result = msb("stop", "no-such-sandbox")
    assert result.returncode == 1
    assert result.stderr.startswith("error: SandboxNotFoundError: ")


def test_cp_needs_exactly_one_sandbox_path(msb_home: Path, msb: MsbRunner) -> None:
    for argv in (["a", "b"], ["box:/a", "box:/b"]):
        result = msb("cp", *argv)
        assert result.returncode == 1
        assert result.stderr.startswith("error: InvalidConfigError: cp: exactly one of ")
    result = msb("cp", "no-such-sandbox:/etc/hosts", "out")
    assert result.returncode == 1
    assert result.stderr.startswith("error: SandboxNotFoundError: ")


def test_invalid_create_is_refused_before_anything_is_recorded(
    msb_home: Path, msb: MsbRunner
) -> None:
    result = msb("create", "a/b")
    assert result.returncode == 1
    assert result.stderr.startswith("error: InvalidConfigError: name: ")
    result = msb("create", "ok", "--memory", "1")
    assert result.returncode == 1
    assert result.stderr.startswith("error: InvalidConfigError: memory_mib: ")
    assert json.loads(msb("ls", "--json").stdout) == []


def test_a_host_port_published_twice_is_refused_before_anything_is_recorded(
    msb_home: Path, msb: MsbRunner
) -> None:
    result = msb("create", "twice", "-p", "8080:80", "-p", "0.0.0.0:8080:81")
    assert result.returncode == 1
    assert result.stderr.startswith("error: InvalidConfigError: network.ports[8080]: ")
    assert json.loads(msb("ls", "--json").stdout) == []


def test_inspect_of_an_unknown_sandbox(msb_home: Path, msb: MsbRunner) -> None:
    result = msb("inspect", "no-such-sandbox")
    assert result.returncode == 1
    assert result.stderr.startswith("error: SandboxNotFoundError: ")


def test_doctor_prints_every_check(msb_home: Path, msb: MsbRunner) -> None:
    checks = doctor()
    result = msb("doctor")
    lines = result.stdout.splitlines()
    assert len(lines) == len(checks)
    for line, check in zip(lines, checks, strict=True):
        assert line.startswith("✓ " if check.ok else "✗ ")
        assert check.name in line
        assert check.detail in line
    assert result.returncode == (0 if all(check.ok for check in checks) else 1)


def test_images_has_a_header(msb_home: Path, msb: MsbRunner) -> None:
    result = msb("images")
    assert result.returncode == 0
    header = result.stdout.splitlines()[0].split()
    assert header == ["NAME", "KIND", "LAYERS", "SIZE", "CREATED", "LAST", "USED"]


def test_install_is_idempotent_and_prints_progress(msb_home: Path, msb: MsbRunner) -> None:
    # The test suite runs on an installed runtime, so this only re-checks the shared cache.
    result = msb("install", timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) >= 2
    assert lines[-1] == "runtime installed"


def test_pull_images_and_rmi(msb_home: Path, msb: MsbRunner, registry: RegistryServer) -> None:
    reference = registry.refs["multilayer"]
    pulled = msb("pull", "--insecure", reference)
    assert pulled.returncode == 0, pulled.stderr
    assert f"pulled {reference}" in pulled.stdout
    listed = msb("images")
    assert any(line.split()[:3] == [reference, "oci", "2"] for line in listed.stdout.splitlines())
    assert msb("rmi", reference).returncode == 0
    assert reference not in msb("images").stdout
    missing = msb("rmi", reference)
    assert missing.returncode != 0 and "ImageNotFoundError" in missing.stderr


def test_volume_create_ls_inspect_rm(msb_home: Path, msb: MsbRunner) -> None:
    created = msb("volume", "create", "data", "--quota", "16")
    assert (created.returncode, created.stdout) == (0, "data\n"), created.stderr
    table = msb("volume", "ls").stdout.splitlines()
    assert table[0].split() == ["NAME", "QUOTA", "USED", "IN", "USE", "BY", "CREATED"]
    assert table[1].split()[:6] == ["data", "16.0", "MiB", "0", "B", "-"]
    [listed] = json.loads(msb("volume", "ls", "--json").stdout)
    inspected = json.loads(msb("volume", "inspect", "data").stdout)
    assert listed == inspected
    assert (inspected["quota_mib"], inspected["used_bytes"], inspected["in_use_by"]) == (16, 0, [])
    assert Path(inspected["path"]).stat().st_size == 16 << 20

    taken = msb("volume", "create", "data", "--quota", "16")
    assert taken.returncode == 1
    assert taken.stderr.startswith("error: VolumeAlreadyExistsError: ")
    small = msb("volume", "create", "tiny", "--quota", "1")
    assert small.returncode == 1
    assert small.stderr.startswith("error: InvalidConfigError: quota_mib: ")

    assert msb("volume", "rm", "data").returncode == 0
    assert not Path(inspected["path"]).exists()
    assert json.loads(msb("volume", "ls", "--json").stdout) == []
    missing = msb("volume", "rm", "data")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: VolumeNotFoundError: ")


def test_volume_flags_are_checked_before_anything_is_recorded(
    msb_home: Path, msb: MsbRunner, tmp_path: Path
) -> None:
    unknown = msb("create", "box", "-v", "no-such-volume:/data")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: VolumeNotFoundError: ")
    twice = msb("create", "box", "-v", f"{tmp_path}:/data", "--tmpfs", "/data")
    assert twice.returncode == 1
    assert twice.stderr.startswith("error: InvalidConfigError: volumes: /data is given twice")
    missing = msb("run", "-v", f"{tmp_path}/missing:/data", "--", "true")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: InvalidConfigError: volume /data: ")
    assert json.loads(msb("ls", "--json").stdout) == []


def test_logs_network_prints_the_flow_log_records_as_lines(msb_home: Path, msb: MsbRunner) -> None:
    record = {
        "kind": "flow",
        "time": "2026-12-02T03:00:01.000Z",
        "direction": "egress",
        "protocol": "tcp",
        "src": "172.16.0.2:40002",
        "dst": "198.51.100.10:80",
        "domain": None,
        "sni": None,
        "action": "deny",
        "rule": None,
        "rule_text": "default",
        "reason": None,
    }
    by_rule = {**record, "rule": 0, "rule_text": "deny@198.51.100.0/24"}
    log = Path(_native.log_path("web", "network"))
    assert log.is_relative_to(msb_home)
    log.parent.mkdir(parents=True)
    log.write_text(f"{json.dumps(record)}\nnot a record\n{json.dumps(by_rule)}\n")
    printed = msb("logs", "web", "--network", "--tail", "2")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines() == [
        "03:00:01.000 deny  egress tcp 172.16.0.2:40002 -> 198.51.100.10:80 by rule 0 "
        "deny@198.51.100.0/24"
    ]

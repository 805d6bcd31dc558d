"""``msb`` on real microVM sandboxes, run as the real program in child processes."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

MsbRunner = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = [pytest.mark.vm, pytest.mark.timeout(400)]


def listing(msb: MsbRunner) -> dict[str, dict[str, object]]:
    result = msb("ls", "--json")
    assert result.returncode == 0, result.stderr
    return {entry["name"]: entry for entry in json.loads(result.stdout)}


def test_run_streams_output_exits_with_the_code_and_cleans_up(
    clean_home: Path, msb: MsbRunner
) -> None:
    result = msb(
        "run", "--name", "cli-run", "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 3"
    )
    assert result.returncode == 3, result.stderr
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert listing(msb) == {}


def test_create_ls_exec_stop_rm(clean_home: Path, sandbox_name: str, msb: MsbRunner) -> None:
    created = msb("create", sandbox_name, "--memory", "256")
    assert created.returncode == 0, created.stderr
    assert created.stdout == f"{sandbox_name}\n"

    # It outlived the msb process that made it.
    entry = listing(msb)[sandbox_name]
    assert entry["status"] == "running"
    assert entry["detached"] is True
    assert entry["memory_mib"] == 256
    table = msb("ls").stdout.splitlines()
    assert table[0].split() == ["NAME", "STATUS", "IMAGE", "CPUS", "MEMORY", "UPTIME"]
    row = next(line.split() for line in table[1:] if line.startswith(sandbox_name))
    assert row[:6] == [sandbox_name, "running", "msb-base", "1", "256", "MiB"]

    executed = msb("exec", sandbox_name, "--", "/bin/sh", "-c", "echo hi; exit 7")
    assert (executed.returncode, executed.stdout) == (7, "hi\n")
    missing = msb("exec", sandbox_name, "--", "/no/such/program")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: CommandNotFoundError: ")

    refused = msb("rm", sandbox_name)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: SandboxStillRunningError: ")

    stopped = msb("stop", sandbox_name)
    assert stopped.returncode == 0, stopped.stderr
    assert listing(msb)[sandbox_name]["status"] == "stopped"
    not_running = msb("exec", sandbox_name, "--", "true")
    assert not_running.returncode == 1
    assert not_running.stderr.startswith("error: SandboxNotRunningError: ")

    removed = msb("rm", sandbox_name)
    assert removed.returncode == 0, removed.stderr
    assert sandbox_name not in listing(msb)


def test_create_with_network_flags_and_inspect(
    clean_home: Path, sandbox_name: str, msb: MsbRunner
) -> None:
    host_port = free_port()
    created = msb(
        "create",
        sandbox_name,
        "--net",
        "none",
        "-p",
        f"{host_port}:80",
        "--deny-domain",
        ".evil.example",
        "--dns-nameserver",
        "198.51.100.53",
    )
    assert created.returncode == 0, created.stderr
    inspected = msb("inspect", sandbox_name)
    assert inspected.returncode == 0, inspected.stderr
    # Labels may hold one space; the value starts after two or more.
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in inspected.stdout.splitlines())
    assert rows["status"] == "running"
    assert rows["network"] == "none"
    assert rows["ports"] == f"127.0.0.1:{host_port} -> 80/tcp"
    assert rows["nameservers"] == "198.51.100.53"
    assert rows["denied names"] == ".evil.example"
    assert msb("rm", "--force", sandbox_name).returncode == 0


def test_a_custom_policy_from_net_rules_shown_and_replaced(
    clean_home: Path, sandbox_name: str, msb: MsbRunner
) -> None:
    created = msb(
        "create",
        sandbox_name,
        "--net-rule",
        "deny@198.51.100.0/24",
        "--net-rule",
        "allow@*.example.com:tcp:443,allow@public",
        "--net-default-ingress",
        "deny",
    )
    assert created.returncode == 0, created.stderr
    inspected = msb("inspect", sandbox_name).stdout.splitlines()
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in inspected)
    assert rows["network"] == "custom (3 rules; egress deny, ingress deny otherwise)"
    assert [rows[f"rule {index}"] for index in range(3)] == [
        "deny@198.51.100.0/24",
        "allow@.example.com:tcp:443",
        "allow@public",
    ]
    shown = msb("net", "show", sandbox_name)
    assert shown.stdout.splitlines()[1:] == [
        "0  deny@198.51.100.0/24",
        "1  allow@.example.com:tcp:443",
        "2  allow@public",
    ]
    assert msb("stop", sandbox_name).returncode == 0

    replaced = msb("net", "set", sandbox_name, "--net-rule", "allow@host:tcp:8080")
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout.splitlines() == [
        "custom (1 rule; egress deny, ingress allow otherwise)",
        "0  allow@host:tcp:8080",
    ]
    assert msb("net", "set", sandbox_name, "--net", "none").stdout == "none\n"
    assert msb("net", "show", sandbox_name).stdout == "none\n"
    missing = msb("net", "show", "no-such-sandbox")
    assert (missing.returncode, missing.stderr.split(":")[:2]) == (
        1,
        ["error", " SandboxNotFoundError"],
    )
    assert msb("rm", sandbox_name).returncode == 0


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_cp_and_ls_between_the_host_and_a_sandbox(
    clean_home: Path, sandbox_name: str, msb: MsbRunner, tmp_path: Path
) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f.txt").write_text("hello")
    (tree / "run.sh").write_text("#!/bin/sh\n")
    (tree / "run.sh").chmod(0o755)
    (tree / "link").symlink_to("sub/f.txt")
    assert msb("create", sandbox_name).returncode == 0

    put = msb("cp", str(tree), f"{sandbox_name}:/srv/tree")
    assert (put.returncode, put.stdout, put.stderr) == (0, "", "")

    table = msb("ls", f"{sandbox_name}:/srv/tree").stdout.splitlines()
    assert table[0].split() == ["MODE", "SIZE", "MODIFIED", "NAME"]
    rows = [line.split() for line in table[1:]]
    assert [(row[0], row[-1]) for row in rows] == [
        ("lrwxrwxrwx", "sub/f.txt"),
        ("-rwxr-xr-x", "run.sh"),
        ("drwxr-xr-x", "sub"),
    ]
    assert rows[0][-3:] == ["link", "->", "sub/f.txt"]
    entries = json.loads(msb("ls", "--json", f"{sandbox_name}:/srv/tree/sub").stdout)
    assert [(e["name"], e["kind"], e["size"], e["mode"]) for e in entries] == [
        ("f.txt", "file", 5, "0644")
    ]

    back = msb("cp", f"{sandbox_name}:/srv/tree", str(tmp_path / "back"))
    assert back.returncode == 0, back.stderr
    assert (tmp_path / "back" / "sub" / "f.txt").read_text() == "hello"
    assert (tmp_path / "back" / "link").readlink() == Path("sub/f.txt")
    single = msb("cp", f"{sandbox_name}:/srv/tree/sub/f.txt", str(tmp_path / "f.txt"))
    assert single.returncode == 0, single.stderr
    assert (tmp_path / "f.txt").read_text() == "hello"

    missing = msb("cp", f"{sandbox_name}:/srv/nope", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: PathNotFoundError: ")
    assert not (tmp_path / "nope").exists()


def test_rm_force_kills_a_running_sandbox(
    clean_home: Path, sandbox_name: str, msb: MsbRunner
) -> None:
    assert msb("create", sandbox_name).returncode == 0
    result = msb("rm", "--force", sandbox_name)
    assert result.returncode == 0, result.stderr
    assert sandbox_name not in listing(msb)


def test_pause_resume_interactive_exec_logs_stop_and_start(
    clean_home: Path, sandbox_name: str, msb: MsbRunner
) -> None:
    assert msb("create", sandbox_name).returncode == 0
    assert msb("pause", sandbox_name).returncode == 0
    assert listing(msb)[sandbox_name]["status"] == "paused"
    assert msb("resume", sandbox_name).returncode == 0
    assert listing(msb)[sandbox_name]["status"] == "running"

    typed = "echo typed-$((40 + 2))\nexit 4\n"
    interactive = msb("exec", "-it", sandbox_name, "--", "/bin/sh", input=typed)
    assert interactive.returncode == 4, interactive.stderr
    assert "typed-42" in interactive.stdout

    exec_log = msb("logs", sandbox_name, "--exec", "--tail", "5")
    assert "started (terminal): /bin/sh" in exec_log.stdout
    assert "exited with code 4" in exec_log.stdout

    sample = msb("metrics", sandbox_name)
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("cpu ") and " mem " in sample.stdout

    assert msb("stop", sandbox_name).returncode == 0
    restarted = msb("start", sandbox_name)
    assert restarted.returncode == 0, restarted.stderr
    assert listing(msb)[sandbox_name]["status"] == "running"
    assert msb("exec", sandbox_name, "--", "true").returncode == 0


def test_run_with_a_named_volume_and_a_tmpfs(clean_home: Path, msb: MsbRunner) -> None:
    assert msb("volume", "create", "cli-data", "--quota", "16").returncode == 0
    script = "echo kept > /data/f && grep -c ' /data ext4 rw' /proc/mounts && df -m /t | tail -n 1"
    result = msb("run", "-v", "cli-data:/data", "--tmpfs", "/t:8", "--", "/bin/sh", "-c", script)
    assert result.returncode == 0, result.stderr
    mounted, tmpfs = result.stdout.splitlines()
    assert mounted == "1"
    assert tmpfs.split()[1] == "8"
    read = msb("run", "-v", "cli-data:/data:ro", "--", "cat", "/data/f")
    assert (read.returncode, read.stdout) == (0, "kept\n"), read.stderr
    inspected = json.loads(msb("volume", "inspect", "cli-data").stdout)
    assert inspected["in_use_by"] == []
    assert msb("volume", "rm", "cli-data").returncode == 0

"""Rootfs patches: applied in the guest before ``create`` returns and only then; a failing
one leaves no sandbox; bad ones are refused before anything is recorded."""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any

import pytest

from microsandbox_tui import (
    FilesystemError,
    InvalidConfigError,
    Patch,
    PatchFailedError,
    Sandbox,
    SandboxNotFoundError,
    SymlinkPatch,
    sandbox_config,
)
from microsandbox_tui.config import SandboxConfig
from microsandbox_tui.validation import STORED_CONFIG


async def hosts_lines(sandbox: Sandbox, line: str) -> int:
    """How many times ``line`` stands in the guest's /etc/hosts."""
    return (await guest_shell(sandbox, "cat /etc/hosts")).splitlines().count(line)


def host_tree(tmp_path: Path) -> tuple[Path, Path]:
    """A host script (mode 0700) and a scripts directory with a subdirectory and a link."""
    tool = tmp_path / "tool.sh"
    tool.write_text("#!/bin/sh\necho tool ran\n")
    tool.chmod(0o700)
    scripts = tmp_path / "scripts"
    (scripts / "lib").mkdir(parents=True)
    (scripts / "start.sh").write_text("#!/bin/sh\necho started\n")
    (scripts / "start.sh").chmod(0o755)
    (scripts / "lib" / "data.txt").write_text("data")
    (scripts / "current").symlink_to("lib/data.txt")
    return tool, scripts


async def guest_shell(sandbox: Sandbox, script: str) -> str:
    output = await sandbox.shell(script)
    assert output.success, output.stderr_text
    return output.stdout_text


@pytest.mark.vm
async def test_every_patch_kind_is_applied_before_create_returns_and_only_then(
    unique_name: str, tmp_path: Path
) -> None:
    tool, scripts = host_tree(tmp_path)
    patches = [
        Patch.mkdir("/app", mode=0o750),
        Patch.text("/app/config.json", '{"debug": true}', mode=0o600),
        Patch.copy_file(tool, "/usr/local/bin/tool", mode=0o755),
        Patch.copy_dir(scripts, "/app/scripts"),
        Patch.append("/etc/hosts", "127.0.0.1 myapp.local\n"),
        Patch.symlink("/app/config.json", "/etc/app.json"),
        Patch.remove("/etc/os-release"),
    ]
    sandbox = await Sandbox.create(unique_name, patches=patches)
    try:
        modes = await guest_shell(
            sandbox, "stat -c '%n %a' /app /app/config.json /usr/local/bin/tool"
        )
        assert modes.split("\n")[:3] == [
            "/app 750",
            "/app/config.json 600",
            "/usr/local/bin/tool 755",
        ]
        assert await guest_shell(sandbox, "cat /etc/app.json") == '{"debug": true}'
        assert await guest_shell(sandbox, "readlink /etc/app.json") == "/app/config.json\n"
        assert await guest_shell(sandbox, "tool") == "tool ran\n"
        assert await guest_shell(sandbox, "/app/scripts/start.sh") == "started\n"
        assert await guest_shell(sandbox, "cat /app/scripts/current") == "data"
        # The guest's network set-up rewrites /etc/hosts at boot and keeps the lines of
        # others: the appended one is there, once.
        assert await hosts_lines(sandbox, "127.0.0.1 myapp.local") == 1
        assert await guest_shell(sandbox, "test -e /etc/os-release || echo gone") == "gone\n"

        # Recorded with the sandbox, and readable after the host files are gone.
        (scripts / "lib" / "data.txt").unlink()
        tool.unlink()
        info = await sandbox.info()
        assert info.config.patches == patches

        # A restart boots the same upper layer and applies nothing again.
        await sandbox.stop_and_wait()
        restarted = await (await Sandbox.get(unique_name)).start()
        assert await hosts_lines(restarted, "127.0.0.1 myapp.local") == 1
        assert await guest_shell(restarted, "cat /app/config.json") == '{"debug": true}'
        await restarted.kill()
    finally:
        await Sandbox.remove(unique_name, force=True)


@pytest.mark.vm
async def test_a_failing_patch_raises_and_leaves_no_sandbox(unique_name: str) -> None:
    patches = [
        Patch.text("/fine.txt", "fine"),
        Patch.append("/etc/hosts/below", "x\n"),  # the parent is a file
    ]
    with pytest.raises(PatchFailedError) as failed:
        await Sandbox.create(unique_name, patches=patches)
    assert str(failed.value).startswith("patch 1 (append /etc/hosts/below) failed: ")
    assert isinstance(failed.value.__cause__, FilesystemError)
    assert failed.value.__cause__.errno in (errno.ENOTDIR, errno.EEXIST)
    with pytest.raises(SandboxNotFoundError):
        await Sandbox.get_info(unique_name)
    assert unique_name not in [info.name for info in await Sandbox.list()]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: Patch.text("relative/path", "x"), "path: must be an absolute guest path"),
        (lambda tmp: Patch.mkdir("/app", mode=0o10000), "mode: "),
        (lambda tmp: Patch.copy_file(tmp / "missing", "/x"), "is not an existing file"),
        (lambda tmp: Patch.copy_file(tmp, "/x"), "is not an existing file"),
        (lambda tmp: Patch.copy_dir(tmp / "missing", "/x"), "is not an existing directory"),
        (lambda tmp: Patch.copy_dir(tmp, "x"), "dst: must be an absolute guest path"),
        (lambda tmp: Patch.symlink("", "/link"), "target: "),
        (lambda tmp: Patch.append("/a\0b", "x"), "path: must be an absolute guest path"),
        (lambda tmp: Patch.remove(""), "path: must be an absolute guest path"),
    ],
)
def test_bad_patches_are_invalid_config(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(InvalidConfigError, match=re.escape(message)):
        make(tmp_path)


def test_patches_are_a_tagged_union_and_host_sources_become_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "local").mkdir()
    patch = Patch.copy_dir("local", "/app")
    assert patch.src == str(tmp_path / "local")
    config = sandbox_config(
        name="p", patches=[patch, {"kind": "symlink", "target": "a", "link": "/b"}]
    )
    assert config.patches[1] == SymlinkPatch(target="a", link="/b")
    with pytest.raises(InvalidConfigError, match=r"^patches\[0\]: "):
        sandbox_config(name="p", patches=[{"kind": "chown", "path": "/a"}])
    # A stored configuration reads back even when the host source is gone.
    (tmp_path / "local").rmdir()
    stored = SandboxConfig.model_validate_json(config.model_dump_json(), context=STORED_CONFIG)
    assert stored == config


async def test_a_bad_patch_is_refused_before_anything_is_recorded(unique_name: str) -> None:
    with pytest.raises(InvalidConfigError):
        await Sandbox.create(unique_name, patches=[{"kind": "text", "path": "rel", "content": ""}])
    with pytest.raises(SandboxNotFoundError):
        await Sandbox.get_info(unique_name)

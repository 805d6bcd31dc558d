"""Creating, listing, stopping and removing sandboxes; typed errors that keep state intact."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from microsandbox_tui import (
    Image,
    ImageNotFoundError,
    InvalidConfigError,
    PullPolicy,
    Sandbox,
    SandboxAlreadyExistsError,
    SandboxNotFoundError,
    SandboxNotRunningError,
    SandboxStatus,
    SandboxStillRunningError,
)

pytestmark = pytest.mark.vm


def process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def names() -> list[str]:
    return [info.name for info in await Sandbox.list()]


@pytest.mark.parametrize("bad_name", ["", "a" * 64, "a/b", "../escape", "-dash"])
async def test_invalid_names_are_refused_before_anything_is_recorded(bad_name: str) -> None:
    before = await names()
    with pytest.raises(InvalidConfigError):
        await Sandbox.create(bad_name)
    assert await names() == before


async def test_unknown_image_is_refused_and_nothing_is_recorded(unique_name: str) -> None:
    with pytest.raises(ImageNotFoundError, match="no-such-image"):
        await Sandbox.create(unique_name, image=Image.local("no-such-image"))
    # An OCI image that is not local, with a policy that forbids pulling: no network.
    never = Image.oci("127.0.0.1:9/no-such-image:1", pull_policy=PullPolicy.NEVER)
    with pytest.raises(ImageNotFoundError, match="no-such-image"):
        await Sandbox.create(unique_name, image=never)
    assert unique_name not in await names()


async def test_missing_bind_directory_is_refused(unique_name: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError):
        await Sandbox.create(unique_name, image=str(tmp_path / "missing"))
    assert unique_name not in await names()


async def test_bad_resources_are_refused(unique_name: str) -> None:
    with pytest.raises(InvalidConfigError, match="memory"):
        await Sandbox.create(unique_name, memory=1)
    with pytest.raises(InvalidConfigError, match="cpus"):
        await Sandbox.create(unique_name, cpus=0)


async def test_duplicate_name_is_refused_and_the_original_keeps_running(
    shared_sandbox: Sandbox,
) -> None:
    with pytest.raises(SandboxAlreadyExistsError):
        await Sandbox.create(shared_sandbox.name)
    info = await Sandbox.get_info(shared_sandbox.name)
    assert info.status is SandboxStatus.RUNNING
    assert (await shared_sandbox.exec("true")).success


async def test_listing_shows_a_running_sandbox_with_its_config(shared_sandbox: Sandbox) -> None:
    info = next(i for i in await Sandbox.list() if i.name == shared_sandbox.name)
    assert info.status is SandboxStatus.RUNNING
    assert info.image == "msb-base"
    assert (info.config.cpus, info.config.memory_mib) == (1, 512)
    assert info.started_at is not None
    assert info.accelerator in ("kvm", "tcg")


async def test_unknown_sandbox_is_a_typed_error() -> None:
    with pytest.raises(SandboxNotFoundError):
        await Sandbox.get_info("never-created")
    with pytest.raises(SandboxNotFoundError):
        await Sandbox.remove("never-created")
    with pytest.raises(SandboxNotFoundError):
        await Sandbox.connect("never-created")


async def test_stop_then_exec_is_a_typed_error_and_remove_cleans_up(unique_name: str) -> None:
    sandbox = await Sandbox.create(unique_name, cpus=2, memory=256)
    assert (await sandbox.shell("nproc")).stdout_text.strip() == "2"
    with pytest.raises(SandboxStillRunningError):
        await Sandbox.remove(unique_name)
    await sandbox.stop_and_wait()
    info = await Sandbox.get_info(unique_name)
    assert info.status is SandboxStatus.STOPPED
    assert info.exit_reason == "stopped"
    with pytest.raises(SandboxNotRunningError):
        await sandbox.exec("true")
    with pytest.raises(SandboxNotRunningError):
        await Sandbox.connect(unique_name)
    await Sandbox.remove(unique_name)
    assert unique_name not in await names()
    assert not (Path(os.environ["MSB_HOME"]) / "sandboxes" / unique_name).exists()


async def test_replace_swaps_a_running_sandbox(unique_name: str) -> None:
    first = await Sandbox.create(unique_name)
    await first.shell("echo first > /root/marker")
    second = await Sandbox.create(unique_name, replace=True)
    output = await second.shell("cat /root/marker 2>/dev/null || echo fresh")
    assert output.stdout_text == "fresh\n"
    async with second:
        pass
    assert unique_name not in await names()


async def test_context_manager_kills_and_removes(unique_name: str) -> None:
    async with await Sandbox.create(unique_name) as sandbox:
        assert (await sandbox.shell("echo hello")).stdout_text == "hello\n"
    assert unique_name not in await names()


async def test_killed_vmm_is_reported_as_crashed(unique_name: str) -> None:
    sandbox = await Sandbox.create(unique_name)
    record = next(i for i in await Sandbox.list() if i.name == unique_name)
    vmm_pid, supervisor_pid = record.vmm_pid, record.supervisor_pid
    assert vmm_pid and record.status is SandboxStatus.RUNNING
    os.kill(vmm_pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while (await Sandbox.get_info(unique_name)).status is not SandboxStatus.CRASHED:
        assert time.monotonic() < deadline, "status did not turn crashed within 2 s"
        await asyncio.sleep(0.05)
    with pytest.raises(SandboxNotRunningError):
        await sandbox.exec("true")
    # The supervisor does not outlive its VM.
    assert supervisor_pid is not None
    while process_alive(supervisor_pid):
        assert time.monotonic() < deadline + 5, "the supervisor outlived its VM"
        await asyncio.sleep(0.05)
    await Sandbox.remove(unique_name)


async def test_killed_supervisor_is_reported_as_crashed_and_takes_qemu_along(
    unique_name: str,
) -> None:
    await Sandbox.create(unique_name)
    record = await Sandbox.get_info(unique_name)
    assert record.supervisor_pid and record.vmm_pid
    os.kill(record.supervisor_pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while (await Sandbox.get_info(unique_name)).status is not SandboxStatus.CRASHED:
        assert time.monotonic() < deadline, "status did not turn crashed within 2 s"
        await asyncio.sleep(0.05)
    while process_alive(record.vmm_pid):
        assert time.monotonic() < deadline + 5, "QEMU outlived its supervisor"
        await asyncio.sleep(0.05)
    await Sandbox.remove(unique_name)


CREATOR = textwrap.dedent(
    """
    import asyncio, sys
    from microsandbox_tui import Sandbox

    async def main():
        await Sandbox.create(sys.argv[1])
        print((await Sandbox.get_info(sys.argv[1])).vmm_pid, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
    """
)


async def test_attached_sandbox_dies_with_its_killed_creator(unique_name: str) -> None:
    creator = subprocess.Popen(
        [sys.executable, "-c", CREATOR, unique_name], stdout=subprocess.PIPE, text=True
    )
    try:
        line = creator.stdout.readline() if creator.stdout else ""
        vmm_pid = int(line)
        assert process_alive(vmm_pid)
    finally:
        creator.send_signal(signal.SIGKILL)
        creator.wait()
    deadline = time.monotonic() + 10
    while process_alive(vmm_pid):
        assert time.monotonic() < deadline, "QEMU outlived the process that created it"
        await asyncio.sleep(0.05)
    while (info := await Sandbox.get_info(unique_name)).status is SandboxStatus.RUNNING:
        assert time.monotonic() < deadline, "the supervisor did not record the stop"
        await asyncio.sleep(0.05)
    assert info.status is SandboxStatus.STOPPED
    assert info.exit_reason == "the process that created it exited"
    await Sandbox.remove(unique_name)


DETACHED_CREATOR = textwrap.dedent(
    """
    import asyncio, json, sys
    from microsandbox_tui import Sandbox, _native

    async def main():
        await Sandbox.create(sys.argv[1], detached=True)
        print(json.loads(_native.get_sandbox(sys.argv[1]))["supervisor_pid"], flush=True)

    asyncio.run(main())
    """
)

#: What the runtime and its supervisor run by name from PATH: QEMU and the ext4 tools.
HOST_TOOLS = ("qemu-system-x86_64", "mkfs.ext4", "debugfs", "dumpe2fs")


def tools_only_path(directory: Path) -> str:
    """A PATH of one directory holding links to exactly the host tools the runtime needs."""
    for tool in HOST_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is not installed"
        (directory / tool).symlink_to(found)
    return str(directory)


async def test_a_detached_sandbox_serves_exec_without_python_after_its_creator_exits(
    unique_name: str, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    path = tools_only_path(bin_dir)
    assert shutil.which("python3", path=path) is None
    creator = subprocess.run(
        [sys.executable, "-c", DETACHED_CREATOR, unique_name],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert creator.returncode == 0, creator.stderr
    supervisor_pid = int(creator.stdout)
    try:
        assert Path(f"/proc/{supervisor_pid}/exe").resolve().name == "msb-supervisor"
        environ = Path(f"/proc/{supervisor_pid}/environ").read_bytes().split(b"\0")
        assert f"PATH={path}".encode() in environ
        handle = await Sandbox.get(unique_name)
        sandbox = await handle.connect()
        output = await sandbox.shell("echo served")
        assert output.stdout_text == "served\n"
        await sandbox.stop_and_wait()
    finally:
        await Sandbox.remove(unique_name, force=True)

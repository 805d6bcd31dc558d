"""The SDK calls the dashboard makes, as plain coroutines (no Textual here).

Screens run these in workers; keeping them apart from the widgets keeps the widgets about
presentation only and lets the same steps be read (and tested) on their own.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from microsandbox_tui import (
    ExecError,
    FsEntry,
    Network,
    NetworkPolicy,
    Sandbox,
    SandboxStatus,
    SecretEntry,
    doctor,
    home_dir,
)
from microsandbox_tui.network import PresetName

if TYPE_CHECKING:
    from microsandbox_tui.network_log import FlowLogEntry

#: What a sandbox's network policy is: a preset, by name, or rules.
PolicyChoice = PresetName | NetworkPolicy


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """What the create dialog asks for. ``None`` means the SDK's default."""

    name: str
    image: str
    cpus: int | None
    memory_mib: int | None
    env: Mapping[str, str] = field(default_factory=dict)
    #: A detached sandbox outlives the dashboard; an attached one stops when it quits.
    detached: bool = True
    #: Its preset and published ports.
    network: Network = field(default_factory=Network)
    #: Secrets whose placeholders the guest's environment holds, with their values.
    secrets: tuple[SecretEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class HostInfo:
    """What the status bar shows about this host."""

    accelerator: str | None
    home: str | None
    failed_checks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProcessTable:
    """``ps`` output of a guest: column titles and one row of cells per process."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


#: Columns the guest's ``ps`` (BusyBox) supports; ``args`` last, as it holds spaces.
PS_COLUMNS = "pid,ppid,user,stat,vsz,rss,args"


def parse_ps(text: str) -> ProcessTable:
    """Splits ``ps -o ...`` output into cells; the last column keeps its spaces."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ProcessTable((), ())
    columns = tuple(lines[0].split())
    rows = []
    for line in lines[1:]:
        cells = line.split(maxsplit=len(columns) - 1)
        rows.append(tuple(cells + [""] * (len(columns) - len(cells))))
    return ProcessTable(columns, tuple(rows))


@asynccontextmanager
async def connected(name: str) -> AsyncIterator[Sandbox]:
    """A connection to a running sandbox for a few calls, closed afterwards (which leaves the
    VM running)."""
    sandbox = await Sandbox.connect(name)
    try:
        yield sandbox
    finally:
        await sandbox.close()


async def list_processes(name: str) -> ProcessTable:
    """The processes of a running sandbox, as its ``ps`` reports them."""
    async with connected(name) as sandbox:
        output = await sandbox.exec("ps", ["-o", PS_COLUMNS])
    if not output.success:
        raise ExecError(f"ps exited with {output.exit_code}: {output.stderr_text.strip()}")
    return parse_ps(output.stdout_text)


async def create_sandbox(request: CreateRequest) -> None:
    """Creates and boots a sandbox (detached ones outlive the dashboard)."""
    sandbox = await Sandbox.create(
        request.name,
        image=request.image,
        cpus=request.cpus,
        memory=request.memory_mib,
        env=dict(request.env) or None,
        detached=request.detached,
        network=request.network,
        secrets=list(request.secrets),
    )
    # Closing the handle leaves the VM alone; an attached one stops with this process.
    await sandbox.close()


async def stop_sandbox(name: str) -> None:
    """Shuts a running sandbox down cleanly and waits until its VM is gone."""
    sandbox = await Sandbox.connect(name)
    await sandbox.stop_and_wait()
    await sandbox.close()


async def start_sandbox(name: str, secrets: Sequence[SecretEntry] = ()) -> None:
    """Boots a stopped or crashed sandbox again, detached so that it outlives the dashboard;
    ``secrets`` give the values of its secrets that have no source to read them from."""
    handle = await Sandbox.get(name)
    sandbox = await handle.start(detached=True, secrets=secrets)
    await sandbox.close()


async def kill_sandbox(name: str) -> None:
    sandbox = await Sandbox.connect(name)
    await sandbox.kill()


async def restart_sandbox(name: str, secrets: Sequence[SecretEntry] = ()) -> None:
    """A clean shutdown, then a boot with the same configuration and disk (and ``secrets``,
    as for :func:`start_sandbox`)."""
    await stop_sandbox(name)
    await start_sandbox(name, secrets)


async def toggle_pause(name: str) -> SandboxStatus:
    """Pauses a running sandbox or resumes a paused one; returns the new status."""
    sandbox = await Sandbox.connect(name)
    try:
        if await sandbox.status() is SandboxStatus.PAUSED:
            await sandbox.resume()
        else:
            await sandbox.pause()
        return await sandbox.status()
    finally:
        await sandbox.close()


async def delete_sandbox(name: str) -> None:
    """Removes a sandbox, killing it first if it is still running."""
    await Sandbox.remove(name, force=True)


async def load_host_info() -> HostInfo:
    """The accelerator and home directory, from the runtime's own health checks."""
    checks = await asyncio.to_thread(doctor)
    accelerator = next((check for check in checks if check.name == "accelerator"), None)
    return HostInfo(
        accelerator=(
            accelerator.detail.split(" ", 1)[0] if accelerator and accelerator.ok else None
        ),
        home=home_dir(),
        failed_checks=tuple(check.name for check in checks if not check.ok),
    )


async def list_directory(name: str, path: str) -> list[FsEntry]:
    """The entries of a guest directory."""
    async with connected(name) as sandbox:
        return await sandbox.fs.list(path)


async def download(name: str, guest_path: str, host_path: str) -> None:
    """Copies a guest file or directory tree to ``host_path``."""
    async with connected(name) as sandbox:
        await sandbox.fs.copy_to_host(guest_path, host_path)


async def upload(name: str, host_path: str, guest_directory: str) -> str:
    """Copies a host file or directory tree into a guest directory; returns the guest path."""
    target = posixpath.join(guest_directory, os.path.basename(os.path.normpath(host_path)))
    async with connected(name) as sandbox:
        await sandbox.fs.copy_from_host(host_path, target)
    return target


async def set_network_policy(name: str, policy: PolicyChoice) -> None:
    """Replaces a sandbox's network policy: a running one applies it to new flows at once
    (closing the open flows it denies), and the stored configuration keeps it for the next
    start either way."""
    handle = await Sandbox.get(name)
    await handle.set_network_policy(policy)


async def set_secret(name: str, entry: SecretEntry) -> None:
    """Adds or replaces (by env var) a secret of a sandbox: a running one uses it on its next
    request (an entry without a value keeps the running value), and the stored configuration
    keeps it, without its value, either way."""
    handle = await Sandbox.get(name)
    await handle.set_secret(entry)


async def remove_secret(name: str, env_var: str) -> None:
    """Removes a secret from a sandbox, running or not; its env var leaves the guest's
    default environment."""
    handle = await Sandbox.get(name)
    await handle.remove_secret(env_var)


async def network_log(
    name: str, *, tail: int | None = None, follow: bool = False
) -> AsyncIterator[FlowLogEntry]:
    """The flow decisions of a sandbox's network, the last ``tail`` of them first; with
    ``follow``, new ones as they are made, until the sandbox stops."""
    handle = await Sandbox.get(name)
    async for entry in handle.network_log(tail=tail, follow=follow):
        yield entry

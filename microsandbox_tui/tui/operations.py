"""The SDK calls the dashboard makes, as plain coroutines (no Textual here).

Screens run these in workers; keeping them apart from the widgets keeps the widgets about
presentation only and lets the same steps be read (and tested) on their own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from microsandbox_tui import (
    Sandbox,
    SandboxStatus,
    doctor,
    home_dir,
)


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """What the create dialog asks for. ``None`` means the SDK's default."""

    name: str
    image: str
    cpus: int | None
    memory_mib: int | None


@dataclass(frozen=True, slots=True)
class HostInfo:
    """What the status bar shows about this host."""

    accelerator: str | None
    home: str | None
    failed_checks: tuple[str, ...]


async def create_sandbox(request: CreateRequest) -> None:
    """Creates and boots a detached sandbox, so that it outlives the dashboard."""
    sandbox = await Sandbox.create(
        request.name,
        image=request.image,
        cpus=request.cpus,
        memory=request.memory_mib,
        detached=True,
    )
    await sandbox.close()


async def stop_sandbox(name: str) -> None:
    """Shuts a running sandbox down cleanly and waits until its VM is gone."""
    sandbox = await Sandbox.connect(name)
    await sandbox.stop_and_wait()
    await sandbox.close()


async def start_sandbox(name: str) -> None:
    """Boots a stopped or crashed sandbox again, detached so that it outlives the dashboard."""
    handle = await Sandbox.get(name)
    sandbox = await handle.start(detached=True)
    await sandbox.close()


async def kill_sandbox(name: str) -> None:
    sandbox = await Sandbox.connect(name)
    await sandbox.kill()


async def restart_sandbox(name: str) -> None:
    """A clean shutdown, then a boot with the same configuration and disk."""
    await stop_sandbox(name)
    await start_sandbox(name)


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

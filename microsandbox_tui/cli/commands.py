"""The ``msb`` sub-commands. Each takes the parsed arguments and returns an exit status."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from datetime import UTC, datetime

from microsandbox_tui import (
    Sandbox,
    list_images,
)
from microsandbox_tui import doctor as run_doctor
from microsandbox_tui import install as run_install
from microsandbox_tui import version as sdk_version

from . import output


async def create(args: argparse.Namespace) -> int:
    await Sandbox.create(
        args.name, image=args.image, cpus=args.cpus, memory=args.memory, detached=True
    )
    print(args.name)
    return 0


async def run(args: argparse.Namespace) -> int:
    name = args.name or f"run-{secrets.token_hex(4)}"
    async with await Sandbox.create(
        name, image=args.image, cpus=args.cpus, memory=args.memory
    ) as sandbox:
        result = await sandbox.exec(args.argv[0], args.argv[1:])
    output.write_output(result)
    return result.exit_code


async def exec_(args: argparse.Namespace) -> int:
    sandbox = await Sandbox.connect(args.name)
    result = await sandbox.exec(args.argv[0], args.argv[1:])
    output.write_output(result)
    return result.exit_code


async def ls(args: argparse.Namespace) -> int:
    infos = await Sandbox.list()
    now = datetime.now(UTC)
    if args.json:
        print(json.dumps([output.sandbox_json(info, now) for info in infos], indent=2))
        return 0
    header = ["NAME", "STATUS", "IMAGE", "CPUS", "MEMORY", "UPTIME"]
    print(output.table([header, *(output.sandbox_row(info, now) for info in infos)]))
    return 0


async def stop(args: argparse.Namespace) -> int:
    sandbox = await Sandbox.connect(args.name)
    if args.kill:
        await sandbox.kill()
    else:
        await sandbox.stop_and_wait(args.timeout)
    return 0


async def rm(args: argparse.Namespace) -> int:
    for name in args.names:
        await Sandbox.remove(name, force=args.force)
    return 0


async def images(args: argparse.Namespace) -> int:
    rows = [["NAME", "KIND", "SIZE", "CREATED"]]
    for image in await list_images():
        created = image.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
        rows.append([image.name, image.kind, output.size(image.size_bytes), created])
    print(output.table(rows))
    return 0


async def install(args: argparse.Namespace) -> int:
    def progress(line: str) -> None:
        print(line, flush=True)

    await run_install(progress=progress)
    print("runtime installed")
    return 0


async def doctor(args: argparse.Namespace) -> int:
    checks = await asyncio.to_thread(run_doctor)
    width = max((len(check.name) for check in checks), default=0)
    for check in checks:
        mark = "✓" if check.ok else "✗"
        print(f"{mark} {check.name.ljust(width)}  {check.detail}")
    return 0 if all(check.ok for check in checks) else 1


async def version(args: argparse.Namespace) -> int:
    print(f"msb {sdk_version()}")
    sys.stdout.flush()
    return 0

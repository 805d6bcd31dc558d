"""``msb``: a small command-line interface over the SDK, for scripts and shell users."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from .. import (
    DEFAULT_IMAGE,
    MicrosandboxError,
    Sandbox,
    SandboxInfo,
    SandboxStatus,
    doctor,
    install,
    list_images,
    version,
)


def format_uptime(info: SandboxInfo, now: datetime | None = None) -> str:
    """``1h02m``-style uptime of a running sandbox, ``-`` otherwise."""
    if info.status is not SandboxStatus.RUNNING or info.started_at is None:
        return "-"
    seconds = int(((now or datetime.now(UTC)) - info.started_at).total_seconds())
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


async def _ls(args: argparse.Namespace) -> int:
    infos = await Sandbox.list()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": i.name,
                        "status": str(i.status),
                        "image": i.image,
                        "cpus": i.config.cpus,
                        "memory_mib": i.config.memory_mib,
                        "accelerator": i.accelerator,
                    }
                    for i in infos
                ],
                indent=2,
            )
        )
        return 0
    rows = [("NAME", "STATUS", "IMAGE", "CPUS", "MEMORY", "UPTIME")]
    rows += [
        (
            i.name,
            str(i.status),
            i.image,
            str(i.config.cpus),
            f"{i.config.memory_mib}M",
            format_uptime(i),
        )
        for i in infos
    ]
    print(_table(rows))
    return 0


async def _create(args: argparse.Namespace) -> int:
    await Sandbox.create(
        args.name, image=args.image, cpus=args.cpus, memory=args.memory, detached=True
    )
    print(args.name)
    return 0


async def _run(args: argparse.Namespace) -> int:
    name = args.name or f"run-{datetime.now(UTC):%H%M%S%f}"
    async with await Sandbox.create(
        name, image=args.image, cpus=args.cpus, memory=args.memory
    ) as sandbox:
        output = await sandbox.exec(args.command[0], args.command[1:])
    sys.stdout.buffer.write(output.stdout)
    sys.stderr.buffer.write(output.stderr)
    return output.exit_code


async def _exec(args: argparse.Namespace) -> int:
    sandbox = await Sandbox.connect(args.name)
    output = await sandbox.exec(args.command[0], args.command[1:])
    sys.stdout.buffer.write(output.stdout)
    sys.stderr.buffer.write(output.stderr)
    return output.exit_code


async def _stop(args: argparse.Namespace) -> int:
    sandbox = await Sandbox.connect(args.name)
    await (sandbox.kill() if args.kill else sandbox.stop_and_wait())
    return 0


async def _rm(args: argparse.Namespace) -> int:
    for name in args.names:
        await Sandbox.remove(name)
    return 0


async def _images(args: argparse.Namespace) -> int:
    rows = [("NAME", "KIND", "SIZE")]
    rows += [(i.name, i.kind, f"{i.size_bytes / 2**20:.1f}M") for i in await list_images()]
    print(_table(rows))
    return 0


async def _install(args: argparse.Namespace) -> int:
    await install(progress=lambda line: print(line, flush=True))
    return 0


async def _doctor(args: argparse.Namespace) -> int:
    checks = doctor()
    for check in checks:
        print(f"{'✓' if check.ok else '✗'} {check.name:<14} {check.detail}")
    return 0 if all(check.ok for check in checks) else 1


async def _version(args: argparse.Namespace) -> int:
    print(f"msb {version()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msb", description="Run and manage microVM sandboxes.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def resources(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--image", default=DEFAULT_IMAGE, help="local image name or a host directory"
        )
        sub.add_argument("--cpus", type=int, default=None)
        sub.add_argument("--memory", type=int, default=None, help="memory in MiB")

    ls = commands.add_parser("ls", help="list sandboxes")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(run=_ls)
    create = commands.add_parser("create", help="create a sandbox that keeps running (detached)")
    create.add_argument("name")
    resources(create)
    create.set_defaults(run=_create)
    run = commands.add_parser("run", help="run one command in a fresh sandbox, then remove it")
    run.add_argument("--name")
    resources(run)
    run.add_argument("command", nargs=argparse.REMAINDER)
    run.set_defaults(run=_run)
    exec_ = commands.add_parser("exec", help="run a command in a running sandbox")
    exec_.add_argument("name")
    exec_.add_argument("command", nargs=argparse.REMAINDER)
    exec_.set_defaults(run=_exec)
    stop = commands.add_parser("stop", help="stop a sandbox (graceful unless --kill)")
    stop.add_argument("name")
    stop.add_argument("--kill", action="store_true")
    stop.set_defaults(run=_stop)
    rm = commands.add_parser("rm", help="remove stopped sandboxes")
    rm.add_argument("names", nargs="+")
    rm.set_defaults(run=_rm)
    commands.add_parser("images", help="list local images").set_defaults(run=_images)
    commands.add_parser(
        "install", help="fetch the guest kernel, build initramfs and default image"
    ).set_defaults(run=_install)
    commands.add_parser("doctor", help="check this host").set_defaults(run=_doctor)
    commands.add_parser("version", help="print the version").set_defaults(run=_version)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "command", None) in ("run", "exec"):
        if args.command and args.command[0] == "--":
            args.command = args.command[1:]
        if not args.command:
            parser.error(f"{args.command!r}: a command to run is required after --")
    try:
        code = asyncio.run(args.run(args))
    except MicrosandboxError as error:
        print(f"error: {type(error).__name__}: {error}", file=sys.stderr)
        code = 1
    sys.exit(code)

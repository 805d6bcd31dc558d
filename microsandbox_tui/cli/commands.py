"""The ``msb`` sub-commands. Each takes the parsed arguments and returns an exit status."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from microsandbox_tui import (
    AttachOptions,
    DnsConfig,
    EnvSource,
    Image,
    InvalidConfigError,
    LayerDownloadComplete,
    LayerDownloadProgress,
    LayerIndexComplete,
    LogSource,
    MountConfig,
    Network,
    NetworkPolicy,
    OciImage,
    PullComplete,
    RegistryAuth,
    Resolved,
    Sandbox,
    Secret,
    SecretEntry,
    TlsConfig,
    ViolationAction,
    Volume,
    inspect_image,
    list_images,
    prune_images,
    pull_stream,
    read_logs,
    remove_image,
)
from microsandbox_tui import doctor as run_doctor
from microsandbox_tui import install as run_install
from microsandbox_tui import version as sdk_version

from ..formatting import format_size
from ..network import PRESET_SHORT_NAMES, PresetName
from . import output
from .locations import GuestPath


def _image(args: argparse.Namespace) -> str | OciImage:
    return Image.oci(args.image, insecure=True) if args.insecure else args.image


def _volumes(args: argparse.Namespace) -> dict[str, MountConfig]:
    """The ``-v`` and ``--tmpfs`` mounts by guest path."""
    volumes: dict[str, MountConfig] = {}
    for guest, mount in [*args.volumes, *args.tmpfs]:
        if guest in volumes:
            raise InvalidConfigError(f"volumes: {guest} is given twice")
        volumes[guest] = mount
    return volumes


def net_policy_given(args: argparse.Namespace) -> bool:
    """Whether any flag of a custom policy was given."""
    defaults = (args.net_default_egress, args.net_default_ingress)
    return bool(args.net_rules) or any(default is not None for default in defaults)


def policy_of(args: argparse.Namespace) -> NetworkPolicy | PresetName | None:
    """The ``--net`` preset alone, or a custom policy: the ``--net-rule`` rules, then the
    rules of the ``--net`` preset if one is given (so the flags' rules win, as upstream's
    do), with the ``--net-default-*`` defaults, else the preset's, else egress denied and
    ingress allowed. ``None`` when no flag was given."""
    preset = None if args.net is None else PRESET_SHORT_NAMES[args.net]
    if not net_policy_given(args):
        return preset
    base = NetworkPolicy() if preset is None else NetworkPolicy.from_preset(preset)
    return NetworkPolicy(
        args.net_default_egress or base.default_egress,
        args.net_default_ingress or base.default_ingress,
        [*(rule for rules in args.net_rules for rule in rules), *base.rules],
    )


def tls_of(args: argparse.Namespace) -> TlsConfig | None:
    """``--tls-intercept``, ``--tls-bypass`` and ``--tls-upstream-ca`` (each of which turns
    interception on) as the interception settings; ``None`` when none was given."""
    if not (args.tls_intercept or args.tls_bypass or args.tls_upstream_cas):
        return None
    return TlsConfig(bypass=args.tls_bypass, upstream_ca_cert=args.tls_upstream_cas)


def network_of(args: argparse.Namespace) -> Network:
    """The policy flags, ``-p``, ``--deny-domain``, ``--dns-nameserver`` and the TLS flags as
    one network."""
    return Network(
        policy_of(args),
        args.ports,
        [name for name in args.deny_domains if not name.startswith(".")],
        [name for name in args.deny_domains if name.startswith(".")],
        DnsConfig(nameservers=args.nameservers),
        tls=tls_of(args),
    )


def secret_entry(env_var: str, hosts: Sequence[str], on_violation: ViolationAction) -> SecretEntry:
    """A ``--secret``: the value read from the caller's variable ``env_var``, at create and
    at each start; ``*.NAME`` hosts are patterns."""
    entry = Secret.env(
        env_var,
        allow_hosts=[host for host in hosts if not host.startswith("*.")],
        allow_host_patterns=[host for host in hosts if host.startswith("*.")],
        on_violation=on_violation,
    )
    # Its source once the entry checked the name, which a bad one then names as a secret's.
    return entry.model_copy(update={"source": EnvSource(name=env_var)})


def secrets_of(args: argparse.Namespace) -> list[SecretEntry]:
    """``--secret`` and ``--secret-on-violation`` as the sandbox's secrets."""
    on_violation = ViolationAction(args.secret_on_violation.replace("-", "_"))
    return [secret_entry(env_var, hosts, on_violation) for env_var, hosts in args.secrets]


async def create(args: argparse.Namespace) -> int:
    await Sandbox.create(
        args.name,
        image=_image(args),
        cpus=args.cpus,
        memory=args.memory,
        volumes=_volumes(args),
        network=network_of(args),
        secrets=secrets_of(args),
        detached=True,
    )
    print(args.name)
    return 0


async def run(args: argparse.Namespace) -> int:
    name = args.name or f"run-{secrets.token_hex(4)}"
    volumes = _volumes(args)
    async with await Sandbox.create(
        name,
        image=_image(args),
        cpus=args.cpus,
        memory=args.memory,
        volumes=volumes,
        network=network_of(args),
        secrets=secrets_of(args),
    ) as sandbox:
        result = await sandbox.exec(args.argv[0], args.argv[1:])
        if volumes:
            # What the command wrote may still sit in the guest's page cache; a clean
            # shutdown writes it to the volumes before the sandbox is removed.
            await sandbox.stop_and_wait()
    output.write_output(result)
    return result.exit_code


async def exec_(args: argparse.Namespace) -> int:
    sandbox = await Sandbox.connect(args.name)
    if args.interactive:
        return _attached_exit(await sandbox.attach(args.argv[0], {"args": args.argv[1:]}))
    result = await sandbox.exec(args.argv[0], args.argv[1:])
    output.write_output(result)
    return result.exit_code


def _attached_exit(code: int | None) -> int:
    if code is None:
        message = "detached; the session keeps running (msb sessions, msb attach)"
        print(f"\r\n{message}", file=sys.stderr)
        return 0
    return code


async def shell(args: argparse.Namespace) -> int:
    """An interactive login shell in the sandbox, on this terminal."""
    sandbox = await Sandbox.connect(args.name)
    return _attached_exit(await sandbox.attach(args.shell, {"detach_keys": args.detach_keys}))


async def attach(args: argparse.Namespace) -> int:
    sandbox = await Sandbox.connect(args.name)
    options: AttachOptions = {"detach_keys": args.detach_keys}
    return _attached_exit(await sandbox.attach(None, options, session=args.session))


async def sessions(args: argparse.Namespace) -> int:
    sandbox = await Sandbox.connect(args.name)
    rows = [["SESSION", "COMMAND", "TTY", "ATTACHED", "STARTED"]]
    for info in await sandbox.sessions():
        started = info.started_at.astimezone().strftime("%H:%M:%S")
        command = " ".join([info.program, *info.args])
        rows.append([str(info.session), command, _yes(info.tty), _yes(info.attached), started])
    print(output.table(rows))
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


async def logs(args: argparse.Namespace) -> int:
    source = (
        LogSource.EXEC if args.exec else LogSource.NETWORK if args.network else LogSource.CONSOLE
    )
    async for line in read_logs(args.name, source, tail=args.tail, follow=args.follow):
        print(line, flush=args.follow)
    return 0


async def metrics(args: argparse.Namespace) -> int:
    """One line per sample: CPU, guest memory, host RSS, disk and network totals."""
    sandbox = await Sandbox.connect(args.name)
    try:
        async for sample in sandbox.metrics_stream(interval=args.interval):
            print(output.metrics_line(sample), flush=True)
            if not args.watch:
                break
    finally:
        await sandbox.close()
    return 0


async def start(args: argparse.Namespace) -> int:
    handle = await Sandbox.get(args.name)
    await handle.start(detached=True)
    print(args.name)
    return 0


async def pause(args: argparse.Namespace) -> int:
    await (await Sandbox.connect(args.name)).pause()
    return 0


async def resume(args: argparse.Namespace) -> int:
    await (await Sandbox.connect(args.name)).resume()
    return 0


async def ls(args: argparse.Namespace) -> int:
    if args.target is not None:
        return await _list_guest_directory(args.target, args.json)
    infos = await Sandbox.list()
    now = datetime.now(UTC)
    if args.json:
        print(json.dumps([output.sandbox_json(info, now) for info in infos], indent=2))
        return 0
    header = ["NAME", "STATUS", "IMAGE", "CPUS", "MEMORY", "UPTIME"]
    print(output.table([header, *(output.sandbox_row(info, now) for info in infos)]))
    return 0


async def _list_guest_directory(target: GuestPath, as_json: bool) -> int:
    sandbox = await Sandbox.connect(target.sandbox)
    try:
        entries = await sandbox.fs.list(target.path)
    finally:
        await sandbox.close()
    if as_json:
        print(json.dumps([output.entry_json(entry) for entry in entries], indent=2))
        return 0
    header = ["MODE", "SIZE", "MODIFIED", "NAME"]
    print(output.table([header, *(output.entry_row(entry) for entry in entries)]))
    return 0


async def cp(args: argparse.Namespace) -> int:
    """Copies a file or tree between the host and a sandbox (either way)."""
    match args.source, args.target:
        case GuestPath() as source, str() as target:
            sandbox = await Sandbox.connect(source.sandbox)
            try:
                await sandbox.fs.copy_to_host(source.path, target)
            finally:
                await sandbox.close()
        case str() as source, GuestPath() as target:
            sandbox = await Sandbox.connect(target.sandbox)
            try:
                await sandbox.fs.copy_from_host(source, target.path)
            finally:
                await sandbox.close()
        case _:
            raise InvalidConfigError("cp: exactly one of SRC and DST must be SANDBOX:/path")
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


def _registry_auth(args: argparse.Namespace) -> RegistryAuth | None:
    if not args.username:
        return None
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else ""
    return RegistryAuth.basic(args.username, password)


async def pull(args: argparse.Namespace) -> int:
    stream = pull_stream(args.reference, insecure=args.insecure, auth=_registry_auth(args))
    async with stream:
        async for event in stream:
            match event:
                case Resolved(reference=reference, digest=digest, layers=layers):
                    total = format_size(sum(layer.size_bytes for layer in layers))
                    print(f"{reference}: {len(layers)} layers, {total} ({digest})", flush=True)
                case LayerDownloadProgress(digest=digest, downloaded_bytes=done, total_bytes=of):
                    if sys.stdout.isatty():
                        print(f"\r  {digest[7:19]} {format_size(done)}/{format_size(of)}", end="")
                case LayerDownloadComplete(digest=digest):
                    print(f"\r  {digest[7:19]} downloaded", flush=True)
                case LayerIndexComplete(digest=digest):
                    print(f"  {digest[7:19]} ready", flush=True)
                case PullComplete(reference=reference):
                    print(f"pulled {reference}", flush=True)
        await stream.result()
    return 0


async def images(args: argparse.Namespace) -> int:
    rows = [["NAME", "KIND", "LAYERS", "SIZE", "CREATED", "LAST USED"]]
    for image in await list_images():
        created = image.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
        used = (
            image.last_used_at.astimezone().strftime("%Y-%m-%d %H:%M")
            if image.last_used_at
            else "-"
        )
        size = format_size(image.size_bytes)
        rows.append([image.name, image.kind, str(image.layer_count), size, created, used])
    print(output.table(rows))
    return 0


async def inspect(args: argparse.Namespace) -> int:
    """The sandbox's record and configuration, its network included, one field a line."""
    info = await Sandbox.get_info(args.name)
    print(output.table(output.inspect_rows(info, datetime.now(UTC))))
    return 0


async def net_set(args: argparse.Namespace) -> int:
    """Replaces the sandbox's policy, then prints it as ``net show`` does."""
    policy = policy_of(args)
    assert policy is not None, "parse_args refuses net set without a policy"
    handle = await Sandbox.get(args.name)
    await handle.set_network_policy(policy)
    print("\n".join(output.policy_lines(handle.config.network)))
    return 0


async def net_show(args: argparse.Namespace) -> int:
    info = await Sandbox.get_info(args.name)
    print("\n".join(output.policy_lines(info.config.network)))
    return 0


async def inspect_image_command(args: argparse.Namespace) -> int:
    detail = await inspect_image(args.name)
    info, defaults = detail.info, detail.defaults
    print(
        json.dumps(
            {
                "name": info.name,
                "kind": info.kind,
                "digest": info.digest,
                "size_bytes": info.size_bytes,
                "layers": [
                    {
                        "digest": layer.digest,
                        "diff_id": layer.diff_id,
                        "size_bytes": layer.size_bytes,
                    }
                    for layer in detail.layers
                ],
                "env": defaults.env,
                "entrypoint": defaults.entrypoint,
                "cmd": defaults.cmd,
                "workdir": defaults.workdir,
                "user": defaults.user,
            },
            indent=2,
        )
    )
    return 0


async def rmi(args: argparse.Namespace) -> int:
    for name in args.names:
        await remove_image(name)
    return 0


async def prune_images_command(args: argparse.Namespace) -> int:
    print(f"freed {format_size(await prune_images())}")
    return 0


async def volume_create(args: argparse.Namespace) -> int:
    await Volume.create(args.name, args.quota)
    print(args.name)
    return 0


async def volume_ls(args: argparse.Namespace) -> int:
    volumes = await Volume.list()
    if args.json:
        print(json.dumps([output.volume_json(volume) for volume in volumes], indent=2))
        return 0
    header = ["NAME", "QUOTA", "USED", "IN USE BY", "CREATED"]
    print(output.table([header, *(output.volume_row(volume) for volume in volumes)]))
    return 0


async def volume_inspect(args: argparse.Namespace) -> int:
    print(json.dumps(output.volume_json(await Volume.get(args.name)), indent=2))
    return 0


async def volume_rm(args: argparse.Namespace) -> int:
    for name in args.names:
        await Volume.remove(name)
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

"""The ``msb`` command line: sub-commands and their arguments."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from microsandbox_tui import (
    DEFAULT_IMAGE,
    Action,
    DnsConfig,
    InvalidConfigError,
    LogLevel,
    MountConfig,
    Network,
    PublishedPort,
    Rule,
    Size,
    TlsConfig,
    ViolationAction,
    Volume,
    __version__,
)
from microsandbox_tui.network import (
    PRESET_SHORT_NAMES,
    RULE_GRAMMAR,
    parse_published_port,
    parse_rules,
)
from microsandbox_tui.terminal import DEFAULT_DETACH_KEYS

from . import commands
from .locations import guest_location, location

#: Separates a command to run in the guest from msb's own arguments.
COMMAND_SEPARATOR = "--"
#: Marks a ``-v`` mount read-only.
READ_ONLY = "ro"


@contextmanager
def _flag_error(strip_location: bool = False) -> Iterator[None]:
    """Turns the SDK's :class:`InvalidConfigError` about a flag's value into argparse's error;
    ``strip_location`` drops the message's config location (``network.tls.bypass: ...``),
    which names no flag."""
    try:
        yield
    except InvalidConfigError as error:
        message = str(error).split(": ", 1)[1] if strip_location else str(error)
        raise argparse.ArgumentTypeError(message) from None


def volume_flag(text: str) -> tuple[str, MountConfig]:
    """``-v SOURCE:GUEST_PATH[:ro]``: SOURCE is a host directory when it contains ``/`` or
    starts with ``.``, else a named volume."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != READ_ONLY):
        raise argparse.ArgumentTypeError(f"expected SOURCE:GUEST_PATH[:{READ_ONLY}], not {text!r}")
    source, guest = parts[0], parts[1]
    readonly = len(parts) == 3
    try:
        if "/" in source or source.startswith("."):
            return guest, Volume.bind(source, readonly=readonly)
        return guest, Volume.named(source, readonly=readonly)
    except InvalidConfigError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def size_flag(text: str) -> Size:
    """A size as :meth:`Size.parse` reads it: ``512M``, ``1.5G``; a number alone is MiB."""
    with _flag_error():
        return Size.parse(text)


def tmpfs_flag(text: str) -> tuple[str, MountConfig]:
    """``--tmpfs GUEST_PATH[:SIZE]``."""
    guest, _, size = text.partition(":")
    try:
        return guest, Volume.tmpfs(Size.parse(size) if size else None)
    except InvalidConfigError:
        raise argparse.ArgumentTypeError(f"expected GUEST_PATH[:SIZE], not {text!r}") from None


def publish_flag(text: str) -> PublishedPort:
    """``-p HOST:GUEST[/udp]`` or ``-p ADDR:HOST:GUEST[/tcp|udp]``."""
    with _flag_error():
        return parse_published_port(text)


def deny_domain_flag(text: str) -> str:
    """``--deny-domain NAME``; a leading dot denies the zone (``.evil.com``)."""
    with _flag_error(strip_location=True):
        if text.startswith("."):
            Network(deny_domain_suffixes=[text])
        else:
            Network(deny_domains=[text])
    return text


def nameserver_flag(text: str) -> str:
    """``--dns-nameserver ADDR``: an IP, ``IP:PORT`` or ``[IPv6]:PORT``."""
    with _flag_error(strip_location=True):
        DnsConfig(nameservers=[text])
    return text


def tls_bypass_flag(text: str) -> str:
    """``--tls-bypass NAME``: a name, or ``*.NAME`` for every name below it."""
    with _flag_error(strip_location=True):
        TlsConfig(bypass=[text])
    return text


def tls_upstream_ca_flag(text: str) -> str:
    """``--tls-upstream-ca PATH``: an existing PEM file, as an absolute path."""
    with _flag_error(strip_location=True):
        (path,) = TlsConfig(upstream_ca_cert=text).upstream_ca_certs
    return path


def secret_flag(text: str) -> tuple[str, tuple[str, ...]]:
    """``--secret ENV@HOST[,HOST...]``: the variable and the hosts (``*.NAME`` for every
    name below NAME) its value may be sent to. The value is the caller's variable ENV."""
    env_var, at, hosts_text = text.partition("@")
    hosts = tuple(host for host in hosts_text.split(",") if host)
    if not at or not hosts:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ENV@HOST[,HOST...]")
    with _flag_error(strip_location=True):
        commands.secret_entry(env_var, hosts, ViolationAction.BLOCK_AND_LOG)
    return env_var, hosts


def check_secret_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A ``--secret``'s value comes from the caller's environment, never from argv: a
    variable that is not set is a usage error."""
    for env_var, _ in getattr(args, "secrets", ()):
        if not os.environ.get(env_var):
            parser.error(
                f"--secret {env_var}: the environment variable {env_var} is not set (the value "
                "is read from it, never from the command line)"
            )


def rules_flag(text: str) -> tuple[Rule, ...]:
    """``--net-rule RULE[,RULE...]`` in the grammar of :func:`parse_rule`."""
    with _flag_error():
        return parse_rules(text)


def _add_policy(parser: argparse.ArgumentParser, preset_default: str | None) -> None:
    """``--net PRESET``, or a custom policy from ``--net-rule`` and the defaults."""
    default = f" (default: {preset_default})" if preset_default else ""
    parser.add_argument(
        "--net",
        choices=list(PRESET_SHORT_NAMES),
        default=None,
        help="a preset of what the sandbox may reach: public (the internet, nothing private "
        f"or of the host), none (nothing, no name resolved), all (everything){default}; with "
        "--net-rule, its rules come after theirs",
    )
    parser.add_argument(
        "--net-rule",
        dest="net_rules",
        action="append",
        default=[],
        type=rules_flag,
        metavar="RULE",
        help=f"a rule of a custom policy, {RULE_GRAMMAR}, e.g. allow@api.example.com:tcp:443, "
        "deny:any@10.0.0.0/8, allow@.example.com; repeatable (or RULE,RULE), the first "
        "matching rule decides, before any rule of a --net preset; a flow no rule matches "
        "gets the default of its direction",
    )
    for direction, fallback in (("egress", Action.DENY), ("ingress", Action.ALLOW)):
        parser.add_argument(
            f"--net-default-{direction}",
            choices=[action.value for action in Action],
            default=None,
            help=f"what a custom policy does with {direction} no rule matches "
            f"(default: the --net preset's, else {fallback})",
        )


def check_policy_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``net set`` needs a policy: a usage error when no policy flag is given."""
    if not hasattr(args, "net_rules"):
        return
    if (
        args.handler is commands.net_set
        and args.net is None
        and not commands.net_policy_given(args)
    ):
        parser.error("net set: give --net PRESET, or --net-rule / --net-default-*")


def _add_network(parser: argparse.ArgumentParser) -> None:
    _add_policy(parser, preset_default="public")
    parser.add_argument(
        "-p",
        "--publish",
        dest="ports",
        action="append",
        default=[],
        type=publish_flag,
        metavar="[ADDR:]HOST:GUEST[/udp]",
        help="forward host port HOST (on 127.0.0.1 unless ADDR) to guest port GUEST, TCP "
        "unless /udp; repeatable",
    )
    parser.add_argument(
        "--deny-domain",
        dest="deny_domains",
        action="append",
        default=[],
        type=deny_domain_flag,
        metavar="NAME",
        help="answer NXDOMAIN for NAME; .NAME for the whole zone; repeatable",
    )
    parser.add_argument(
        "--dns-nameserver",
        dest="nameservers",
        action="append",
        default=[],
        type=nameserver_flag,
        metavar="ADDR",
        help="forward DNS to ADDR (IP, IP:PORT or [IPv6]:PORT) instead of the host's "
        "resolvers; repeatable, tried in order",
    )
    _add_tls(parser)


def _add_tls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tls-intercept",
        action="store_true",
        help="intercept TLS on port 443: the guest trusts the sandbox's CA, the host opens its "
        "own verified connection to the real server",
    )
    parser.add_argument(
        "--tls-bypass",
        dest="tls_bypass",
        action="append",
        default=[],
        type=tls_bypass_flag,
        metavar="NAME",
        help="never intercept NAME (*.NAME: every name below it); implies --tls-intercept; "
        "repeatable",
    )
    parser.add_argument(
        "--tls-upstream-ca",
        dest="tls_upstream_cas",
        action="append",
        default=[],
        type=tls_upstream_ca_flag,
        metavar="PATH",
        help="also trust the CA certificates in PATH (PEM) when verifying real servers; implies "
        "--tls-intercept; repeatable",
    )


def _add_resources(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image",
        default=DEFAULT_IMAGE,
        help=f"an OCI image reference (pulled if missing), {DEFAULT_IMAGE}, or a host directory "
        f"used as root (default: {DEFAULT_IMAGE})",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="pull the image over plain HTTP (a local registry)"
    )
    parser.add_argument("--cpus", type=int, default=None, metavar="N", help="virtual CPUs")
    parser.add_argument(
        "--memory",
        type=size_flag,
        default=None,
        metavar="SIZE",
        help="memory: MiB, or with a unit (768M, 1.5G)",
    )
    parser.add_argument(
        "-v",
        "--volume",
        dest="volumes",
        action="append",
        default=[],
        type=volume_flag,
        metavar=f"SOURCE:GUEST_PATH[:{READ_ONLY}]",
        help="mount a named volume, or a host directory (a SOURCE with / or starting with .); "
        "repeatable",
    )
    parser.add_argument(
        "--tmpfs",
        dest="tmpfs",
        action="append",
        default=[],
        type=tmpfs_flag,
        metavar="GUEST_PATH[:SIZE]",
        help="mount a fresh tmpfs of at most SIZE (MiB, or 64M, 1G; default: half the "
        "guest's memory); repeatable",
    )
    _add_network(parser)
    _add_secrets(parser)


def _add_secrets(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--secret",
        dest="secrets",
        action="append",
        default=[],
        type=secret_flag,
        metavar="ENV@HOST[,HOST...]",
        help="give the guest $ENV as a placeholder, and put the value of your own ENV into "
        "requests to HOST (*.NAME: every name below NAME) on their way out; read again at "
        "each start; repeatable",
    )
    parser.add_argument(
        "--secret-on-violation",
        dest="secret_on_violation",
        choices=[action.value.replace("_", "-") for action in ViolationAction],
        default=ViolationAction.BLOCK_AND_LOG.value.replace("_", "-"),
        help="when a placeholder heads for another host: block (an HTTP 403), block-and-log "
        "(also a flow-log line, the default) or block-and-terminate (also stop the sandbox)",
    )


def _add_detach_keys(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detach-keys",
        default=DEFAULT_DETACH_KEYS,
        help=f"keys that leave the session running (default: {DEFAULT_DETACH_KEYS})",
    )


def _add_guest_command(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "argv",
        nargs=argparse.REMAINDER,
        metavar="-- CMD [ARG ...]",
        help="the program to run in the guest and its arguments, after --",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msb",
        description="Run and manage microVM sandboxes.",
        epilog="MSB_LOG=LEVEL in the environment logs to stderr as --log-level does.",
    )
    parser.add_argument("--version", action="version", version=f"msb {__version__}")
    parser.add_argument(
        "--log-level",
        choices=[level.value for level in LogLevel],
        default=None,
        help="log the runtime's work at LEVEL and above to stderr",
    )
    sub = parser.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")

    create = sub.add_parser(
        "create",
        help="create a sandbox that keeps running (always detached)",
        description=(
            "Create and boot a sandbox. It is always detached: it keeps running after msb "
            "exits, because an attached sandbox would die with this msb process."
        ),
    )
    create.add_argument("name")
    _add_resources(create)
    create.add_argument(
        "--detached",
        action="store_true",
        help="accepted for clarity; create is always detached",
    )
    create.set_defaults(handler=commands.create)

    run = sub.add_parser(
        "run",
        help="run one command in a fresh sandbox, then remove it",
        description=(
            "Create an attached sandbox, run CMD in it, print its output and exit with its "
            "exit code. The sandbox is removed afterwards."
        ),
    )
    run.add_argument("--name", default=None, help="sandbox name (default: run-<random>)")
    _add_resources(run)
    _add_guest_command(run)
    run.set_defaults(handler=commands.run)

    exec_ = sub.add_parser("exec", help="run a command in a running sandbox")
    exec_.add_argument(
        "-i",
        "-t",
        "-it",
        dest="interactive",
        action="store_true",
        help="on a terminal bridged to this one (detach with ctrl-p,ctrl-q)",
    )
    exec_.add_argument("name")
    _add_guest_command(exec_)
    exec_.set_defaults(handler=commands.exec_)

    shell = sub.add_parser("shell", help="an interactive shell in a running sandbox")
    shell.add_argument("name")
    shell.add_argument("--shell", default=None, help="program to run (default: bash, ash or sh)")
    _add_detach_keys(shell)
    shell.set_defaults(handler=commands.shell)

    sessions = sub.add_parser("sessions", help="list the commands running in a sandbox")
    sessions.add_argument("name")
    sessions.set_defaults(handler=commands.sessions)

    attach = sub.add_parser("attach", help="attach this terminal to a running session")
    attach.add_argument("name")
    attach.add_argument("session", type=int)
    _add_detach_keys(attach)
    attach.set_defaults(handler=commands.attach)

    logs = sub.add_parser("logs", help="print a sandbox's console (or exec) log")
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--tail", type=int, default=None, metavar="N", help="last N lines")
    log_source = logs.add_mutually_exclusive_group()
    log_source.add_argument("--exec", action="store_true", help="the log of commands run instead")
    log_source.add_argument(
        "--network",
        action="store_true",
        help="the network's flow log instead: each flow and DNS query, allowed or denied, "
        "and the rule that decided it",
    )
    logs.set_defaults(handler=commands.logs)

    metrics = sub.add_parser("metrics", help="CPU, memory, disk and network of a sandbox")
    metrics.add_argument("name")
    metrics.add_argument("-w", "--watch", action="store_true", help="keep printing samples")
    metrics.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS", help="between samples"
    )
    metrics.set_defaults(handler=commands.metrics)

    for name, help_text, handler in (
        ("start", "boot a stopped sandbox again (detached)", commands.start),
        ("pause", "freeze a running sandbox", commands.pause),
        ("resume", "thaw a paused sandbox", commands.resume),
    ):
        lifecycle = sub.add_parser(name, help=help_text)
        lifecycle.add_argument("name")
        lifecycle.set_defaults(handler=handler)

    ls = sub.add_parser(
        "ls",
        help="list sandboxes, or a directory in one",
        description="List the sandboxes, or with SANDBOX:/path the entries of a guest directory.",
    )
    ls.add_argument(
        "target", nargs="?", type=guest_location, metavar="SANDBOX:/PATH", help="a guest path"
    )
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(handler=commands.ls)

    cp = sub.add_parser(
        "cp",
        help="copy files between the host and a sandbox",
        description=(
            "Copy a file or a directory tree between the host and a running sandbox; one of "
            "SRC and DST is SANDBOX:/path, the other a host path. DST becomes exactly the copy."
        ),
    )
    cp.add_argument("source", type=location, metavar="SRC")
    cp.add_argument("target", type=location, metavar="DST")
    cp.set_defaults(handler=commands.cp)

    stop = sub.add_parser("stop", help="stop a running sandbox (graceful shutdown)")
    stop.add_argument("name")
    stop.add_argument("--kill", action="store_true", help="kill the VM at once instead")
    stop.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long the guest may take to shut down before it is killed (default: 10)",
    )
    stop.set_defaults(handler=commands.stop)

    rm = sub.add_parser("rm", help="remove stopped sandboxes")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.add_argument("-f", "--force", action="store_true", help="kill running sandboxes first")
    rm.set_defaults(handler=commands.rm)

    pull = sub.add_parser("pull", help="pull an OCI image into the local store")
    pull.add_argument("reference", help="alpine, python:3.12, host:5000/app@sha256:...")
    _add_registry_options(pull)
    pull.set_defaults(handler=commands.pull)

    sub.add_parser("images", help="list local images").set_defaults(handler=commands.images)

    inspect_sandbox = sub.add_parser(
        "inspect", help="a sandbox's configuration, state and network (addresses, ports, DNS)"
    )
    inspect_sandbox.add_argument("name")
    inspect_sandbox.set_defaults(handler=commands.inspect)

    inspect = sub.add_parser("inspect-image", help="an image's layers, sizes and config")
    inspect.add_argument("name")
    inspect.set_defaults(handler=commands.inspect_image_command)

    rmi = sub.add_parser("rmi", help="remove images (refused while a sandbox uses one)")
    rmi.add_argument("names", nargs="+", metavar="NAME")
    rmi.set_defaults(handler=commands.rmi)

    sub.add_parser("prune-images", help="remove cached layers no image uses").set_defaults(
        handler=commands.prune_images_command
    )
    _add_volume_commands(sub)
    _add_net_commands(sub)
    sub.add_parser(
        "install", help="fetch the guest kernel, build the initramfs and the default image"
    ).set_defaults(handler=commands.install)
    sub.add_parser("doctor", help="check this host").set_defaults(handler=commands.doctor)
    sub.add_parser("version", help="print the version").set_defaults(handler=commands.version)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses ``argv`` (default: ``sys.argv[1:]``).

    Everything after the first ``--`` is the guest command, taken verbatim: argparse's own
    handling of ``--`` next to a remainder differs between positions and Python versions.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    tail: list[str] | None = None
    if COMMAND_SEPARATOR in words:
        cut = words.index(COMMAND_SEPARATOR)
        words, tail = words[:cut], words[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(words)
    check_policy_flags(parser, args)
    check_secret_flags(parser, args)
    if not hasattr(args, "argv"):
        if tail is not None:
            parser.error(f"{args.subcommand} takes no command after --")
        return args
    command = list(args.argv)
    if tail is not None:
        command = [*command, COMMAND_SEPARATOR, *tail] if command else tail
    if not command:
        parser.error(f"{args.subcommand}: a command to run is required, e.g. -- echo hello")
    args.argv = command
    return args


def _add_registry_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--insecure", action="store_true", help="plain HTTP to the registry (a local one)"
    )
    command.add_argument("--username", help="registry user (else ~/.docker/config.json)")
    command.add_argument(
        "--password-stdin", action="store_true", help="read the registry password from stdin"
    )


def _add_volume_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    volume = sub.add_parser("volume", help="create, list, inspect and remove named volumes")
    commands_ = volume.add_subparsers(dest="volume_command", required=True, metavar="COMMAND")

    create = commands_.add_parser("create", help="create an empty named volume")
    create.add_argument("name")
    create.add_argument(
        "--quota",
        type=size_flag,
        required=True,
        metavar="SIZE",
        help="its size (usable space): MiB, or with a unit (512M, 2G)",
    )
    create.set_defaults(handler=commands.volume_create)

    ls = commands_.add_parser("ls", help="list named volumes")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(handler=commands.volume_ls)

    inspect = commands_.add_parser("inspect", help="a volume's quota, usage, users and file")
    inspect.add_argument("name")
    inspect.set_defaults(handler=commands.volume_inspect)

    rm = commands_.add_parser("rm", help="remove volumes (refused while a sandbox uses one)")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.set_defaults(handler=commands.volume_rm)


def _add_net_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    net = sub.add_parser("net", help="show or change a sandbox's network policy")
    commands_ = net.add_subparsers(dest="net_command", required=True, metavar="COMMAND")

    set_ = commands_.add_parser(
        "set",
        help="replace a sandbox's network policy, running or stopped",
        description=(
            "Replace the network policy of a sandbox: a running one decides new flows and "
            "DNS queries by it at once and closes open flows it denies; the policy is stored "
            "for the next start too. Give --net PRESET, or --net-rule and --net-default-* "
            "for a custom policy (default egress deny, ingress allow), or both: the rules "
            "first, then the preset's."
        ),
    )
    set_.add_argument("name")
    _add_policy(set_, preset_default=None)
    set_.set_defaults(handler=commands.net_set)

    show = commands_.add_parser("show", help="a sandbox's network policy, one rule a line")
    show.add_argument("name")
    show.set_defaults(handler=commands.net_show)

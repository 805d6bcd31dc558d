"""How sandbox values read to people, shared by the CLI and the dashboard (no UI code)."""

from __future__ import annotations

import stat
from collections.abc import Sequence
from datetime import UTC, datetime

from .fs import FsEntry, FsEntryKind
from .network import DEFAULT_QUERY_TIMEOUT_MS, Network, Rule
from .sandbox_info import NetworkInfo, SandboxInfo
from .secrets import SecretConfig
from .types import MiB, SandboxStatus

#: File type bits of each kind, for ``ls -l`` style modes (``?`` for other kinds).
_TYPE_BITS = {
    FsEntryKind.FILE: stat.S_IFREG,
    FsEntryKind.DIRECTORY: stat.S_IFDIR,
    FsEntryKind.SYMLINK: stat.S_IFLNK,
    FsEntryKind.OTHER: 0,
}


def format_mode(entry: FsEntry) -> str:
    """``drwxr-xr-x``, as ``ls -l`` shows a guest entry's kind and permissions."""
    return stat.filemode(_TYPE_BITS[entry.kind] | entry.mode)


def format_duration(seconds: float) -> str:
    """Compact, two-unit durations: ``42s``, ``3m05s``, ``1h02m``, ``2d03h``."""
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def uptime_seconds(info: SandboxInfo, now: datetime) -> float | None:
    """Seconds since the VM started, for a running sandbox; ``None`` otherwise."""
    if info.status is not SandboxStatus.RUNNING or info.started_at is None:
        return None
    return max((now - info.started_at).total_seconds(), 0.0)


def format_uptime(info: SandboxInfo, now: datetime) -> str:
    """:func:`uptime_seconds` as a duration; ``-`` when not running."""
    seconds = uptime_seconds(info, now)
    return "-" if seconds is None else format_duration(seconds)


def format_size(n_bytes: float) -> str:
    """``512 B``, ``1.5 KiB``, ``12.0 MiB``, ``3.2 GiB`` (a chart's axis may be fractional)."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


#: Eight levels of a sparkline, lowest first.
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int, maximum: float) -> str:
    """The last ``width`` values as block characters scaled to ``0..maximum``, newest on the
    right; padded with spaces on the left to exactly ``width`` characters."""
    recent = list(values)[-width:] if width > 0 else []
    top = len(SPARK_BLOCKS) - 1
    levels = (
        min(max(round(value / maximum * top), 0), top) if maximum > 0 else 0 for value in recent
    )
    return " " * (width - len(recent)) + "".join(SPARK_BLOCKS[level] for level in levels)


def format_percent(value: float) -> str:
    """``7%``, ``100%``; CPU percentages can pass 100 with several vCPUs."""
    return f"{max(value, 0.0):.0f}%"


def format_rate(bytes_per_second: float) -> str:
    """A throughput: ``0 B/s``, ``1.5 MiB/s``."""
    return f"{format_size(round(max(bytes_per_second, 0.0)))}/s"


def format_memory_usage(used_bytes: int | None, total_bytes: int) -> str:
    """``used/total`` in whole MiB; ``-`` for the used part when it is unknown."""
    used = "-" if used_bytes is None else str(used_bytes // MiB)
    return f"{used}/{total_bytes // MiB}"


def format_age(moment: datetime, now: datetime) -> str:
    """How long ago: ``42s ago``, ``3d04h ago``."""
    return f"{format_duration((now - moment).total_seconds())} ago"


def format_timestamp(moment: datetime | None, now: datetime) -> str:
    """An absolute UTC time with its age, or ``-``."""
    if moment is None:
        return "-"
    stamp = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{stamp} ({format_age(moment, now)})"


def format_policy(network: Network) -> str:
    """The preset's name, or ``custom`` with the rules' count and the defaults."""
    policy = network.policy
    if isinstance(policy, str):
        return policy
    rules = f"{len(policy.rules)} rule{'' if len(policy.rules) == 1 else 's'}"
    defaults = f"egress {policy.default_egress}, ingress {policy.default_ingress} otherwise"
    return f"{network.policy_name} ({rules}; {defaults})"


def policy_rules(network: Network) -> tuple[Rule, ...]:
    """A custom policy's rules in order (their index is the one the flow log names); none
    for a preset."""
    return () if isinstance(network.policy, str) else network.policy.rules


def network_rows(network: Network, addresses: NetworkInfo | None) -> list[tuple[str, str]]:
    """What a sandbox's network is at a glance: policy, addresses, published ports."""
    return [
        ("network", format_policy(network)),
        (
            "address",
            "-" if addresses is None else f"{addresses.guest_address}/{addresses.prefix_len}",
        ),
        ("gateway", "-" if addresses is None else f"{addresses.gateway} ({addresses.host_alias})"),
        ("ports", ", ".join(str(port) for port in network.ports) or "-"),
    ]


def dns_rows(network: Network) -> list[tuple[str, str]]:
    """How the sandbox's names are resolved: nameservers, timeout, rebinding, deny lists."""
    dns = network.dns
    timeout = dns.query_timeout_ms or DEFAULT_QUERY_TIMEOUT_MS
    denied = [*network.deny_domains, *network.deny_domain_suffixes]
    return [
        ("nameservers", ", ".join(dns.nameservers) or "the host's"),
        ("dns timeout", f"{timeout} ms per nameserver"),
        ("rebind protection", "on" if dns.rebind_protection else "off"),
        ("denied names", ", ".join(denied) or "-"),
    ]


def tls_rows(network: Network) -> list[tuple[str, str]]:
    """Whether and how the sandbox's TLS is intercepted: ports, bypassed names, the upstream
    check and its extra CAs, whose interception CA."""
    tls = network.tls
    if tls is None:
        return [("tls interception", "off")]
    ports = ", ".join(str(port) for port in tls.intercepted_ports)
    verify = "on" if tls.verify_upstream else "off"
    return [
        ("tls interception", f"ports {ports}" + (", QUIC blocked" if tls.block_quic else "")),
        ("tls bypass", ", ".join(tls.bypass) or "-"),
        ("tls verify upstream", verify + "".join(f", {path}" for path in tls.upstream_ca_certs)),
        ("tls ca", tls.ca_cert or "the home's"),
    ]


def secret_rows(secrets: Sequence[SecretConfig]) -> list[tuple[str, str]]:
    """Each secret (never a value): the hosts it may go to, what a violation does, where
    its value is read at a start."""
    if not secrets:
        return [("secrets", "-")]
    return [
        (
            f"secret {secret.env_var}",
            "; ".join(
                [
                    ", ".join((*secret.allow_hosts, *secret.allow_host_patterns)),
                    str(secret.on_violation),
                    "value given at each start"
                    if secret.source is None
                    else f"from {secret.source.describe()}",
                ]
            ),
        )
        for secret in secrets
    ]

"""How ``msb`` writes tables, sizes and durations."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from microsandbox_tui import (
    ExecOutput,
    FsEntry,
    MiB,
    Network,
    SandboxInfo,
    SandboxMetrics,
    VolumeHandle,
)
from microsandbox_tui.formatting import (
    dns_rows,
    format_duration,
    format_mode,
    format_policy,
    format_size,
    format_timestamp,
    network_rows,
    policy_rules,
    secret_rows,
    tls_rows,
    uptime_seconds,
)


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the first row is the header."""
    if not rows:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def metrics_line(sample: SandboxMetrics) -> str:
    memory = f"{format_size(sample.memory_bytes)}/{format_size(sample.memory_limit_bytes)}"
    return (
        f"cpu {sample.cpu_percent:5.1f}%  mem {memory}  rss {format_size(sample.host_rss_bytes)}  "
        f"disk r/w {format_size(sample.disk_read_bytes)}/{format_size(sample.disk_write_bytes)}  "
        f"net rx/tx {format_size(sample.net_rx_bytes)}/{format_size(sample.net_tx_bytes)}  "
        f"up {format_duration(sample.uptime_ms / 1000)}"
    )


def sandbox_row(info: SandboxInfo, now: datetime) -> list[str]:
    up = uptime_seconds(info, now)
    return [
        info.name,
        str(info.status),
        info.image,
        str(info.config.cpus),
        f"{info.config.memory_mib} MiB",
        "-" if up is None else format_duration(up),
    ]


def sandbox_json(info: SandboxInfo, now: datetime) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "name": info.name,
        "status": str(info.status),
        "image": info.image,
        "cpus": info.config.cpus,
        "memory_mib": info.config.memory_mib,
        "detached": info.detached,
        "accelerator": info.accelerator,
        "created_at": iso(info.created_at),
        "started_at": iso(info.started_at),
        "stopped_at": iso(info.stopped_at),
        "uptime_s": uptime_seconds(info, now),
        "boot_ms": info.boot_ms,
        "exit_reason": info.exit_reason,
    }


def inspect_rows(info: SandboxInfo, now: datetime) -> list[list[str]]:
    """``msb inspect``: label and value pairs, the network's after the sandbox's own."""
    config = info.config
    up = uptime_seconds(info, now)
    rows = [
        ("name", info.name),
        ("status", str(info.status)),
        ("image", info.image),
        ("cpus", str(config.cpus)),
        ("memory", f"{config.memory_mib} MiB"),
        ("volumes", ", ".join(sorted(config.volumes)) or "-"),
        ("detached", "yes" if info.detached else "no"),
        ("uptime", "-" if up is None else format_duration(up)),
        ("created", format_timestamp(info.created_at, now)),
        *network_rows(config.network, info.network),
        *((f"rule {index}", str(rule)) for index, rule in enumerate(policy_rules(config.network))),
        *dns_rows(config.network),
        *tls_rows(config.network),
        *secret_rows(config.secrets),
    ]
    return [[label, value] for label, value in rows]


def policy_lines(network: Network) -> list[str]:
    """``msb net show``: the policy, then each rule with its index (the one the flow log
    names)."""
    rules = (f"{index}  {rule}" for index, rule in enumerate(policy_rules(network)))
    return [format_policy(network), *rules]


def volume_row(volume: VolumeHandle) -> list[str]:
    return [
        volume.name,
        format_size(volume.quota_mib * MiB),
        format_size(volume.used_bytes),
        ", ".join(volume.in_use_by) or "-",
        volume.created_at.astimezone().strftime("%Y-%m-%d %H:%M"),
    ]


def volume_json(volume: VolumeHandle) -> dict[str, Any]:
    return {
        "name": volume.name,
        "quota_mib": volume.quota_mib,
        "used_bytes": volume.used_bytes,
        "in_use_by": list(volume.in_use_by),
        "created_at": volume.created_at.isoformat(),
        "path": volume.path,
    }


def entry_row(entry: FsEntry) -> list[str]:
    """``-rw-r--r--  SIZE  MODIFIED  NAME [-> TARGET]``."""
    name = entry.name if entry.link_target is None else f"{entry.name} -> {entry.link_target}"
    return [
        format_mode(entry),
        str(entry.size),
        entry.modified.astimezone().strftime("%Y-%m-%d %H:%M"),
        name,
    ]


def entry_json(entry: FsEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "path": entry.path,
        "kind": str(entry.kind),
        "size": entry.size,
        "mode": f"{entry.mode:04o}",
        "modified": entry.modified.isoformat(),
        "uid": entry.uid,
        "gid": entry.gid,
        "link_target": entry.link_target,
    }


def write_output(output: ExecOutput) -> None:
    """A guest command's stdout and stderr, as bytes, to our stdout and stderr."""
    for stream, data in ((sys.stdout, output.stdout), (sys.stderr, output.stderr)):
        stream.flush()
        stream.buffer.write(data)
        stream.buffer.flush()

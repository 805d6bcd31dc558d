"""How sandbox values are written in the dashboard's cells."""

from __future__ import annotations

from datetime import datetime

from microsandbox_tui import SandboxInfo, SandboxStatus


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


def format_uptime(info: SandboxInfo, now: datetime) -> str:
    """Time since the VM started, for a running sandbox; ``-`` otherwise."""
    if info.status is not SandboxStatus.RUNNING or info.started_at is None:
        return "-"
    return format_duration((now - info.started_at).total_seconds())


def row_values(info: SandboxInfo, now: datetime) -> dict[str, str]:
    """The text of each column of a sandbox's row, keyed by column key."""
    return {
        "name": info.name,
        "status": str(info.status),
        "image": info.image,
        "cpus": str(info.config.cpus),
        "memory": str(info.config.memory_mib),
        "uptime": format_uptime(info, now),
    }

"""How sandbox values read to people, shared by the CLI and the dashboard (no UI code)."""

from __future__ import annotations

from datetime import datetime

from .sandbox import SandboxInfo
from .types import SandboxStatus


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


def format_size(n_bytes: int) -> str:
    """``512 B``, ``1.5 KiB``, ``12.0 MiB``, ``3.2 GiB``."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"

"""How sandbox values are written in the dashboard's cells."""

from __future__ import annotations

from datetime import datetime

from microsandbox_tui import SandboxInfo
from microsandbox_tui.formatting import format_uptime


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

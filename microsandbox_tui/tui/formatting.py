"""How sandbox values are written in the dashboard's cells."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from microsandbox_tui import MiB, SandboxInfo, SandboxMetrics
from microsandbox_tui.formatting import (
    format_memory_usage,
    format_percent,
    format_uptime,
    sparkline,
)

#: CPU samples in a row's sparkline (one a refresh).
SPARK_SAMPLES = 20


def cpu_cell(metrics: SandboxMetrics | None, history: Sequence[float], cpus: int) -> str:
    """A sparkline of recent CPU use (full height = every vCPU busy) and the latest value."""
    if metrics is None:
        return " " * SPARK_SAMPLES + "    -"
    line = sparkline(history or [metrics.cpu_percent], SPARK_SAMPLES, 100.0 * cpus)
    return f"{line} {format_percent(metrics.cpu_percent):>4}"


def row_values(
    info: SandboxInfo,
    now: datetime,
    metrics: SandboxMetrics | None = None,
    cpu_history: Sequence[float] = (),
) -> dict[str, str]:
    """The text of each column of a sandbox's row, keyed by column key."""
    if metrics is not None:
        memory = format_memory_usage(metrics.memory_bytes, metrics.memory_limit_bytes)
    else:
        memory = format_memory_usage(None, info.config.memory_mib * MiB)
    return {
        "name": info.name,
        "status": str(info.status),
        "image": info.image,
        "cpus": str(info.config.cpus),
        "cpu": cpu_cell(metrics, cpu_history, info.config.cpus),
        "memory": memory,
        "uptime": format_uptime(info, now),
    }

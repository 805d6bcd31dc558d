"""Widgets of the dashboard."""

from .sandbox_table import SandboxTable
from .status_bar import StatusBar

__all__ = ["SandboxTable", "StatusBar"]

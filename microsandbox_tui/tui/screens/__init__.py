"""Screens of the dashboard: one per view (sandboxes now; volumes and images later), plus
help."""

from .help import HelpScreen
from .logs import LogsScreen
from .sandboxes import SandboxesScreen

__all__ = ["HelpScreen", "LogsScreen", "SandboxesScreen"]

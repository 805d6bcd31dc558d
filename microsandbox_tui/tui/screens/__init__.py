"""Screens of the dashboard: one per view (sandboxes, images, volumes), the sandbox detail and
logs screens pushed over the sandboxes view, and help."""

from .detail import SandboxDetailScreen
from .help import HelpScreen
from .images import ImagesScreen
from .logs import LogsScreen
from .sandboxes import SandboxesScreen
from .volumes import VolumesScreen

__all__ = [
    "HelpScreen",
    "ImagesScreen",
    "LogsScreen",
    "SandboxDetailScreen",
    "SandboxesScreen",
    "VolumesScreen",
]
